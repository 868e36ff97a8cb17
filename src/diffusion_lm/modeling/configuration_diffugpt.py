"""Configuration of DiffuGPT: a GPT-2 configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import GPT2Config

from .configuration_diffusion import DIFFUSION_FIELDS_DOC, diffusion_config, validate_diffusion_fields


@diffusion_config
class DiffuGPTConfig(GPT2Config):
    __doc__ = f"``GPT2Config`` plus the masked-diffusion fields:\n{DIFFUSION_FIELDS_DOC}"

    model_type = "diffugpt"

    mask_token_id: int | None = None
    mask_token_reused: bool = False
    shift: bool = True
    attention_mode: str = "bidirectional"
    diffusion_block_size: int | None = None
    context_attention: str = "block"

    def validate_architecture(self):  # transformers versions with dataclass configurations
        super().validate_architecture()
        validate_diffusion_fields(self)
