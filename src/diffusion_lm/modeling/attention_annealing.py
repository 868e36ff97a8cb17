"""Attention patterns: causal -> annealed (causal OR Bernoulli(ratio)) -> fully bidirectional.

During the first ``anneal_steps`` optimizer steps the attention pattern is the causal lower triangle OR a
random Bernoulli(ratio) matrix, ratio = min(1, (step + 1) / anneal_steps), redrawn every step. Afterwards the
model runs with no L x L mask at all, so fused attention kernels apply; padding is masked in every phase.
Masks are additive floats (0 = attend, dtype-min = blocked), which eager and SDPA attention both accept.
"""

from __future__ import annotations

import torch


def annealing_ratio(step: int, anneal_steps: int) -> float:
    """Share of future positions each query may attend to at optimizer step ``step`` (1.0 = fully bidirectional)."""
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / anneal_steps)


def allowed_to_additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" pattern -> additive mask (0 where allowed, the dtype's minimum elsewhere)."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    blocked = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, blocked)


def annealed_attention_pattern(
    batch_size: int,
    seq_len: int,
    ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boolean (B, 1, L, L) pattern: causal lower triangle OR an independent Bernoulli(ratio) draw per entry."""
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    random_links = torch.rand(batch_size, 1, seq_len, seq_len, device=device, generator=generator) < ratio
    return causal | random_links


def build_attention_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    seq_len: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    anneal_ratio: float | None = None,
    causal: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """The mask a diffusion model's attention layers receive.

    - a 4D ``attention_mask`` is taken as given (a custom pattern);
    - bidirectional (``anneal_ratio`` None or >= 1, not causal): None without padding, else a (B, 1, 1, L)
      key-padding mask, never an L x L tensor;
    - annealed (0 <= ``anneal_ratio`` < 1) or ``causal``: a (B, 1, L, L) pattern with padded keys blocked.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    if attention_mask is not None and attention_mask.shape != (batch_size, seq_len):
        raise ValueError(f"attention_mask must have shape ({batch_size}, {seq_len}), got {tuple(attention_mask.shape)}")
    key_is_token = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
    if causal:
        pattern = torch.ones(1, 1, seq_len, seq_len, dtype=torch.bool, device=device).tril()
    elif anneal_ratio is not None and anneal_ratio < 1.0:
        if anneal_ratio < 0.0:
            raise ValueError(f"anneal_ratio must be in [0, 1], got {anneal_ratio}")
        pattern = annealed_attention_pattern(batch_size, seq_len, anneal_ratio, device=device, generator=generator)
    else:
        if key_is_token is None:
            return None
        return allowed_to_additive(key_is_token[:, None, None, :], dtype)
    if key_is_token is not None:
        pattern = pattern & key_is_token[:, None, None, :]
    return allowed_to_additive(pattern, dtype)
