"""Noise schedule of absorbing (masking) discrete diffusion.

The linear schedule alpha_t = 1 - t is the one used by DiffuGPT / DiffuLLaMA: at noise level t a token
is still clean with probability alpha_t and replaced by [MASK] with probability 1 - alpha_t = t.
"""

from __future__ import annotations

import torch

DEFAULT_EPS = 1e-3


def alpha(t: torch.Tensor) -> torch.Tensor:
    """Probability that a token is still clean at noise level t."""
    return 1.0 - t


def masking_probability(t: torch.Tensor) -> torch.Tensor:
    """Probability that a token is [MASK] at noise level t (1 - alpha_t)."""
    return 1.0 - alpha(t)


def elbo_weight(t: torch.Tensor) -> torch.Tensor:
    """Weight of the cross-entropy at noise level t in the ELBO: -alpha'(t) / (1 - alpha(t)) = 1 / t."""
    return 1.0 / t


def sample_noise_levels(
    batch_size: int,
    eps: float = DEFAULT_EPS,
    *,
    stratified: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one noise level per sequence, t ~ U(eps, 1).

    ``stratified=True`` draws one t from each of ``batch_size`` equal strata of (0, 1) (lower-variance
    Monte-Carlo estimates for evaluation); the order of the strata is shuffled.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    u = torch.rand(batch_size, device=device, generator=generator)
    if stratified:
        offsets = torch.randperm(batch_size, device=device, generator=generator).to(u.dtype)
        u = (offsets + u) / batch_size
    return eps + (1.0 - eps) * u


def masked_counts(u: torch.Tensor, num_maskable: int) -> torch.Tensor:
    """Numbers of masked tokens l ~ U{1..L} from uniforms ``u`` in [0, 1): l = floor(u L) + 1 (stratified u gives
    stratified l). Given l of L tokens masked, the bound's weight 1/t integrates to L / l over t (Beta integral
    C(L, l) B(l, L - l + 1) = 1 / l), so the count form of the ELBO is E_l[(L / l) sum of the masked CE]: the same
    bound as the continuous one, without the Binomial count and 1/t noise (LLaDA's likelihood estimator)."""
    return (u * num_maskable).floor().long().clamp(0, num_maskable - 1) + 1


def reverse_unmask_probability(t: torch.Tensor | float, s: torch.Tensor | float) -> torch.Tensor | float:
    """Probability that a token masked at level t is revealed by level s < t: (alpha_s - alpha_t) / (1 - alpha_t).

    For the linear schedule on a uniform grid with k steps remaining (t = k/K, s = (k-1)/K) this is 1/k.
    """
    return (alpha(torch.as_tensor(s)) - alpha(torch.as_tensor(t))) / masking_probability(torch.as_tensor(t))
