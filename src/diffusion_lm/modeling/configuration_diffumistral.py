"""Configuration of DiffuMistral: a Mistral configuration plus the masked-diffusion fields.

``sliding_window`` (every layer, as in Mistral; None: full attention): a key is attended only when
|query position - key position| < sliding_window. In causal mode that is exactly Mistral's window; in the
bidirectional and block modes the window applies symmetrically (as many positions after a query as before it), on
top of the mode's own pattern. The model applies it in its one mask builder; a ready 4D attention mask over a KV cache
that the window could affect needs ``key_positions`` (ValueError otherwise), see ``docs/families.md``.
"""

from __future__ import annotations

from transformers import MistralConfig

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuMistralConfig(MistralConfig):
    model_type = "diffumistral"


__all__ = ["DiffuMistralConfig"]
