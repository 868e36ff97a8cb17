"""Adaptation studies at equal tokens: train variants of the method, evaluate them, print one table.

Every variant adapts the same AR base (default: the embedded SmolLM2-135M-Instruct GGUF) on the same enwiki shard,
with the same seed, data order, steps, batch, learning-rate schedule and annealing length, with `diffusion-lm adapt`
in OUT/<variant>/ (log in OUT/<variant>/train.log; resumable: rerun with --resume). Variants:
  full       full-attention masked diffusion, the paper's method (shift kept, causal mask annealed)
  block4     block diffusion, 4 positions per block (issue 10, docs/block_diffusion.md)
  block16    block diffusion, 16 positions per block
  no-anneal  the paper's ablations (issue 12, docs/ablation.md): full attention from the first step,
  no-shift   position j predicted at j instead of j - 1,
  scratch    the same architecture randomly initialised instead of the AR weights
  block4-causal    block 4 with token-causal context (the clean stream is the AR model itself; issue 21)
  block4-ar        ... plus the next-token (AR) loss on the clean stream (--ar-loss-weight 1)
  block4-teacher   ... plus distillation from the frozen AR base (--distill-weight 0.5)
  block4-lora      block4-teacher as a LoRA adapter (rank 32, lr 5x) over the frozen base, merged at the end
  block4-curriculum  block4-teacher with the block size grown 1 -> 2 -> 4 (a quarter, half of the steps)
  block16-teacher  block 16, causal context, AR loss, distillation, blocks grown 1 -> 4 -> 16 (thirds)
Then it evaluates every model and the AR base and prints a markdown table (also OUT/study.md, OUT/study.json):

  held-out ELBO   nats/token on enwiki_validation blocks (the training packing length), fixed noise seed (the same
                  draws for every model, so differences are paired), the objective each model was trained with
                  (block models: the block-diffusion bound); AR: exact NLL of the same tokens;
                  "gap closed" = (full - block) / (full - AR); "vs full" = model - full with the paired standard error
  LAMBADA, ROCStories   `diffusion-lm eval --tasks lambada,rocstories` (subprocess), with binomial / per-story
                  standard errors
  causal NLL      the model's causal mode (every position attends the earlier ones) scored as an AR model on the
                  held-out blocks: exact nats/token; what a causal verifier decodes with (issue 22)
  gen. PPL        perplexity under the AR base of --gen-samples continuations (--gen-new-tokens each) of held-out
                  prompts, greedy, each model's shipped decoding defaults at --threshold (block models: their own
                  blocks over the exact prefix cache; full attention: dual cache, blocks of 32); the AR base's row:
                  its own greedy continuations of the same prompts; with distinct-2 (unique bigrams / bigrams of
                  each continuation, averaged) and the mean tokens committed per forward pass
  decode tok/s    the same decoding, batch 1, prompt --speed-prompt + --speed-new tokens (tokens after an EOS are
                  not counted); AR base greedy with its KV cache as the reference

A column whose tool is missing or fails is skipped with a printed note; --columns picks columns.

    python training/adaptation_study.py --out runs/block-study                 # block study (hours on 2 CPU cores)
    python training/adaptation_study.py --out runs/ablation --variants full,no-anneal,no-shift,scratch \
        --columns elbo,lambada,rocstories                                      # the paper's ablation
    python training/adaptation_study.py --out runs/block-study --resume        # continue after an interruption
    python training/adaptation_study.py --out /tmp/smoke --max-steps 2 --eval-blocks 2 --mc-samples 1 \
        --eval-limit 4 --gen-samples 2 --gen-new-tokens 8 --speed-prompt 16 --speed-new 16   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

# variant -> the `diffusion-lm adapt` flags that distinguish it from the shared command
VARIANTS = {
    "full": ["--attention-mode", "bidirectional"],
    "block4": ["--attention-mode", "block", "--diffusion-block-size", "4"],
    "block16": ["--attention-mode", "block", "--diffusion-block-size", "16"],
    "no-anneal": ["--attention-mode", "bidirectional", "--anneal-steps", "0"],
    "no-shift": ["--attention-mode", "bidirectional", "--no-shift"],
    "scratch": ["--attention-mode", "bidirectional", "--from-scratch"],
    # issue 21: keep the AR model. {quarter}, {half}, {third}, {two_thirds}: that fraction of --max-steps
    "block4-causal": ["--attention-mode", "block", "--diffusion-block-size", "4", "--context-attention", "causal"],
    "block4-ar": ["--attention-mode", "block", "--diffusion-block-size", "4", "--context-attention", "causal",
                  "--ar-loss-weight", "1"],
    "block4-teacher": ["--attention-mode", "block", "--diffusion-block-size", "4", "--context-attention", "causal",
                       "--ar-loss-weight", "1", "--distill-weight", "0.5"],
    "block4-lora": ["--attention-mode", "block", "--diffusion-block-size", "4", "--context-attention", "causal",
                    "--ar-loss-weight", "1", "--distill-weight", "0.5", "--lora-r", "32", "--learning-rate", "5e-4"],
    "block4-curriculum": ["--attention-mode", "block", "--diffusion-block-size", "4", "--context-attention", "causal",
                          "--ar-loss-weight", "1", "--distill-weight", "0.5",
                          "--block-curriculum", "1:0,2:{quarter},4:{half}"],
    "block16-teacher": ["--attention-mode", "block", "--diffusion-block-size", "16", "--context-attention", "causal",
                        "--ar-loss-weight", "1", "--distill-weight", "0.5",
                        "--block-curriculum", "1:0,4:{third},16:{two_thirds}"],
}
DEFAULT_VARIANTS = ("full", "block4", "block16")
COLUMNS = ("elbo", "causal", "lambada", "rocstories", "genppl", "speed")
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--base", help="AR base: Hub id, directory or .gguf (default: the embedded SmolLM2-135M-Instruct GGUF)")
    add("--data", default=DEFAULT_DATA, help="the shared data folder (corpus/enwiki, eval/) (default ../shared/data)")
    add("--train-file", help="training text (default DATA/corpus/enwiki/enwiki_train-00-of-04.jsonl)")
    add("--out", default="runs/block-study", help="one sub-folder per variant, the table at the top")
    add("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    add("--columns", default=",".join(COLUMNS), help=f"comma-separated subset of {','.join(COLUMNS)}")
    add("--max-steps", type=int, default=300)
    add("--block-size", type=int, default=128, help="packed tokens per training sequence")
    add("--batch-size", type=int, default=4)
    add("--anneal-steps", type=int, default=50)
    add("--learning-rate", type=float, default=1e-4)
    add("--warmup-steps", type=int, default=20)
    add("--save-steps", type=int, default=50)
    add("--seed", type=int, default=0)
    add("--resume", action="store_true", help="continue unfinished runs from their last checkpoint")
    add("--skip-train", action="store_true", help="only evaluate the models already in OUT")
    add("--skip-eval", action="store_true", help="only train (evaluate later with --skip-train)")
    add("--eval-blocks", type=int, default=64, help="held-out blocks for the ELBO / NLL")
    add("--mc-samples", type=int, default=8, help="noise draws per held-out block for the ELBO")
    add("--eval-limit", type=int, default=200, help="examples per task for LAMBADA / ROCStories (0: every one)")
    add("--eval-mc-samples", type=int, default=8, help="Monte-Carlo samples of `diffusion-lm eval`")
    add("--gen-samples", type=int, default=64)
    add("--gen-new-tokens", type=int, default=64)
    add("--gen-prompt-tokens", type=int, default=32)
    add("--speed-prompt", type=int, default=256)
    add("--speed-new", type=int, default=256)
    add("--threshold", type=float, default=0.9, help="confidence threshold of block decoding (Fast-dLLM v2 rule)")
    add("--threads", type=int, help="torch CPU threads for the evaluation")
    add("--update", action="store_true",
        help="keep the other columns of OUT/study.json and replace only those evaluated now (--columns)")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.columns = [c for c in args.columns.split(",") if c]
    unknown = [v for v in args.variants if v not in VARIANTS] + [c for c in args.columns if c not in COLUMNS]
    if unknown:
        parser.error(f"unknown variant(s) / column(s) {unknown}")
    for name in args.variants:
        block = diffusion_block_size(name)
        if block and args.block_size % block:
            parser.error(f"--block-size {args.block_size} must be a multiple of {block} (variant {name})")
    args.train_file = args.train_file or os.path.join(args.data, "corpus", "enwiki", "enwiki_train-00-of-04.jsonl")
    args.validation_file = os.path.join(args.data, "corpus", "enwiki", "enwiki_validation.jsonl")
    for path in (args.train_file, args.validation_file):
        if not os.path.isfile(path):
            parser.error(f"data file not found: {path} (see --data)")
    return args


def diffusion_block_size(variant: str) -> int | None:
    flags = VARIANTS[variant]
    return int(flags[flags.index("--diffusion-block-size") + 1]) if "--diffusion-block-size" in flags else None


def note(message: str) -> None:
    print(f"[adaptation_study] {message}", flush=True)


# --- training -------------------------------------------------------------------------------------------------------
def adapt_command(args, variant: str, output_dir: str) -> list[str]:
    command = [sys.executable, "-m", "diffusion_lm.cli", "adapt",
               "--dataset", args.train_file, "--streaming", "--output-dir", output_dir,
               "--max-steps", str(args.max_steps), "--anneal-steps", str(args.anneal_steps),
               "--block-size", str(args.block_size), "--batch-size", str(args.batch_size),
               "--learning-rate", str(args.learning_rate), "--warmup-steps", str(args.warmup_steps),
               "--lr-scheduler-type", "cosine", "--save-steps", str(args.save_steps), "--logging-steps", "10",
               "--attn-implementation", "sdpa", "--seed", str(args.seed), "--no-sample"]
    if args.base:
        command += ["--base", args.base]
    return command + variant_flags(variant, args.max_steps)  # later flags win (a variant's --anneal-steps)


def variant_flags(variant: str, max_steps: int) -> list[str]:
    """The variant's flags, with curriculum steps as fractions of the run."""
    fractions = {"quarter": max_steps // 4, "half": max_steps // 2, "third": max_steps // 3,
                 "two_thirds": 2 * max_steps // 3}
    return [flag.format(**fractions) for flag in VARIANTS[variant]]


def finished_steps(output_dir: str) -> int | None:
    """Steps of the final model in ``output_dir`` (None when there is none yet)."""
    from diffusion_lm.training_record import TrainingInfo

    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        return None
    record = TrainingInfo.load(output_dir)
    return None if record is None else record.steps


def train(args, variant: str) -> None:
    output_dir = os.path.join(args.out, variant)
    if (finished_steps(output_dir) or 0) >= args.max_steps:
        note(f"{variant}: already trained ({output_dir})")
        return
    started_before = os.path.isdir(output_dir) and any(
        name.startswith("checkpoint-") or name == ".adapt_run.json" for name in os.listdir(output_dir))
    if started_before and not args.resume:
        raise SystemExit(f"{output_dir} holds an unfinished run: rerun with --resume, or remove it")
    command = adapt_command(args, variant, output_dir) + (["--resume"] if started_before else [])
    os.makedirs(output_dir, exist_ok=True)
    log_path = os.path.join(output_dir, "train.log")
    note(f"{variant}: training ({' '.join(command[1:])}), log {log_path}")
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code:
        with open(log_path, encoding="utf-8") as log:
            tail = log.read()[-2000:]
        raise SystemExit(f"{variant}: diffusion-lm adapt failed (exit {code}); end of {log_path}:\n{tail}")
    note(f"{variant}: trained in {time.time() - started:.0f} s")


# --- evaluation -----------------------------------------------------------------------------------------------------
def load_models(args, variants):
    import torch

    from diffusion_lm.checkpoint import load_checkpoint
    from diffusion_lm.conversion import ARSource, load_ar_model
    from diffusion_lm.embedded import require_embedded_gguf

    ar_model, _ = load_ar_model(ARSource.parse(args.base or require_embedded_gguf()), dtype=torch.float32)
    models = {}
    for variant in variants:
        directory = os.path.join(args.out, variant)
        if finished_steps(directory) is None:
            note(f"{variant}: no trained model in {directory}, left out of the table")
            continue
        model, tokenizer = load_checkpoint(directory)
        models[variant] = (model, tokenizer, directory)
    return ar_model.eval(), models


def heldout_blocks(args, tokenizer):
    from diffusion_lm.evaluation.likelihood import read_text_documents, token_blocks

    return token_blocks(read_text_documents(args.validation_file), tokenizer, args.block_size, args.eval_blocks)


def heldout_elbo(model, blocks, mc_samples: int, seed: int, batch_size: int = 8) -> dict:
    """Negative-ELBO bound in nats per predicted token (`diffusion_likelihood_bound`: the count-form estimator, fixed
    seed, so every model is scored on the same masks), with each block's value for paired comparisons. Block models
    are scored block by block over clean earlier blocks (their bound)."""
    from diffusion_lm.evaluation.likelihood import diffusion_likelihood_bound

    estimate = diffusion_likelihood_bound(model, blocks, mc_samples=mc_samples, seed=seed, batch_size=batch_size)
    return likelihood_entry(estimate, blocks)


def ar_nll(ar_model, blocks) -> dict:
    from diffusion_lm.evaluation.likelihood import ar_likelihood

    return likelihood_entry(ar_likelihood(ar_model, blocks), blocks)


def likelihood_entry(estimate, blocks) -> dict:
    from diffusion_lm.evaluation.runner import stderr

    per_block = [nll / (len(block) - 1) for nll, block in zip(estimate.per_sequence, blocks)]
    return {"nats_per_token": estimate.nll_per_token, "per_block": per_block, "mc_samples": estimate.mc_samples,
            "mc_std_error": estimate.std_error / estimate.num_tokens, "std_error": stderr(per_block)}


def run_eval_cli(args, directory: str, output: str, ar_baseline: bool) -> dict | None:
    tasks = ",".join(task for task in ("lambada", "rocstories") if task in args.columns)
    command = [sys.executable, "-m", "diffusion_lm.cli", "eval", "--model", directory, "--tasks", tasks,
               "--data-dir", os.path.join(args.data, "eval"), "--mc-samples", str(args.eval_mc_samples),
               "--seed", str(args.seed), "--output", output, "--no-progress"]
    if args.eval_limit:
        command += ["--limit", str(args.eval_limit)]
    if ar_baseline:
        from diffusion_lm.embedded import require_embedded_gguf

        command += ["--ar-baseline", args.base or require_embedded_gguf()]
    with open(output + ".log", "w", encoding="utf-8") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code or not os.path.isfile(output):
        note(f"`diffusion-lm eval` failed for {directory} (exit {code}, see {output}.log): LAMBADA / ROCStories skipped")
        return None
    with open(output, encoding="utf-8") as f:
        return json.load(f)["models"]


def decode_settings(threshold: float) -> dict:
    """Each model's shipped decoding defaults (what a user gets from a bare ``generate``) at one confidence threshold:
    block models decode their own blocks over the exact prefix cache; full-attention models use the fast-decoding
    defaults (dual cache, blocks of 32). ``steps=None``: the threshold decides how many tokens a forward commits."""
    return {"steps": None, "threshold": threshold}


def prompts_from(blocks, prompt_tokens: int, count: int):
    rows = [block[:prompt_tokens] for block in blocks]
    return [rows[i % len(rows)] for i in range(count)]


def generative_perplexity(model, ar_model, prompts, new_tokens: int, threshold: float, seed: int,
                          ar: bool = False) -> dict:
    """exp(mean NLL per generated token) of the continuations under the AR base (greedy decoding of each model; with
    ``ar`` the AR base's own greedy continuations), their distinct-2 and the tokens committed per forward pass."""
    import torch

    from diffusion_lm.evaluation.scoring import ScoringRequest, ar_span_scores

    requests, distinct, per_forward = [], [], []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([prompt])
            if ar:
                sequence = ar_generate(model, ids, new_tokens)[0]
                pad = None
            else:
                generator = torch.Generator().manual_seed(seed + i)
                output = model.generate(ids, max_new_tokens=new_tokens, generator=generator,
                                        return_dict_in_generate=True, **decode_settings(threshold))
                sequence = output.sequences[0]
                if getattr(output, "tokens_per_forward", None) is not None:
                    per_forward.append(float(output.tokens_per_forward[0]))
                pad = model.generation_config.pad_token_id
            scored = torch.zeros(len(sequence), dtype=torch.bool)
            scored[len(prompt):] = True
            if pad is not None:  # positions after an EOS are padding, not text
                scored &= sequence != pad
            if scored.any():
                requests.append(ScoringRequest(sequence, scored))
                distinct.append(distinct_2(sequence[scored].tolist()))
    scores = ar_span_scores(ar_model, requests)
    return {"gen_ppl": math.exp(sum(s.total for s in scores) / sum(s.num_tokens for s in scores)),
            "distinct_2": sum(distinct) / max(len(distinct), 1),
            "tokens_per_forward": sum(per_forward) / len(per_forward) if per_forward else None}


def distinct_2(tokens: list[int]) -> float:
    """Unique bigrams / bigrams of one continuation (1.0 for fewer than two tokens)."""
    bigrams = list(zip(tokens, tokens[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else 1.0


def causal_mode_nll(model, blocks) -> dict:
    """The diffusion model's causal mode scored as an AR model on ``blocks``: exact nats per predicted token."""
    import torch

    from diffusion_lm.evaluation.likelihood import ar_likelihood
    from diffusion_lm.modeling.attention_annealing import allowed_to_additive, attention_pattern

    class CausalMode(torch.nn.Module):  # the same weights, every position attending the ones before it
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, **kwargs):
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
            keys = None if attention_mask is None else attention_mask.bool()
            pattern = attention_pattern("causal", positions, positions, keys)
            additive = allowed_to_additive(pattern, self.inner.get_input_embeddings().weight.dtype)
            return self.inner(input_ids=input_ids, attention_mask=additive, **kwargs)

    return likelihood_entry(ar_likelihood(CausalMode(model).eval(), blocks), blocks)


def decode_speed(model, prompt, new_tokens: int, threshold: float | None = None, ar: bool = False) -> float:
    """New tokens per second, batch 1, after a short warm-up call."""
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        def run():
            if ar:
                return ar_generate(model, ids, new_tokens)
            return model.generate(ids, max_new_tokens=new_tokens, **decode_settings(threshold))
        warm_up = ids[:, : max(1, ids.shape[1] // 8)]  # compiles kernels and fills caches; short, not timed
        if ar:
            ar_generate(model, warm_up, 8)
        else:
            model.generate(warm_up, max_new_tokens=32, **decode_settings(threshold))
        start = time.perf_counter()
        output = run()
        seconds = time.perf_counter() - start
    new = (output.sequences if hasattr(output, "sequences") else output)[0, len(prompt):]
    pad = None if ar else model.generation_config.pad_token_id
    produced = int((new != pad).sum()) if pad is not None else len(new)  # after an EOS the rest is padding
    note(f"{'AR base' if ar else model.config.attention_mode}: {produced} tokens in {seconds:.1f} s")
    return produced / seconds


def ar_generate(ar_model, ids, new_tokens: int):
    # greedy with the KV cache, exactly new_tokens tokens (no early stop), the AR reference speed
    return ar_model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             attention_mask=ids.new_ones(ids.shape))


def evaluate(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ar_model, models = load_models(args, args.variants)
    if not models:
        raise SystemExit("no trained model to evaluate")
    tokenizer = next(iter(models.values()))[1]
    blocks = heldout_blocks(args, tokenizer)
    results = {"AR base": {}, **{variant: {} for variant in models}}
    if "elbo" in args.columns:
        results["AR base"]["heldout"] = ar_nll(ar_model, blocks)
        results["AR base"]["heldout_nats"] = results["AR base"]["heldout"]["nats_per_token"]
        for variant, (model, _, _) in models.items():
            results[variant]["heldout"] = heldout_elbo(model, blocks, args.mc_samples, args.seed)
            results[variant]["heldout_nats"] = results[variant]["heldout"]["nats_per_token"]
            note(f"{variant}: held-out ELBO {results[variant]['heldout_nats']:.3f} nats/token")
    if "causal" in args.columns:
        for variant, (model, _, _) in models.items():
            try:
                results[variant]["causal_nats"] = causal_mode_nll(model, blocks)["nats_per_token"]
                note(f"{variant}: causal-mode NLL {results[variant]['causal_nats']:.3f} nats/token")
            except Exception as error:
                note(f"{variant}: causal-mode NLL skipped ({type(error).__name__}: {error})")
    if "lambada" in args.columns or "rocstories" in args.columns:
        for index, (variant, (_, _, directory)) in enumerate(models.items()):
            entries = run_eval_cli(args, directory, os.path.join(args.out, variant, "eval.json"), ar_baseline=index == 0)
            for label, entry in (entries or {}).items():
                target = "AR base" if label.startswith("AR ") else variant
                tasks = entry.get("tasks", {})
                results[target]["lambada"] = tasks.get("lambada", {}).get("acc")
                results[target]["lambada_stderr"] = tasks.get("lambada", {}).get("acc_stderr")
                results[target]["rocstories_rougeL"] = tasks.get("rocstories", {}).get("rougeL")
                results[target]["rocstories_rougeL_stderr"] = tasks.get("rocstories", {}).get("rougeL_stderr")
    if "genppl" in args.columns:
        prompts = prompts_from(blocks, args.gen_prompt_tokens, args.gen_samples)
        results["AR base"].update(generative_perplexity(ar_model, ar_model, prompts, args.gen_new_tokens,
                                                        args.threshold, args.seed, ar=True))
        for variant, (model, _, _) in models.items():
            try:
                results[variant].update(generative_perplexity(model, ar_model, prompts, args.gen_new_tokens,
                                                              args.threshold, args.seed))
                note(f"{variant}: gen. PPL {results[variant]['gen_ppl']:.2f}, distinct-2 "
                     f"{results[variant]['distinct_2']:.3f}, tokens/forward {results[variant]['tokens_per_forward']}")
            except Exception as error:  # a decoding mode this checkout lacks: report, keep the other columns
                note(f"{variant}: generative perplexity skipped ({type(error).__name__}: {error})")
    if "speed" in args.columns:
        speed_blocks = heldout_blocks(argparse.Namespace(**{**vars(args), "block_size": args.speed_prompt,
                                                            "eval_blocks": 1}), tokenizer)
        prompt = speed_blocks[0]
        results["AR base"]["tokens_per_s"] = decode_speed(ar_model, prompt, args.speed_new, ar=True)
        for variant, (model, _, _) in models.items():
            try:
                results[variant]["tokens_per_s"] = decode_speed(model, prompt, args.speed_new, args.threshold)
            except Exception as error:
                note(f"{variant}: decoding speed skipped ({type(error).__name__}: {error})")
    return results


def paired_difference(row: dict, reference: dict) -> tuple[float, float] | None:
    """(mean, standard error) over the held-out blocks of row - reference, nats per token: the same blocks and
    the same masks, so the block-to-block spread of the text cancels."""
    mine, theirs = row.get("heldout", {}).get("per_block"), reference.get("heldout", {}).get("per_block")
    if not mine or not theirs or len(mine) != len(theirs):
        return None
    from diffusion_lm.evaluation.runner import stderr

    differences = [a - b for a, b in zip(mine, theirs)]
    return sum(differences) / len(differences), stderr(differences)


def table(results: dict, args) -> str:
    full_row = results.get("full", {})
    full = full_row.get("heldout_nats")
    ar = results["AR base"].get("heldout_nats")
    ar_speed = results["AR base"].get("tokens_per_s")

    def with_error(value, error, fmt, scale=1.0):
        if value is None:
            return None
        text = fmt.format(value * scale)
        return text + (f" ± {error * scale:.{1 if scale == 100 else 3}f}" if error else "")

    def heldout(label, row):
        kind = "exact " if label == "AR base" else "<= "
        return None if row.get("heldout_nats") is None else kind + with_error(
            row["heldout_nats"], row.get("heldout", {}).get("std_error"), "{:.3f}")

    def versus_full(label, row):
        difference = None if label == "full" else paired_difference(row, full_row)
        return None if difference is None else with_error(difference[0], difference[1], "{:+.3f}")

    def gap(label, row):
        nats = row.get("heldout_nats")
        if not label.startswith("block") or None in (full, ar, nats) or full == ar:
            return None
        return f"{(full - nats) / (full - ar):.0%}"

    def gap_to_ar(label, row):
        nats = row.get("heldout_nats")
        return None if label == "AR base" or None in (ar, nats) else f"{nats - ar:+.3f}"

    def number(key, fmt):
        return lambda label, row: None if row.get(key) is None else fmt.format(row[key])

    def speed_ratio(label, row):
        speed = row.get("tokens_per_s")
        return f"{speed / ar_speed:.2f}x" if speed and ar_speed else None

    columns = [
        ("held-out nats/token", heldout),
        ("gap to AR", gap_to_ar),
        ("vs full (paired)", versus_full),
        ("gap closed", gap),
        ("causal-mode NLL", number("causal_nats", "{:.3f}")),
        ("LAMBADA %", lambda label, row: with_error(row.get("lambada"), row.get("lambada_stderr"), "{:.1f}", 100)),
        ("ROCStories R-L %", lambda label, row: with_error(row.get("rocstories_rougeL"),
                                                          row.get("rocstories_rougeL_stderr"), "{:.1f}", 100)),
        ("gen. PPL", number("gen_ppl", "{:.2f}")),
        ("distinct-2", number("distinct_2", "{:.3f}")),
        ("tokens/forward", number("tokens_per_forward", "{:.2f}")),
        ("decode tok/s", lambda label, row: None if not row.get("tokens_per_s") else f"{row['tokens_per_s']:.1f}"),
        ("vs AR", speed_ratio),
    ]
    cells = {label: [render(label, row) for _, render in columns] for label, row in results.items()}
    shown = [i for i in range(len(columns)) if any(row[i] is not None for row in cells.values())]
    lines = ["| model | " + " | ".join(columns[i][0] for i in shown) + " |", "|---|" + "---|" * len(shown)]
    for label, row in cells.items():
        lines.append(f"| {label} | " + " | ".join("-" if row[i] is None else row[i] for i in shown) + " |")
    tokens = args.max_steps * args.batch_size * args.block_size
    lines.append("")
    trained = ("models as found in the output folder (--skip-train); " if args.skip_train else
               f"{args.max_steps} steps x {args.batch_size} x {args.block_size} tokens = {tokens} training tokens per "
               f"model, seed {args.seed}; ")
    lines.append(f"{trained}held-out: {args.eval_blocks} blocks of {args.block_size} tokens, "
                 f"{args.mc_samples} noise draws (count-form ELBO, fixed seed), ± = standard error over the blocks "
                 f"(LAMBADA / ROCStories: over the examples); gen. PPL: {args.gen_samples} greedy continuations of "
                 f"{args.gen_prompt_tokens} + {args.gen_new_tokens} tokens; decoding: shipped defaults, threshold "
                 f"{args.threshold}; speed: batch 1, prompt {args.speed_prompt} + {args.speed_new} new.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if not args.skip_train:
        for variant in args.variants:
            train(args, variant)
    if args.skip_eval:
        return 0
    results = evaluate(args)
    json_path = os.path.join(args.out, "study.json")
    if args.update and os.path.isfile(json_path):  # e.g. decoding speed measured later, alone on the machine
        with open(json_path, encoding="utf-8") as f:
            merged = json.load(f)["results"]
        for label, row in results.items():
            merged.setdefault(label, {}).update(row)
        results = merged
    text = table(results, args)
    print(text)
    with open(os.path.join(args.out, "study.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump({"settings": {k: v for k, v in vars(args).items()}, "results": results}, f, indent=2, default=str)
    note(f"table written to {os.path.join(args.out, 'study.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
