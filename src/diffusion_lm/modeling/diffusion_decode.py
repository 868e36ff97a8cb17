"""The reverse process behind ``model.generate`` (METHOD.md section 3).

Every position to generate starts as [MASK]; prompt tokens (and, for infilling, the text after a hole) are frozen.
The positions to generate are decoded block by block (``generation_inputs``); each denoising step runs the model on a
window of the canvas (``decoding_cache``: the whole canvas without a cache), reads the prediction for position j at
logit j - 1 (the AR shift) and proposes, scores and commits tokens (``denoising_step``); committed tokens never change
again. A block's last step commits whatever is still masked. Only ``torch`` and ``transformers`` are imported: this
file travels with checkpoints as remote code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .attention_annealing import allowed_to_additive, attention_pattern
from .decoding_cache import CanvasKVStore, StepWindow, WindowPlanner
from .denoising_step import (
    StepPredictions,
    apply_commit,
    parallel_commit,
    plan_step,
    propose,
    scheduled_commit,
)
from .generation_inputs import aligned_block_layout, block_layout, check_first_tokens, split_steps, sub_block_layout
from .modeling_diffusion_utils import positions_from_padding
from .unmasking import tokens_per_step


@dataclass
class DecodeResult:
    sequences: torch.Tensor
    generated: torch.Tensor
    history: tuple[torch.Tensor, ...] | None
    tokens_per_forward: torch.Tensor | None = None
    forward_passes: torch.Tensor | None = None


def decode_in_aligned_groups(model, input_ids, attention_mask, holes, max_new_tokens, config,
                             **runtime) -> DecodeResult:
    """``diffusion_decode``. A block-diffusion model's blocks start at multiples of its block size counted from each
    sequence's first token; rows whose left padding differs modulo the block size are decoded as separate batches."""
    block = getattr(model.config, "diffusion_block_size", None)
    if getattr(model.config, "attention_mode", None) != "block" or input_ids.shape[0] == 1:
        return diffusion_decode(model, input_ids, attention_mask, holes, max_new_tokens, config, **runtime)
    phase = (attention_mask.shape[1] - attention_mask.sum(dim=1)) % block
    groups = [torch.nonzero(phase == value).flatten() for value in phase.unique()]
    if len(groups) == 1:
        return diffusion_decode(model, input_ids, attention_mask, holes, max_new_tokens, config, **runtime)
    if config.output_history or runtime.get("streamer") is not None:
        raise ValueError("output_history / streamer need prompts whose lengths agree modulo the model's "
                         "diffusion_block_size (their blocks are decoded as separate batches)")
    parts = [(rows, diffusion_decode(model, input_ids[rows], attention_mask[rows], holes[rows], max_new_tokens,
                                     config, **runtime)) for rows in groups]
    first = parts[0][1]
    sequences = torch.empty((input_ids.shape[0], first.sequences.shape[1]), dtype=torch.long, device=input_ids.device)
    generated = torch.empty_like(sequences, dtype=torch.bool)
    tokens_per_forward = torch.empty(input_ids.shape[0], device=input_ids.device)
    forward_passes = torch.empty(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    for rows, part in parts:
        sequences[rows], generated[rows] = part.sequences, part.generated
        tokens_per_forward[rows], forward_passes[rows] = part.tokens_per_forward, part.forward_passes
    return DecodeResult(sequences, generated, None, tokens_per_forward, forward_passes)


def diffusion_decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    holes: torch.Tensor,
    max_new_tokens: int,
    config,
    generator: torch.Generator | None = None,
    streamer=None,
    step_callback: Callable | None = None,
    logits_processor=None,
    stopping_criteria=None,
) -> DecodeResult:
    """Decode the ``holes`` of left-padded prompts and ``max_new_tokens`` positions after them (module docstring)."""
    batch_size, device = input_ids.shape[0], input_ids.device
    mask_id = config.mask_token_id
    new = torch.full((batch_size, max_new_tokens), mask_id, dtype=torch.long, device=device)
    x = torch.cat([torch.where(holes, mask_id, input_ids), new], dim=1)
    length = x.shape[1]
    attention_mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)
    attended = attention_mask.bool()
    # positions to generate: the prompt's holes and the appended positions. From here on, which positions are
    # still masked is bookkeeping, never read back from token identity (a reused mask id is also text).
    generated = torch.cat([holes, torch.ones_like(new, dtype=torch.bool)], dim=1)
    check_first_tokens(model.config, generated, attended)
    padded = not bool(attended.all())
    model_attention_mask = attention_mask if padded else None
    positions = positions_from_padding(attention_mask, batch_size, length, device)
    key_is_token = attended if padded else None

    shift = getattr(model.config, "shift", True)
    attention_mode = getattr(model.config, "attention_mode", "bidirectional")
    exact_blocks = attention_mode == "block"
    num_generated = generated.sum(dim=1)
    if exact_blocks:
        blocks, spans = aligned_block_layout(generated, attention_mask, model.config.diffusion_block_size)
        if config.sub_block_length is not None and config.sub_block_length < model.config.diffusion_block_size:
            blocks, spans = sub_block_layout(blocks, spans, config.sub_block_length)
    else:
        blocks = block_layout(generated, num_generated, config)
        spans = [(None, None)] * len(blocks)
    steps = config.steps if config.steps is not None else max(1, int(num_generated.max()))
    steps_per_block = split_steps(steps, len(blocks))
    planner = WindowPlanner(config.kv_cache, config.kv_cache_refresh, exact_blocks, shift, length, device)
    store = CanvasKVStore()
    # a causal-context block model: everything before the block being denoised is context and attends
    # token-causally, as the clean stream it was trained on
    causal_context = exact_blocks and getattr(model.config, "context_attention", "block") == "causal"

    if streamer is not None:  # inputs are valid: the streamer sees the prompt first, as in transformers
        streamer.put(input_ids.cpu())
    temperature = config.sampling_temperature()
    threshold = config.threshold if config.threshold is not None and config.threshold < 1.0 else None
    entropy_bound = config.entropy_bound
    parallel_rule = threshold is not None or entropy_bound is not None  # commits beyond the schedule
    sub_block_cache = exact_blocks and config.kv_cache == "dual"  # spans then carry the diffusion block's
    previous_settled = None
    eos_ids = config.eos_token_ids()
    eos_tensor = torch.tensor(eos_ids, device=device) if eos_ids else None
    fill_id = pad_id(config)
    masked = generated.clone()
    active = torch.ones(batch_size, dtype=torch.bool, device=device)  # rows still decoding
    forward_passes = torch.zeros(batch_size, dtype=torch.long, device=device)
    history: list[torch.Tensor] = []
    step = 0
    for in_block, block_steps, (settled, span_end) in zip(blocks, steps_per_block, spans):
        in_block = in_block & active[:, None]
        columns = in_block.any(dim=0).nonzero().flatten()
        if len(columns) == 0:
            continue
        block_start, block_end = int(columns[0]), int(columns[-1]) + 1
        counts = tokens_per_step(in_block.sum(dim=1), block_steps)  # (block_steps, B)
        first_step = True
        for j in range(block_steps):
            to_propose, count, commit = plan_step(config.alg, masked & in_block, j == block_steps - 1, counts[j],
                                                  block_steps - j - 1, block_steps, parallel_rule, generator)
            predictions = None
            if bool(to_propose.any()):  # a step that commits nothing costs no forward pass
                if sub_block_cache:
                    windows = planner.sub_block_windows(block_start, block_end, settled, span_end,
                                                        settled != previous_settled)
                    previous_settled = settled
                else:
                    windows = planner.windows(block_start, span_end if span_end is not None else block_end,
                                              first_step, settled if settled is not None else 0)
                first_step = False
                wanted = to_propose.any(dim=0).nonzero().flatten()  # columns whose prediction is read
                causal_before = positions[:, settled] if causal_context else None
                for window in windows:
                    logits = window_logits(model, x, model_attention_mask, positions, key_is_token, window, store,
                                           wanted, shift, attention_mode, causal_before)
                    forward_passes += active.long()
                predictions = StepPredictions(positions=wanted, logits=logits)
                proposals = propose(logits, wanted, to_propose, x, mask_id, config, temperature, logits_processor,
                                    generator)
                if commit is None:
                    commit = scheduled_commit(config.alg, proposals, to_propose, count, positions,
                                              config.alg_temperature, generator)
                if parallel_rule:
                    commit = commit | parallel_commit(proposals, to_propose, threshold, entropy_bound)
                x = apply_commit(x, proposals, commit)
                masked &= ~commit

            if config.output_history:
                history.append(x.clone())
            if step_callback is not None:
                step_callback(step, x, predictions)
            if streamer is not None and hasattr(streamer, "put_draft"):
                streamer.put_draft(streamed_tokens(x, generated, []).cpu())
            step += 1
            if not bool((masked & in_block).any()) and parallel_rule:
                break  # the threshold finished the block early: its remaining steps would commit nothing

        # early stop: a row whose EOS is committed (or that a stopping criterion ends) decodes no later block
        finished = torch.zeros_like(active)
        if eos_tensor is not None:
            finished |= (generated & ~masked & torch.isin(x, eos_tensor)).any(dim=1)
        if stopping_criteria:
            finished |= stopping_criteria(x[:, :block_end], None).to(device)
        newly_done = finished & active
        if bool(newly_done.any()):
            rest = masked & newly_done[:, None]
            x = x.masked_fill(rest, fill_id if fill_id is not None else mask_id)
            masked &= ~rest
            active &= ~newly_done
        if not bool(active.any()):
            break

    sequences = pad_after_eos(x, generated, eos_ids, fill_id)
    return DecodeResult(sequences, generated, tuple(history) if config.output_history else None,
                        tokens_per_forward(sequences, generated, eos_ids, forward_passes), forward_passes)


