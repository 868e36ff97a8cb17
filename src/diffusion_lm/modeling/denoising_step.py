"""One denoising step, as three small functions every cache mode shares (``diffusion_decode`` runs them):

- ``plan_step``: which masked positions the step may commit, and how many (the schedule; the ``random`` rule draws its
  commits here, before the forward pass);
- ``propose``: a token and its distribution for every position the step reads (greedy or sampled, see
  ``unmasking.propose_tokens``), [MASK] itself never proposed;
- ``scheduled_commit`` / ``parallel_commit``: which proposals are committed (the rule ``alg`` picks the schedule's
  count; ``threshold`` / ``entropy_bound`` add the confident ones), then ``apply_commit`` writes them.

Only ``torch`` and ``transformers`` are imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .unmasking import (
    entropy_bound_commit,
    proposal_entropy,
    proposal_scores,
    propose_tokens,
    random_unmask_probability,
    select_positions,
    top_k_filter,
    top_p_filter,
)


@dataclass
class StepPredictions:
    """What ``step_callback`` receives for a step that ran the model: ``logits[:, i]`` (shift undone) is the
    prediction for canvas position ``positions[i]`` - the current block's masked positions, the only ones for which
    the LM head ran."""

    positions: torch.LongTensor
    logits: torch.Tensor


@dataclass
class Proposals:
    """A step's proposals: ``tokens[i]`` for canvas cell ``(rows[i], cols[i])``, drawn from ``probs[i]``;
    ``confidence[i]`` is the proposed token's probability."""

    rows: torch.Tensor
    cols: torch.Tensor
    tokens: torch.Tensor
    probs: torch.Tensor
    confidence: torch.Tensor


def plan_step(alg: str, eligible: torch.Tensor, last: bool, scheduled: torch.Tensor, steps_left: int,
              block_steps: int, parallel_rule: bool, generator: torch.Generator | None = None):
    """(to_propose (B, L) bool, count (B,) or None, commit (B, L) bool or None) for a step over the ``eligible``
    (masked, in the current block) positions. ``scheduled`` (B,): the schedule's count for this step; ``last``: the
    block's last step commits everything left. The ``random`` rule decides its commits here (``commit``), each masked
    position independently with the reverse-step probability of the linear schedule; the other rules commit
    ``count`` positions once the proposals are scored."""
    if alg == "random":
        p = random_unmask_probability(steps_left, block_steps)
        draw = torch.rand(eligible.shape, device=eligible.device, generator=generator)
        commit = eligible if last else eligible & (draw < p)
        return (eligible if parallel_rule else commit), None, commit
    count = eligible.sum(dim=1) if last else torch.minimum(scheduled, eligible.sum(dim=1))
    return eligible & (count > 0)[:, None], count, None


def propose(logits: torch.Tensor, wanted: torch.Tensor, to_propose: torch.Tensor, x: torch.Tensor, mask_id: int,
            config, temperature: float, logits_processor=None, generator: torch.Generator | None = None) -> Proposals:
    """Proposals for the ``to_propose`` cells from ``logits`` (B, len(wanted), V), the predictions for the canvas
    columns ``wanted``. ``logits_processor`` sees each proposal's row of the canvas ``x`` as its ``input_ids``."""
    column_index = torch.full((x.shape[1],), -1, dtype=torch.long, device=x.device)
    column_index[wanted] = torch.arange(len(wanted), device=x.device)
    rows, cols = to_propose.nonzero(as_tuple=True)
    step_logits = logits[rows, column_index[cols]].float()
    step_logits[:, mask_id] = float("-inf")  # never propose [MASK] itself
    if logits_processor:
        step_logits = logits_processor(x[rows], step_logits)
    tokens, probs = propose_tokens(step_logits, temperature, config.top_k, config.top_p, generator)
    confidence = probs.gather(-1, tokens[:, None]).squeeze(-1)
    return Proposals(rows, cols, tokens, probs, confidence)


def scheduled_commit(alg: str, proposals: Proposals, to_propose: torch.Tensor, count: torch.Tensor,
                     positions: torch.Tensor, alg_temperature: float = 0.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) bool: the ``count`` proposals per row that ``alg`` scores best (``left_to_right``: the leftmost)."""
    scores = torch.full(to_propose.shape, float("-inf"), device=to_propose.device)
    if alg == "left_to_right":
        scores[to_propose] = -positions[to_propose].float()
    elif alg == "confidence":
        scores[to_propose] = proposals.confidence
    else:
        scores[to_propose] = proposal_scores(alg, proposals.probs, proposals.tokens)
    return select_positions(scores, to_propose, count, alg_temperature, generator)


def parallel_commit(proposals: Proposals, to_propose: torch.Tensor, threshold: float | None,
                    entropy_bound: float | None) -> torch.Tensor:
    """(B, L) bool: the proposals committed beyond the schedule: probability >= ``threshold``, and the
    ``entropy_bound`` rule's set (``unmasking.entropy_bound_commit``)."""
    rows, cols = proposals.rows, proposals.cols
    commit = torch.zeros_like(to_propose)
    if threshold is not None:
        commit[rows, cols] = proposals.confidence >= threshold
    if entropy_bound is not None:
        confidence_map = torch.zeros(to_propose.shape, device=to_propose.device)
        entropy_map = torch.zeros(to_propose.shape, device=to_propose.device)
        confidence_map[rows, cols] = proposals.confidence
        entropy_map[rows, cols] = proposal_entropy(proposals.probs)
        commit = commit | entropy_bound_commit(confidence_map, entropy_map, to_propose, entropy_bound)
    return commit


