"""Infilling as text: fill ``n_tokens`` between a prefix and a suffix with one ``model.generate`` call.

No reordering: the sequence is prefix + [MASK] * n_tokens + suffix, every denoising step sees both sides, and
``max_new_tokens=0`` appends nothing.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .tokens import left_pad, pad_token_id, start_token_id


def infill_input_ids(tokenizer, prefix: str, suffix: str, n_tokens: int, mask_token_id: int) -> tuple[list[int], int]:
    """(token ids of prefix + holes + suffix, index of the first hole). The prefix gets the tokenizer's special
    tokens (BOS); an empty prefix becomes [BOS] (or [EOS]) because position 0 is given, never predicted."""
    prefix_ids = list(tokenizer(prefix)["input_ids"]) if prefix else []
    if not prefix_ids:
        try:
            prefix_ids = [start_token_id(tokenizer)]
        except ValueError as error:
            raise ValueError(f"prefix: {error}") from None
    suffix_ids = list(tokenizer(suffix, add_special_tokens=False)["input_ids"]) if suffix else []
    return prefix_ids + [mask_token_id] * n_tokens + suffix_ids, len(prefix_ids)


def decode_text(tokenizer, ids: list[int], config) -> str:
    """``ids`` as text without special tokens; a reused mask id is an ordinary word and stays."""
    special = set(tokenizer.all_special_ids)
    if getattr(config, "mask_token_reused", False):
        special.discard(config.mask_token_id)
    return tokenizer.decode([i for i in ids if i not in special])


def left_padded_spans(row_lengths, spans, width: int, device=None) -> torch.Tensor:
    """(B, width) bool for left-padded rows: True over row b's span ``spans[b] = (start, length)``, ``start``
    counted from the row's first token. How the holes of an infilling batch are named: by position, not by token."""
    mask = torch.zeros((len(row_lengths), width), dtype=torch.bool, device=device)
    for index, (row_length, (start, length)) in enumerate(zip(row_lengths, spans)):
        offset = width - row_length + start
        mask[index, offset : offset + length] = True
    return mask


@torch.no_grad()
def infill(
    model,
    tokenizer,
    prefix: str | Sequence[str],
    suffix: str | Sequence[str],
    n_tokens: int,
    *,
    return_full_text: bool = False,
    **gen_kwargs,
) -> str | list[str]:
    """The ``n_tokens`` generated between ``prefix`` and ``suffix``, decoded (special tokens skipped).

    ``prefix`` / ``suffix`` may be lists (one batch, left-padded). ``return_full_text=True`` returns prefix, filling
    and suffix decoded together. ``gen_kwargs`` go to ``model.generate`` (``steps`` defaults to ``n_tokens``: one
    token per step; ``alg``, ``temperature``, ``generator``... as there). Generated tokens after an EOS become padding.
    """
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be an integer >= 1, got {n_tokens!r}")
    single = isinstance(prefix, str)
    prefixes = [prefix] if single else list(prefix)
    suffixes = [suffix] if isinstance(suffix, str) else list(suffix)
    if len(suffixes) != len(prefixes):
        raise ValueError(f"suffix: {len(suffixes)} suffixes for {len(prefixes)} prefixes")
    from .models import resolve_mask_token_id

    mask_token_id = resolve_mask_token_id(model, gen_kwargs.get("mask_token_id"))

    encoded = [infill_input_ids(tokenizer, p, s, n_tokens, mask_token_id) for p, s in zip(prefixes, suffixes)]
    rows, starts = zip(*encoded)
    device = next(model.parameters()).device
    # left padding: the holes of every row keep their place relative to the row's own prefix
    input_ids, attention_mask = left_pad(rows, pad_token_id(tokenizer), device)
    width = input_ids.shape[1]
    # the holes by position, not by token: a reused mask id (811, 10541) in the prefix or suffix is text
    infill_mask = left_padded_spans([len(row) for row in rows], [(start, n_tokens) for start in starts], width,
                                    device)

    gen_kwargs.setdefault("steps", n_tokens)
    gen_kwargs["return_dict_in_generate"] = False
    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, infill_mask=infill_mask,
                            max_new_tokens=0, **gen_kwargs)

    texts = []
    for row, output_row, start in zip(rows, output, starts):
        offset = width - len(row)
        if return_full_text:
            ids = output_row[offset:]
        else:
            ids = output_row[offset + start : offset + start + n_tokens]
        texts.append(decode_text(tokenizer, ids.tolist(), model.config))
    return texts[0] if single else texts


__all__ = ["decode_text", "infill", "infill_input_ids", "left_padded_spans"]
