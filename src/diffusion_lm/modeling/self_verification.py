"""Self-verified decoding (``verify="causal"``): diffusion drafts the next tokens, the model's own causal mode checks
them (speculative decoding with one set of weights, S2D2 / TiDAR style).

One round, per sequence with ``n`` committed tokens (prompt included):

1. **Draft**: one diffusion forward over the committed text and ``k`` masks at positions ``n .. n+k-1`` proposes a
   token for every mask at once (greedy: the argmax; sampling: each position drawn independently from its proposal
   distribution q). The drafter keeps its own KV cache: exact for block-diffusion models (finished blocks), the
   incremental approximate cache of full-attention models (``kv_cache=None``: recompute everything each draft).
2. **Verify**: one forward in causal mode (``attention_pattern("causal")``) over ``[last committed token, draft]`` on
   top of the exact causal KV cache of the committed text gives the causal model's distribution p at positions
   ``n .. n+k``. Greedy: the longest draft prefix equal to the causal argmax is accepted, plus the causal model's
   own next token, so a round commits between 1 and ``k + 1`` tokens and the text equals the causal greedy decode.
   Sampling: draft token x is accepted with probability min(1, p(x) / q(x)); the first rejected one is replaced by a
   draw from normalize(max(0, p - q)); when all are accepted the next token is drawn from p. The output is then
   distributed as the causal model's (Leviathan et al. 2023), because each draft token is drawn from its own q
   independently of the tokens before it.
3. The causal cache is cropped to the accepted tokens; nothing from a rejected draft stays in either cache.

Block models whose committed context is token-causal (``context_attention="causal"``) run a round in one forward
instead of two: the committed text's keys / values are the same in both modes there, so one cache serves both, and
the masks of the next draft ride along with the verification (``fused_verify_decode``, TiDAR style).

Batches: sequences accept different counts, so each cache (``decoding_cache.ColumnCache``) stores keys / values in
shared *columns* with a per-row validity mask and per-row positions; a column a row rejected is dead for that row
(never attended). Attention patterns are built from positions (``attention_pattern``), so the dead columns change
nothing. The acceptance rules are in ``denoising_step``. Only ``torch`` and ``transformers`` are imported: this file
travels with checkpoints as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decoding_cache import ColumnCache
from .denoising_step import greedy_acceptance, speculative_acceptance, target_distribution

VERIFY_MODES = ("causal",)


@dataclass
class VerifyResult:
    sequences: torch.Tensor
    generated: torch.Tensor
    history: tuple | None
    tokens_per_forward: torch.Tensor
    forward_passes: torch.Tensor
    accepted_per_verification: torch.Tensor
    verifications: torch.Tensor
    streamed: bool = True


def default_draft_length(model_config, generation_config) -> int:
    """Draft tokens per round when ``draft_length`` is unset: a block model's block, else ``block_length``, else 8."""
    if getattr(model_config, "attention_mode", None) == "block":
        return int(model_config.diffusion_block_size)
    return int(generation_config.block_length or 8)


