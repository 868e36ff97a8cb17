"""Configuration of DiffuLLaMA: a LLaMA configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import LlamaConfig

from .configuration_diffusion import DIFFUSION_FIELDS_DOC, diffusion_config, validate_diffusion_fields


@diffusion_config
class DiffuLlamaConfig(LlamaConfig):
    __doc__ = f"``LlamaConfig`` plus the masked-diffusion fields:\n{DIFFUSION_FIELDS_DOC}"

    model_type = "diffullama"

    mask_token_id: int | None = None
    mask_token_reused: bool = False
    shift: bool = True
    attention_mode: str = "bidirectional"
    diffusion_block_size: int | None = None
    context_attention: str = "block"

    def validate_architecture(self):  # transformers versions with dataclass configurations
        super().validate_architecture()
        validate_diffusion_fields(self)
