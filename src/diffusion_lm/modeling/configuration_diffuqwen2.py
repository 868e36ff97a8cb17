"""Configuration of DiffuQwen2: a Qwen2 configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import Qwen2Config

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuQwen2Config(Qwen2Config):
    model_type = "diffuqwen2"


__all__ = ["DiffuQwen2Config"]
