"""Checks of a training run's attention set-up and block-size curriculum, shared by ``AdaptSettings`` (before
anything loads) and the trainers (against the model they train)."""

from __future__ import annotations

# what an adaptation trains: full attention (the paper) or block diffusion (METHOD.md section 9)
TRAINING_ATTENTION_MODES = ("bidirectional", "block")


def check_attention_settings(
    attention_mode: str,
    diffusion_block_size: int | None,
    sequence_length: int | None = None,
    attn_implementation: str | None = None,
) -> None:
    """ValueError naming the setting (and its ``diffusion-lm adapt`` flag) for an attention set-up no run can train:
    an unknown mode, block mode without a block size >= 1 dividing the packed ``sequence_length``, a block size
    without block mode, or block mode on flash attention (which takes no attention pattern)."""
    if attention_mode not in TRAINING_ATTENTION_MODES:
        raise ValueError(f"attention_mode (--attention-mode) must be one of {TRAINING_ATTENTION_MODES}, "
                         f"got {attention_mode!r}")
    if attention_mode != "block":
        if diffusion_block_size is not None:
            raise ValueError("diffusion_block_size (--diffusion-block-size) is only used with attention_mode 'block' "
                             "(--attention-mode block)")
        return
    if diffusion_block_size is None:
        raise ValueError("attention_mode 'block' needs diffusion_block_size (--diffusion-block-size N)")
    flag = "diffusion_block_size (--diffusion-block-size)"
    if isinstance(diffusion_block_size, bool) or not isinstance(diffusion_block_size, int) or diffusion_block_size < 1:
        raise ValueError(f"{flag} must be an integer >= 1, got {diffusion_block_size!r}")
    if sequence_length is not None and sequence_length % diffusion_block_size:
        raise ValueError(f"{flag} {diffusion_block_size} must divide the packed sequence length, block_size "
                         f"(--block-size) {sequence_length}")
    if "flash" in (attn_implementation or ""):
        raise ValueError(f"attention_mode 'block' cannot run with attn_implementation {attn_implementation!r} "
                         "(--attn-implementation): flash kernels take no attention pattern; use sdpa or eager")


def parse_block_curriculum(curriculum) -> list[tuple[int, int]]:
    """``'1:0,4:100,16:300'`` (or a list of [size, step] pairs) -> [(1, 0), (4, 100), (16, 300)]: block sizes and
    the optimizer steps where each starts. ValueError naming ``block_curriculum`` for anything else."""
    def refuse(why: str):
        raise ValueError(f"block_curriculum {curriculum!r}: {why}; expected 'SIZE:STEP,...' starting at step 0, "
                         "e.g. '1:0,4:100,16:300'")

    if isinstance(curriculum, str):
        pairs = [item.split(":") for item in curriculum.replace(" ", "").split(",") if item]
    else:
        pairs = list(curriculum or [])
    stages = []
    for pair in pairs:
        if len(pair) != 2:
            refuse(f"{pair!r} is not SIZE:STEP")
        try:
            size, start = int(pair[0]), int(pair[1])
        except (TypeError, ValueError):
            refuse(f"{pair!r} is not two integers")
        if size < 1 or start < 0:
            refuse("block sizes must be >= 1 and steps >= 0")
        stages.append((size, start))
    if not stages:
        refuse("no stage")
    if stages[0][1] != 0:
        refuse("the first stage must start at step 0")
    if any(b[1] <= a[1] for a, b in zip(stages, stages[1:])):
        refuse("the start steps must increase")
    return stages


def check_block_curriculum(curriculum, diffusion_block_size: int | None, sequence_length: int | None = None) -> None:
    """ValueError naming the setting unless the curriculum ends at the model's block size and every size divides
    the packed sequence length."""
    stages = parse_block_curriculum(curriculum)
    if diffusion_block_size is None:
        raise ValueError("block_curriculum needs a block-diffusion model (attention_mode 'block')")
    if stages[-1][0] != diffusion_block_size:
        raise ValueError(f"block_curriculum {curriculum!r} must end at diffusion_block_size {diffusion_block_size} "
                         f"(the model's block size), ends at {stages[-1][0]}")
    for size, _ in stages:
        if sequence_length is not None and sequence_length % size:
            raise ValueError(f"block_curriculum: block size {size} does not divide the packed sequence length "
                             f"(block_size) {sequence_length}")


def curriculum_block_size(curriculum, step: int) -> int:
    """The block size the curriculum gives at optimizer step ``step``."""
    return [size for size, start in parse_block_curriculum(curriculum) if start <= step][-1]


__all__ = ["TRAINING_ATTENTION_MODES", "check_attention_settings", "check_block_curriculum", "curriculum_block_size",
           "parse_block_curriculum"]
