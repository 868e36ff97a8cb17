"""Masked-diffusion training loss (negative ELBO of absorbing diffusion with the AR shift).

loss = sum over masked positions of w(t) * CE(prediction, clean token), with w(t) = 1/t for the linear schedule,
normalised either per masked token (the DiffuGPT / DiffuLLaMA reference) or per modelled token (the unbiased
ELBO estimate of the NLL per token, paper Eq. 7; use it for any reported likelihood bound).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .noise_schedule import elbo_weight
from .shift import IGNORE_INDEX, per_token, predicted_only, targets_at_logits

LOSS_NORMALIZATIONS = ("masked_tokens", "elbo")


@dataclass
class DiffusionLossOutput:
    loss: torch.Tensor  # the normalised, 1/t-weighted loss that is optimised
    weighted_sum: torch.Tensor  # sum of w(t) * CE over masked positions
    unweighted_sum: torch.Tensor  # sum of CE over masked positions
    num_masked: torch.Tensor  # number of masked (predicted) positions
    num_modelled: torch.Tensor  # number of maskable positions (the ELBO's token count)
    # distillation: sum over masked positions of KL(teacher || model), without the 1/t weight
    distill_kl_sum: torch.Tensor | None = None
    # the AR loss of a block model's clean stream: sum of its next-token cross-entropy, and the positions scored
    ar_sum: torch.Tensor | None = None
    ar_count: torch.Tensor | None = None

    def with_ar_loss(self, ar_cross_entropy: torch.Tensor, ar_soft_cross_entropy: torch.Tensor | None,
                     distill_weight: float, modelled: torch.Tensor, ar_weight: float,
                     normalizer: torch.Tensor | float | None = None) -> "DiffusionLossOutput":
        """This loss plus ``ar_weight`` x the mean next-token cross-entropy (B, L, token-aligned) over the
        ``modelled`` tokens (divided by ``normalizer`` instead of their count when given), each mixed with the
        teacher's as the diffusion term is."""
        modelled = modelled.bool()
        zero = torch.zeros((), device=ar_cross_entropy.device)
        hard = torch.where(modelled, ar_cross_entropy, zero)
        mixed = hard if ar_soft_cross_entropy is None else torch.where(
            modelled, (1.0 - distill_weight) * ar_cross_entropy + distill_weight * ar_soft_cross_entropy, zero)
        count = modelled.sum()
        normalizer = count.clamp(min=1) if normalizer is None else normalizer
        return replace(self, loss=self.loss + ar_weight * mixed.sum() / normalizer, ar_sum=hard.sum(), ar_count=count)

    @property
    def unweighted_loss(self) -> torch.Tensor:
        """Mean cross-entropy over masked positions, without the 1/t weight."""
        return self.unweighted_sum / self.num_masked.clamp(min=1)


def diffusion_loss_from_cross_entropy(
    token_cross_entropy: torch.Tensor,
    is_masked: torch.Tensor,
    noise_levels: torch.Tensor,
    maskable: torch.Tensor | None = None,
    *,
    normalization: str = "masked_tokens",
    normalizer: torch.Tensor | float | None = None,
    soft_cross_entropy: torch.Tensor | None = None,
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    distill_weight: float = 0.0,
) -> DiffusionLossOutput:
    """The diffusion loss from the cross-entropy of each token's prediction (B, L), aligned with the tokens (the
    shift already undone); only masked positions count.

    ``noise_levels`` is (B,) per sequence or (B, L) per token. ``normalizer`` replaces the count the weighted sum is
    divided by (the masked or modelled tokens of this batch), e.g. the count over every micro-batch and process of
    an optimizer step, so that the loss does not depend on how the step's batch is split.

    Distillation: given ``soft_cross_entropy`` (B, L), each prediction's cross-entropy against the teacher's
    distribution ``soft_targets`` (ids, probs), the per-token term is ``(1 - w) * CE(token) + w * CE(teacher)``
    (w = ``distill_weight``): the cross-entropy against the mixture of the one-hot token and the teacher, so the 1/t
    weight and the normalisation apply to both. Metrics (weighted / unweighted sums, ELBO) stay those of the token
    alone; ``distill_kl_sum`` adds KL(teacher || model) summed over the masked positions.
    """
    if soft_cross_entropy is not None:
        output = diffusion_loss_from_cross_entropy(token_cross_entropy, is_masked, noise_levels, maskable,
                                                   normalization=normalization, normalizer=normalizer)
        mixed = (1.0 - distill_weight) * token_cross_entropy + distill_weight * soft_cross_entropy
        loss = diffusion_loss_from_cross_entropy(mixed, is_masked, noise_levels, maskable,
                                                 normalization=normalization, normalizer=normalizer).loss
        masked = is_masked.bool() if maskable is None else is_masked.bool() & maskable.bool()
        kl = torch.where(masked, soft_cross_entropy - teacher_entropy(soft_targets).to(mixed.device),
                         torch.zeros((), device=mixed.device))
        return replace(output, loss=loss, distill_kl_sum=kl.sum())
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {LOSS_NORMALIZATIONS}, got {normalization!r}")
    if maskable is None:
        if normalization == "elbo":
            raise ValueError("the 'elbo' normalization needs the maskable positions")
        maskable = is_masked
    masked = is_masked.bool() & maskable.bool()
    levels = noise_levels if noise_levels.dim() == 2 else noise_levels[:, None].expand_as(masked)
    weights = torch.where(masked, elbo_weight(levels.float()), torch.zeros((), device=levels.device))
    cross_entropy = torch.where(masked, token_cross_entropy, torch.zeros((), device=token_cross_entropy.device))
    weighted_sum = (weights * cross_entropy).sum()
    num_masked = masked.sum()
    num_modelled = maskable.bool().sum()
    if normalizer is None:
        normalizer = (num_masked if normalization == "masked_tokens" else num_modelled).clamp(min=1)
    return DiffusionLossOutput(
        loss=weighted_sum / normalizer,
        weighted_sum=weighted_sum,
        unweighted_sum=cross_entropy.sum(),
        num_masked=num_masked,
        num_modelled=num_modelled,
    )


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
    Cross-entropy runs in float32, on the masked positions only. Training computes the same loss without full
    logits (``target_ids`` of the model forward, see ``diffusion_lm.objective``).
    """
    if maskable is None and normalization == "elbo":
        raise ValueError("the 'elbo' normalization needs the maskable positions")
    is_masked = predicted_only(is_masked, shift)
    maskable = None if maskable is None else predicted_only(maskable, shift)
    scored = is_masked if maskable is None else is_masked & maskable
    targets = targets_at_logits(clean_ids, scored, shift)
    at_logits = torch.zeros(targets.shape, dtype=torch.float32, device=logits.device)
    keep = targets != IGNORE_INDEX
    at_logits[keep] = F.cross_entropy(logits[keep].float(), targets[keep], reduction="none")
    return diffusion_loss_from_cross_entropy(per_token(at_logits, shift), is_masked, noise_levels, maskable,
                                             normalization=normalization)


def teacher_entropy(soft_targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(B, L) entropy of each teacher distribution (ids, probs), so that soft cross-entropy - entropy = KL."""
    probs = soft_targets[1].float()
    return -(probs * torch.log(probs.clamp(min=1e-30))).sum(dim=-1)
