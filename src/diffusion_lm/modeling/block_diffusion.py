"""Block-diffusion training in one forward pass (BD3-LM): the noised sequence and the clean sequence side by side.

The likelihood factorises over blocks of ``block_size`` positions (block = position // block_size, counted from
position 0), and block k is a masked-diffusion model of its tokens given the clean blocks before it (METHOD.md
section 9). One forward pass over ``[noisy x_t (L) ; clean x_0 (L)]`` with position ids ``[0..L-1, 0..L-1]`` trains
every block at once under this attention pattern:

- noisy block k -> itself, bidirectionally (while annealing: causal OR Bernoulli(ratio)), and the clean blocks < k;
- clean block k -> the clean blocks <= k (block-causal): exactly what a committed block in the KV cache saw when it
  was written during decoding; with ``context_attention="causal"`` the clean stream is token-causal instead (the AR
  model itself: its logits are next-token predictions, trained by an AR loss at no extra forward);
- nothing attends a noisy block from outside it, and padding is never attended.

With the AR shift the token at position j is predicted by the logit at j - 1. Inside a block that is the noisy
stream's position j - 1; for the first position of block k it is the last position of block k - 1, read from the
clean stream (it has seen exactly the clean blocks <= k - 1, as in decoding where block k - 1 is committed). So the
logits are needed at exactly L - 1 positions of the 2L, and ``prediction_indices`` picks them.

Only ``torch`` is imported (and the sibling attention-pattern module): this file ships with checkpoints.
"""

from __future__ import annotations

import torch

from .attention_annealing import attention_pattern
from .noise_schedule import DEFAULT_EPS, sample_noise_levels


def check_block_size(block_size, seq_len: int | None = None) -> int:
    """ValueError naming ``diffusion_block_size`` unless it is an integer >= 1 (dividing ``seq_len`` when given)."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"diffusion_block_size must be an integer >= 1, got {block_size!r}")
    if seq_len is not None and seq_len % block_size:
        raise ValueError(
            f"diffusion_block_size {block_size} must divide the packed sequence length (block_size) {seq_len}"
        )
    return block_size


def num_blocks(seq_len: int, block_size: int) -> int:
    """Blocks covering ``seq_len`` positions (the last one may be partial)."""
    return -(-seq_len // block_size)


def block_index(positions: torch.Tensor, block_size: int) -> torch.Tensor:
    return torch.div(positions, block_size, rounding_mode="floor")


def sample_block_noise_levels(
    batch_size: int,
    seq_len: int,
    block_size: int,
    eps: float = DEFAULT_EPS,
    *,
    stratified: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One noise level per block, t ~ U(eps, 1): a (B, number of blocks) tensor.

    ``stratified`` spreads the B x K draws over equal strata of (0, 1) (lower-variance evaluation estimates).
    """
    count = num_blocks(seq_len, block_size)
    levels = sample_noise_levels(batch_size * count, eps, stratified=stratified, device=device, generator=generator)
    return levels.view(batch_size, count)


def per_token_noise_levels(block_levels: torch.Tensor, seq_len: int, block_size: int) -> torch.Tensor:
    """(B, K) block noise levels -> (B, L): every token carries the level of its block."""
    if block_levels.dim() != 2 or block_levels.shape[1] != num_blocks(seq_len, block_size):
        raise ValueError(
            f"block noise levels must have shape (batch, {num_blocks(seq_len, block_size)}) for {seq_len} positions "
            f"in blocks of {block_size}, got {tuple(block_levels.shape)}"
        )
    return block_levels.repeat_interleave(block_size, dim=1)[:, :seq_len]


def two_stream_position_ids(batch_size: int, seq_len: int, device=None) -> torch.Tensor:
    """(B, 2L) position ids of ``[noisy ; clean]``: both streams sit at positions 0..L-1."""
    positions = torch.arange(seq_len, device=device)
    return torch.cat([positions, positions]).unsqueeze(0).expand(batch_size, -1)


def two_stream_attention_pattern(
    batch_size: int,
    seq_len: int,
    block_size: int,
    key_is_token: torch.Tensor | None = None,
    *,
    anneal_ratio: float | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    anneal_seed: int | None = None,
    context_attention: str = "block",
) -> torch.Tensor:
    """Boolean (B, 1, 2L, 2L) "query may attend key" pattern over ``[noisy ; clean]`` (module docstring).

    ``key_is_token`` (B, L) marks real tokens of the sequence (both streams share it). The batch dimension is 1
    when nothing depends on the row (no padding): the mask is then not repeated per sequence.
    """
    has_padding = key_is_token is not None and not bool(key_is_token.all())
    rows = batch_size if has_padding else 1  # the annealing draw is shared by the batch
    positions = torch.arange(seq_len, device=device).unsqueeze(0)
    blocks = block_index(positions, block_size)
    same_block = (blocks[:, :, None] == blocks[:, None, :])[:, None]  # (1, 1, L, L)
    # noisy -> noisy: the block pattern restricted to the query's own block, annealed inside it
    noisy_to_noisy = attention_pattern("block", positions.expand(rows, -1), positions.expand(rows, -1),
                                       block_size=block_size, anneal_ratio=anneal_ratio, generator=generator,
                                       anneal_seed=anneal_seed)
    noisy_to_noisy = noisy_to_noisy & same_block
    # noisy -> clean: strictly earlier blocks only (the query's own clean block would give its answers away)
    noisy_to_clean = (blocks[:, None, :] < blocks[:, :, None])[:, None].expand(rows, -1, -1, -1)
    # clean -> clean: block-causal (or token-causal), never annealed (committed blocks are always written so)
    clean_mode = "causal" if context_attention == "causal" else "block"
    clean_to_clean = attention_pattern(clean_mode, positions, positions, block_size=block_size).expand(
        rows, -1, -1, -1)
    clean_to_noisy = torch.zeros_like(clean_to_clean)
    pattern = torch.cat(
        [torch.cat([noisy_to_noisy, noisy_to_clean], dim=-1), torch.cat([clean_to_noisy, clean_to_clean], dim=-1)],
        dim=-2,
    )
    if has_padding:
        keys = key_is_token.bool().to(pattern.device)
        pattern = pattern & torch.cat([keys, keys], dim=-1)[:, None, None, :]
    return pattern


def prediction_indices(seq_len: int, block_size: int, shift: bool = True, device=None) -> torch.Tensor:
    """Indices into the 2L outputs of ``[noisy ; clean]`` whose logits predict tokens, in target order.

    With the shift, entry i predicts token i + 1: the noisy stream's position i when i + 1 is in the same block,
    the clean stream's position i (index L + i) when i + 1 starts a block. Without the shift, entry i is the noisy
    stream's position i (a model without the shift reads each token's prediction at its own position).
    """
    positions = torch.arange(seq_len, device=device)
    if not shift:
        return positions
    predicting = positions[:-1]
    starts_block = (predicting + 1) % block_size == 0
    return torch.where(starts_block, predicting + seq_len, predicting)


__all__ = [
    "block_index",
    "check_block_size",
    "num_blocks",
    "per_token_noise_levels",
    "prediction_indices",
    "sample_block_noise_levels",
    "two_stream_attention_pattern",
    "two_stream_position_ids",
]
