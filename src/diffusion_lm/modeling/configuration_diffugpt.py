"""Configuration of DiffuGPT: a GPT-2 configuration plus the masked-diffusion fields."""

from __future__ import annotations

from transformers import GPT2Config
from transformers.configuration_utils import strict

from .modeling_diffusion_utils import validate_diffusion_fields


@strict
class DiffuGPTConfig(GPT2Config):
    r"""
    mask_token_id (`int`, *optional*):
        Id of the [MASK] token (a dedicated added token, or a reused id such as 10541 for DiffuGPT-S).
    shift (`bool`, defaults to `True`):
        Keep the AR alignment: the logit at position i predicts token i + 1.
    attention_mode (`str`, defaults to `"bidirectional"`):
        `"bidirectional"` once adapted; `"causal"` runs the converted model exactly as its AR base.
    """

    model_type = "diffugpt"

    mask_token_id: int | None = None
    shift: bool = True
    attention_mode: str = "bidirectional"

    def validate_architecture(self):
        super().validate_architecture()
        validate_diffusion_fields(self)