def apply_commit(x: torch.Tensor, proposals: Proposals, commit: torch.Tensor) -> torch.Tensor:
    """The canvas with the committed proposals written in."""
    proposed = x.clone()
    proposed[proposals.rows, proposals.cols] = proposals.tokens
    return torch.where(commit, proposed, x)



# --- verification (``self_verification``): which draft tokens are committed -------------------------------------
def greedy_acceptance(draft: torch.Tensor, draft_lengths: torch.Tensor, target_logits: torch.Tensor):
    """Greedy verification. ``draft`` (B, K) proposed tokens, ``draft_lengths`` (B,) how many of them are real,
    ``target_logits`` (B, K + 1, V): the causal model's logits for the draft positions and the one after.

    Returns (accepted (B,): draft tokens equal to the causal argmax before the first disagreement,
    next_token (B,): the causal argmax after them). A round commits ``accepted + 1`` tokens.
    """
    choice = target_logits.argmax(dim=-1)  # (B, K + 1)
    width = draft.shape[1]
    within = torch.arange(width, device=draft.device)[None, :] < draft_lengths[:, None]
    agree = (choice[:, :width] == draft) & within
    accepted = agree.long().cumprod(dim=1).sum(dim=1)
    return accepted, choice.gather(1, accepted[:, None]).squeeze(1)


def speculative_acceptance(draft: torch.Tensor, draft_lengths: torch.Tensor, draft_probs: torch.Tensor,
                           target_probs: torch.Tensor, generator: torch.Generator | None = None):
    """Speculative-sampling verification. ``draft_probs`` (B, K, V): the distribution q each draft token was drawn
    from; ``target_probs`` (B, K + 1, V): the causal model's p at the draft positions and the one after.

    Draft token i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); the first rejected one is replaced by a
    draw from normalize(max(0, p_i - q_i)); if every real draft token is accepted the next token is drawn from
    p_{length}. Returns (accepted (B,), next_token (B,)), as ``greedy_acceptance``.
    """
    batch, width = draft.shape
    device = draft.device
    if width:
        p = target_probs[:, :width].gather(-1, draft[..., None]).squeeze(-1)
        q = draft_probs.gather(-1, draft[..., None]).squeeze(-1)
        ratio = torch.where(q > 0, p / q.clamp(min=torch.finfo(q.dtype).tiny), torch.zeros_like(p))
        uniform = torch.rand((batch, width), device=device, generator=generator)
        within = torch.arange(width, device=device)[None, :] < draft_lengths[:, None]
        keep = (uniform < ratio.clamp(max=1.0)) & within
        accepted = keep.long().cumprod(dim=1).sum(dim=1)
    else:
        accepted = torch.zeros(batch, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    target = target_probs[rows, accepted]  # (B, V): p at the first position not accepted
    rejected = accepted < draft_lengths
    if width:
        residual_q = draft_probs[rows, accepted.clamp(max=width - 1)]
        residual = (target - residual_q).clamp(min=0)
        mass = residual.sum(dim=-1, keepdim=True)
        # p == q up to rounding leaves no residual mass: p itself is then the right law
        residual = torch.where(mass > 0, residual / mass.clamp(min=torch.finfo(mass.dtype).tiny), target)
        target = torch.where(rejected[:, None], residual, target)
    next_token = torch.multinomial(target, num_samples=1, generator=generator).squeeze(1)
    return accepted, next_token


def target_distribution(logits: torch.Tensor, temperature: float, top_k, top_p) -> torch.Tensor:
    """The law tokens are drawn from at ``temperature`` > 0 after the top-k / top-p filters (as ``propose_tokens``)."""
    return top_p_filter(top_k_filter(logits.float() / temperature, top_k), top_p).softmax(dim=-1)

__all__ = ["Proposals", "StepPredictions", "apply_commit", "greedy_acceptance", "parallel_commit", "plan_step",
           "propose", "scheduled_commit", "speculative_acceptance", "target_distribution"]
