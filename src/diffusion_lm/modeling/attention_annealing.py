"""Attention patterns: causal -> annealed (causal OR Bernoulli(ratio)) -> fully bidirectional (or block).

During the first ``anneal_steps`` optimizer steps the attention pattern is the causal lower triangle OR a
random Bernoulli(ratio) matrix, ratio = min(1, (step + 1) / anneal_steps), redrawn every step and shared by the
sequences of the step (training draws it from a generator seeded by the seed and the optimizer step). Afterwards the
model runs with no L x L mask at all, so fused attention kernels apply; padding is masked in every phase.
Block diffusion anneals from causal to block attention (bidirectional inside each block, causal across blocks).
Masks are additive floats (0 = attend, dtype-min = blocked), which eager and SDPA attention both accept.
Sliding-window layers (Mistral, Gemma 3, Qwen3 / Qwen2 with ``use_sliding_window``) get the same pattern restricted
to keys within the window on either side, |query position - key position| < window (``restrict_to_window``): in
causal mode exactly the AR model's window, in bidirectional and block modes the window applied symmetrically.
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


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser on int64 tensors holding 32-bit values (products wrap; the low bits stay)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def position_uniforms(query_positions: torch.Tensor, key_positions: torch.Tensor, seed: int) -> torch.Tensor:
    """(..., Q, K) uniforms in [0, 1), a hash of (seed, query position, key position): the same link of two positions
    whatever the sequence length, the rows around it or the device (integer arithmetic only)."""
    seeded = (query_positions.long() + (seed & 0xFFFFFFFF)) & 0xFFFFFFFF
    rows = _mix32(_mix32(seeded) ^ ((seed >> 32) & 0xFFFFFFFF))
    hashed = _mix32((rows[..., :, None] ^ (key_positions.long()[..., None, :] * 0x9E3779B1)) & 0xFFFFFFFF)
    return hashed.to(torch.float64).div_(2.0**32).float()


def attention_pattern(
    mode: str,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    key_is_token: torch.Tensor | None = None,
    *,
    block_size: int | None = None,
    anneal_ratio: float | None = None,
    generator: torch.Generator | None = None,
    anneal_seed: int | None = None,
    causal_before: int | torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Boolean (B, 1, Q, K) "query may attend key" pattern from token positions, or None for "attend everything".

    Positions (not tensor indices) decide, so the same rule serves a full forward, a forward over a few query
    positions against cached keys in any order, and left-padded rows (positions start at each row's first token).
    - ``bidirectional``: every real key (annealed: causal OR Bernoulli(ratio));
    - ``causal``: keys at positions <= the query's;
    - ``block``: keys in the query's block or an earlier one, block = position // block_size (annealed: causal
      across and inside blocks, OR Bernoulli(ratio) inside the query's block).
    ``causal_before`` (block mode; an int or one per row): queries at positions before it are context and attend
    token-causally (a block model with ``context_attention="causal"``; the block being denoised starts there).
    ``key_is_token`` (B, K) marks real keys; padding is never attended. The annealing links are one draw shared by
    the batch, from ``generator``, or with ``anneal_seed`` a hash of (seed, query position, key position)
    (``position_uniforms``: training's links of an optimizer step, the same for every micro-batch and process).
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
        num_queries, num_keys = query_positions.shape[1], key_positions.shape[1]
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
            if anneal_seed is None:  # one draw shared by the batch (as the reference)
                uniforms = torch.rand((1, 1, num_queries, num_keys), device=q.device, generator=generator)
            else:  # rows with the same positions (training's right-padded rows) share one hash
                alike = bool((query_positions == query_positions[:1]).all() and (key_positions == key_positions[:1]).all())
                rows = slice(0, 1) if alike else slice(None)
                uniforms = position_uniforms(query_positions[rows], key_positions[rows], anneal_seed)[:, None]
            allowed = earlier_or_causal | (same_block & (uniforms < anneal_ratio))
        else:
            allowed = earlier_or_causal | same_block
        if mode == "block" and causal_before is not None:
            before = torch.as_tensor(causal_before, device=q.device).reshape(-1, 1, 1, 1)
            allowed = torch.where(q < before, causal, allowed)
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
    key_positions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    anneal_seed: int | None = None,
    sliding_window: int | None = None,
) -> torch.Tensor | None:
    """The additive mask a diffusion model's attention layers receive: the one mask builder, for a full forward and
    for new positions against cached keys alike.

    - a 4D ``attention_mask`` is taken as given (a custom pattern);
    - bidirectional (``anneal_ratio`` None or >= 1): None without padding, else a (B, 1, 1, L) key-padding mask,
      never an L x L tensor;
    - annealed, ``causal`` or ``block`` (see ``attention_pattern``): a (B, 1, Q, L) pattern, padded keys blocked.
    ``seq_len`` counts the keys (``attention_mask`` is (B, seq_len) over them); ``position_ids`` (B, Q) are the
    queries' positions, ``key_positions`` (B, seq_len) the keys' (both default to 0 .. seq_len - 1).
    ``sliding_window``: the pattern of a sliding-window layer (``restrict_to_window``; a 4D mask too).
    """
    if position_ids is None:
        position_ids = torch.arange(seq_len, device=device).expand(batch_size, -1)
    if key_positions is None:
        key_positions = position_ids
    if sliding_window is not None:
        full = build_attention_mask(attention_mask, batch_size, seq_len, dtype, device, anneal_ratio=anneal_ratio,
                                    causal=causal, mode=mode, block_size=block_size, position_ids=position_ids,
                                    key_positions=key_positions, generator=generator, anneal_seed=anneal_seed)
        return restrict_to_window(full, position_ids, key_positions, sliding_window, dtype)
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    if attention_mask is not None and attention_mask.shape != (batch_size, seq_len):
        raise ValueError(f"attention_mask must have shape ({batch_size}, {seq_len}), got {tuple(attention_mask.shape)}")
    mode = mode or ("causal" if causal else "bidirectional")
    key_is_token = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
    pattern = attention_pattern(mode, position_ids, key_positions, key_is_token, block_size=block_size,
                                anneal_ratio=anneal_ratio, generator=generator, anneal_seed=anneal_seed)
    return None if pattern is None else allowed_to_additive(pattern, dtype)


def restrict_to_window(layer_mask: torch.Tensor | None, query_positions: torch.Tensor, key_positions: torch.Tensor,
                       window: int, dtype: torch.dtype) -> torch.Tensor:
    """A layer's mask (additive or boolean, 2D-broadcastable 4D, or None = attend everything) restricted to the keys
    of a sliding window: |query position - key position| < ``window`` (the AR window in causal mode; symmetric in
    bidirectional and block modes, as flash kernels apply it without a causal flag)."""
    near = (query_positions[:, None, :, None] - key_positions[:, None, None, :]).abs() < window
    if layer_mask is None:
        return allowed_to_additive(near, dtype)
    if layer_mask.dtype == torch.bool:
        return layer_mask & near
    return torch.where(near, layer_mask, torch.finfo(layer_mask.dtype).min)
