"""``diffusion-lm chat MODEL_DIR``: a short interactive session with an instruction-tuned diffusion LM.

Reads one user message per stdin line and prints the reply; ends on EOF, ``exit`` or ``quit``. MODEL_DIR is a full
checkpoint or a LoRA adapter directory (its base model is loaded from the adapter's ``base_model_name_or_path``).
"""

from __future__ import annotations

import argparse
import sys

from .decoding_flags import add_decoding_flags, check_decoding_flags, check_decoding_lengths, generation_kwargs


def add_arguments(parser: argparse.ArgumentParser, name: str = "chat") -> None:
    add = parser.add_argument
    add("model", metavar="MODEL_DIR", help="diffusion checkpoint or LoRA adapter directory (or Hub id)")
    add("--max-new-tokens", type=int, default=128, help="reply canvas in tokens (default 128)")
    add_decoding_flags(parser)
    add("--system", help="system message to start the conversation with")
    add("--no-history", action="store_true", help="answer each line on its own, without earlier turns")
    add("--seed", type=int, default=0)
    add("--device", help="torch device (default: cuda if available, else cpu)")


def load_chat_model(path: str, device: str | None = None):
    """(model, tokenizer) of a full checkpoint or of a PEFT adapter on top of its base (``checkpoint.load_checkpoint``);
    generation stops at EOS and at the chat template's end-of-turn token."""
    from ..checkpoint import default_device, load_checkpoint
    from ..chat_generation import configure_chat_generation

    model, tokenizer = load_checkpoint(path, device=device or default_device(), what="MODEL_DIR")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    configure_chat_generation(base, tokenizer)
    return model, tokenizer


def run(args: argparse.Namespace) -> int:
    from .generate import step_progress

    check_decoding_flags(args)
    check_decoding_lengths(args, args.max_new_tokens, "--max-new-tokens", 1)
    import torch

    from ..chat_generation import generate_completions

    model, tokenizer = load_chat_model(args.model, args.device)
    use_template = bool(getattr(tokenizer, "chat_template", None))
    generate_kwargs = generation_kwargs(args, steps=args.steps or args.max_new_tokens)
    start = [{"role": "system", "content": args.system}] if args.system else []
    history = list(start)
    interactive = sys.stdin.isatty()
    torch.manual_seed(args.seed)
    while True:
        if interactive:
            print(">>> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:  # EOF
            break
        line = line.strip()
        if line in ("exit", "quit"):
            break
        if not line:
            continue
        history = list(start) if args.no_history else history
        history.append({"role": "user", "content": line})
        prompt = history if use_template else line  # no template: the line is the prompt as plain text
        bar, advance = step_progress(generate_kwargs["steps"], "reply")  # on stderr, only in a terminal
        with bar:
            reply = generate_completions(model, tokenizer, [prompt], max_new_tokens=args.max_new_tokens,
                                         step_callback=advance, **generate_kwargs)[0]
        history.append({"role": "assistant", "content": reply})
        print(reply, flush=True)
    return 0
