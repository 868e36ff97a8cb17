"""Scores of token spans: Monte-Carlo diffusion loss (masked-diffusion LMs) and exact log-likelihood (AR LMs).

A *scoring request* is a token sequence plus the positions whose tokens are scored. For a diffusion LM only those
positions may be masked; everything else (the context) stays frozen. Three Monte-Carlo estimators are offered:

- ``"levels"`` (the DiffuGPT / DiffuLLaMA reference, METHOD.md section 5): K noise levels t = k/K, k = 1..K, one
  random mask per level, unweighted mean cross-entropy over the masked tokens (0 for a level that masked nothing, as
  the reference's loop adds it), summed and divided by K. Not a likelihood bound; it reproduces the paper's
  multiple-choice numbers.
- ``"elbo"`` (the count form, as LLaDA's likelihood estimator): per sample the number of masked tokens l is drawn
  from U{1..L} (stratified over the K samples), exactly l of the L scored tokens are masked, and the masked
  cross-entropy is weighted L / l. Divided by L it is an unbiased estimate of the per-token negative ELBO, an upper
  bound on the per-token negative log-likelihood, with a far smaller spread than the continuous form.
- ``"elbo_continuous"`` (paper Eq. 7): K stratified noise levels t in (eps, 1), Bernoulli(t) masks, 1/t-weighted
  cross-entropy. The same bound (up to eps), noisier: both the 1/t weight and the masked count vary.

Every request draws its noise from its own ``torch.Generator``, seeded from (seed, key), so a score depends only on
the seed and the request's key, never on batch size, batch composition or order.

Block-diffusion models (``attention_mode="block"``) were trained on one noised block at a time over the clean text of
the blocks before it, so a span is scored block by block: each Monte-Carlo sample corrupts the scored tokens of one
block (at the sample's level) and leaves every earlier block clean, and the sample's value sums over the blocks
(the block-diffusion bound). Masking several blocks at once would condition later blocks on noised text, a
conditional the model never learned.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modeling.corruption import mask_exact_count, mask_tokens
from ..modeling.diffusion_loss import masked_diffusion_loss
from ..modeling.noise_schedule import DEFAULT_EPS, masked_counts, sample_noise_levels

ESTIMATORS = ("levels", "elbo", "elbo_continuous")


@dataclass
class ScoringRequest:
    """``input_ids`` (L,) and a bool mask ``scored`` (L,) of the positions whose tokens are scored."""

    input_ids: torch.Tensor
    scored: torch.Tensor

    @classmethod
    def from_parts(cls, context_ids: Sequence[int], target_ids: Sequence[int], suffix_ids: Sequence[int] = ()):
        """Context (frozen), then the scored target tokens, then an optional frozen suffix."""
        if len(context_ids) == 0:
            raise ValueError("the context must hold at least one token (position 0 is never predicted)")
        if len(target_ids) == 0:
            raise ValueError("the scored target is empty")
        ids = torch.tensor([*context_ids, *target_ids, *suffix_ids], dtype=torch.long)
        scored = torch.zeros(len(ids), dtype=torch.bool)
        scored[len(context_ids) : len(context_ids) + len(target_ids)] = True
        return cls(ids, scored)

    def __post_init__(self):
        if self.input_ids.dim() != 1 or self.input_ids.shape != self.scored.shape:
            raise ValueError("input_ids and scored must be 1-D tensors of the same length")
        self.scored = self.scored.bool()
        if bool(self.scored[0]):
            raise ValueError("position 0 cannot be scored: nothing predicts it (prepend a BOS token)")
        if not bool(self.scored.any()):
            raise ValueError("a scoring request needs at least one scored position")

    @property
    def num_scored(self) -> int:
        return int(self.scored.sum())


@dataclass
class SpanScore:
    """Negative log-likelihood (or its Monte-Carlo bound) of a request's scored tokens, in nats.

    ``per_token_samples`` holds one value per Monte-Carlo sample (a single exact value for AR models).
    """

    per_token_samples: list[float]
    num_tokens: int

    @property
    def per_token(self) -> float:
        return float(np.mean(self.per_token_samples))

    @property
    def total(self) -> float:
        return self.per_token * self.num_tokens

    @property
    def per_token_std_error(self) -> float:
        n = len(self.per_token_samples)
        return float(np.std(self.per_token_samples, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def progress_bar(iterable=None, description: str = "", enabled=True, **kwargs):
    """A tqdm bar on stderr; ``enabled=False`` hides it, and so does a stderr that is not a terminal (logs and
    pipes get no carriage-return clutter)."""
    return tqdm(iterable, desc=description, disable=True if not enabled else None, leave=False, file=sys.stderr,
                dynamic_ncols=True, **kwargs)


def example_generator(seed: int, *key: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one example: its stream depends only on (seed, key), not on batching or order."""
    # SeedSequence mixes the integers so that nearby (seed, key) pairs give unrelated streams
    state = np.random.SeedSequence([int(seed), *(int(k) for k in key)]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) % (2**63))