@torch.no_grad()
def verify_decode(model, input_ids, attention_mask, max_new_tokens: int, config, *, generator=None, streamer=None,
                  step_callback=None, stopping_criteria=None, fuse: bool = True) -> VerifyResult:
    """Self-verified decoding of ``max_new_tokens`` after left-padded prompts (module docstring). Block models with
    token-causal context draft and verify in one forward (``fused_verify_decode``) unless ``fuse=False``."""
    if fuse and getattr(model.config, "attention_mode", None) == "block" and \
            getattr(model.config, "context_attention", "block") == "causal":
        return fused_verify_decode(model, input_ids, attention_mask, max_new_tokens, config, generator=generator,
                                   streamer=streamer, step_callback=step_callback, stopping_criteria=stopping_criteria)
    batch = input_ids.shape[0]
    device = input_ids.device
    mask_id = config.mask_token_id
    block_model = getattr(model.config, "attention_mode", None) == "block"
    block_size = getattr(model.config, "diffusion_block_size", None)
    draft_mode = getattr(model.config, "attention_mode", "bidirectional")  # the model's own diffusion mode
    # a block model whose committed context is token-causal (config.context_attention "causal") drafts over causal
    # keys / values of the committed text, as it decodes; verification never depends on this
    causal_context = block_model and getattr(model.config, "context_attention", "block") == "causal"
    k = config.draft_length if config.draft_length is not None else default_draft_length(model.config, config)
    recompute_drafts = not block_model and config.kv_cache is None  # the exact (uncached) draft
    eos_tensor, fill_id, excluded_id = _token_rules(model, config, device)

    prompt_valid = attention_mask.bool()
    prompt_positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    committed = prompt_valid.sum(dim=1)  # n: committed tokens per row (prompt + generated)
    out = torch.full((batch, max_new_tokens), mask_id, dtype=torch.long, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)  # generated tokens per row
    active = torch.ones(batch, dtype=torch.bool, device=device)
    forward_passes = torch.zeros(batch, dtype=torch.long, device=device)
    verifications = torch.zeros(batch, dtype=torch.long, device=device)
    accepted_total = torch.zeros(batch, dtype=torch.long, device=device)
    history: list[torch.Tensor] = []
    if max_new_tokens == 0:
        active[:] = False
    last = input_ids[:, -1].clone()  # the last committed token of every row (prompts are left-padded)

    causal = _causal_prompt_cache(model, input_ids, prompt_positions, prompt_valid, active)
    # the drafter's cache, and per row the committed tokens it has not seen yet (kept as a right-aligned queue)
    drafter = ColumnCache(batch, device)
    pending_ids, pending_pos, pending_valid = input_ids, prompt_positions, prompt_valid
    step = 0
    while bool(active.any()):
        remaining = max_new_tokens - count
        lengths = torch.clamp(remaining - 1, min=0).clamp(max=k)
        if block_model:  # a block model drafts to the end of the block holding the next position
            lengths = torch.minimum(lengths, block_size - committed % block_size)
        lengths = torch.where(active, lengths, torch.zeros_like(lengths))
        width = int(lengths.max())

        # --- draft: one diffusion forward over the pending committed tokens and `width` masks
        draft = torch.zeros(batch, width, dtype=torch.long, device=device)
        draft_probs = None
        if width:
            mask_columns = torch.arange(width, device=device)[None, :]
            mask_ids = torch.full((batch, width), mask_id, dtype=torch.long, device=device)
            mask_pos = committed[:, None] + mask_columns
            mask_valid = mask_columns < lengths[:, None]
            ids = torch.cat([pending_ids, mask_ids], dim=1)
            pos = torch.cat([pending_pos, mask_pos], dim=1)
            valid = torch.cat([pending_valid, mask_valid], dim=1)
            shift = pending_ids.shape[1] - 1  # the last pending column is the last committed token
            read = torch.arange(shift, shift + width, device=device)
            committed_queries = None
            if causal_context:
                committed_queries = torch.cat([pending_valid, torch.zeros_like(mask_valid)], dim=1)
            logits = drafter.forward(model, ids, pos, valid, draft_mode, read, committed_queries).float()
            forward_passes += active.long()
            drafter.crop(drafter.width - width)  # the masks never stay
            draft, draft_probs = _propose_draft(logits, mask_id, config, generator)

        # --- verify: one causal forward over [last committed, draft] on the exact causal cache
        ids = torch.cat([last[:, None], draft], dim=1)
        pos = committed[:, None] - 1 + torch.arange(width + 1, device=device)[None, :]
        valid = torch.arange(width + 1, device=device)[None, :] <= lengths[:, None]
        before = causal.width
        target_logits = causal.forward(model, ids, pos, valid, "causal",
                                       torch.arange(width + 1, device=device)).float()
        forward_passes += active.long()
        accepted, next_token = _verify_draft(draft, lengths, draft_probs, target_logits, active, config,
                                             excluded_id, generator)

        # --- commit: accepted draft tokens, then the causal model's own token; cut at EOS / a stopping criterion
        new_tokens, commit, hit_eos, stopped = _commit_round(
            draft, accepted, next_token, active, eos_tensor, stopping_criteria, input_ids, prompt_valid, out, count)
        verifications += active.long()
        accepted_total += commit
        columns = torch.arange(width + 1, device=device)[None, :]
        # the causal cache keeps [last committed, accepted drafts] of this round (columns before + 0 .. commit - 1)
        keep = commit.clamp(min=1)  # an inactive row keeps nothing, but columns are shared: mark them dead
        causal.valid[:, before:] &= (columns < keep[:, None]) & active[:, None]
        causal.crop(before + int((keep * active.long()).max()) if bool(active.any()) else before)
        causal.trim()
        if width:
            drafter.trim()
        # the drafter's queue for the next round: the tokens committed this round
        new_last = new_tokens.gather(1, (commit - 1).clamp(min=0)[:, None]).squeeze(1)
        queue_ids = new_tokens
        queue_valid = (columns < commit[:, None]) & active[:, None]
        queue_pos = committed[:, None] + columns
        committed = committed + commit
        count = count + commit
        last = torch.where(commit > 0, new_last, last)

        done = active & (hit_eos | stopped | (count >= max_new_tokens))
        active &= ~done
        _report_round(step, new_tokens, commit, input_ids, out, config, streamer, history, step_callback)
        step += 1
        if not bool(active.any()):
            break
        pending_ids, pending_pos, pending_valid = _drafter_queue(
            drafter, queue_ids, queue_pos, queue_valid, committed, block_size if block_model else None,
            recompute_drafts, input_ids, prompt_positions, prompt_valid, out, count, active)

    return _result(input_ids, prompt_valid, out, count, fill_id, history, config, forward_passes, accepted_total,
                   verifications)


