"""Training noise that belongs to the sample, not to the batch it happens to sit in.

A training sample's corruption - its noise level t (block diffusion: one per block) and the uniform draw that
decides each position (masked when draw < t) - comes from generators seeded by (seed, epoch, the sample's content).
With stratified noise the levels of an optimizer step are spread over equal strata by one permutation per step,
indexed by the sample's slot in the step's global batch (its place in the data order, which no split into
micro-batches or processes changes). The attention-annealing draw comes from (seed, optimizer step).

So batch 4 x accumulation 1, batch 2 x accumulation 2 and 2 processes x batch 1 x accumulation 2 corrupt every
sample alike; normalised by the step's global token count they take the same optimizer step (tests/test_split.py).
Everything is drawn on the CPU, so a GPU run corrupts the samples as a CPU run does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

__all__ = ["SampleNoise", "derived_seed", "sample_keys", "sample_noise", "step_generator"]


def derived_seed(*parts) -> int:
    """A 63-bit generator seed from any tuple of ints / strings (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def step_generator(seed: int, purpose: str, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Generator for a draw shared by every sample of optimizer step ``step`` (strata order, annealing links)."""
    return torch.Generator(device=device).manual_seed(derived_seed(seed, purpose, step))


def sample_keys(input_ids: torch.Tensor, present: torch.Tensor | None = None,
                marks: torch.Tensor | None = None) -> list[str]:
    """One key per row from its content: the tokens where ``present`` (not padding) and, when given, the boolean
    ``marks`` there (e.g. which tokens are the completion), so a sample keeps its key whatever it is padded to."""
    rows = input_ids.detach().cpu()
    present = torch.ones_like(rows, dtype=torch.bool) if present is None else present.detach().cpu().bool()
    marks = None if marks is None else marks.detach().cpu().bool()
    keys = []
    for row in range(rows.shape[0]):
        digest = hashlib.blake2b(digest_size=16)
        digest.update(rows[row][present[row]].numpy().tobytes())
        if marks is not None:
            digest.update(marks[row][present[row]].numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


@dataclass
class SampleNoise:
    """The corruption of one micro-batch: levels (B,) per sequence or (B, K) per block, draws (B, L) per position."""

    noise_levels: torch.Tensor
    mask_draws: torch.Tensor


def sample_noise(
    keys: list[str],
    seq_len: int,
    *,
    seed: int,
    epoch: int,
    eps: float,
    num_blocks: int | None = None,
    slots: list[int] | None = None,
    num_slots: int | None = None,
    step_seed: tuple | None = None,
) -> SampleNoise:
    """The noise of rows with content ``keys`` in epoch ``epoch``.

    ``num_blocks`` K: one level per block (block diffusion) instead of one per sequence. With ``slots`` (each row's
    index in the optimizer step's global batch of ``num_slots`` samples) and ``step_seed`` (seed, step) the levels
    are stratified: for every block column the step draws one permutation of the strata, and the row in slot s
    takes stratum perm[s] of (eps, 1), offset by its own uniform.
    Each stream is drawn in order from its own generator, so a longer padding or more blocks extend the draws of a
    row without changing the ones it already had.
    """
    count = num_blocks or 1
    uniforms = torch.empty(len(keys), count)
    draws = torch.empty(len(keys), seq_len)
    for row, key in enumerate(keys):
        levels_generator = torch.Generator().manual_seed(derived_seed(seed, "levels", epoch, key))
        draws_generator = torch.Generator().manual_seed(derived_seed(seed, "draws", epoch, key))
        uniforms[row] = torch.rand(count, generator=levels_generator)
        draws[row] = torch.rand(seq_len, generator=draws_generator)
    if slots is not None:
        if num_slots is None or step_seed is None or len(slots) != len(keys):
            raise ValueError("stratified sample noise needs one slot per row, num_slots and step_seed")
        # row k of the (K, num_slots) matrix orders the strata of block column k; drawn row by row from one
        # generator, so the first K rows do not depend on how many blocks the longest micro-batch has
        order = torch.rand(count, num_slots, generator=torch.Generator().manual_seed(derived_seed(*step_seed)))
        strata = order.argsort(dim=1)  # strata[k, s]: the stratum slot s takes in column k (a random permutation)
        uniforms = (strata[:, slots].T.to(uniforms.dtype) + uniforms) / num_slots
    levels = eps + (1.0 - eps) * uniforms
    return SampleNoise(noise_levels=levels if num_blocks else levels[:, 0], mask_draws=draws)
