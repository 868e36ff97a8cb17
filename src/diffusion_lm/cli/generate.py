"""``diffusion-lm generate`` and ``diffusion-lm infill``: diffusion decoding from the command line.

    diffusion-lm generate MODEL_DIR --prompt "Once upon a time" --max-new-tokens 64 --steps 32 --show-steps
    diffusion-lm infill MODEL_DIR --prefix "The cat" --suffix "on the mat." --length 4

``--show-steps`` prints the denoising trajectory: one line per step with the still-masked positions as ``░``.
"""

from __future__ import annotations

import argparse
import sys

from ..checkpoint import DTYPE_NAMES
from ..modeling.unmasking import ALG_NAMES


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
    add("--steps", type=int, help="denoising steps (default: one per generated token)")
    add("--alg", default="confidence", choices=ALG_NAMES, help="unmasking rule (default confidence)")
    add("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    add("--top-k", type=int, help="sample from the k most likely tokens (with --temperature > 0)")
    add("--top-p", type=float, help="nucleus sampling mass in (0, 1] (with --temperature > 0)")
    add("--alg-temperature", type=float, default=0.0, help="> 0 draws the positions to commit at random")
    add("--block-length", type=int, help="semi-autoregressive block size (must divide the generated length)")
    add("--kv-cache", choices=["none", "prefix", "dual"], help="KV cache: none (exact), prefix or dual (default: the checkpoint's generation_config)")
    add("--threshold", type=float, help="commit every position at least this confident, in (0, 1] (default: the "
                                        "checkpoint's generation_config)")
    add_rule_flags(add)
    add("--seed", type=int, default=0)
    add("--show-steps", action="store_true", help="print the sequence after every denoising step")
    add("--mask-symbol", default="░", help="how --show-steps draws a masked position (default ░)")
    add("--device", help="torch device (default: cuda if available, else cpu)")
    add("--dtype", default="auto", choices=DTYPE_NAMES)
    add("--trust-remote-code", action="store_true", help="allow the checkpoint's own code (not needed for ours)")


def add_rule_flags(add) -> None:
    """Flags of the decoding rules beyond the threshold (``generate`` and ``chat``)."""
    add("--entropy-bound", type=float, help="also commit, in confidence order, the positions whose summed entropy "
                                            "(nats) stays under this bound (> 0)")
    add("--sub-block-length", type=int, help="block-diffusion models: decode each block in sub-blocks of N positions "
                                             "(with --kv-cache dual: the rest of the block from the cache)")
    add("--verify", choices=["causal"], help="self-verified decoding: diffusion drafts, the model's causal mode checks "
                                            "(greedy output = its causal greedy decode)")
    add("--draft-length", type=int, help="with --verify: draft tokens per verification (default: the model's block, "
                                         "else --block-length, else 8)")


def fast_decoding_kwargs(args) -> dict:
    """``kv_cache`` / ``threshold`` for ``generate`` when the flags are given (else the checkpoint's defaults)."""
    kwargs = {}
    if getattr(args, "kv_cache", None) is not None:
        kwargs["kv_cache"] = None if args.kv_cache == "none" else args.kv_cache
    if getattr(args, "threshold", None) is not None:
        if not 0 < args.threshold <= 1:
            raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
        kwargs["threshold"] = args.threshold
    if getattr(args, "entropy_bound", None) is not None:
        if not args.entropy_bound > 0:
            raise ValueError(f"--entropy-bound must be > 0, got {args.entropy_bound}")
        kwargs["entropy_bound"] = args.entropy_bound
    if getattr(args, "sub_block_length", None) is not None:
        if args.sub_block_length < 1:
            raise ValueError(f"--sub-block-length must be >= 1, got {args.sub_block_length}")
        kwargs["sub_block_length"] = args.sub_block_length
    if getattr(args, "verify", None) is not None:
        kwargs["verify"] = args.verify
    if getattr(args, "draft_length", None) is not None:
        if args.draft_length < 1:
            raise ValueError(f"--draft-length must be >= 1, got {args.draft_length}")
        kwargs["draft_length"] = args.draft_length
    return kwargs


def validate_decoding_args(args, length: int, flag: str, minimum: int) -> None:
    """Fail on bad decoding numbers before a model is loaded (``generate``, ``infill``, ``chat``); ``length`` is the
    generated length given by ``flag``, at least ``minimum``."""
    if length < minimum:
        raise ValueError(f"{flag} must be >= {minimum}")
    if args.steps is not None and args.steps < 1:
        raise ValueError("--steps must be >= 1")
    if args.temperature < 0:
        raise ValueError("--temperature must be >= 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError("--top-p must be in (0, 1]")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    if args.block_length is not None and (args.block_length < 1 or length % args.block_length):
        raise ValueError(f"--block-length must divide {flag} ({length})")


def _validate(args) -> None:
    fast_decoding_kwargs(args)  # the flags' own checks, before the model is loaded
    if args.command == "infill":
        validate_decoding_args(args, args.length, "--length", 1)
    else:
        validate_decoding_args(args, args.max_new_tokens, "--max-new-tokens", 0)


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
    gen_kwargs = dict(
        steps=args.steps or max(1, args.length if args.command == "infill" else args.max_new_tokens),
        alg=args.alg,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        alg_temperature=args.alg_temperature,
        block_length=args.block_length,
        generator=torch.Generator(device=device).manual_seed(args.seed),
        **fast_decoding_kwargs(args),
    )

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
