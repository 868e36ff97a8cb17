"""Token-id helpers shared by generation, infilling, evaluation and SFT: one place for each small rule.

(The shipped model code keeps its own copy of ``eos_id_list``'s rule in ``DiffusionGenerationConfig.eos_token_ids``:
it cannot import this package.)
"""

from __future__ import annotations

from typing import Sequence

import torch


def start_token_id(tokenizer) -> int:
    """The token an empty text starts from: BOS, else EOS (position 0 is given, never predicted); ValueError when
    the tokenizer has neither."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ValueError("empty text, and the tokenizer has neither a BOS nor an EOS token to start with")
    return start


def pad_token_id(tokenizer, default: int | None = None) -> int | None:
    """The tokenizer's padding id, else its EOS id, else ``default``."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return default


def eos_id_list(eos_token_id: int | Sequence[int] | None) -> list[int]:
    """An ``eos_token_id`` setting (None, one id or several) as a list of ids."""
    if eos_token_id is None:
        return []
    return [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both (B, L) long tensors: the rows left-padded to the longest (generation
    appends on the right), the mask 1 over real tokens."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        if len(row):
            input_ids[index, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            attention_mask[index, width - len(row):] = 1
    return input_ids.to(device), attention_mask.to(device)


__all__ = ["eos_id_list", "left_pad", "pad_token_id", "start_token_id"]
