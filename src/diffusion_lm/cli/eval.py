"""``diffusion-lm eval``: zero-shot tasks and likelihood of a diffusion LM, side by side with its AR base.

    diffusion-lm eval --model DIR [--ar-baseline BASE] --tasks piqa,siqa,winogrande,lambada,rocstories,gsm8k \\
        --data-dir ../shared/data/eval --limit 200 --mc-samples 32 --seed 0 --output results.json [--update-card]
"""

from __future__ import annotations

import argparse
import os
import time

from ..checkpoint import DTYPE_NAMES
from ..paths import write_json
from .decoding_flags import DECODING_FLAGS, add_decoding_flags, check_decoding_flags, generation_kwargs

DEFAULT_TASKS = "piqa,siqa,winogrande,lambada,rocstories,gsm8k"


def add_arguments(parser: argparse.ArgumentParser, name: str = "eval") -> None:
    parser.add_argument("--model", required=True, help="diffusion checkpoint: directory or Hub id")
    parser.add_argument(
        "--ar-baseline",
        metavar="BASE",
        help="AR base model to evaluate alongside: 'embedded' (the embedded SmolLM2-135M-Instruct, offline), a Hub "
             "id, directory or .gguf file",
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
    add_decoding_flags(parser)
    parser.add_argument("--gsm8k-max-new-tokens", type=int, default=256, help="GSM8K answer budget (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    parser.add_argument("--ppl-data", metavar="FILE", help="text file (.txt/.json/.jsonl) for the likelihood bound")
    parser.add_argument("--ppl-block-size", type=int, default=256, help="tokens per likelihood block (default 256)")
    parser.add_argument("--ppl-max-blocks", type=int, help="at most this many likelihood blocks (default: --limit)")
    parser.add_argument("--output", help="write the results JSON here, after each task (an interrupted run keeps the "
                                          "finished tasks)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose results --output holds: finished tasks are kept, not run again")
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
    if args.resume and not args.output:
        raise ValueError("--resume needs --output: the results file of the run to continue")
    check_decoding_flags(args)


# the decoding flags every results file records (the others: when given)
SETTINGS_DECODING_FIELDS = ("steps", "alg", "kv_cache", "threshold", "block_length")
# checkpoint fields that decode only when asked for: an explicit step count sets a default verify aside (as in
# `generate`)
_ONLY_WHEN_GIVEN = ("verify", "draft_length")


def decoding_fields(args, generation_config) -> dict:
    """The ``DecodingSettings`` fields of the decoding flags, decoding as ``diffusion-lm generate`` does: a
    fast-decoding flag left out takes the checkpoint's generation_config value."""
    fields = generation_kwargs(args, steps=args.steps)
    for spec in DECODING_FLAGS:
        if spec.from_checkpoint and spec.field not in fields and spec.field not in _ONLY_WHEN_GIVEN:
            fields[spec.field] = getattr(generation_config, spec.field, None)
    return fields


# settings that must match for --resume to continue a run (the others only change what is kept or shown)
RESUME_KEYS = ("model", "ar_baseline", "data_dir", "ppl_data", "settings")


def load_partial_results(path: str, current: dict) -> dict | None:
    """The results an earlier run saved in ``path`` (None: no file yet). ValueError naming the file and the first
    setting that differs from ``current`` (then the saved tasks are not comparable)."""
    from ..paths import read_json

    saved = read_json(path, f"--output {path}")
    if saved is None:
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("models"), dict):
        raise ValueError(f"--output {path} holds no diffusion-lm eval results; pass another --output to start a new run")
    for key in RESUME_KEYS:
        if key == "settings":
            for name, value in current["settings"].items():
                if saved.get("settings", {}).get(name, value) != value:
                    raise ValueError(f"--resume: --{name.replace('_', '-')} {value!r} differs from the run saved in "
                                     f"{path} ({saved['settings'][name]!r}); use its settings or another --output")
        elif saved.get(key) != current.get(key):
            raise ValueError(f"--resume: --{key.replace('_', '-')} {current.get(key)!r} differs from the run saved in "
                             f"{path} ({saved.get(key)!r}); use its settings or another --output")
    return saved




def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def estimate_generation(model, prompt_lengths: list[int], max_new_tokens: int, steps: int | None,
                        batch_size: int) -> tuple[float, int, float]:
    """(estimated seconds, forward passes, seconds of one pass) of decoding ``max_new_tokens`` after each prompt
    without a cache: one timed forward pass of a full batch at the longest length, times the passes (batches x
    steps). Caches and thresholds make decoding faster: this is an upper estimate."""
    import torch

    rows = min(batch_size, len(prompt_lengths))
    length = max(prompt_lengths) + max_new_tokens
    ids = torch.full((rows, length), 1, dtype=torch.long, device=model.device)
    with torch.no_grad():
        model(input_ids=ids)  # warm-up (allocations, kernels)
        start = time.perf_counter()
        model(input_ids=ids)
        one_pass = time.perf_counter() - start
    batches = -(-len(prompt_lengths) // batch_size)
    passes = batches * min(steps or max_new_tokens, max_new_tokens)
    return passes * one_pass, passes, one_pass


def _label(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def run(args) -> int:
    import sys

    from diffusion_lm.checkpoint import load_checkpoint, resolve_device, resolve_dtype
    from diffusion_lm.conversion import ARSource, load_ar_model
    from diffusion_lm.evaluation.evaluators import AREvaluator, DecodingSettings, DiffusionEvaluator, ScoringSettings
    from diffusion_lm.evaluation.likelihood import read_text_documents, token_blocks
    from diffusion_lm.evaluation.model_card import update_model_card
    from diffusion_lm.evaluation.runner import evaluate_models, format_table, gsm8k_prompt_ids
    from diffusion_lm.evaluation.tasks import load_task, parse_task_list, task_spec_name

    _validate(args)
    specs = parse_task_list(args.tasks)  # unknown task names fail here, before any model loads
    device = resolve_device(args.device)  # a device this machine lacks: named, before anything loads
    dtype = resolve_dtype(args.dtype)
    progress = not args.no_progress
    start = time.perf_counter()
    settings = {
        "mc_samples": args.mc_samples,
        "estimator": args.estimator,
        "seed": args.seed,
        "steps": args.steps,
        "alg": args.alg,
        "kv_cache": args.kv_cache,  # None: the checkpoint's generation_config
        "threshold": args.threshold,
        "block_length": args.block_length,
        "limit": args.limit,
        "gsm8k_max_new_tokens": args.gsm8k_max_new_tokens,
        "ppl_block_size": args.ppl_block_size if args.ppl_data else None,
        "dtype": args.dtype,
        # the other decoding flags only when given: results saved before they existed still --resume
        **{spec.field: getattr(args, spec.field) for spec in DECODING_FLAGS
           if spec.field not in SETTINGS_DECODING_FIELDS and getattr(args, spec.field) != spec.default},
    }
    header = {"model": args.model, "ar_baseline": args.ar_baseline, "tasks": specs, "data_dir": args.data_dir,
              "ppl_data": args.ppl_data, "settings": settings}
    done = load_partial_results(args.output, header) if args.resume else None
    source = ARSource.parse(args.ar_baseline) if args.ar_baseline else None
    labels = (["AR " + _label(source.gguf_file or source.path)] if source else []) + ["diffusion " + _label(args.model)]
    finished = {label: set((done or {}).get("models", {}).get(label, {}).get("tasks", {})) for label in labels}
    remaining = [spec for spec in specs if any(task_spec_name(spec) not in finished[label] for label in labels)]
    if done is not None:
        print(f"resuming {args.output}: {len(specs) - len(remaining)} of {len(specs)} tasks finished", file=sys.stderr)

    task_examples = {task_spec_name(spec): load_task(spec, args.data_dir, args.limit) for spec in remaining}

    model, tokenizer = load_checkpoint(args.model, dtype=args.dtype, device=device, what="--model")
    scoring = ScoringSettings(args.mc_samples, args.estimator, args.seed, batch_size=args.batch_size)
    decoding = DecodingSettings(seed=args.seed, **decoding_fields(args, model.generation_config))
    evaluators = {}
    if source is not None:
        ar_model, ar_tokenizer = load_ar_model(source, dtype=dtype)
        evaluators[labels[0]] = AREvaluator(ar_model.to(device), ar_tokenizer, batch_size=args.batch_size)
    evaluators[labels[-1]] = DiffusionEvaluator(model, tokenizer, scoring, decoding)

    blocks = None
    if args.ppl_data:
        # the diffusion tokenizer's ids for both models: the AR vocabulary is the same minus [MASK]
        max_blocks = args.ppl_max_blocks or args.limit
        blocks = token_blocks(read_text_documents(args.ppl_data), tokenizer, args.ppl_block_size, max_blocks)
        for evaluator in evaluators.values():
            vocab = evaluator.model.get_input_embeddings().num_embeddings
            if max(max(b) for b in blocks) >= vocab:
                raise ValueError(f"--ppl-data tokens fall outside the {evaluator.kind} model's vocabulary ({vocab})")
        settings["ppl_blocks"] = len(blocks)

    if "gsm8k" in task_examples and "gsm8k" not in finished[labels[-1]]:
        questions = task_examples["gsm8k"]
        seconds, passes, one_pass = estimate_generation(
            model, [len(gsm8k_prompt_ids(tokenizer, e.question)) for e in questions], args.gsm8k_max_new_tokens,
            args.steps, args.batch_size)
        print(f"gsm8k: {len(questions)} questions x {args.gsm8k_max_new_tokens} new tokens = {passes} forward passes "
              f"({one_pass:.2f} s each here, no cache): about {_duration(seconds)} for the diffusion model; --limit "
              "and --gsm8k-max-new-tokens shorten it", file=sys.stderr, flush=True)

    def save(partial: dict, complete: bool = False) -> None:
        if args.output:
            write_json(args.output, {**header, **partial, "complete": complete,
                                        "wall_seconds": round(time.perf_counter() - start, 1)})

    try:
        results = evaluate_models(
            evaluators,
            task_examples,
            likelihood_blocks=blocks,
            gsm8k_max_new_tokens=args.gsm8k_max_new_tokens,
            progress=progress,
            keep_outputs=args.keep_outputs,
            done=done,
            on_result=save,
        )
    except KeyboardInterrupt:
        if args.output and os.path.isfile(args.output):
            print(f"diffusion-lm eval: the finished tasks are saved in {args.output}; rerun with --resume to continue",
                  file=sys.stderr)
        raise
    for label, entry in results["models"].items():  # the saved order of tasks: as asked
        entry["tasks"] = {task_spec_name(spec): entry["tasks"][task_spec_name(spec)] for spec in specs
                          if task_spec_name(spec) in entry["tasks"]}
    results = {**header, **results, "complete": True, "wall_seconds": round(time.perf_counter() - start, 1)}
    print(format_table(results))
    if args.output:
        write_json(args.output, results)
        print(f"results written to {args.output}")
    if args.update_card:
        diffusion_entry = results["models"][labels[-1]]
        update_model_card(args.model, diffusion_entry["tasks"], settings)
        print(f"model-index of {os.path.join(args.model, 'README.md')} updated")
    return 0