@torch.no_grad()
def fused_verify_decode(model, input_ids, attention_mask, max_new_tokens: int, config, *, generator=None,
                        streamer=None, step_callback=None, stopping_criteria=None) -> VerifyResult:
    """Self-verified decoding in one forward per round, for block models whose committed context is token-causal
    (``context_attention="causal"``): there the committed text's keys / values are the causal mode's, so one cache
    serves both, and a forward can verify the pending draft and draft the next one (TiDAR).

    A round, per row with ``n`` committed tokens and a pending draft of the positions ``n .. e - 1`` (``e`` the end of
    the block holding ``n``; possibly empty), runs one forward over::

        [last committed token (n - 1), draft (n .. e - 1)]   causal: their logits verify the draft (as the two-pass
                                                             round's verification) and give the causal next token
        [masks at g .. end of g's block]                     the block-diffusion drafter of the next draft

    with ``g = e`` when the draft reaches the block end (the masks read the draft as if every token were accepted), or
    ``g = n`` when there is no draft. The token at ``g`` is the causal model's next token (read at ``g - 1``), unknown
    during the forward, so the masks stand in for it and the next draft covers ``g + 1 ..`` the block end, read from
    the masks' logits (the shift). If the draft is accepted in full, the masks' draft is the next round's; otherwise
    the next round has no draft and drafts from the corrected text. Every round commits at least one token, so tokens
    per forward equal accepted tokens per verification. Greedy output equals the causal greedy decode; sampling uses
    ``speculative_acceptance`` (each draft token drawn from its own q, independently of the causal next token).
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    mask_id = config.mask_token_id
    block_size = int(model.config.diffusion_block_size)
    eos_tensor, fill_id, excluded_id = _token_rules(model, config, device)

    prompt_valid = attention_mask.bool()
    prompt_positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    committed = prompt_valid.sum(dim=1)
    out = torch.full((batch, max_new_tokens), mask_id, dtype=torch.long, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    active = torch.full((batch,), max_new_tokens > 0, dtype=torch.bool, device=device)
    forward_passes = torch.zeros(batch, dtype=torch.long, device=device)
    accepted_total = torch.zeros(batch, dtype=torch.long, device=device)
    history: list[torch.Tensor] = []
    last = input_ids[:, -1].clone()
    # the pending draft of every row: tokens for positions committed .. committed + draft_length - 1
    draft = torch.zeros(batch, 0, dtype=torch.long, device=device)
    draft_length = torch.zeros(batch, dtype=torch.long, device=device)
    draft_probs = None

    cache = _causal_prompt_cache(model, input_ids, prompt_positions, prompt_valid, active)
    step = 0
    while bool(active.any()):
        remaining = max_new_tokens - count
        lengths = torch.minimum(draft_length, (remaining - 1).clamp(min=0))
        lengths = torch.where(active, lengths, torch.zeros_like(lengths))
        width = int(lengths.max())
        draft, draft_probs = draft[:, :width], None if draft_probs is None else draft_probs[:, :width]
        block_end = committed - committed % block_size + block_size  # the end of the block holding position n
        # the masks: after a draft that reaches its block's end, or where there is none; at least one draft token
        # (two masks), and only if tokens are still wanted after this round's
        group_start = committed + lengths
        group_end = group_start - group_start % block_size + block_size
        drafts_next = ((lengths == 0) | (group_start == block_end)) & (group_end - group_start >= 2)
        drafts_next &= active & (remaining - lengths - 1 > 0)
        group_lengths = torch.where(drafts_next, group_end - group_start, torch.zeros_like(group_start))
        group_width = int(group_lengths.max())

        columns = torch.arange(width + 1, device=device)[None, :]
        group_columns = torch.arange(group_width, device=device)[None, :]
        ids = torch.cat([last[:, None], draft,
                         torch.full((batch, group_width), mask_id, dtype=torch.long, device=device)], dim=1)
        pos = torch.cat([committed[:, None] - 1 + columns, group_start[:, None] + group_columns], dim=1)
        verified_valid = (columns <= lengths[:, None]) & active[:, None]
        group_valid = group_columns < group_lengths[:, None]
        valid = torch.cat([verified_valid, group_valid], dim=1)
        causal_queries = torch.cat([verified_valid, torch.zeros_like(group_valid)], dim=1)
        read = torch.arange(width + 1 + max(group_width - 1, 0), device=device)
        before = cache.width
        logits = cache.forward(model, ids, pos, valid, "block", read, causal_queries).float()
        forward_passes += active.long()
        target_logits, group_logits = logits[:, : width + 1], logits[:, width + 1:]
        accepted, next_token = _verify_draft(draft, lengths, draft_probs, target_logits, active, config,
                                             excluded_id, generator)

        new_tokens, commit, hit_eos, stopped = _commit_round(
            draft, accepted, next_token, active, eos_tensor, stopping_criteria, input_ids, prompt_valid, out, count)
        accepted_total += commit
        # the cache keeps [last committed, accepted drafts]; the rest of the draft and the masks are dead
        keep = (columns < commit.clamp(min=1)[:, None]) & active[:, None]
        cache.valid[:, before: before + width + 1] &= keep
        cache.valid[:, before + width + 1:] = False
        cache.trim()

        # the next draft: the masks' proposals where this round's draft was accepted in full and nothing stopped
        done = active & (hit_eos | stopped | (count + commit >= max_new_tokens))
        carry = drafts_next & (accepted == lengths) & ~done  # (a commit cut short by EOS or a criterion is done)
        if bool(carry.any()):  # carried rows have >= 2 masks: a draft of >= 1 token
            draft, draft_probs = _propose_draft(group_logits, mask_id, config, generator)
            draft_length = torch.where(carry, group_lengths - 1, torch.zeros_like(group_lengths))
        else:
            draft = torch.zeros(batch, 0, dtype=torch.long, device=device)
            draft_length = torch.zeros_like(draft_length)
        last = torch.where(commit > 0, new_tokens.gather(1, (commit - 1).clamp(min=0)[:, None]).squeeze(1), last)
        committed = committed + commit
        count = count + commit

        active &= ~done
        _report_round(step, new_tokens, commit, input_ids, out, config, streamer, history, step_callback)
        step += 1

    return _result(input_ids, prompt_valid, out, count, fill_id, history, config, forward_passes, accepted_total,
                   forward_passes.clone())


def _token_rules(model, config, device):
    """(EOS ids as a tensor or None, the id that pads rows stopped early, the id the causal model never chooses: a
    dedicated [MASK], None when the mask id is a reused ordinary token)."""
    eos_ids = config.eos_token_ids()
    eos_tensor = torch.tensor(eos_ids, device=device) if eos_ids else None
    mask_id = config.mask_token_id
    fill_id = config.pad_token_id if config.pad_token_id is not None else (eos_ids[0] if eos_ids else mask_id)
    excluded_id = None if getattr(model.config, "mask_token_reused", False) else mask_id
    return eos_tensor, fill_id, excluded_id


def _causal_prompt_cache(model, input_ids, prompt_positions, prompt_valid, active) -> ColumnCache:
    """The exact causal cache of every prompt token but the last one (that one is the first verified query)."""
    cache = ColumnCache(input_ids.shape[0], input_ids.device)
    if input_ids.shape[1] > 1 and bool(active.any()):
        cache.forward(model, input_ids[:, :-1], prompt_positions[:, :-1], prompt_valid[:, :-1], "causal",
                      torch.arange(0, device=input_ids.device))
    return cache


def _result(input_ids, prompt_valid, out, count, fill_id, history, config, forward_passes, committed_total,
            verifications) -> VerifyResult:
    """The decode's result; rows that stopped early are padded with ``fill_id`` after their last token."""
    generated_columns = torch.arange(out.shape[1], device=out.device)[None, :]
    out = out.masked_fill(generated_columns >= count[:, None], fill_id)
    return VerifyResult(
        sequences=torch.cat([input_ids, out], dim=1),
        generated=torch.cat([torch.zeros_like(prompt_valid), torch.ones_like(out, dtype=torch.bool)], dim=1),
        history=tuple(history) if config.output_history else None,
        tokens_per_forward=count.float() / forward_passes.clamp(min=1).float(),
        forward_passes=forward_passes,
        accepted_per_verification=committed_total.float() / verifications.clamp(min=1).float(),
        verifications=verifications,
    )


