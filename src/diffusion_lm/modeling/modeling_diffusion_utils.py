"""Pieces every diffusion model class shares: output type, attention-mask routing, bidirectional switch.

Only ``torch`` and ``transformers`` are imported here: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .attention_annealing import build_attention_mask

ATTENTION_MODES = ("bidirectional", "causal")


@dataclass
class MaskedDiffusionLMOutput(ModelOutput):
    """Output of a diffusion LM forward pass. ``logits[:, i]`` predicts token i + 1 when ``config.shift``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


def validate_diffusion_fields(config) -> None:
    if config.attention_mode not in ATTENTION_MODES:
        raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {config.attention_mode!r}")
    if config.mask_token_id is not None and not 0 <= config.mask_token_id < config.vocab_size:
        raise ValueError(f"mask_token_id {config.mask_token_id} is outside the vocabulary (size {config.vocab_size})")


def make_attention_bidirectional(model: torch.nn.Module) -> None:
    """Clear the ``is_causal`` flag of every attention module so SDPA / flash kernels run without a causal mask."""
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def positions_from_padding(attention_mask: torch.Tensor | None, batch_size: int, seq_len: int, device) -> torch.Tensor:
    """Position ids that start at 0 on each sequence's first real token, so left padding does not shift them."""
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.arange(seq_len, device=device).unsqueeze(0).expand(batch_size, -1)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask_for_layers(
    config,
    attention_mask: torch.Tensor | None,
    inputs_embeds: torch.Tensor,
    anneal_ratio: float | None,
) -> torch.Tensor | None:
    """Mask handed to the attention layers for the configured mode (see ``build_attention_mask``).

    Flash-attention kernels take only a 2D padding mask; asking them for an annealed or causal pattern would
    silently drop it (the reference code's pitfall), so that is an error here.
    """
    batch_size, seq_len = inputs_embeds.shape[:2]
    causal = config.attention_mode == "causal"
    needs_pattern = causal or (anneal_ratio is not None and anneal_ratio < 1.0)
    if "flash" in (config._attn_implementation or ""):
        if needs_pattern:
            raise ValueError(
                f"attention implementation {config._attn_implementation!r} cannot apply an annealed or causal "
                "attention pattern; use attn_implementation='sdpa' or 'eager' while annealing"
            )
        return attention_mask
    return build_attention_mask(
        attention_mask,
        batch_size,
        seq_len,
        inputs_embeds.dtype,
        inputs_embeds.device,
        anneal_ratio=anneal_ratio,
        causal=causal,
    )


def check_no_cache(past_key_values, use_cache) -> None:
    if past_key_values is not None:
        raise ValueError("diffusion LMs attend bidirectionally and take no past_key_values")


class DiffusionAutoMapMixin:
    """Saves an ``auto_map`` that serves both ``AutoModel`` and ``AutoModelForCausalLM`` (TRL / PEFT load through it)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        module_name = type(self).__module__.split(".")[-1]
        entry = f"{module_name}.{type(self).__name__}"
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", entry)
        auto_map.setdefault("AutoModelForCausalLM", entry)
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)