def window_logits(model, x, model_attention_mask, positions, key_is_token, window: StepWindow, store: CanvasKVStore,
                  wanted: torch.Tensor, shift: bool, attention_mode: str,
                  causal_before: torch.Tensor | None = None) -> torch.Tensor:
    """(B, len(wanted), V): predictions for canvas positions ``wanted`` from one forward pass over the window,
    with the LM head run only on the rows read (one to the left of each wanted position under the shift).
    ``causal_before`` (B,): positions before it attend token-causally (a causal-context block model)."""
    rows = wanted - 1 if shift else wanted
    block_size = getattr(model.config, "diffusion_block_size", None)
    if window.cached is None:  # no cache: the whole canvas, as the model sees it without any decoding machinery
        if causal_before is None:
            outputs = model(input_ids=x, attention_mask=model_attention_mask, logits_to_keep=rows)
        else:
            pattern = attention_pattern(attention_mode, positions, positions, key_is_token, block_size=block_size,
                                        causal_before=causal_before)
            outputs = model(input_ids=x, attention_mask=allowed_to_additive(pattern, model.dtype),
                            position_ids=positions, logits_to_keep=rows)
        return outputs.logits if hasattr(outputs, "logits") else outputs[0]
    cache = store.cache_for(window.cached)
    query_positions = positions[:, window.start:window.end]
    key_positions = torch.cat([positions[:, window.cached], query_positions], dim=1)
    key_mask = None
    if key_is_token is not None:
        key_mask = torch.cat([key_is_token[:, window.cached], key_is_token[:, window.start:window.end]], dim=1)
    pattern = attention_pattern(attention_mode, query_positions, key_positions, key_mask, block_size=block_size,
                                causal_before=causal_before)
    layer_mask = None if pattern is None else allowed_to_additive(pattern, model.dtype)
    outputs = model(input_ids=x[:, window.start:window.end], attention_mask=layer_mask, position_ids=query_positions,
                    cache=cache, key_positions=key_positions, logits_to_keep=rows - window.start)
    store.write_back(cache, window, x.shape[1])
    return outputs.logits