def _propose_draft(logits, mask_id: int, config, generator):
    """Draft tokens from the drafter's logits (B, W, V), [MASK] never proposed: (the argmax, None) greedy, else (a
    draw from each position's law q, q)."""
    logits[..., mask_id] = float("-inf")
    temperature = config.sampling_temperature()
    if temperature == 0:
        return logits.argmax(dim=-1), None
    probs = target_distribution(logits, temperature, config.top_k, config.top_p)
    draft = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(logits.shape[:2])
    return draft, probs


def _verify_draft(draft, lengths, draft_probs, target_logits, active, config, excluded_id, generator):
    """(accepted (B,), next_token (B,)) of the causal model's logits at [last committed, draft]: the greedy or the
    speculative rule; ``excluded_id`` (a dedicated [MASK]) is never the causal model's choice."""
    if excluded_id is not None:
        target_logits[..., excluded_id] = float("-inf")
    temperature = config.sampling_temperature()
    if temperature == 0:
        accepted, next_token = greedy_acceptance(draft, lengths, target_logits)
    else:
        target_probs = target_distribution(target_logits, temperature, config.top_k, config.top_p)
        accepted, next_token = speculative_acceptance(draft, lengths, draft_probs, target_probs, generator)
    return torch.where(active, accepted, torch.zeros_like(accepted)), next_token


