"""Unmasking rules of the reverse process: which masked positions a denoising step commits, and with which token.

A step proposes a token for every masked position (greedy, or sampled with temperature / top-k / top-p), scores the
proposals with the rule ``alg`` and commits the best-scored ones:

- ``random``: every masked position is committed with probability 1/(k+1) when k steps remain after this one
  (the exact reverse step of the linear schedule, see ``noise_schedule.reverse_unmask_probability``);
- ``confidence``: probability of the proposed token (top-1 probability under greedy decoding);
- ``margin``: top-1 minus top-2 probability;
- ``entropy``: negative entropy of the predicted distribution;
- ``left_to_right``: the leftmost masked position first (autoregressive order; with one token per step and causal
  attention this is exactly AR greedy decoding).

The deterministic rules commit an exact number of tokens per step, spread evenly over the steps (as LLaDA does).
Only ``torch`` and ``transformers`` are imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import TopKLogitsWarper

from .noise_schedule import reverse_unmask_probability

ALGORITHMS = ("random", "confidence", "margin", "entropy", "left_to_right")
# names used by Dream (`diffusion_generate`) and LLaDA (`remasking`) for the same rules
ALG_ALIASES = {
    "origin": "random",
    "maskgit_plus": "confidence",
    "low_confidence": "confidence",
    "topk_margin": "margin",
}
# every name ``alg`` accepts (what the command line offers)
ALG_NAMES = ALGORITHMS + tuple(ALG_ALIASES)


def canonical_alg(alg: str) -> str:
    """The rule's name in ``ALGORITHMS``; ValueError naming ``alg`` otherwise."""
    name = ALG_ALIASES.get(alg, alg)
    if name not in ALGORITHMS:
        known = ", ".join(ALG_NAMES)
        raise ValueError(f"alg must be one of {known}; got {alg!r}")
    return name


# --- how many tokens a step commits ------------------------------------------------------------------------------
def tokens_per_step(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, B) number of tokens each step commits so that ``num_masked[b]`` masks are gone after ``steps`` steps.

    The masks are spread evenly and the remainder goes to the first steps (LLaDA's ``get_num_transfer_tokens``):
    10 masks over 4 steps commit 3, 3, 2, 2.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    num_masked = num_masked.long()
    base = num_masked // steps
    remainder = num_masked % steps
    step_index = torch.arange(steps, device=num_masked.device)[:, None]
    return base[None, :] + (step_index < remainder[None, :]).long()


def random_unmask_probability(steps_left_after: int, steps: int) -> float:
    """Probability that the ``random`` rule commits a masked position when ``steps_left_after`` steps remain after
    this one, out of ``steps`` on a uniform time grid: t = (k+1)/K -> s = k/K, which gives 1/(k+1)."""
    k = steps_left_after
    return float(reverse_unmask_probability((k + 1) / steps, k / steps))


# --- token proposal -------------------------------------------------------------------------------------------------
def top_k_filter(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of every row (others -inf; ties with the k-th are kept); None or 0 keeps
    all. transformers' ``TopKLogitsWarper`` (which reads no ``input_ids``)."""
    if not top_k or top_k >= logits.shape[-1]:
        return logits
    return TopKLogitsWarper(int(top_k))(None, logits)


def top_p_filter(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass reaches ``top_p``.

    Not transformers' ``TopPLogitsWarper``: that one sums the mass from the least likely token up, which keeps a
    different token among equal logits and, where the mass lands within rounding of ``1 - top_p``, one token more
    or less; this filter decides from the top, as Dream and LLaDA do, and keeps earlier outputs reproducible."""
    if top_p is None or top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    # a token is dropped when the tokens ranked above it already hold top_p of the mass; the first is always kept
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def propose_tokens(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (N,), probs (N, V)) for N rows of logits.

    ``probs`` is the top-k / top-p filtered distribution (temperature-scaled when sampling), the one the rules
    score, as in Dream's sampler. ``temperature == 0`` takes its argmax, which the filters never change; they still
    change ``probs``, so a confidence, margin or entropy and the threshold decisions read the renormalised nucleus.
    """
    logits = logits.float()
    if temperature == 0:
        probs = top_p_filter(top_k_filter(logits, top_k), top_p).softmax(dim=-1)
        return probs.argmax(dim=-1), probs
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    probs = logits.softmax(dim=-1)
    tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    return tokens, probs


# --- scores ---------------------------------------------------------------------------------------------------------
def proposal_scores(alg: str, probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(N,) score of each proposal under ``alg`` (higher = committed earlier). ``left_to_right`` and ``random`` do
    not score proposals (see ``select_positions`` and the random rule)."""
    if alg == "confidence":
        return probs.gather(-1, tokens[:, None]).squeeze(-1)
    if alg == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[:, 0] - top2[:, 1]
    if alg == "entropy":
        # sum p log p = -entropy; xlogy gives 0 for the p = 0 entries that top-k / top-p leave
        return torch.special.xlogy(probs, probs).sum(dim=-1)
    raise ValueError(f"alg {alg!r} does not score proposals")


def gumbel_noise(shape, device, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(shape, device=device, generator=generator)
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-7)))


def select_positions(
    scores: torch.Tensor,
    eligible: torch.Tensor,
    counts: torch.Tensor,
    alg_temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, L) bool: the ``counts[b]`` best-scored eligible positions of each row.

    With ``alg_temperature > 0`` the positions are drawn without replacement with probabilities
    softmax(score / alg_temperature) (Gumbel top-k, the same law as Dream's ``alg_temp``). Ties go to the leftmost
    position, so a sequence's choice does not depend on left padding.
    """
    keys = scores.float().masked_fill(~eligible, float("-inf"))
    if alg_temperature and alg_temperature > 0:
        noisy = keys / alg_temperature + gumbel_noise(keys.shape, keys.device, generator)
        keys = torch.where(eligible, noisy, keys)
    order = torch.argsort(keys, dim=-1, descending=True, stable=True)
    arange = torch.arange(keys.shape[-1], device=keys.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, arange)
    return (rank < counts[:, None]) & eligible


def entropy_bound_commit(confidence: torch.Tensor, entropy: torch.Tensor, eligible: torch.Tensor,
                         bound: float) -> torch.Tensor:
    """(B, L) bool: per row, the eligible positions taken in decreasing ``confidence`` while their summed ``entropy``
    stays <= ``bound`` (DiffusionGemma's entropy-bound rule); the most confident eligible position always.

    ``confidence`` and ``entropy`` are (B, L) (any value where not eligible). Ties go to the leftmost position.
    """
    keys = confidence.float().masked_fill(~eligible, float("-inf"))
    order = torch.argsort(keys, dim=-1, descending=True, stable=True)
    sorted_eligible = eligible.gather(-1, order)
    sorted_entropy = entropy.float().gather(-1, order).masked_fill(~sorted_eligible, 0.0)
    within = sorted_entropy.cumsum(dim=-1) <= bound
    within[:, 0] = True  # at least one position a step
    take_sorted = within & sorted_eligible
    return torch.zeros_like(eligible).scatter(-1, order, take_sorted)


def proposal_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(N,) entropy in nats of each row of ``probs`` (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


__all__ = [
    "ALGORITHMS",
    "entropy_bound_commit",
    "proposal_entropy",
    "ALG_ALIASES",
    "ALG_NAMES",
    "canonical_alg",
    "tokens_per_step",
    "random_unmask_probability",
    "top_k_filter",
    "top_p_filter",
    "propose_tokens",
    "proposal_scores",
    "select_positions",
]
