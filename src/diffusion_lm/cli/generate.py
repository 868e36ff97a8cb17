"""``diffusion-lm generate`` and ``diffusion-lm infill``: diffusion decoding from the command line.

    diffusion-lm generate MODEL_DIR --prompt "Once upon a time" --max-new-tokens 64 --steps 32 --show-steps
    diffusion-lm infill MODEL_DIR --prefix "The cat" --suffix "on the mat." --length 4

``--show-steps`` prints the denoising trajectory: one line per step with the still-masked positions as ``░``.
"""

from __future__ import annotations

import argparse
import sys

ALG_CHOICES = ("confidence", "margin", "entropy", "random", "left_to_right", "origin", "maskgit_plus",
               "low_confidence", "topk_margin")


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
    add("--alg", default="confidence", choices=ALG_CHOICES, help="unmasking rule (default confidence)")
    add("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    add("--top-k", type=int, help="sample from the k most likely tokens (with --temperature > 0)")
    add("--top-p", type=float, help="nucleus sampling mass in (0, 1] (with --temperature > 0)")
    add("--alg-temperature", type=float, default=0.0, help="> 0 draws the positions to commit at random")
    add("--block-length", type=int, help="semi-autoregressive block size (must divide the generated length)")
    add("--kv-cache", choices=["none", "prefix", "dual"], help="KV cache: none (exact), prefix or dual (default: the checkpoint's generation_config)")
    add("--threshold", type=float, help="commit every position at least this confident, in (0, 1] (default: the "
                                        "checkpoint's generation_config)")
    add("--seed", type=int, default=0)
    add("--show-steps", action="store_true", help="print the sequence after every denoising step")
    add("--mask-symbol", default="░", help="how --show-steps draws a masked position (default ░)")
    add("--device", help="torch device (default: cuda if available, else cpu)")
    add("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    add("--trust-remote-code", action="store_true", help="allow the checkpoint's own code (not needed for ours)")


def fast_decoding_kwargs(args) -> dict:
    """``kv_cache`` / ``threshold`` for ``generate`` when the flags are given (else the checkpoint's defaults)."""
    kwargs = {}
    if getattr(args, "kv_cache", None) is not None:
        kwargs["kv_cache"] = None if args.kv_cache == "none" else args.kv_cache
    if getattr(args, "threshold", None) is not None:
        if not 0 < args.threshold <= 1:
            raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
        kwargs["threshold"] = args.threshold
    return kwargs


def _validate(args) -> None:
    """Fail on bad numbers before a model is loaded."""
    length = args.length if args.command == "infill" else args.max_new_tokens
    flag = "--length" if args.command == "infill" else "--max-new-tokens"
    if length < (1 if args.command == "infill" else 0):
        raise ValueError(f"{flag} must be >= {1 if args.command == 'infill' else 0}")
    if args.steps is not None and args.steps < 1:
        raise ValueError("--steps must be >= 1")
    if args.temperature < 0:
        raise ValueError("--temperature must be >= 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError("--top-p must be in (0, 1]")
    if args.block_length is not None and (args.block_length < 1 or length % args.block_length):
        raise ValueError(f"--block-length must divide {flag} ({length})")


def load_model(path: str, device: str | None = None, dtype: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) through the Auto classes (importing diffusion_lm registers ours)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ..models import DIFFUSION_MODEL_TYPES  # diffusion_lm's import registered our types with the Auto classes
    from ..paths import resolve_model_reference

    path = resolve_model_reference(path, "MODEL_DIR")
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if config.model_type not in DIFFUSION_MODEL_TYPES and getattr(config, "mask_token_id", None) is None:
        raise ValueError(f"{path} is a {config.model_type!r} checkpoint, not a diffusion LM: adapt it first "
                         "(`diffusion-lm adapt`)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def step_progress(total: int, description: str = "denoising"):
    """``(bar, step_callback)``: a bar of denoising steps on stderr for ``model.generate(step_callback=...)``; hidden
    when stderr is not a terminal, so piped output and logs stay clean."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, unit="step", leave=False, file=sys.stderr, disable=None)

    def advance(step, sequences, logits):
        bar.update(1)

    return bar, advance


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

    from ..infilling import decode_text

    model, tokenizer = load_model(args.model, args.device, args.dtype, args.trust_remote_code)
    device = next(model.parameters()).device
    mask_token_id = model.generation_config.mask_token_id
    if mask_token_id is None:
        mask_token_id = model.config.mask_token_id

    if args.command == "infill":
        from ..infilling import infill_input_ids

        ids, start = infill_input_ids(tokenizer, args.prefix, args.suffix, args.length, mask_token_id)
        region = slice(start, start + args.length)
        max_new_tokens, n_generated = 0, args.length
    else:
        if args.chat:
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("--chat: the tokenizer has no chat template")
            messages = [{"role": "user", "content": args.prompt}]
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
            ids = list(encoded["input_ids"])
        else:
            ids = list(tokenizer(args.prompt)["input_ids"]) if args.prompt else []
        if not ids:  # position 0 is never predicted: start from BOS
            start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            ids = [start_id]
        region = slice(len(ids), None)
        max_new_tokens, n_generated = args.max_new_tokens, args.max_new_tokens

    input_ids = torch.tensor([ids], device=device)
    # the holes are named by position: a prompt token equal to a reused mask id (811, 10541) stays text
    infill_mask = torch.zeros_like(input_ids, dtype=torch.bool)
    infill_mask[0, region] = max_new_tokens == 0
    gen_kwargs = dict(
        infill_mask=infill_mask,
        max_new_tokens=max_new_tokens,
        steps=args.steps or max(1, n_generated),
        alg=args.alg,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        alg_temperature=args.alg_temperature,
        block_length=args.block_length,
        generator=torch.Generator(device=device).manual_seed(args.seed),
        **fast_decoding_kwargs(args),
    )
    if args.show_steps:
        width = len(str(gen_kwargs["steps"]))

        def show(step, x, logits):
            text = render_positions(tokenizer, x[0, region].tolist(), mask_token_id, args.mask_symbol)
            print(f"step {step + 1:>{width}} | {text}", flush=True)

        gen_kwargs["step_callback"] = show
        output = model.generate(input_ids, **gen_kwargs)
    else:  # the trajectory is not printed: a step bar shows that decoding advances
        bar, gen_kwargs["step_callback"] = step_progress(gen_kwargs["steps"])
        with bar:
            output = model.generate(input_ids, **gen_kwargs)

    if args.command == "generate" and args.chat:
        text = decode_text(tokenizer, output[0, len(ids):].tolist(), model.config)
    else:
        text = decode_text(tokenizer, output[0].tolist(), model.config)
    if args.show_steps:
        print("-" * 40)
    print(text)
    sys.stdout.flush()
    return 0