def _report_round(step, new_tokens, commit, input_ids, out, config, streamer, history, step_callback) -> None:
    """A round's committed tokens to the streamer (batch 1), the canvas to the history and the step callback."""
    if streamer is not None and new_tokens.shape[0] == 1 and int(commit[0]):
        streamer.put(new_tokens[:, : int(commit[0])].cpu())
    if config.output_history:
        history.append(torch.cat([input_ids, out], dim=1))
    if step_callback is not None:
        step_callback(step, torch.cat([input_ids, out], dim=1), None)


def _commit_round(draft, accepted, next_token, active, eos_tensor, stopping_criteria, input_ids, prompt_valid, out,
                  count):
    """Commit a verification's tokens: the accepted draft prefix, then the causal model's own token, cut after the
    first EOS or where a stopping criterion stops the row; written into ``out`` after each row's ``count`` tokens.
    Returns (new_tokens (B, K + 1), commit (B,) tokens committed, hit_eos (B,), stopped (B,))."""
    batch, width = draft.shape
    device = draft.device
    new_tokens = torch.cat([draft, torch.zeros_like(next_token)[:, None]], dim=1)
    new_tokens.scatter_(1, accepted[:, None], next_token[:, None])
    commit = accepted + 1
    columns = torch.arange(width + 1, device=device)[None, :]
    if eos_tensor is not None:
        is_eos = torch.isin(new_tokens, eos_tensor) & (columns < commit[:, None])
        first_eos = torch.where(is_eos.any(dim=1), is_eos.long().argmax(dim=1) + 1, commit)
        commit = torch.minimum(commit, first_eos)
    else:
        is_eos = torch.zeros_like(new_tokens, dtype=torch.bool)
    commit = torch.where(active, commit, torch.zeros_like(commit))
    stopped = torch.zeros_like(active)
    if stopping_criteria:
        commit, stopped = _apply_stopping_criteria(stopping_criteria, input_ids, prompt_valid, out, count,
                                                   new_tokens, commit, active)
    rows = torch.arange(batch, device=device)
    for i in range(width + 1):
        take = i < commit
        if bool(take.any()):
            out[rows[take], count[take] + i] = new_tokens[take, i]
    hit_eos = (is_eos & (columns < commit[:, None])).any(dim=1)
    return new_tokens, commit, hit_eos, stopped


