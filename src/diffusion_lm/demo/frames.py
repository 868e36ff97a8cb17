"""What the demo page shows, without gradio: the canvas of one ``model.generate`` call step by step, and the HTML of a
canvas state.

Frames come from the library's own hooks, never from a second decoding loop: ``generate`` runs in a thread with
``step_callback`` (one frame per denoising step, or per verification with ``verify="causal"``),
``output_history=True`` and ``return_dict_in_generate=True`` (the final sequences and the forward-pass counters); the
AR base streams through a transformers streamer. ``run_in_thread`` hands each event to the page as it arrives.
"""

from __future__ import annotations

import argparse
import html
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..cli.decoding_flags import DECODING_FLAGS, NO_CACHE, generation_kwargs
from ..infilling import decode_text, infill_input_ids
from ..models import resolve_mask_token_id

CHECKPOINT_DEFAULT = "checkpoint default"  # a fast-decoding setting left to the checkpoint's generation_config
KV_CACHE_CHOICES = (CHECKPOINT_DEFAULT, NO_CACHE, "prefix", "dual")
VERIFY_CHOICES = ("none", "causal")
MASK_SYMBOL = "░"


@dataclass
class Frame:
    """The canvas (row 0, prompt included) after denoising step ``step`` (0-based, as ``step_callback`` counts)."""

    step: int
    tokens: list[int]


@dataclass
class Done:
    """The end of a threaded call: what it returned and the seconds it ran (measured in its thread)."""

    value: Any
    seconds: float


@dataclass
class Decoding:
    """One decode as the page shows it: the canvas before any step, which positions are generated and the block each
    belongs to, the frames, and (once finished) the final text and counters."""

    initial: list[int]
    prompt_length: int  # the positions given to generate as input_ids (holes included); the rest are appended
    generated: list[bool]
    block_ids: list[int | None]
    mask_token_id: int
    frames: list[Frame] = field(default_factory=list)
    text: str = ""
    forward_passes: int = 0
    tokens_per_forward: float = 0.0
    tokens_per_second: float = 0.0
    seconds: float = 0.0
    history: list[list[int]] = field(default_factory=list)  # generate's output_history (row 0), for checks

    def previous(self, index: int) -> list[int]:
        return self.frames[index - 1].tokens if index > 0 else self.initial


class DecodeCancelled(Exception):
    """Raised inside a decode thread at its next step once its consumer has gone (page closed, run replaced)."""


def run_in_thread(work: Callable[[Callable[[Any], None]], Any]) -> Iterator[Any]:
    """Run ``work(emit)`` in a thread; yield what it emits as it arrives, then a ``Done`` with its return value and
    its duration. An exception in ``work`` is raised here, in the consumer. When the consumer stops early (the
    generator is closed), the next ``emit`` raises ``DecodeCancelled`` in the thread, which is joined: no decode
    outlives its page request (two would share the device and each other's tokens/s)."""
    events: queue.Queue = queue.Queue()
    failure = []
    stop = threading.Event()

    def emit(item):
        if stop.is_set():
            raise DecodeCancelled()
        events.put(item)

    def target():
        try:
            start = time.perf_counter()
            value = work(emit)
            events.put(Done(value, time.perf_counter() - start))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            failure.append(error)
            events.put(None)

    thread = threading.Thread(target=target, daemon=True, name="diffusion-lm-demo")
    thread.start()
    try:
        while True:
            item = events.get()
            if failure:
                raise failure[0]
            yield item
            if isinstance(item, Done):
                return
    finally:
        stop.set()
        thread.join()  # at most one step away: the step callback / streamer raises at once


def decoding_kwargs(positions: int, steps=None, threshold=None, kv_cache: str = CHECKPOINT_DEFAULT,
                    block_length=None, verify: str = "none", temperature: float = 0.0) -> dict:
    """``model.generate`` keyword arguments of the page's settings, through the command line's one definition
    (``cli/decoding_flags.py``): ``steps`` empty or 0 means one per generated position, ``kv_cache``, ``threshold``
    and ``block_length`` left empty (or 0) keep the checkpoint's, ``verify="none"`` decodes by diffusion.
    ValueError for a value no model takes."""
    values = {spec.field: spec.default for spec in DECODING_FLAGS}
    values.update(steps=_given(steps, int), threshold=_given(threshold, float), temperature=float(temperature or 0),
                  block_length=_given(block_length, int),
                  kv_cache=None if kv_cache in (None, CHECKPOINT_DEFAULT) else kv_cache)
    if values["steps"] is not None and values["steps"] < 1:
        raise ValueError(f"steps must be >= 1 (0: one per generated token), got {values['steps']}")
    kwargs = generation_kwargs(argparse.Namespace(**values), values["steps"] or max(1, positions))
    kwargs["verify"] = None if verify in (None, "none") else verify
    return kwargs


