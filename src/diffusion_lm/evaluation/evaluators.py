"""One interface over a diffusion LM and its AR base, so every task runs the same code for both.

``DiffusionEvaluator`` scores choices with the Monte-Carlo diffusion loss and generates with diffusion decoding
(``model.generate``; infilling puts [MASK] tokens into the input and sets ``max_new_tokens=0``).
``AREvaluator`` scores with the exact log-likelihood and generates greedily; for infilling it sees the prefix only
(an AR model cannot condition on the suffix), as in the paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from ..infilling import left_padded_spans
from ..tokens import eos_id_list, left_pad, pad_token_id, start_token_id
from ..modeling.noise_schedule import DEFAULT_EPS
from .scoring import (
    ScoringRequest,
    SpanScore,
    ar_span_scores,
    diffusion_config_values,
    diffusion_span_scores,
    example_generator,
    progress_bar,
)


@dataclass
class ScoringSettings:
    """Monte-Carlo settings of the diffusion scorer (ignored by the AR evaluator, whose scores are exact)."""

    mc_samples: int = 32
    estimator: str = "levels"
    seed: int = 0
    eps: float = DEFAULT_EPS
    batch_size: int = 16


@dataclass
class DecodingSettings:
    """Diffusion decoding, every field passed to ``generate`` as it is (None: off, never the checkpoint's default):
    ``steps`` None means one step per generated token; greedy unless temperature > 0. See DiffusionGenerationConfig
    for the fields."""

    steps: int | None = None
    alg: str = "confidence"
    temperature: float = 0.0
    seed: int = 0
    kv_cache: str | None = None  # None | "prefix" | "dual"
    threshold: float | None = None  # confidence-threshold parallel decoding
    block_length: int | None = None
    top_k: int | None = None
    top_p: float | None = None
    alg_temperature: float = 0.0
    entropy_bound: float | None = None
    sub_block_length: int | None = None
    verify: str | None = None
    draft_length: int | None = None

    def generate_kwargs(self) -> dict:
        """Every decoding field but ``steps`` (the caller's, per task) and ``seed`` (the caller seeds a generator)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("steps", "seed")}


def context_token_ids(tokenizer, text: str) -> list[int]:
    """Tokens of a context, with the tokenizer's own special tokens; an empty context becomes [BOS] (or [EOS]),
    because position 0 is given, never predicted."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"] if text else []
    return list(ids) or [start_token_id(tokenizer)]


def continuation_token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def cut_at_eos(ids: Sequence[int], eos_token_id: int | Sequence[int] | None) -> list[int]:
    ids = list(ids)
    eos_ids = set(eos_id_list(eos_token_id))
    for i, token in enumerate(ids):
        if token in eos_ids:
            return ids[:i]
    return ids


def _device(model) -> torch.device:
    return next(model.parameters()).device


def generation_batches(group_keys: Sequence, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of at most ``batch_size`` that share a group key (e.g. the gold length), similar input
    lengths together (less padding). Deterministic: depends only on the inputs."""
    groups: dict = {}
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        groups.setdefault(group_keys[index], []).append(index)
    return [members[i : i + batch_size] for _, members in sorted(groups.items()) for i in range(0, len(members), batch_size)]


def item_bar(total: int, progress, default_description: str):
    """A bar counted in examples (not batches: one batch of GSM8K questions would read 0/1 for minutes)."""
    description = progress if isinstance(progress, str) else default_description
    return progress_bar(None, description, bool(progress), total=total, unit="item")


class DiffusionEvaluator:
    kind = "diffusion"

    def __init__(self, model, tokenizer, scoring: ScoringSettings | None = None, decoding: DecodingSettings | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.scoring = scoring or ScoringSettings()
        self.decoding = decoding or DecodingSettings()
        self.mask_token_id, self.shift = diffusion_config_values(model)

    def score(self, requests: Sequence[ScoringRequest], keys, progress=False) -> list[SpanScore]:
        s = self.scoring
        return diffusion_span_scores(
            self.model,
            requests,
            keys=keys,
            estimator=s.estimator,
            num_samples=s.mc_samples,
            seed=s.seed,
            eps=s.eps,
            batch_size=s.batch_size,
            progress=progress,
        )

    def _generate(self, rows: list[list[int]], max_new_tokens: int, steps: int, key: int, bar=None,
                  holes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """``model.generate`` on left-padded rows; returns the (B, width + max_new_tokens) output. ``holes`` gives
        each row's (start, length) span to fill (by position: a prompt token equal to a reused mask id is text).
        ``bar`` (a progress bar over items) shows the denoising step of the batch in flight: a batch can take
        minutes."""
        d = self.decoding
        device = _device(self.model)
        ids, attention_mask = left_pad(rows, pad_token_id(self.tokenizer, default=0), device)
        infill_mask = left_padded_spans([len(row) for row in rows], holes or [(0, 0)] * len(rows), ids.shape[1],
                                        device)
        steps = max(1, steps)
        show_step = None
        if bar is not None and not bar.disable:
            def show_step(step, sequences, logits):
                bar.set_postfix_str(f"step {step + 1}/{steps}", refresh=True)
        return self.model.generate(
            ids,
            attention_mask=attention_mask,
            infill_mask=infill_mask,
            max_new_tokens=max_new_tokens,
            steps=steps,
            **d.generate_kwargs(),
            # greedy decoding draws nothing; for sampling the stream is seeded from the batch's first example
            generator=example_generator(d.seed, key, device=device),
            step_callback=show_step,
        )

    @torch.no_grad()
    def fill_many(self, items, keys: Sequence[int], batch_size: int | None = None, progress=False) -> list[list[int]]:
        """Infill ``length`` tokens between each frozen prefix and frozen suffix; ``items`` are
        (prefix_ids, length, suffix_ids). Rows are batched with others of the same length, so each row runs
        ``steps`` (default: its length) denoising steps as it would alone."""
        batch_size = batch_size or self.scoring.batch_size
        outputs: list[list[int] | None] = [None] * len(items)
        lengths = [len(p) + n + len(s) for p, n, s in items]
        batches = generation_batches([n for _, n, _ in items], lengths, batch_size)
        with item_bar(len(items), progress, "diffusion infilling") as bar:
            for batch in batches:
                length = items[batch[0]][1]
                rows = [[*items[i][0], *([self.mask_token_id] * length), *items[i][2]] for i in batch]
                steps = min(self.decoding.steps or length, length)
                holes = [(len(items[i][0]), length) for i in batch]
                output = self._generate(rows, 0, steps, keys[batch[0]], bar, holes)
                width = output.shape[1]
                for row_index, i in enumerate(batch):
                    start = width - lengths[i] + len(items[i][0])  # after the left padding and the prefix
                    outputs[i] = output[row_index, start : start + length].tolist()
                bar.update(len(batch))
        return outputs  # type: ignore[return-value]

    @torch.no_grad()
    def continue_many(
        self, prompts, max_new_tokens: int, keys: Sequence[int], batch_size: int | None = None, progress=False
    ) -> list[list[int]]:
        """``max_new_tokens`` tokens after each prompt (decoded jointly; after an EOS the rest is padding)."""
        batch_size = batch_size or self.scoring.batch_size
        outputs: list[list[int] | None] = [None] * len(prompts)
        batches = generation_batches([0] * len(prompts), [len(p) for p in prompts], batch_size)
        steps = min(self.decoding.steps or max_new_tokens, max_new_tokens)
        with item_bar(len(prompts), progress, "diffusion generation") as bar:
            for batch in batches:
                output = self._generate([prompts[i] for i in batch], max_new_tokens, steps, keys[batch[0]], bar)
                for row_index, i in enumerate(batch):
                    outputs[i] = output[row_index, output.shape[1] - max_new_tokens :].tolist()
                bar.update(len(batch))
        return outputs  # type: ignore[return-value]

    def fill(self, prefix_ids: list[int], length: int, suffix_ids: list[int], key: int) -> list[int]:
        return self.fill_many([(prefix_ids, length, suffix_ids)], [key])[0]

    def continue_text(self, prompt_ids: list[int], max_new_tokens: int, key: int) -> list[int]:
        return self.continue_many([prompt_ids], max_new_tokens, [key])[0]


class AREvaluator:
    kind = "ar"

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def score(self, requests: Sequence[ScoringRequest], keys=None, progress=False) -> list[SpanScore]:
        return ar_span_scores(self.model, requests, batch_size=self.batch_size, progress=progress)

    @torch.no_grad()
    def _greedy(self, rows: list[list[int]], max_new_tokens: int, exact_length: bool) -> list[list[int]]:
        ids, attention_mask = left_pad(rows, pad_token_id(self.tokenizer, default=0), _device(self.model))
        output = self.model.generate(
            ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens if exact_length else None,
            do_sample=False,
            pad_token_id=pad_token_id(self.tokenizer, default=0),
            # sampling knobs a checkpoint's generation_config may carry would only trigger warnings under greedy
            temperature=None,
            top_p=None,
            top_k=None,
        )
        return output[:, ids.shape[1] :].tolist()

    def fill_many(self, items, keys=None, batch_size: int | None = None, progress=False) -> list[list[int]]:
        """Prefix only: an AR model cannot see the suffix; it generates the gold length greedily."""
        outputs: list[list[int] | None] = [None] * len(items)
        batches = generation_batches([n for _, n, _ in items], [len(p) for p, _, _ in items], batch_size or self.batch_size)
        with item_bar(len(items), progress, "AR infilling") as bar:
            for batch in batches:
                generated = self._greedy([items[i][0] for i in batch], items[batch[0]][1], exact_length=True)
                for i, ids in zip(batch, generated):
                    outputs[i] = ids
                bar.update(len(batch))
        return outputs  # type: ignore[return-value]

    def continue_many(self, prompts, max_new_tokens: int, keys=None, batch_size: int | None = None, progress=False):
        outputs: list[list[int] | None] = [None] * len(prompts)
        batches = generation_batches([0] * len(prompts), [len(p) for p in prompts], batch_size or self.batch_size)
        with item_bar(len(prompts), progress, "AR generation") as bar:
            for batch in batches:
                for i, ids in zip(batch, self._greedy([prompts[i] for i in batch], max_new_tokens, exact_length=False)):
                    outputs[i] = ids
                bar.update(len(batch))
        return outputs

    def fill(self, prefix_ids: list[int], length: int, suffix_ids: list[int], key: int = 0) -> list[int]:
        return self.fill_many([(prefix_ids, length, suffix_ids)])[0]

    def continue_text(self, prompt_ids: list[int], max_new_tokens: int, key: int = 0) -> list[int]:
        return self.continue_many([prompt_ids], max_new_tokens)[0]
