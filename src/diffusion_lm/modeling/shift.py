"""The AR shift: the logit at position i predicts token i + 1, so the prediction for position j is read at j - 1."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # a target id that is not scored (transformers' convention for labels)


def align_logits_with_targets(logits: torch.Tensor, *tensors: torch.Tensor, shift: bool = True):
    """Line predictions up with the tokens they predict.

    Returns ``(logits', *tensors')`` where ``logits'[:, j]`` is the prediction for ``tensors'[:, j]``. With the
    shift, position 0 of the targets is dropped (nothing predicts it) together with the last logit.
    """
    if not shift:
        return (logits, *tensors)
    return (logits[:, :-1], *(x[:, 1:] for x in tensors))


def logits_per_position(logits: torch.Tensor, shift: bool = True) -> torch.Tensor:
    """(B, L, V) logits whose row j predicts token j. With the shift, row 0 has no prediction and repeats row 0."""
    if not shift:
        return logits
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def targets_at_logits(clean_ids: torch.Tensor, scored: torch.Tensor, shift: bool = True,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, L) target ids aligned with the logits: position i holds the token its logit is scored against (token
    i + 1 with the shift, token i without), ``ignore_index`` where that token is not ``scored``."""
    targets = torch.where(scored.bool(), clean_ids, torch.full_like(clean_ids, ignore_index))
    if not shift:
        return targets
    return torch.cat([targets[:, 1:], torch.full_like(targets[:, :1], ignore_index)], dim=1)


def per_token(values_at_logits: torch.Tensor, shift: bool = True) -> torch.Tensor:
    """Values computed at the logits' positions (B, L, ...) -> at the tokens they predict; with the shift token 0
    (predicted by nothing) gets 0. The inverse of ``targets_at_logits``' alignment."""
    if not shift:
        return values_at_logits
    return torch.cat([torch.zeros_like(values_at_logits[:, :1]), values_at_logits[:, :-1]], dim=1)


def predicted_only(positions: torch.Tensor, shift: bool = True) -> torch.Tensor:
    """``positions`` (B, L) without position 0 under the shift: no logit predicts it, so it is never scored."""
    if not shift:
        return positions.bool()
    positions = positions.bool().clone()
    positions[:, 0] = False
    return positions
