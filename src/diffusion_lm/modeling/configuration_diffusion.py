"""The masked-diffusion fields every diffusion configuration carries, and their validation.

Imports nothing but the standard library: configuration files import only this and transformers' configuration
classes, so a checkpoint's configuration loads without torch or any modeling code.
"""

from __future__ import annotations

# "bidirectional": full attention (an adapted model); "causal": exactly the AR base; "block": bidirectional inside
# each block of ``diffusion_block_size`` positions (counted from position 0), causal across blocks.
ATTENTION_MODES = ("bidirectional", "causal", "block")

DIFFUSION_FIELDS_DOC = r"""
    mask_token_id (`int`, *optional*):
        Id of the [MASK] token (a dedicated added token, or a reused id such as 811 / 10541 of the reference models).
    shift (`bool`, defaults to `True`):
        Keep the AR alignment: the logit at position i predicts token i + 1.
    attention_mode (`str`, defaults to `"bidirectional"`):
        `"bidirectional"` once adapted; `"causal"` runs the converted model exactly as its AR base; `"block"`
        (block diffusion) attends bidirectionally inside each block of `diffusion_block_size` positions and causally
        across blocks.
    diffusion_block_size (`int`, *optional*):
        Block length of `attention_mode="block"` (required there, unused otherwise).
"""


def validate_diffusion_fields(config) -> None:
    """ValueError naming the field for a diffusion setting the model cannot run with."""
    if config.attention_mode not in ATTENTION_MODES:
        raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {config.attention_mode!r}")
    if config.mask_token_id is not None and not 0 <= config.mask_token_id < config.vocab_size:
        raise ValueError(f"mask_token_id {config.mask_token_id} is outside the vocabulary (size {config.vocab_size})")
    block = getattr(config, "diffusion_block_size", None)
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
        raise ValueError(f"diffusion_block_size must be an integer >= 1, got {block!r}")
    if config.attention_mode == "block" and block is None:
        raise ValueError("attention_mode='block' needs diffusion_block_size (the number of positions per block)")


__all__ = ["ATTENTION_MODES", "DIFFUSION_FIELDS_DOC", "validate_diffusion_fields"]
