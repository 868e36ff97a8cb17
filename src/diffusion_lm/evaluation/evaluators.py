"""One interface over a diffusion LM and its AR base, so every task runs the same code for both.

``DiffusionEvaluator`` scores choices with the Monte-Carlo diffusion loss and generates with diffusion decoding
(``model.generate``; infilling puts [MASK] tokens into the input and sets ``max_new_tokens=0``).
``AREvaluator`` scores with the exact log-likelihood and generates greedily; for infilling it sees the prefix only
(an AR model cannot condition on the suffix), as in the paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..modeling.noise_schedule import DEFAULT_EPS
from .scoring import (
    ScoringRequest,
    SpanScore,
    ar_span_scores,
    diffusion_config_values,
    diffusion_span_scores,
    example_generator,
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
    """Diffusion decoding: ``steps`` None means one step per generated token; greedy unless temperature > 0."""

    steps: int | None = None
    alg: str = "confidence"
    temperature: float = 0.0
    seed: int = 0


def context_token_ids(tokenizer, text: str) -> list[int]:
    """Tokens of a context, with the tokenizer's own special tokens; an empty context becomes [BOS] (or [EOS]),
    because position 0 is given, never predicted."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"] if text else []
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("empty context and the tokenizer has neither a BOS nor an EOS token")
        ids = [start]
    return list(ids)


def continuation_token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def cut_at_eos(ids: Sequence[int], eos_token_id: int | Sequence[int] | None) -> list[int]:
    ids = list(ids)
    eos_ids = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    for i, token in enumerate(ids):
        if token in eos_ids:
            return ids[:i]
    return ids


def _device(model) -> torch.device:
    return next(model.parameters()).device


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

    def _generate(self, input_ids: list[int], max_new_tokens: int, steps: int, key: int) -> list[int]:
        """Run ``model.generate`` on one sequence; returns the full output sequence."""
        d = self.decoding
        ids = torch.tensor([input_ids], dtype=torch.long, device=_device(self.model))
        output = self.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            steps=max(1, steps),
            alg=d.alg,
            temperature=d.temperature,
            generator=example_generator(d.seed, key, device=ids.device),
        )
        return output[0].tolist()

    @torch.no_grad()
    def fill(self, prefix_ids: list[int], length: int, suffix_ids: list[int], key: int) -> list[int]:
        """Infill ``length`` tokens between a frozen prefix and a frozen suffix."""
        input_ids = [*prefix_ids, *([self.mask_token_id] * length), *suffix_ids]
        steps = self.decoding.steps or length
        output = self._generate(input_ids, 0, min(steps, length), key)
        return output[len(prefix_ids) : len(prefix_ids) + length]

    @torch.no_grad()
    def continue_text(self, prompt_ids: list[int], max_new_tokens: int, key: int) -> list[int]:
        """Generate ``max_new_tokens`` tokens after the prompt (diffusion decodes all of them jointly)."""
        steps = self.decoding.steps or max_new_tokens
        output = self._generate(prompt_ids, max_new_tokens, min(steps, max_new_tokens), key)
        return output[len(prompt_ids) :]


class AREvaluator:
    kind = "ar"

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def score(self, requests: Sequence[ScoringRequest], keys=None, progress=False) -> list[SpanScore]:
        return ar_span_scores(self.model, requests, batch_size=self.batch_size, progress=progress)

    @torch.no_grad()
    def _greedy(self, prompt_ids: list[int], max_new_tokens: int, exact_length: bool) -> list[int]:
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=_device(self.model))
        pad_token_id = self.tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = self.tokenizer.eos_token_id
        output = self.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens if exact_length else None,
            do_sample=False,
            pad_token_id=pad_token_id,
            # sampling knobs a checkpoint's generation_config may carry would only trigger warnings under greedy
            temperature=None,
            top_p=None,
            top_k=None,
        )
        return output[0, len(prompt_ids) :].tolist()

    def fill(self, prefix_ids: list[int], length: int, suffix_ids: list[int], key: int) -> list[int]:
        """Prefix only: an AR model cannot see the suffix; generate the gold length greedily."""
        return self._greedy(prefix_ids, length, exact_length=True)

    def continue_text(self, prompt_ids: list[int], max_new_tokens: int, key: int) -> list[int]:
        return self._greedy(prompt_ids, max_new_tokens, exact_length=False)
