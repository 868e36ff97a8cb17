"""``diffusion-lm eval``: zero-shot tasks and likelihood of a diffusion LM, side by side with its AR base.

    diffusion-lm eval --model DIR [--ar-baseline BASE] --tasks piqa,siqa,winogrande,lambada,rocstories,gsm8k \\
        --data-dir ../shared/data/eval --limit 200 --mc-samples 32 --seed 0 --output results.json [--update-card]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from ..checkpoint import DTYPE_NAMES
from ..modeling.unmasking import ALG_NAMES

DEFAULT_TASKS = "piqa,siqa,winogrande,lambada,rocstories,gsm8k"


def add_arguments(parser: argparse.ArgumentParser, name: str = "eval") -> None:
    parser.add_argument("--model", required=True, help="diffusion checkpoint: directory or Hub id")
    parser.add_argument(
        "--ar-baseline",
        metavar="BASE",
        help="AR base model to evaluate alongside: Hub id, directory or .gguf file",
    )
    parser.add_argument(
        "--tasks",
        default=DEFAULT_TASKS,
        help=f"comma-separated tasks (default {DEFAULT_TASKS}; also hellaswag); NAME=FILE_OR_HUB_ID reads a given source",
    )
    parser.add_argument(
        "--data-dir",
        help="folder with the local task files (layout of shared/data/eval); tasks missing there come from the Hub",
    )
    parser.add_argument("--limit", type=int, help="first N examples of each task (and N blocks of --ppl-data)")
    parser.add_argument(
        "--mc-samples", type=int, default=32, help="Monte-Carlo samples per choice / sequence (default 32)"
    )
    parser.add_argument(
        "--estimator",
        choices=("levels", "elbo", "elbo_continuous"),
        default="levels",
        help="multiple-choice scorer: 'levels' (the reference's, reproduces the paper: t=k/K, mean CE over the "
             "masked tokens, 0 for an empty level, divided by K), 'elbo' (bound, count form: l ~ U{1..L} tokens "
             "masked, weight L/l; low variance) or 'elbo_continuous' (bound, t ~ U(0,1), weight 1/t). --ppl-data "
             "always uses 'elbo'",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every Monte-Carlo draw (default 0)")
    parser.add_argument(
        "--steps", type=int, help="diffusion decoding steps (default: one per generated token)"
    )
    parser.add_argument("--alg", default="confidence", choices=ALG_NAMES, help="diffusion decoding order (default confidence)")
    parser.add_argument("--kv-cache", choices=["none", "prefix", "dual"], default="none",
                        help="KV cache of diffusion decoding (default none: exact)")
    parser.add_argument("--threshold", type=float, help="confidence-threshold parallel decoding, in (0, 1]")
    parser.add_argument("--block-length", type=int, help="semi-autoregressive block size of diffusion decoding")
    parser.add_argument("--gsm8k-max-new-tokens", type=int, default=256, help="GSM8K answer budget (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    parser.add_argument("--ppl-data", metavar="FILE", help="text file (.txt/.json/.jsonl) for the likelihood bound")
    parser.add_argument("--ppl-block-size", type=int, default=256, help="tokens per likelihood block (default 256)")
    parser.add_argument("--ppl-max-blocks", type=int, help="at most this many likelihood blocks (default: --limit)")
    parser.add_argument("--output", help="write the results JSON here")
    parser.add_argument(
        "--update-card", action="store_true", help="write the results into --model's README.md model-index"
    )
    parser.add_argument("--keep-outputs", action="store_true", help="keep per-example generations in the JSON")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="float32", choices=DTYPE_NAMES, help="model dtype (default float32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _validate(args) -> None:
    for flag in ("limit", "mc_samples", "batch_size", "steps", "gsm8k_max_new_tokens", "ppl_max_blocks"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.ppl_block_size < 2:
        raise ValueError(f"--ppl-block-size must be >= 2, got {args.ppl_block_size}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise ValueError(f"--data-dir {args.data_dir!r} is not a directory")
    if args.ppl_data is not None and not os.path.isfile(args.ppl_data):
        raise ValueError(f"--ppl-data {args.ppl_data!r} is not a file")
    if args.update_card and not os.path.isdir(args.model):
        raise ValueError("--update-card needs --model to be a local directory")


def _label(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def run(args) -> int:
    import torch

    from diffusion_lm.checkpoint import load_checkpoint, resolve_dtype
    from diffusion_lm.conversion import ARSource, load_ar_model
    from diffusion_lm.evaluation.evaluators import AREvaluator, DecodingSettings, DiffusionEvaluator, ScoringSettings
    from diffusion_lm.evaluation.likelihood import read_text_documents, token_blocks
    from diffusion_lm.evaluation.model_card import update_model_card
    from diffusion_lm.evaluation.runner import evaluate_models, format_table
    from diffusion_lm.evaluation.tasks import load_task, parse_task_list, task_spec_name

    _validate(args)
    specs = parse_task_list(args.tasks)  # unknown task names fail here, before any model loads
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(args.dtype)
    progress = not args.no_progress
    start = time.perf_counter()

    task_examples = {task_spec_name(spec): load_task(spec, args.data_dir, args.limit) for spec in specs}

    model, tokenizer = load_checkpoint(args.model, dtype=args.dtype, device=device, what="--model")
    scoring = ScoringSettings(args.mc_samples, args.estimator, args.seed, batch_size=args.batch_size)
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
    decoding = DecodingSettings(steps=args.steps, alg=args.alg, seed=args.seed,
                                kv_cache=None if args.kv_cache == "none" else args.kv_cache,
                                threshold=args.threshold, block_length=args.block_length)
    evaluators = {}
    if args.ar_baseline:
        source = ARSource.parse(args.ar_baseline)
        ar_model, ar_tokenizer = load_ar_model(source, dtype=dtype)
        ar_label = "AR " + _label(source.gguf_file or source.path)
        evaluators[ar_label] = AREvaluator(ar_model.to(device), ar_tokenizer, batch_size=args.batch_size)
    evaluators["diffusion " + _label(args.model)] = DiffusionEvaluator(model, tokenizer, scoring, decoding)

    blocks = None
    if args.ppl_data:
        # the diffusion tokenizer's ids for both models: the AR vocabulary is the same minus [MASK]
        max_blocks = args.ppl_max_blocks or args.limit
        blocks = token_blocks(read_text_documents(args.ppl_data), tokenizer, args.ppl_block_size, max_blocks)
        for evaluator in evaluators.values():
            vocab = evaluator.model.get_input_embeddings().num_embeddings
            if max(max(b) for b in blocks) >= vocab:
                raise ValueError(f"--ppl-data tokens fall outside the {evaluator.kind} model's vocabulary ({vocab})")

    results = evaluate_models(
        evaluators,
        task_examples,
        likelihood_blocks=blocks,
        gsm8k_max_new_tokens=args.gsm8k_max_new_tokens,
        progress=progress,
        keep_outputs=args.keep_outputs,
    )
    settings = {
        "mc_samples": args.mc_samples,
        "estimator": args.estimator,
        "seed": args.seed,
        "steps": args.steps,
        "alg": args.alg,
        "kv_cache": args.kv_cache,
        "threshold": args.threshold,
        "block_length": args.block_length,
        "limit": args.limit,
        "gsm8k_max_new_tokens": args.gsm8k_max_new_tokens,
        "ppl_block_size": args.ppl_block_size if args.ppl_data else None,
        "ppl_blocks": len(blocks) if blocks else None,
        "dtype": args.dtype,
    }
    results = {
        "model": args.model,
        "ar_baseline": args.ar_baseline,
        "tasks": specs,
        "data_dir": args.data_dir,
        "ppl_data": args.ppl_data,
        "settings": settings,
        **results,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    print(format_table(results))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        print(f"results written to {args.output}")
    if args.update_card:
        diffusion_entry = results["models"]["diffusion " + _label(args.model)]
        update_model_card(args.model, diffusion_entry["tasks"], settings)
        print(f"model-index of {os.path.join(args.model, 'README.md')} updated")
    return 0