def tokens_per_forward(sequences, generated, eos_ids, forward_passes) -> torch.Tensor:
    """Generated tokens up to and including the first EOS, per forward pass, per row."""
    if eos_ids:
        is_eos = generated & torch.isin(sequences, torch.tensor(eos_ids, device=sequences.device))
        after_first_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
        counted = generated & ~after_first_eos
    else:
        counted = generated
    return counted.sum(dim=1).float() / forward_passes.clamp(min=1).float()



def pad_id(config) -> int | None:
    if config.pad_token_id is not None:
        return config.pad_token_id
    eos = config.eos_token_ids()
    return eos[0] if eos else None


def pad_after_eos(x: torch.Tensor, generated: torch.Tensor, eos_ids: list[int], pad_id: int | None) -> torch.Tensor:
    """Generated positions after the first generated EOS of each row hold ``pad_id``; given tokens are kept."""
    if not eos_ids or pad_id is None:
        return x
    is_eos = generated & torch.isin(x, torch.tensor(eos_ids, device=x.device))
    after_first_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return x.masked_fill(after_first_eos & generated, pad_id)


def streamed_tokens(x: torch.Tensor, generated: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """(B, n) generated tokens, left to right; with ``eos_ids``, cut after the first EOS (streamers take batch 1)."""
    rows = [row[mask] for row, mask in zip(x, generated)]
    if eos_ids and len(rows) == 1:
        row = rows[0]
        hits = torch.isin(row, torch.tensor(eos_ids, device=row.device)).nonzero()
        rows = [row[: int(hits[0, 0]) + 1] if len(hits) else row]
    width = max(len(r) for r in rows)
    if any(len(r) != width for r in rows):  # holes of different sizes: stream the first row only
        return rows[0][None]
    return torch.stack(rows)



__all__ = ["DecodeResult", "decode_in_aligned_groups", "diffusion_decode", "pad_after_eos", "pad_id", "streamed_tokens",
           "tokens_per_forward", "window_logits"]
