"""Configuration of DiffuGemma3: a Gemma 3 text configuration (``gemma3_text``) plus the masked-diffusion fields.

The local layers (``layer_types`` ``"sliding_attention"``) attend within ``sliding_window`` on both sides in the
bidirectional and block modes (|query position - key position| < sliding_window), exactly as Gemma 3 in causal mode;
the global layers attend as the mode says. ``final_logit_softcapping``, when set, caps every logit the model returns
or scores. See ``docs/families.md``.
"""

from __future__ import annotations

from transformers import Gemma3TextConfig

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuGemma3Config(Gemma3TextConfig):
    model_type = "diffugemma3"


__all__ = ["DiffuGemma3Config"]
