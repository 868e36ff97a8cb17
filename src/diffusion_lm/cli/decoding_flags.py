"""The decoding flags of ``generate``, ``infill``, ``chat`` and ``eval``, defined once from ``DiffusionGenerationConfig``.

Each flag sets the config field of its name (``--kv-cache`` sets ``kv_cache``) and has one default in every command:

- the sampling fields (``steps``, ``alg``, ``temperature``, ``top_k``, ``top_p``, ``alg_temperature``,
  ``block_length``) always take the command line's value: the config's own default where it has one (``alg``,
  ``alg_temperature``), greedy (``temperature`` 0), one step per generated token, no blocks;
- the fast-decoding fields (``kv_cache``, ``threshold``, ``entropy_bound``, ``sub_block_length``, ``verify``,
  ``draft_length``), left out, keep the checkpoint's ``generation_config.json`` (what ``diffusion-lm adapt`` ships,
  README "Fast decoding"); ``--kv-cache none`` asks for the exact decode.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from diffusion_lm import DiffusionGenerationConfig

from ..modeling.decoding_cache import KV_CACHE_MODES
from ..modeling.self_verification import VERIFY_MODES
from ..modeling.unmasking import ALG_NAMES

__all__ = ["DECODING_FLAGS", "NO_CACHE", "DecodingFlag", "add_decoding_flags", "check_decoding_flags",
           "check_decoding_lengths", "generation_kwargs"]

NO_CACHE = "none"  # --kv-cache none: kv_cache=None, which a checkpoint's default cannot mean on the command line
_CONFIG_DEFAULTS = DiffusionGenerationConfig()


@dataclass(frozen=True)
class DecodingFlag:
    """One flag: the ``DiffusionGenerationConfig`` field it sets, its type, help and choices; ``from_checkpoint``:
    left out, the field is not passed to ``generate`` (the checkpoint's generation_config decides), else ``default``
    is passed every time."""

    field: str
    type: Any
    help: str
    default: Any = None
    choices: tuple | None = None
    from_checkpoint: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


_FROM_CHECKPOINT = "(default: the checkpoint's generation_config)"
DECODING_FLAGS = (
    DecodingFlag("steps", int, "denoising steps (default: one per generated token)"),
    DecodingFlag("alg", str, f"unmasking rule (default {_CONFIG_DEFAULTS.alg})", default=_CONFIG_DEFAULTS.alg,
                 choices=ALG_NAMES),
    DecodingFlag("temperature", float, "0 = greedy (default)", default=0.0),
    DecodingFlag("top_k", int, "sample from the k most likely tokens (with --temperature > 0)"),
    DecodingFlag("top_p", float, "nucleus sampling mass in (0, 1] (with --temperature > 0)"),
    DecodingFlag("alg_temperature", float, "> 0 draws the positions to commit at random",
                 default=_CONFIG_DEFAULTS.alg_temperature),
    DecodingFlag("block_length", int, "semi-autoregressive block size (must divide the generated length)"),
    DecodingFlag("kv_cache", str, f"KV cache: {NO_CACHE} (exact), {' or '.join(KV_CACHE_MODES)} {_FROM_CHECKPOINT}",
                 choices=(NO_CACHE, *KV_CACHE_MODES), from_checkpoint=True),
    DecodingFlag("threshold", float, f"commit every position at least this confident, in (0, 1] {_FROM_CHECKPOINT}",
                 from_checkpoint=True),
    DecodingFlag("entropy_bound", float, "also commit, in confidence order, the positions whose summed entropy "
                                         "(nats) stays under this bound (> 0)", from_checkpoint=True),
    DecodingFlag("sub_block_length", int, "block-diffusion models: decode each block in sub-blocks of N positions "
                                          "(with --kv-cache dual: the rest of the block from the cache)",
                 from_checkpoint=True),
    DecodingFlag("verify", str, "self-verified decoding: diffusion drafts, the model's causal mode checks (greedy "
                                "output = its causal greedy decode)", choices=VERIFY_MODES, from_checkpoint=True),
    DecodingFlag("draft_length", int, "with --verify: draft tokens per verification (default: the model's block, "
                                      "else --block-length, else 8)", from_checkpoint=True),
)


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """Add every decoding flag to ``parser``, in one argument group."""
    group = parser.add_argument_group("decoding", "diffusion decoding (DiffusionGenerationConfig fields)")
    for spec in DECODING_FLAGS:
        group.add_argument(spec.flag, dest=spec.field, type=spec.type, default=spec.default, choices=spec.choices,
                           help=spec.help)


def check_decoding_flags(args: argparse.Namespace) -> None:
    """ValueError naming the flag for a value no model can decode with, before any model is loaded."""
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.entropy_bound is not None and not args.entropy_bound > 0:
        raise ValueError(f"--entropy-bound must be > 0, got {args.entropy_bound}")
    if args.sub_block_length is not None and args.sub_block_length < 1:
        raise ValueError(f"--sub-block-length must be >= 1, got {args.sub_block_length}")
    if args.draft_length is not None and args.draft_length < 1:
        raise ValueError(f"--draft-length must be >= 1, got {args.draft_length}")
    if args.temperature < 0:
        raise ValueError("--temperature must be >= 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError("--top-p must be in (0, 1]")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be >= 1")


def check_decoding_lengths(args: argparse.Namespace, length: int, flag: str, minimum: int) -> None:
    """The checks of one generated length ``length`` (given by ``flag``, at least ``minimum``) and its steps."""
    if length < minimum:
        raise ValueError(f"{flag} must be >= {minimum}")
    if args.steps is not None and args.steps < 1:
        raise ValueError("--steps must be >= 1")
    if args.block_length is not None and (args.block_length < 1 or length % args.block_length):
        raise ValueError(f"--block-length must divide {flag} ({length})")


def generation_kwargs(args: argparse.Namespace, steps: int | None) -> dict:
    """The ``model.generate`` keyword arguments of the decoding flags: every sampling field (``steps``: the
    command's resolved count), and the fast-decoding fields that were given (``--kv-cache none`` as
    ``kv_cache=None``)."""
    check_decoding_flags(args)
    kwargs = {}
    for spec in DECODING_FLAGS:
        value = steps if spec.field == "steps" else getattr(args, spec.field)
        if spec.from_checkpoint and value is None:
            continue
        kwargs[spec.field] = None if spec.field == "kv_cache" and value == NO_CACHE else value
    return kwargs
