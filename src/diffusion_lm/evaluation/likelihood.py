"""Likelihood of a text set: Monte-Carlo ELBO bound for a diffusion LM, exact NLL for its AR base, same tokens.

The diffusion bound uses the unbiased ELBO estimator in its count form (METHOD.md section 2, paper Eq. 7; see
``scoring``): per sequence, K samples with l ~ U{1..L} masked tokens (stratified), the masked cross-entropy weighted
L / l. Averaged over the K samples it estimates the sequence's negative ELBO, an upper bound on its negative
log-likelihood. Position 0 of
every sequence is given (never predicted) for both models, so the two numbers cover exactly the same tokens.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..data import blocks_from_documents
from ..modeling.noise_schedule import DEFAULT_EPS
from .scoring import ScoringRequest, ar_span_scores, diffusion_span_scores


@dataclass
class LikelihoodEstimate:
    """Negative log-likelihood (nats) of ``num_tokens`` predicted tokens; for diffusion an upper bound.

    ``std_error`` is the Monte-Carlo standard error of ``nll`` (0 for the exact AR value); ``per_sequence`` the NLL
    of each sequence (for paired comparisons of two models on the same text).
    """

    nll: float
    num_tokens: int
    num_sequences: int
    std_error: float = 0.0
    mc_samples: int | None = None
    exact: bool = False
    per_sequence: list[float] | None = None

    @property
    def nll_per_token(self) -> float:
        return self.nll / self.num_tokens

    @property
    def bits_per_token(self) -> float:
        return self.nll_per_token / math.log(2)

    @property
    def perplexity(self) -> float:
        """exp(NLL per token); for a diffusion LM an upper bound on its perplexity."""
        return math.exp(self.nll_per_token)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "nll_per_token": self.nll_per_token,
            "bits_per_token": self.bits_per_token,
            "perplexity": self.perplexity,
        }


def _whole_sequence_requests(sequences: Sequence[Sequence[int]]) -> list[ScoringRequest]:
    requests = []
    for i, sequence in enumerate(sequences):
        ids = torch.as_tensor(list(sequence), dtype=torch.long)
        if len(ids) < 2:
            raise ValueError(f"sequence {i} has {len(ids)} token(s); at least 2 are needed (position 0 is given)")
        scored = torch.ones(len(ids), dtype=torch.bool)
        scored[0] = False
        requests.append(ScoringRequest(ids, scored))
    return requests


def diffusion_likelihood_bound(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    *,
    mc_samples: int = 32,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    batch_size: int = 8,
    mask_token_id: int | None = None,
    shift: bool | None = None,
    progress: bool | str = False,
) -> LikelihoodEstimate:
    """Monte-Carlo negative-ELBO bound on the NLL of ``sequences`` (token id lists) under a diffusion LM."""
    requests = _whole_sequence_requests(sequences)
    scores = diffusion_span_scores(
        model,
        requests,
        estimator="elbo",
        num_samples=mc_samples,
        seed=seed,
        eps=eps,
        batch_size=batch_size,
        mask_token_id=mask_token_id,
        shift=shift,
        progress=progress if isinstance(progress, str) or not progress else "ELBO bound",
    )
    # sequences are independent, so their Monte-Carlo variances add
    variance = sum((s.per_token_std_error * s.num_tokens) ** 2 for s in scores)
    return LikelihoodEstimate(
        nll=sum(s.total for s in scores),
        num_tokens=sum(s.num_tokens for s in scores),
        num_sequences=len(scores),
        std_error=math.sqrt(variance),
        mc_samples=mc_samples,
        per_sequence=[s.total for s in scores],
    )


def ar_likelihood(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    progress: bool | str = False,
) -> LikelihoodEstimate:
    """Exact NLL of the same tokens (all but position 0 of each sequence) under an AR LM."""
    requests = _whole_sequence_requests(sequences)
    scores = ar_span_scores(
        model, requests, batch_size=batch_size, progress=progress if isinstance(progress, str) or not progress else "AR NLL"
    )
    return LikelihoodEstimate(
        nll=sum(s.total for s in scores),
        num_tokens=sum(s.num_tokens for s in scores),
        num_sequences=len(scores),
        exact=True,
        per_sequence=[s.total for s in scores],
    )


def read_text_documents(path: str) -> list[str]:
    """Documents of a text file: ``.jsonl`` (one object with "text" a line), ``.json`` (a list of strings or of
    objects with "text"), anything else plain text with documents separated by blank lines."""
    if not os.path.isfile(path):
        raise ValueError(f"perplexity data file not found: {path}")
    from ..paths import check_utf8_file

    check_utf8_file(path, "--ppl-data file")
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".jsonl"):
            documents = [json.loads(line)["text"] for line in handle if line.strip()]
        elif path.endswith(".json"):
            data = json.load(handle)
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of strings or of objects with 'text'")
            documents = [item if isinstance(item, str) else item["text"] for item in data]
        else:
            documents = [block.strip() for block in handle.read().split("\n\n")]
    documents = [d for d in documents if d and d.strip()]
    if not documents:
        raise ValueError(f"{path} holds no text")
    return documents


def token_blocks(
    documents: Sequence[str],
    tokenizer,
    block_size: int = 256,
    max_blocks: int | None = None,
) -> list[list[int]]:
    """Documents tokenised, joined with EOS and cut into ``block_size``-token blocks (the last partial block is
    dropped): pre-training's packing (``data.blocks_from_documents``)."""
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    blocks = blocks_from_documents(documents, tokenizer, block_size, max_blocks=max_blocks)
    if not blocks:
        raise ValueError(f"the text holds fewer than block_size={block_size} tokens")
    return blocks
