"""Forward (noising) process: replace maskable tokens by [MASK] independently with probability 1 - alpha_t."""

from __future__ import annotations

import torch

from .noise_schedule import masking_probability


def _check_maskable(input_ids: torch.Tensor, maskable: torch.Tensor) -> None:
    if input_ids.shape != maskable.shape:
        raise ValueError(f"maskable {tuple(maskable.shape)} must have the shape of input_ids {tuple(input_ids.shape)}")


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    noise_levels: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
    draws: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``input_ids`` (B, L) at per-sequence noise levels ``noise_levels`` (B,), or per-token ones (B, L)
    (block diffusion: every token carries its block's level).

    Only positions where ``maskable`` is True can be masked: given tokens (prompts, position 0) and padding
    never are. Returns ``(noisy_ids, is_masked)``. ``is_masked`` is the corruption indicator; the loss must use
    it rather than ``noisy_ids == mask_token_id``, because the mask id may be a real vocabulary token.
    ``draws`` (B, L) are the uniforms deciding each position (position j is masked when its draw < t); without
    them they are drawn from ``generator``.
    """
    _check_maskable(input_ids, maskable)
    if noise_levels.shape not in ((input_ids.shape[0],), tuple(input_ids.shape)):
        raise ValueError(f"noise_levels must have shape ({input_ids.shape[0]},) or {tuple(input_ids.shape)}, "
                         f"got {tuple(noise_levels.shape)}")
    per_token = noise_levels if noise_levels.dim() == 2 else noise_levels[:, None]
    if draws is None:
        draws = torch.rand(input_ids.shape, device=input_ids.device, generator=generator)
    elif draws.shape != input_ids.shape:
        raise ValueError(f"draws {tuple(draws.shape)} must have the shape of input_ids {tuple(input_ids.shape)}")
    is_masked = masked_positions(maskable, per_token, draws)
    noisy_ids = torch.where(is_masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return noisy_ids, is_masked


def masked_positions(maskable: torch.Tensor, noise_levels: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The corruption rule: a maskable position is masked when its uniform draw < the masking probability of its
    noise level (``noise_levels`` broadcast against ``draws``: (B, 1) per sequence or (B, L) per token)."""
    return (draws < masking_probability(noise_levels)) & maskable.bool()


def mask_exact_count(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    counts: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask exactly ``counts[b]`` (B,) maskable positions of row b, a uniformly random subset of them (the
    conditional of ``mask_tokens`` given how many tokens it masked). Returns ``(noisy_ids, is_masked)``.

    The j-th maskable position of a row gets the j-th uniform draw of that row, whatever precedes it: two sequences
    scored with the same generator (the choices of one question) then mask the same scored offsets, so their scores
    share the noise (common random numbers) even when their contexts differ in length."""
    _check_maskable(input_ids, maskable)
    maskable = maskable.bool()
    available = maskable.sum(dim=1)
    if bool((counts < 0).any()) or bool((counts > available).any()):
        raise ValueError("counts must lie between 0 and the number of maskable positions of each row")
    width = -(-max(int(available.max()), 1) // 64) * 64  # a multiple of 64: lengths that differ a little align
    by_order = torch.rand((input_ids.shape[0], width), device=input_ids.device, generator=generator)
    order = (maskable.long().cumsum(dim=1) - 1).clamp(min=0)
    draws = by_order.gather(1, order).masked_fill(~maskable, 2.0)  # 2.0: never among the first counts[b]
    rank = draws.argsort(dim=1).argsort(dim=1)
    is_masked = (rank < counts.to(rank.device)[:, None]) & maskable
    noisy_ids = torch.where(is_masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return noisy_ids, is_masked


def maskable_positions(
    attention_mask: torch.Tensor | None,
    input_ids: torch.Tensor,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions the forward process may mask: not padding, not given, and never position 0.

    Position 0 is never predicted under the AR shift (nothing precedes it), so it always stays clean.
    """
    maskable = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        maskable &= attention_mask.bool()
    if given is not None:
        maskable &= ~given.bool()
    maskable[:, 0] = False
    return maskable
