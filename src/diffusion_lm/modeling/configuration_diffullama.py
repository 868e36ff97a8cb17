"""Configuration of DiffuLLaMA: a LLaMA configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import LlamaConfig

from .configuration_diffusion import diffusion_config


@diffusion_config
class DiffuLlamaConfig(LlamaConfig):
    model_type = "diffullama"


__all__ = ["DiffuLlamaConfig"]
