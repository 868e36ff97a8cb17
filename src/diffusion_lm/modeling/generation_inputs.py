"""What ``generate`` checks and lays out before decoding: the prompt (device, padding, BOS for an empty one), the
holes to fill, the length limit, and the blocks the positions to generate are decoded in.

Only ``torch`` is imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import torch


# --- the prompt -------------------------------------------------------------------------------------------------
def prepare_prompt(model_config, device, input_ids, attention_mask, config):
    """(input_ids, attention_mask) on the model's device, 2D, with a BOS column where the prompt is empty."""
    if input_ids is None:
        input_ids = torch.empty(1, 0, dtype=torch.long, device=device)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("input_ids must be a (batch_size, length) tensor of token ids")
    if input_ids.dtype not in (torch.long, torch.int, torch.int32, torch.int16):
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    input_ids = input_ids.to(device=device, dtype=torch.long)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    attention_mask = attention_mask.to(device=device, dtype=torch.long)
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    # a 0 after a 1 means right padding: the first new token would be read from a padding logit
    if bool((attention_mask[:, 1:] < attention_mask[:, :-1]).any()):
        raise ValueError("attention_mask: right padding is not supported; pad prompts on the left "
                         "(tokenizer.padding_side = 'left')")
    vocab_size = getattr(model_config, "vocab_size", None)
    if vocab_size is not None and input_ids.numel():
        real = input_ids[attention_mask.bool()]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= vocab_size):
            bad = int(real[(real < 0) | (real >= vocab_size)][0])
            raise ValueError(f"input_ids: token id {bad} is outside the vocabulary (ids 0..{vocab_size - 1})")
    if input_ids.shape[1] == 0:
        # position 0 is given, never predicted: an empty prompt starts from BOS
        bos = config.bos_token_id
        if bos is None:
            raise ValueError("the prompt is empty and bos_token_id is not set: pass a prompt or bos_token_id=")
        input_ids = torch.full((input_ids.shape[0], 1), bos, dtype=torch.long, device=device)
        attention_mask = torch.ones_like(input_ids)
    return input_ids, attention_mask


def prompt_holes(model_config, input_ids, attention_mask, infill_mask, given_shape, mask_id: int) -> torch.Tensor:
    """(B, L) bool: the prompt positions to generate. From ``infill_mask`` when given; else the positions holding
    a dedicated mask token. A reused mask id is an ordinary token, so identity cannot tell a hole from text."""
    if infill_mask is not None:
        if not isinstance(infill_mask, torch.Tensor) or tuple(infill_mask.shape) != given_shape:
            raise ValueError(f"infill_mask must be a tensor of the shape of input_ids {given_shape}, got "
                             f"{tuple(infill_mask.shape) if isinstance(infill_mask, torch.Tensor) else infill_mask!r}")
        if infill_mask.dtype != torch.bool:
            raise ValueError(f"infill_mask must be a bool tensor (True = position to generate), got "
                             f"{infill_mask.dtype}")
        holes = infill_mask.to(input_ids.device)
        if holes.shape[1] < input_ids.shape[1]:  # an empty prompt became [BOS], which is given
            holes = torch.zeros_like(input_ids, dtype=torch.bool)
        if bool((holes & ~attention_mask.bool()).any()):
            raise ValueError("infill_mask marks a padding position (attention_mask 0) to generate")
        return holes
    if getattr(model_config, "mask_token_reused", False):
        return torch.zeros_like(input_ids, dtype=torch.bool)
    return attention_mask.bool() & (input_ids == mask_id)


def check_length(model_config, length: int) -> None:
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    if limit is not None and length > limit:
        raise ValueError(
            f"max_new_tokens: prompt + new tokens = {length} positions, more than the model's {limit}"
        )


def check_first_tokens(model_config, generated: torch.Tensor, attended: torch.Tensor) -> None:
    """With the shift nothing predicts a sequence's first token, so it must be given."""
    if not getattr(model_config, "shift", True):
        return
    has_token = attended.any(dim=1)
    first = attended.long().argmax(dim=1)
    first_is_masked = generated.gather(1, first[:, None]).squeeze(1) & has_token
    if bool(first_is_masked.any()):
        row = int(first_is_masked.nonzero()[0, 0])
        raise ValueError(
            f"input_ids: sequence {row} starts with a position to generate, but the first position is never "
            "predicted (the shift: position j is read from logit j - 1); start it with BOS or a prompt token"
        )


# --- blocks -------------------------------------------------------------------------------------------------------
def block_layout(generated: torch.Tensor, num_generated: torch.Tensor, config) -> list[torch.Tensor]:
    """(B, L) bool per block. Without block_length: one block of every position to generate."""
    if config.block_length is None:
        return [generated]
    lengths = num_generated.unique()
    if len(lengths) != 1:
        raise ValueError(
            f"block_length needs the same number of positions to generate in every sequence, got {lengths.tolist()}"
        )
    length = int(lengths[0])
    if length == 0:  # nothing to generate
        return [generated]
    # the k-th position to generate in a row (left to right) belongs to block k // block_length; a last block
    # may be shorter
    order = generated.long().cumsum(dim=1) - 1
    block_of = torch.where(generated, order // config.block_length, -1)
    return [block_of == b for b in range(-(-length // config.block_length))]


def aligned_block_layout(generated: torch.Tensor, attention_mask: torch.Tensor, block_size: int):
    """A block-diffusion model's blocks: positions p // block_size (p counted from each row's first token; the
    rows share their padding modulo block_size). Returns the (B, L) bool per block holding positions to generate,
    and each such block's (start, end) columns."""
    length = generated.shape[1]
    padding = int(attention_mask.shape[1] - attention_mask[0].sum())
    column_block = torch.div(torch.arange(length, device=generated.device) - padding + block_size * length,
                             block_size, rounding_mode="floor")
    blocks, spans = [], []
    for block in column_block[generated.any(dim=0)].unique().tolist():
        columns = (column_block == block).nonzero().flatten()
        blocks.append(generated & (column_block == block)[None, :])
        spans.append((int(columns[0]), int(columns[-1]) + 1))
    return blocks, spans


def sub_block_layout(blocks, spans, sub_block_length: int):
    """A block-diffusion model's blocks cut into sub-blocks of ``sub_block_length`` positions counted from each
    block's start (Fast-dLLM v2); every sub-block keeps its block's (start, end) span."""
    sub_blocks, sub_spans = [], []
    for in_block, (start, end) in zip(blocks, spans):
        columns = torch.arange(in_block.shape[1], device=in_block.device)
        for sub_start in range(start, end, sub_block_length):
            piece = in_block & ((columns >= sub_start) & (columns < sub_start + sub_block_length))[None, :]
            if bool(piece.any()):
                sub_blocks.append(piece)
                sub_spans.append((start, end))
    return sub_blocks, sub_spans


def split_steps(steps: int, num_blocks: int) -> list[int]:
    """Steps per block: as even as possible, the remainder to the first blocks."""
    if steps < num_blocks:
        raise ValueError(f"steps ({steps}) must be at least the number of blocks ({num_blocks}): every block needs "
                         "a step; pass more steps or a larger block_length")
    return [steps // num_blocks + (b < steps % num_blocks) for b in range(num_blocks)]


__all__ = ["aligned_block_layout", "block_layout", "check_first_tokens", "check_length", "prepare_prompt",
           "prompt_holes", "split_steps", "sub_block_layout"]