def estimator_noise_levels(
    estimator: str, num_samples: int, generator: torch.Generator, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """The K noise levels of one request's Monte-Carlo samples (for ``"elbo"``: stratified uniforms in [0, 1) that
    ``corrupt_scored`` turns into masked counts)."""
    if estimator == "levels":
        # the reference grid t = k/K includes t = 1, so at least one sample masks every scored token
        return torch.arange(1, num_samples + 1, dtype=torch.float32) / num_samples
    if estimator == "elbo":
        return sample_noise_levels(num_samples, 0.0, stratified=True, generator=generator)
    return sample_noise_levels(num_samples, eps, stratified=True, generator=generator)


def corrupt_scored(estimator: str, clean: torch.Tensor, scored: torch.Tensor, levels: torch.Tensor, mask_token_id: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K corrupted copies of ``clean`` (L,) with only ``scored`` positions maskable: (noisy, is_masked, level), where
    ``level`` is what the 1/t weight of the loss reads (for ``"elbo"``: l / L, so that 1/t = L / l)."""
    rows = clean.unsqueeze(0).expand(len(levels), -1)
    maskable = scored.unsqueeze(0).expand(len(levels), -1)
    if estimator != "elbo":
        return (*mask_tokens(rows, maskable, levels, mask_token_id, generator=generator), levels)
    total = int(scored.sum())
    counts = masked_counts(levels, total)
    noisy, is_masked = mask_exact_count(rows, maskable, counts, mask_token_id, generator=generator)
    return noisy, is_masked, counts.float() / total


def _check_estimator(estimator: str, num_samples: int) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if num_samples < 1:
        raise ValueError(f"the number of Monte-Carlo samples must be >= 1, got {num_samples}")


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _pad_right(rows: list[torch.Tensor], pad_value) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D rows into (B, L_max), right-padded, and the attention mask of the real positions."""
    length = max(len(r) for r in rows)
    batch = torch.full((len(rows), length), pad_value, dtype=rows[0].dtype)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return batch, attention_mask


# model types whose logits are exactly lm_head(base_model(...).last_hidden_state): no soft-capping or logit scale
# (Gemma 3 soft-caps its logits, so it is not one)
_PLAIN_HEAD_MODEL_TYPES = {"gpt2", "llama", "qwen2", "qwen3", "mistral",
                           "diffugpt", "diffullama", "diffuqwen2", "diffuqwen3", "diffumistral"}


def logits_at_positions(model, input_ids, attention_mask, positions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Logits (len(positions[b]), V) of row b at the given positions.

    For the supported families the LM head runs on those positions only: it is a fifth of a small model's
    compute, and scoring needs it at the scored tokens, not over the whole context.
    """
    body = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if body is not None and body is not model and head is not None and model_type in _PLAIN_HEAD_MODEL_TYPES:
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return [head(hidden[b, pos]) for b, pos in enumerate(positions)]
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return [logits[b, pos] for b, pos in enumerate(positions)]


def causal_context_mask(model, attention_mask: torch.Tensor, block_size: int, block_starts: torch.Tensor):
    """The 4D additive mask of a causal-context block model scoring the block that starts at ``block_starts`` (one
    per row): everything before it attends token-causally, the block itself as a block (right padding only)."""
    from ..modeling.attention_annealing import allowed_to_additive, attention_pattern

    batch_size, length = attention_mask.shape
    positions = torch.arange(length, device=attention_mask.device).expand(batch_size, -1)
    pattern = attention_pattern("block", positions, positions, attention_mask.bool(), block_size=block_size,
                                causal_before=block_starts)
    return allowed_to_additive(pattern, model.get_input_embeddings().weight.dtype)


def predictor_positions(scored: torch.Tensor, shift: bool) -> torch.Tensor:
    """Where the prediction of each scored token is read: position j - 1 under the AR shift (see ``shift.py``)."""
    positions = scored.nonzero().squeeze(-1)
    return positions - 1 if shift else positions


def diffusion_config_values(model, mask_token_id: int | None = None, shift: bool | None = None) -> tuple[int, bool]:
    """The mask id and shift flag of a diffusion model (from its config unless given)."""
    config = getattr(model, "config", None)
    if mask_token_id is None:
        mask_token_id = getattr(config, "mask_token_id", None)
    if mask_token_id is None:
        raise ValueError("the model has no mask_token_id (is it a diffusion checkpoint?); pass mask_token_id")
    if shift is None:
        shift = getattr(config, "shift", True)
    return int(mask_token_id), bool(shift)


@torch.no_grad()
def diffusion_span_scores(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    *,
    keys: Sequence[tuple[int, ...]] | None = None,
    estimator: str = "levels",
    num_samples: int = 32,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    batch_size: int = 16,
    mask_token_id: int | None = None,
    shift: bool | None = None,
    progress: bool | str = False,
) -> list[SpanScore]:
    """Monte-Carlo diffusion loss of each request's scored tokens given the rest of its sequence (frozen).

    ``keys[i]`` seeds request i's noise (default: its index); ``batch_size`` counts corrupted rows per forward pass.
    """
    _check_estimator(estimator, num_samples)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if keys is None:
        keys = [(i,) for i in range(len(requests))]
    if len(keys) != len(requests):
        raise ValueError(f"got {len(keys)} keys for {len(requests)} requests")
    mask_token_id, shift = diffusion_config_values(model, mask_token_id, shift)
    device = _model_device(model)
    block_size = scoring_block_size(model)
    causal_context = block_size is not None and getattr(model.config, "context_attention", "block") == "causal"

    # Draw every request's corruptions first, each from its own generator (independent of batching).
    rows = []  # (request index, sample, noisy ids, clean ids, is_masked, scored, noise level)
    for index, (request, key) in enumerate(zip(requests, keys)):
        generator = example_generator(seed, *key)
        levels = estimator_noise_levels(estimator, num_samples, generator, eps)
        for scored_part, end in scored_blocks(request.scored, block_size):
            clean, scored = request.input_ids[:end], scored_part[:end]
            noisy, is_masked, weights_level = corrupt_scored(estimator, clean, scored, levels, mask_token_id,
                                                             generator)
            for k in range(num_samples):
                rows.append((index, k, noisy[k], clean, is_masked[k], scored, weights_level[k]))

    # per (request, sample): 1/t-weighted CE sum, CE sum and masked count, summed over the request's blocks
    sums = torch.zeros(len(requests), num_samples, 3, dtype=torch.float64)
    rows.sort(key=lambda row: len(row[2]))  # similar lengths together: less padding
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    description = progress if isinstance(progress, str) else "diffusion scoring"
    for batch in progress_bar(batches, description, progress):
        noisy, attention_mask = _pad_right([row[2] for row in batch], mask_token_id)
        positions = [predictor_positions(row[5], shift).to(device) for row in batch]
        attention_mask = attention_mask.to(device)
        if causal_context:  # the blocks before the scored one are context: token-causal, as in training
            block_starts = torch.tensor([(len(row[3]) - 1) // block_size * block_size for row in batch], device=device)
            attention_mask = causal_context_mask(model, attention_mask, block_size, block_starts)
        logits = logits_at_positions(model, noisy.to(device), attention_mask, positions)
        for row_logits, (index, k, _, clean, is_masked, scored, level) in zip(logits, batch):
            # the scored tokens only, each lined up with its prediction (so no further shift below)
            loss = masked_diffusion_loss(
                row_logits[None],
                clean[scored][None].to(device),
                is_masked[scored][None].to(device),
                level.reshape(1).to(device),
                torch.ones_like(clean[scored])[None].bool().to(device),
                normalization="elbo",
                shift=False,
            )
            sums[index, k] += torch.tensor([float(loss.weighted_sum), float(loss.unweighted_sum),
                                            float(loss.num_masked)], dtype=torch.float64)
    scores = []
    for index, request in enumerate(requests):
        if estimator != "levels":  # weighted sum / number of scored tokens
            values = [float(weighted) / request.num_scored for weighted in sums[index, :, 0]]
        else:  # the reference counts a level that masked nothing as 0 and still divides by K
            values = [ce / count if count > 0 else 0.0 for _, ce, count in sums[index].tolist()]
        scores.append(SpanScore(values, request.num_scored))
    return scores


def scoring_block_size(model) -> int | None:
    """The block size a block-diffusion model is scored by (None for full-attention models)."""
    config = getattr(model, "config", None)
    if getattr(config, "attention_mode", None) != "block":
        return None
    return int(config.diffusion_block_size)


def scored_blocks(scored: torch.Tensor, block_size: int | None) -> list[tuple[torch.Tensor, int]]:
    """(scored positions inside one block, end of that block) for every block holding a scored position; blocks are
    counted from position 0. Full attention: the whole request, one part. Positions past a block's end are cut:
    under block attention nothing in the block sees them."""
    if block_size is None:
        return [(scored, len(scored))]
    parts = []
    for start in range(0, len(scored), block_size):
        end = min(start + block_size, len(scored))
        if bool(scored[start:end].any()):
            part = torch.zeros_like(scored)
            part[start:end] = scored[start:end]
            parts.append((part, end))
    return parts


@torch.no_grad()
def ar_span_scores(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    *,
    batch_size: int = 16,
    progress: bool | str = False,
) -> list[SpanScore]:
    """Exact negative log-likelihood of each request's scored tokens under an AR (causal) LM."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _model_device(model)
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].input_ids))
    scores: list[SpanScore | None] = [None] * len(requests)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    description = progress if isinstance(progress, str) else "AR scoring"
    for batch in progress_bar(batches, description, progress):
        ids, attention_mask = _pad_right([requests[i].input_ids for i in batch], 0)
        # an AR model's logit at j - 1 predicts token j
        positions = [predictor_positions(requests[i].scored, shift=True).to(device) for i in batch]
        logits = logits_at_positions(model, ids.to(device), attention_mask.to(device), positions)
        for row_logits, index in zip(logits, batch):
            targets = requests[index].input_ids[requests[index].scored].to(device)
            nll = F.cross_entropy(row_logits.float(), targets, reduction="sum")
            scores[index] = SpanScore([float(nll) / len(targets)], len(targets))
    return scores  # type: ignore[return-value]
