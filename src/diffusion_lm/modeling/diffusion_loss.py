"""Masked-diffusion training loss (negative ELBO of absorbing diffusion with the AR shift).

loss = sum over masked positions of w(t) * CE(prediction, clean token), with w(t) = 1/t for the linear schedule,
normalised either per masked token (the DiffuGPT / DiffuLLaMA reference) or per modelled token (the unbiased
ELBO estimate of the NLL per token, paper Eq. 7; use it for any reported likelihood bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .noise_schedule import elbo_weight
from .shift import align_logits_with_targets

LOSS_NORMALIZATIONS = ("masked_tokens", "elbo")


@dataclass
class DiffusionLossOutput:
    loss: torch.Tensor  # the normalised, 1/t-weighted loss that is optimised
    weighted_sum: torch.Tensor  # sum of w(t) * CE over masked positions
    unweighted_sum: torch.Tensor  # sum of CE over masked positions
    num_masked: torch.Tensor  # number of masked (predicted) positions
    num_modelled: torch.Tensor  # number of maskable positions (the ELBO's token count)

    @property
    def unweighted_loss(self) -> torch.Tensor:
        """Mean cross-entropy over masked positions, without the 1/t weight."""
        return self.unweighted_sum / self.num_masked.clamp(min=1)


def masked_diffusion_loss(
    logits: torch.Tensor,
    clean_ids: torch.Tensor,
    is_masked: torch.Tensor,
    noise_levels: torch.Tensor,
    maskable: torch.Tensor | None = None,
    *,
    normalization: str = "masked_tokens",
    shift: bool = True,
) -> DiffusionLossOutput:
    """Diffusion loss for logits (B, L, V) of the corrupted sequence.

    ``is_masked`` is the corruption indicator returned by ``mask_tokens``; ``maskable`` (needed for the "elbo"
    normalisation) marks the positions the forward process could have masked. ``noise_levels`` is (B,) per
    sequence or (B, L) per token (aligned with ``clean_ids``, e.g. block diffusion's level of each token's block).
    Cross-entropy runs in float32.
    """
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}")
    if maskable is None:
        if normalization == "elbo":
            raise ValueError("the 'elbo' normalization needs the maskable positions")
        maskable = is_masked
    per_token_levels = noise_levels if noise_levels.dim() == 2 else noise_levels[:, None].expand_as(clean_ids)
    logits, targets, masked, modelled, levels = align_logits_with_targets(
        logits, clean_ids, is_masked.bool(), maskable.bool(), per_token_levels, shift=shift
    )
    weights = elbo_weight(levels.float())[masked]
    cross_entropy = F.cross_entropy(logits[masked].float(), targets[masked], reduction="none")
    weighted_sum = (weights * cross_entropy).sum()
    num_masked = masked.sum()
    num_modelled = modelled.sum()
    denominator = num_masked if normalization == "masked_tokens" else num_modelled
    return DiffusionLossOutput(
        loss=weighted_sum / denominator.clamp(min=1),
        weighted_sum=weighted_sum,
        unweighted_sum=cross_entropy.sum(),
        num_masked=num_masked,
        num_modelled=num_modelled,
    )
