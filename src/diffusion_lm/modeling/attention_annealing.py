"""Attention patterns: causal -> annealed (causal OR Bernoulli(ratio)) -> fully bidirectional (or block).

During the first ``anneal_steps`` optimizer steps the attention pattern is the causal lower triangle OR a
random Bernoulli(ratio) matrix, ratio = min(1, (step + 1) / anneal_steps), redrawn every step. Afterwards the
model runs with no L x L mask at all, so fused attention kernels apply; padding is masked in every phase.
Block diffusion anneals from causal to block attention (bidirectional inside each block, causal across blocks).
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


def attention_pattern(
    mode: str,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    key_is_token: torch.Tensor | None = None,
    *,
    block_size: int | None = None,
    anneal_ratio: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """Boolean (B, 1, Q, K) "query may attend key" pattern from token positions, or None for "attend everything".

    Positions (not tensor indices) decide, so the same rule serves a full forward, a forward over a few query
    positions against cached keys in any order, and left-padded rows (positions start at each row's first token).
    - ``bidirectional``: every real key (annealed: causal OR Bernoulli(ratio));
    - ``causal``: keys at positions <= the query's;
    - ``block``: keys in the query's block or an earlier one, block = position // block_size (annealed: causal
      across and inside blocks, OR Bernoulli(ratio) inside the query's block).
    ``key_is_token`` (B, K) marks real keys; padding is never attended.
    """
    annealing = anneal_ratio is not None and anneal_ratio < 1.0
    if annealing and anneal_ratio < 0.0:
        raise ValueError(f"anneal_ratio must be in [0, 1], got {anneal_ratio}")
    q = query_positions[:, None, :, None]
    k = key_positions[:, None, None, :]
    if mode == "bidirectional" and not annealing:
        if key_is_token is None or bool(key_is_token.all()):
            return None
        return key_is_token.bool()[:, None, None, :]
    causal = k <= q
    if mode == "causal":
        allowed = causal
    elif mode in ("bidirectional", "block"):
        batch_size, num_queries, num_keys = query_positions.shape[0], query_positions.shape[1], key_positions.shape[1]
        if mode == "block":
            if not block_size or block_size < 1:
                raise ValueError("attention_mode 'block' needs diffusion_block_size >= 1")
            query_block, key_block = torch.div(q, block_size, rounding_mode="floor"), torch.div(
                k, block_size, rounding_mode="floor")
            earlier_or_causal = (key_block < query_block) | causal
            same_block = key_block == query_block
        else:
            earlier_or_causal, same_block = causal, torch.ones((), dtype=torch.bool, device=q.device)
        if annealing:
            shape = (batch_size, 1, num_queries, num_keys)
            links = torch.rand(shape, device=q.device, generator=generator) < anneal_ratio
            allowed = earlier_or_causal | (same_block & links)
        else:
            allowed = earlier_or_causal | same_block
    else:
        raise ValueError(f"unknown attention mode {mode!r}")
    if key_is_token is not None:
        allowed = allowed & key_is_token.bool()[:, None, None, :]
    return allowed


def build_attention_mask(
    attention_mask: torch.Tensor | None,
    batch_size: int,
    seq_len: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    anneal_ratio: float | None = None,
    causal: bool = False,
    mode: str | None = None,
    block_size: int | None = None,
    position_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """The additive mask a diffusion model's attention layers receive for a full (uncached) forward.

    - a 4D ``attention_mask`` is taken as given (a custom pattern);
    - bidirectional (``anneal_ratio`` None or >= 1): None without padding, else a (B, 1, 1, L) key-padding mask,
      never an L x L tensor;
    - annealed, ``causal`` or ``block`` (see ``attention_pattern``): a (B, 1, L, L) pattern, padded keys blocked.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    if attention_mask is not None and attention_mask.shape != (batch_size, seq_len):
        raise ValueError(f"attention_mask must have shape ({batch_size}, {seq_len}), got {tuple(attention_mask.shape)}")
    mode = mode or ("causal" if causal else "bidirectional")
    key_is_token = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
    if position_ids is None:
        position_ids = torch.arange(seq_len, device=device).expand(batch_size, -1)
    pattern = attention_pattern(mode, position_ids, position_ids, key_is_token, block_size=block_size,
                                anneal_ratio=anneal_ratio, generator=generator)
    return None if pattern is None else allowed_to_additive(pattern, dtype)
