"""``diffusion-lm generate`` and ``diffusion-lm infill``: diffusion decoding from the command line.

    diffusion-lm generate MODEL_DIR --prompt "Once upon a time" --max-new-tokens 64 --steps 32 --show-steps
    diffusion-lm infill MODEL_DIR --prefix "The cat" --suffix "on the mat." --length 4

``--show-steps`` prints the denoising trajectory: one line per step with the still-masked positions as ``░``.
"""

from __future__ import annotations

import argparse
import sys

from ..checkpoint import DTYPE_NAMES
from .decoding_flags import add_decoding_flags, check_decoding_flags, check_decoding_lengths, generation_kwargs


def add_arguments(parser: argparse.ArgumentParser, name: str = "generate") -> None:
    add = parser.add_argument
    add("model", metavar="MODEL_DIR", help="diffusion checkpoint directory (or Hub id)")
    if name == "infill":
        add("--prefix", required=True, help="text before the gap")
        add("--suffix", required=True, help="text after the gap")
        add("--length", type=int, required=True, help="tokens to generate in the gap")
    else:
        add("--prompt", default="", help="text to continue (default: empty, start from BOS)")
        add("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
        add("--chat", action="store_true", help="wrap the prompt as one user turn with the tokenizer's chat template")
    add_decoding_flags(parser)
    add("--seed", type=int, default=0)
    add("--show-steps", action="store_true", help="print the sequence after every denoising step")
    add("--mask-symbol", default="░", help="how --show-steps draws a masked position (default ░)")
    add("--device", help="torch device (default: cuda if available, else cpu)")
    add("--dtype", default="auto", choices=DTYPE_NAMES)
    add("--trust-remote-code", action="store_true", help="allow the checkpoint's own code (not needed for ours)")


def _validate(args) -> None:
    check_decoding_flags(args)  # before the model is loaded
    if args.command == "infill":
        check_decoding_lengths(args, args.length, "--length", 1)
    else:
        check_decoding_lengths(args, args.max_new_tokens, "--max-new-tokens", 0)


def step_progress(total: int, description: str = "denoising"):
    """``(bar, step_callback)``: a bar of denoising steps on stderr for ``model.generate(step_callback=...)``; hidden
    when stderr is not a terminal, so piped output and logs stay clean."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, unit="step", leave=False, file=sys.stderr, disable=None)

    def advance(step, sequences, logits):
        bar.update(1)

    return bar, advance


def prompt_ids(tokenizer, prompt: str, chat: bool = False) -> list[int]:
    """Token ids of ``prompt`` (as one user turn of the chat template with ``chat``); an empty prompt starts from BOS
    (position 0 is never predicted)."""
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("--chat: the tokenizer has no chat template")
        encoded = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                return_dict=True)
        ids = list(encoded["input_ids"])
    else:
        ids = list(tokenizer(prompt)["input_ids"]) if prompt else []
    if not ids:
        from ..tokens import start_token_id

        ids = [start_token_id(tokenizer)]
    return ids


def render_positions(tokenizer, ids: list[int], mask_token_id: int, mask_symbol: str = "░") -> str:
    """Text of ``ids`` with every mask drawn as ``mask_symbol``; runs of tokens are decoded together so spacing of
    sub-word tokenizers stays right."""
    pieces, run = [], []
    for token in ids:
        if token == mask_token_id:
            if run:
                pieces.append(tokenizer.decode(run))
                run = []
            pieces.append(mask_symbol)
        else:
            run.append(token)
    if run:
        pieces.append(tokenizer.decode(run))
    return "".join(pieces)


def run(args: argparse.Namespace) -> int:
    _validate(args)
    import torch

    from ..checkpoint import default_device, load_checkpoint
    from ..infilling import decode_text
    from ..models import resolve_mask_token_id

    model, tokenizer = load_checkpoint(args.model, dtype=args.dtype, device=args.device or default_device(),
                                       trust_remote_code=args.trust_remote_code, what="MODEL_DIR")

    device = next(model.parameters()).device
    mask_token_id = resolve_mask_token_id(model)
    steps = args.steps or max(1, args.length if args.command == "infill" else args.max_new_tokens)
    gen_kwargs = dict(generation_kwargs(args, steps), generator=torch.Generator(device=device).manual_seed(args.seed))

    if args.command == "infill":
        from ..infilling import infill, infill_input_ids

        _, start = infill_input_ids(tokenizer, args.prefix, args.suffix, args.length, mask_token_id)
        region = slice(start, start + args.length)

        def decode(**kwargs):
            return infill(model, tokenizer, args.prefix, args.suffix, args.length, return_full_text=True, **kwargs)
    else:
        ids = prompt_ids(tokenizer, args.prompt, args.chat)
        region = slice(len(ids), None)

        def decode(**kwargs):
            input_ids = torch.tensor([ids], device=device)
            # no holes in the prompt, by position: a prompt token equal to a reused mask id (811, 10541) stays text
            output = model.generate(input_ids, infill_mask=torch.zeros_like(input_ids, dtype=torch.bool),
                                    max_new_tokens=args.max_new_tokens, **kwargs)
            # with --chat only the reply is printed
            return decode_text(tokenizer, output[0, len(ids) if args.chat else 0:].tolist(), model.config)

    if args.show_steps:
        width = len(str(gen_kwargs["steps"]))

        def show(step, x, logits):
            text = render_positions(tokenizer, x[0, region].tolist(), mask_token_id, args.mask_symbol)
            print(f"step {step + 1:>{width}} | {text}", flush=True)

        text = decode(step_callback=show, **gen_kwargs)
    else:  # the trajectory is not printed: a step bar shows that decoding advances
        bar, advance = step_progress(gen_kwargs["steps"])
        with bar:
            text = decode(step_callback=advance, **gen_kwargs)
    if args.show_steps:
        print("-" * 40)
    print(text)
    sys.stdout.flush()
    return 0
