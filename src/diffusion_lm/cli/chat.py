"""``diffusion-lm chat MODEL_DIR``: a short interactive session with an instruction-tuned diffusion LM.

Reads one user message per stdin line and prints the reply; ends on EOF, ``exit`` or ``quit``. MODEL_DIR is a full
checkpoint or a LoRA adapter directory (its base model is loaded from the adapter's ``base_model_name_or_path``).
"""

from __future__ import annotations

import argparse
import sys

from ..modeling.unmasking import ALG_NAMES


def add_arguments(parser: argparse.ArgumentParser, name: str = "chat") -> None:
    add = parser.add_argument
    add("model", metavar="MODEL_DIR", help="diffusion checkpoint or LoRA adapter directory (or Hub id)")
    add("--max-new-tokens", type=int, default=128, help="reply canvas in tokens (default 128)")
    add("--steps", type=int, help="diffusion decoding steps (default: one per new token)")
    add("--alg", default="confidence", choices=ALG_NAMES, help="unmasking rule (default confidence)")
    add("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    add("--top-p", type=float)
    add("--top-k", type=int)
    add("--block-length", type=int, help="semi-autoregressive block size")
    add("--kv-cache", choices=["none", "prefix", "dual"], help="KV cache: none (exact), prefix or dual (default: the checkpoint's generation_config)")
    add("--threshold", type=float, help="commit every position at least this confident, in (0, 1]")
    from .generate import add_rule_flags

    add_rule_flags(add)
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
    from .generate import fast_decoding_kwargs, step_progress, validate_decoding_args

    validate_decoding_args(args, args.max_new_tokens, "--max-new-tokens", 1)
    import torch

    from ..chat_generation import generate_completions

    model, tokenizer = load_chat_model(args.model, args.device)
    use_template = bool(getattr(tokenizer, "chat_template", None))
    generate_kwargs = {"steps": args.steps or args.max_new_tokens, "alg": args.alg, "temperature": args.temperature}
    for key in ("top_p", "top_k", "block_length"):
        if getattr(args, key) is not None:
            generate_kwargs[key] = getattr(args, key)
    generate_kwargs.update(fast_decoding_kwargs(args))
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
