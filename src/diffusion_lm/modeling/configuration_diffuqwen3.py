"""Configuration of DiffuQwen3: a Qwen3 configuration plus the masked-diffusion fields.

``layer_types`` / ``sliding_window`` keep their Qwen3 meaning (``use_sliding_window`` marks the layers from
``max_window_layers`` on as ``"sliding_attention"``); such layers attend within the window on both sides in the
bidirectional and block modes, and exactly as the AR model in causal mode (see ``docs/families.md``).
"""

from __future__ import annotations

from transformers import Qwen3Config

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuQwen3Config(Qwen3Config):
    model_type = "diffuqwen3"


__all__ = ["DiffuQwen3Config"]