def _given(value, kind):
    """A number field's value: empty or 0 is not given (the page's number fields send 0 for an empty box)."""
    return None if value in (None, "", 0) else kind(value)


def prompt_decoding(model, tokenizer, prompt: str, max_new_tokens: int, block_length: int | None) -> Decoding:
    """The ``Decoding`` of a continuation of ``prompt`` (ValueError for an empty prompt)."""
    if not prompt.strip():
        raise ValueError("the prompt is empty: type some text to continue")
    ids = list(tokenizer(prompt)["input_ids"])
    holes = [False] * len(ids) + [True] * int(max_new_tokens)
    return _decoding(model, ids + [resolve_mask_token_id(model)] * int(max_new_tokens), len(ids), holes, block_length)


def infill_decoding(model, tokenizer, prefix: str, suffix: str, length: int, block_length: int | None) -> Decoding:
    """The ``Decoding`` of ``length`` holes between ``prefix`` and ``suffix`` (``infilling.infill_input_ids``)."""
    if length is None or int(length) < 1:
        raise ValueError(f"the hole length must be >= 1, got {length}")
    ids, start = infill_input_ids(tokenizer, prefix, suffix, int(length), resolve_mask_token_id(model))
    holes = [start <= index < start + int(length) for index in range(len(ids))]
    return _decoding(model, ids, len(ids), holes, block_length)


