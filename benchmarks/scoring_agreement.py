"""How much does the Monte-Carlo noise decide? Answer agreement between two seeds, per estimator and sample count.

For a real adapted checkpoint, every (estimator, samples) setting scores the same items twice, with seeds 0 and 1:
  multiple choice (--mc-task, default PIQA)  fraction of items whose chosen answer is the same under both seeds,
                                             accuracy (mean of the two seeds)
  LAMBADA continuation bound                 Pearson correlation of the per-item bound (nats of the target word
                                             given its passage) between the seeds, and the mean relative spread
                                             |a - b| / (a + b) * 2
  seconds per item                           scoring time per multiple-choice item (both choices), one seed
The table chooses the default sample count: the smallest count of the default estimator whose answers agree on at
least --target-agreement of the items.

    python benchmarks/scoring_agreement.py --model runs/ablation/full --data ../shared/data/eval --limit 100
    python benchmarks/scoring_agreement.py --model runs/diffusion-lm-adapt --data ../shared/data/eval --limit 4 \
        --estimators elbo --samples 2        # the default (block-diffusion) model, smallest setting
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

ESTIMATORS = ("levels", "elbo", "elbo_continuous")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="adapted diffusion checkpoint (directory or Hub id)")
    parser.add_argument("--data", required=True, help="folder with the local task files (../shared/data/eval)")
    parser.add_argument("--mc-task", default="piqa", help="multiple-choice task (piqa, siqa, winogrande)")
    parser.add_argument("--limit", type=int, default=100, help="items per task")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--samples", default="4,8,16,32", help="Monte-Carlo sample counts")
    parser.add_argument("--seeds", default="0,1", help="the two seeds compared")
    parser.add_argument("--batch-size", type=int, default=32, help="corrupted rows per forward pass")
    parser.add_argument("--target-agreement", type=float, default=0.95)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    args.estimators = [e for e in args.estimators.split(",") if e]
    args.samples = [int(s) for s in args.samples.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [e for e in args.estimators if e not in ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimator(s) {unknown}; choose from {ESTIMATORS}")
    if len(args.seeds) != 2:
        parser.error("--seeds takes exactly two seeds")
    if not os.path.isdir(args.data):
        parser.error(f"data folder not found: {args.data}")
    return args


def pearson(a: list[float], b: list[float]) -> float:
    n = len(a)
    mean_a, mean_b = sum(a) / n, sum(b) / n
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    return cov / math.sqrt(var_a * var_b) if var_a and var_b else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from diffusion_lm.checkpoint import load_checkpoint
    from diffusion_lm.evaluation import DiffusionEvaluator, ScoringRequest, ScoringSettings, load_task, runner
    from diffusion_lm.evaluation.evaluators import context_token_ids, continuation_token_ids

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_checkpoint(args.model, dtype=torch.float32, device="cpu")  # full attention or block
    choices = load_task(args.mc_task, args.data, limit=args.limit)
    lambada = load_task("lambada", args.data, limit=args.limit)
    lambada_requests = [ScoringRequest.from_parts(context_token_ids(tokenizer, e.context),
                                                  continuation_token_ids(tokenizer, " " + e.target))
                        for e in lambada]
    keys = [(i,) for i in range(len(lambada_requests))]
    rows = []
    for estimator in args.estimators:
        for samples in args.samples:
            answers, accuracies, bounds = [], [], []
            started = time.perf_counter()
            for index, seed in enumerate(args.seeds):
                evaluator = DiffusionEvaluator(model, tokenizer, ScoringSettings(samples, estimator, seed,
                                                                                 batch_size=args.batch_size))
                result = runner.run_multiple_choice(evaluator, choices, progress=False)
                if index == 0:
                    seconds = (time.perf_counter() - started) / len(choices)
                answers.append(result["predictions"])
                accuracies.append(result["acc"])
                bounds.append([s.total for s in evaluator.score(lambada_requests, keys)])
            agree = sum(a == b for a, b in zip(*answers)) / len(choices)
            spread = sum(abs(a - b) / (a + b) * 2 for a, b in zip(*bounds) if a + b > 0) / len(bounds[0])
            rows.append(dict(estimator=estimator, samples=samples, agreement=agree,
                             accuracy=sum(accuracies) / 2, lambada_corr=pearson(*bounds), lambada_spread=spread,
                             seconds=seconds))
            print(f"[scoring_agreement] {estimator} x {samples}: agreement {agree:.1%}, "
                  f"LAMBADA r {rows[-1]['lambada_corr']:.3f}", flush=True)

    print(f"\n{args.model}: {args.mc_task} ({len(choices)} items) and LAMBADA ({len(lambada)} passages), seeds "
          f"{args.seeds[0]} vs {args.seeds[1]}\n")
    print(f"| estimator | samples | {args.mc_task} answers agree | {args.mc_task} acc | LAMBADA bound r | "
          "LAMBADA rel. spread | s / item |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['estimator']} | {row['samples']} | {row['agreement']:.1%} | {row['accuracy']:.1%} | "
              f"{row['lambada_corr']:.3f} | {row['lambada_spread']:.1%} | {row['seconds']:.2f} |")
    for estimator in args.estimators:
        enough = [r["samples"] for r in rows if r["estimator"] == estimator
                  and r["agreement"] >= args.target_agreement]
        choice = f"{min(enough)} samples" if enough else f"none of {args.samples}"
        print(f"\n{estimator}: smallest sample count with >= {args.target_agreement:.0%} answer agreement: {choice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
