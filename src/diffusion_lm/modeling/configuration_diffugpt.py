"""Configuration of DiffuGPT: a GPT-2 configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import GPT2Config

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuGPTConfig(GPT2Config):
    model_type = "diffugpt"


__all__ = ["DiffuGPTConfig"]
