"""Pieces every diffusion model class shares: output type, attention-mask routing, bidirectional switch.

Only ``torch`` and ``transformers`` are imported here: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from .attention_annealing import build_attention_mask


@dataclass
class MaskedDiffusionLMOutput(ModelOutput):
    """Output of a diffusion LM forward pass. ``logits[:, i]`` predicts token i + 1 when ``config.shift``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


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


def prepare_decoder_inputs(
    config,
    embed_tokens: torch.nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    anneal_ratio: float | None,
    past_key_values=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(inputs_embeds, position_ids, mask for the attention layers): what every decoder stack starts from."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if past_key_values is not None:
        raise ValueError("diffusion LMs attend bidirectionally and take no past_key_values")
    if inputs_embeds is None:
        inputs_embeds = embed_tokens(input_ids)
    batch_size, seq_len = inputs_embeds.shape[:2]
    if position_ids is None:
        position_ids = positions_from_padding(attention_mask, batch_size, seq_len, inputs_embeds.device)
    layer_mask = attention_mask_for_layers(config, attention_mask, inputs_embeds, anneal_ratio)
    return inputs_embeds, position_ids, layer_mask


class DiffusionLMHeadMixin:
    """The LM head on top of the decoder stack found at ``base_model_prefix`` (``model`` or ``transformer``)."""

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        anneal_ratio: float | None = None,
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        """Logits for every position; ``logits[:, i]`` predicts token i + 1 when ``config.shift``.

        ``attention_mask`` (B, L) marks real tokens (padding is never attended); ``anneal_ratio`` in [0, 1) applies
        the annealed attention pattern of that ratio (training only).
        """
        hidden_states = getattr(self, self.base_model_prefix)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            anneal_ratio=anneal_ratio,
            **kwargs,
        ).last_hidden_state
        return MaskedDiffusionLMOutput(logits=self.lm_head(hidden_states), last_hidden_state=hidden_states)
