"""Diffusion decoding behind ``model.generate`` (placeholder until the sampler lands)."""

from __future__ import annotations

from transformers import GenerationConfig, GenerationMixin


class DiffusionGenerationConfig(GenerationConfig):
    def __init__(self, steps: int = 64, alg: str = "confidence", mask_token_id: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps
        self.alg = alg
        self.mask_token_id = mask_token_id


class DiffusionGenerationMixin(GenerationMixin):
    pass
