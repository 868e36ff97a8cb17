"""``diffusion-lm adapt``: with no arguments, the embedded offline default (SmolLM2-135M, self-sampled corpus)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    add = parser.add_argument
    add("--base", help="AR checkpoint: Hub id, directory or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    add("--dataset", help="Hub dataset name or local txt/json/jsonl/csv/parquet file(s) (default: embedded corpus)")
    add("--dataset-config", help="Hub dataset configuration name")
    add("--dataset-split", help="split to train on (default: train)")
    add("--text-column", help="column holding the documents (default: text)")
    add("--streaming", action="store_true", default=None, help="stream the dataset instead of downloading it")
    add("--eval-dataset", help="held-out text file(s) for the diffusion loss during/after training")
    add("--eval-steps", type=int, help="evaluate every N steps (needs --eval-dataset)")
    add("--eval-on-start", action="store_true", default=None, help="also evaluate before the first step")
    add("--eval-samples", type=int, help="held-out blocks to evaluate on (default 64)")
    add("--output-dir", help="where checkpoints and the final model go")
    add("--preset", help="adaptation preset from hub_configs/ (gpt2, gpt2-medium, Llama-2-7b, SmolLM2-135M) or a YAML path")
    add("--max-steps", type=int, help="optimizer steps")
    add("--anneal-steps", type=int, help="steps of attention-mask annealing (0 = bidirectional from the start)")
    add("--block-size", type=int, help="tokens per packed training sequence")
    add("--batch-size", type=int, help="sequences per device per step")
    add("--gradient-accumulation-steps", type=int)
    add("--learning-rate", type=float)
    add("--lr-scheduler-type", help="transformers scheduler name (cosine, constant, linear, ...)")
    add("--warmup-steps", type=int)
    add("--weight-decay", type=float)
    add("--loss-normalization", choices=["masked_tokens", "elbo"])
    add("--mask-token", help="add this string as the [MASK] token (default <|mdm_mask|>)")
    add("--reuse-mask-token-id", type=int, help="use an existing token id as [MASK] (e.g. 10541 for GPT-2, 811 for LLaMA)")
    add("--attn-implementation", choices=["eager", "sdpa", "flash_attention_2"])
    add("--attention-mode", choices=["bidirectional", "block"],
        help="block (default): block diffusion, bidirectional inside blocks of --diffusion-block-size positions and "
             "causal across them; bidirectional: full-attention diffusion (the paper's objective)")
    add("--diffusion-block-size", type=int,
        help="positions per block with --attention-mode block (default 16; divides --block-size)")
    add("--no-shift", dest="shift", action="store_false", default=None,
        help="ablation: read each position's prediction at that position instead of one to the left (the AR shift)")
    add("--from-scratch", action="store_true", default=None,
        help="ablation: random initialisation of the base's architecture instead of its weights")
    add("--bf16", action="store_true", default=None, help="bf16 mixed precision (GPU)")
    add("--gradient-checkpointing", action="store_true", default=None)
    add("--seed", type=int)
    add("--logging-steps", type=int)
    add("--save-steps", type=int)
    add("--save-total-limit", type=int)
    add("--report-to", help="none, tensorboard, wandb, ...")
    add("--resume", nargs="?", const="latest",
        help="resume from the last checkpoint in --output-dir, or from the given checkpoint directory")
    add("--no-sample", action="store_true", help="skip the generated sample at the end")


def run(args: argparse.Namespace) -> int:
    from ..adapt import resolve_settings, run_adaptation

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "_run", "preset", "no_sample") and value is not None
    }
    if args.no_sample:
        overrides["sample_prompt"] = ""
    settings = resolve_settings(args.preset, overrides)
    summary = run_adaptation(settings)
    sample = summary.pop("sample", None)
    print(json.dumps(summary, indent=2, default=str))
    if sample is not None:
        print(f"\nSample from {settings.output_dir}:\n{sample}")
    return 0
