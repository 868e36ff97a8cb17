"""The AR shift: the logit at position i predicts token i + 1, so the prediction for position j is read at j - 1."""

from __future__ import annotations

import torch


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
