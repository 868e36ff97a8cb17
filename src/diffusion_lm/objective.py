"""One training step's diffusion objective, shared by continual pre-training (DiffusionTrainer) and SFT.

Draw t per sequence, corrupt the maskable tokens, run the model on the corrupted sequence, score the masked
positions. Everything here is composed from the math modules in ``diffusion_lm.modeling``.
"""

from __future__ import annotations

import torch

from .modeling.corruption import mask_tokens
from .modeling.diffusion_loss import DiffusionLossOutput, masked_diffusion_loss
from .modeling.noise_schedule import DEFAULT_EPS, sample_noise_levels


def diffusion_objective(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    *,
    mask_token_id: int,
    attention_mask: torch.Tensor | None = None,
    normalization: str = "masked_tokens",
    shift: bool = True,
    eps: float = DEFAULT_EPS,
    anneal_ratio: float | None = None,
    noise_levels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> DiffusionLossOutput:
    """Masked-diffusion loss of ``model`` on clean ``input_ids`` (B, L); ``maskable`` marks what may be noised."""
    if noise_levels is None:
        noise_levels = sample_noise_levels(input_ids.shape[0], eps, device=input_ids.device, generator=generator)
    noisy_ids, is_masked = mask_tokens(input_ids, maskable, noise_levels, mask_token_id, generator=generator)
    forward_kwargs = {"attention_mask": attention_mask}
    if anneal_ratio is not None and anneal_ratio < 1.0:
        forward_kwargs["anneal_ratio"] = anneal_ratio
    logits = model(input_ids=noisy_ids, **forward_kwargs).logits
    return masked_diffusion_loss(
        logits, input_ids, is_masked, noise_levels, maskable, normalization=normalization, shift=shift
    )