def _apply_stopping_criteria(criteria, input_ids, prompt_valid, out, count, new_tokens, commit, active):
    """Cut each row's commit at the first token after which ``criteria`` stop it, as a token-by-token loop would.
    Returns (commit, stopped)."""
    commit = commit.clone()
    stopped = torch.zeros_like(active)
    for row in active.nonzero().flatten().tolist():
        text = torch.cat([input_ids[row][prompt_valid[row]], out[row, : int(count[row])]])
        for i in range(int(commit[row])):
            text = torch.cat([text, new_tokens[row, i: i + 1]])
            if bool(torch.as_tensor(criteria(text[None], None)).reshape(-1)[0]):
                commit[row], stopped[row] = i + 1, True
                break
    return commit, stopped


def _drafter_queue(drafter: ColumnCache, queue_ids, queue_pos, queue_valid, committed, block_size, recompute: bool,
                   input_ids, prompt_positions, prompt_valid, out, count, active):
    """The committed tokens the next draft forward recomputes, right-aligned (B, W), and the drafter cache made
    consistent with them: its columns at those positions become dead.

    - recompute (exact draft of a full-attention model): the whole committed text;
    - block models: the tokens of the block holding the next position (they see its masks), and with the shift
      the last committed token (the first mask's prediction is read there);
    - full-attention models: the tokens committed since the last draft (their keys / values are then computed once,
      Fast-dLLM's incremental approximation).
    """
    device = queue_ids.device
    if recompute:
        drafter.crop(0)
        full_ids = torch.cat([input_ids, out], dim=1)
        generated_columns = torch.arange(out.shape[1], device=device)[None, :]
        full_valid = torch.cat([prompt_valid, generated_columns < count[:, None]], dim=1)
        generated_pos = prompt_valid.sum(dim=1, keepdim=True) + generated_columns
        full_pos = torch.cat([prompt_positions, generated_pos], dim=1)
        return _right_align(full_ids, full_pos, full_valid)
    if block_size is None:
        return _right_align(queue_ids, queue_pos, queue_valid)
    # block models: from min(block start of the next position, the last committed position)
    start = torch.minimum(committed - committed % block_size, committed - 1)
    drafter.valid &= drafter.positions < start[:, None]
    drafter.trim()
    # the tokens in [start, committed): some are in the queue, the rest among the earlier committed text
    generated_columns = torch.arange(out.shape[1], device=device)[None, :]
    full_ids = torch.cat([input_ids, out], dim=1)
    generated_pos = prompt_valid.sum(dim=1, keepdim=True) + generated_columns
    full_pos = torch.cat([prompt_positions, generated_pos], dim=1)
    full_valid = torch.cat([prompt_valid, generated_columns < count[:, None]], dim=1)
    full_valid &= (full_pos >= start[:, None]) & active[:, None]
    return _right_align(full_ids, full_pos, full_valid)


def _right_align(ids, positions, valid):
    """Move each row's valid columns to the right end (order kept) and cut the columns dead in every row."""
    order = torch.argsort(valid.long(), dim=1, stable=True)  # dead first, then valid in their order
    ids, positions, valid = ids.gather(1, order), positions.gather(1, order), valid.gather(1, order)
    width = max(1, int(valid.sum(dim=1).max()))
    return ids[:, -width:], positions[:, -width:], valid[:, -width:]


__all__ = ["VERIFY_MODES", "ColumnCache", "VerifyResult", "default_draft_length", "fused_verify_decode",
           "greedy_acceptance", "speculative_acceptance", "target_distribution", "verify_decode"]