def _decoding(model, ids: list[int], prompt_length: int, generated: list[bool], block_length: int | None) -> Decoding:
    """Block of each generated position as ``generate`` lays them out: a block-diffusion model's own blocks
    (position // diffusion_block_size), else the k-th generated position in block k // block_length (the call's,
    else the checkpoint's), else one block."""
    if getattr(model.config, "attention_mode", None) == "block":
        size = model.config.diffusion_block_size
        blocks = [index // size if hole else None for index, hole in enumerate(generated)]
    else:
        length = block_length or getattr(model.generation_config, "block_length", None)
        order = 0
        blocks = []
        for hole in generated:
            blocks.append(order // length if hole and length else (0 if hole else None))
            order += hole
    return Decoding(initial=list(ids), prompt_length=prompt_length, generated=list(generated), block_ids=blocks,
                    mask_token_id=resolve_mask_token_id(model))


def stream_decoding(model, tokenizer, decoding: Decoding, **gen_kwargs) -> Iterator[Frame]:
    """Run ``model.generate`` on ``decoding``'s canvas in a thread; yield each step's ``Frame`` as it arrives and
    append it to ``decoding.frames``; at the end fill in the text, the counters and ``decoding.history`` (the
    call's ``output_history``). ``gen_kwargs``: ``decoding_kwargs`` plus ``generator`` and the like."""
    prompt_length = decoding.prompt_length
    device = next(model.parameters()).device
    input_ids = torch.tensor([decoding.initial[:prompt_length]], device=device)
    # the holes by position (a reused mask id in the prompt stays text)
    infill_mask = torch.tensor([decoding.generated[:prompt_length]], device=device)

    def work(emit):
        return model.generate(input_ids, infill_mask=infill_mask, max_new_tokens=len(decoding.initial) - prompt_length,
                              step_callback=lambda step, sequences, _: emit(Frame(step, sequences[0].tolist())),
                              return_dict_in_generate=True, output_history=True, **gen_kwargs)

    for event in run_in_thread(work):
        if isinstance(event, Done):
            out = event.value
            decoding.history = [state[0].tolist() for state in out.history or ()]
            sequence = out.sequences[0].tolist()
            # a continuation: the new text; infilling (nothing appended): prefix, filling and suffix
            start = decoding.prompt_length if decoding.prompt_length < len(sequence) else 0
            decoding.text = decode_text(tokenizer, sequence[start:], model.config)
            decoding.forward_passes = int(out.forward_passes[0])
            decoding.tokens_per_forward = float(out.tokens_per_forward[0])
            decoding.seconds = event.seconds
            decoding.tokens_per_second = decoding.tokens_per_forward * decoding.forward_passes / max(event.seconds,
                                                                                                    1e-9)
            return
        decoding.frames.append(event)
        yield event


class _TextStreamer:
    """A transformers streamer (``put`` / ``end``) that emits the AR model's text so far after each new token."""

    def __init__(self, tokenizer, emit):
        self.tokenizer, self.emit, self.tokens, self.prompt_seen = tokenizer, emit, [], False

    def put(self, value):
        if not self.prompt_seen:  # transformers puts the prompt first
            self.prompt_seen = True
            return
        self.tokens += value.flatten().tolist()
        self.emit(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def end(self):
        pass


def stream_ar(ar_model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 0.0) -> Iterator[Any]:
    """The AR model's own ``generate`` on ``prompt``, in a thread: its text so far after each token, then a ``Done``
    whose value is ``(text, new tokens)``."""
    device = next(ar_model.parameters()).device
    input_ids = torch.tensor([list(tokenizer(prompt)["input_ids"])], device=device)
    sampling = dict(do_sample=True, temperature=temperature) if temperature else dict(do_sample=False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def work(emit):
        streamer = _TextStreamer(tokenizer, emit)
        out = ar_model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=int(max_new_tokens), streamer=streamer, pad_token_id=pad, **sampling)
        return streamer.tokenizer.decode(streamer.tokens, skip_special_tokens=True), out.shape[1] - input_ids.shape[1]

    yield from run_in_thread(work)


# --- drawing -----------------------------------------------------------------------------------------------------
TOKEN_STYLE = "padding:1px 2px;margin:0 1px;border-radius:3px;"
STYLES = {
    "prompt": TOKEN_STYLE + "color:#555;",
    "mask": TOKEN_STYLE + "color:#999;background:#eee;",
    "new": TOKEN_STYLE + "background:#ffd54f;font-weight:bold;",
    "done": TOKEN_STYLE + "background:#c8e6c9;",
}
BOUNDARY = "border-left:3px solid #1e88e5;margin-left:3px;padding-left:2px;"


def render_canvas(tokenizer, decoding: Decoding, index: int | None) -> str:
    """HTML of the canvas after frame ``index`` (None: before any step): prompt tokens grey, masked positions as
    ``░``, the tokens this step committed highlighted, earlier ones green, a blue bar at each block's start."""
    tokens = decoding.initial if index is None else decoding.frames[index].tokens
    before = decoding.initial if index is None else decoding.previous(index)
    spans, previous_block = [], None
    for position, token in enumerate(tokens):
        block = decoding.block_ids[position]
        if not decoding.generated[position]:
            state = "prompt"
        elif token == decoding.mask_token_id and before[position] == decoding.mask_token_id:
            state = "mask"
        else:
            state = "new" if before[position] == decoding.mask_token_id else "done"
        text = MASK_SYMBOL if state == "mask" else tokenizer.decode([token])
        style = STYLES[state] + (BOUNDARY if block is not None and block != previous_block else "")
        if block is not None:
            previous_block = block
        spans.append(f'<span class="dlm-{state}" style="{style}">{html.escape(text)}</span>')
    step = "before decoding" if index is None else f"step {index + 1} of {len(decoding.frames)}"
    return (f'<div class="dlm-canvas" data-step="{0 if index is None else index + 1}" '
            f'style="font-family:monospace;white-space:pre-wrap;line-height:1.8;">'
            f'<div style="color:#1e88e5;">{step}</div>{"".join(spans)}</div>')


def counters(decoding: Decoding) -> str:
    """Markdown line of the counters: live (steps, positions filled) while decoding, the call's own once done."""
    masks = sum(1 for token, hole in zip(decoding.frames[-1].tokens if decoding.frames else decoding.initial,
                                         decoding.generated) if hole and token == decoding.mask_token_id)
    filled = f"{sum(decoding.generated) - masks} / {sum(decoding.generated)} positions filled"
    if not decoding.seconds:
        return f"step {len(decoding.frames)} · {filled}"
    return (f"**{decoding.forward_passes}** forward passes · **{decoding.tokens_per_forward:.2f}** tokens per "
            f"forward · **{decoding.tokens_per_second:.1f}** tokens/s · {len(decoding.frames)} steps · {filled}")


__all__ = ["CHECKPOINT_DEFAULT", "DecodeCancelled", "Decoding", "Done", "Frame", "KV_CACHE_CHOICES", "VERIFY_CHOICES",
           "counters", "decoding_kwargs", "infill_decoding", "prompt_decoding", "render_canvas", "run_in_thread",
           "stream_ar", "stream_decoding"]
