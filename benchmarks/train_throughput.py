"""Training throughput and peak memory: diffusion training vs plain causal-LM training of the same model and batch.

Phases, each measured in a fresh process so peak memory is its own:
  causal-lm          the AR model with its usual shifted next-token loss (the baseline)
  diffusion-anneal   diffusion objective during attention annealing (ratio 0.5: an L x L mask per sequence)
  diffusion          diffusion objective after annealing (bidirectional, no L x L mask); the LM head runs only on
                     the masked positions, in chunks recomputed in backward (the library's training path)
  diffusion-full-logits  the same loss from logits at every position (the computation before that change; full
                     attention only)
  diffusion-keep-ar  block diffusion as `diffusion-lm adapt` trains it by default: token-causal context, AR loss
                     (weight 1) and distillation (weight 0.5) from a frozen copy of the AR weights (block mode only)
  diffusion-keep-ar-lora  the same with a LoRA adapter (rank 32) over the frozen base; the teacher is the model with
                     its adapter disabled (no second copy of the weights)
The diffusion model trains the objective of --attention-mode: block diffusion (the default, as `diffusion-lm adapt`:
noise per block of --diffusion-block-size, one pass over [noisy ; clean]) or bidirectional (the paper's full attention).
Prints tokens/s and memory, and their ratios against the baseline measured in the same run: the peak during the timed
steps, and the step's own memory (that peak minus what stays held between steps once the warm-up has run: weights,
optimizer state, batches - the same for every phase; what is left is activations, logits and gradients). The quality
line is the loss of the first batch against the full-logits computation on the same corruption (they must agree).

    python benchmarks/train_throughput.py                       # tiny LLaMA-shaped model, CPU, ~1 min
    python benchmarks/train_throughput.py --attention-mode bidirectional    # the paper's full-attention objective
    python benchmarks/train_throughput.py --base embedded --block-size 256 --batch-size 4 --steps 6
    python benchmarks/train_throughput.py --base embedded --block-size 256 --batch-size 4 --gradient-checkpointing
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import time

import torch

PHASES = ("causal-lm", "diffusion-anneal", "diffusion", "diffusion-full-logits")
# block diffusion that keeps the AR model (issue 21, the default recipe): token-causal context, the AR loss on the clean
# stream and distillation from the frozen AR base, whose top-64 next-token distributions are computed every step by a
# frozen copy of the weights (full fine-tuning) or by the model itself with its LoRA adapter disabled
KEEP_AR_PHASES = ("diffusion-keep-ar", "diffusion-keep-ar-lora")


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak_rss() -> None:
    """Linux: set the process's peak RSS (VmHWM) to its current RSS, so the peak that follows is the steps' own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024  # kB -> MiB


def full_logits_loss(model, input_ids, maskable, noise_levels, draws):
    """The diffusion loss from logits at every position (the pre-chunking computation), for comparison."""
    from diffusion_lm.modeling.corruption import mask_tokens
    from diffusion_lm.modeling.diffusion_loss import masked_diffusion_loss

    noisy, is_masked = mask_tokens(input_ids, maskable, noise_levels, model.config.mask_token_id, draws=draws)
    return masked_diffusion_loss(model(input_ids=noisy).logits, input_ids, is_masked, noise_levels, maskable)


def build_models(args):
    """(AR model, diffusion model) with identical weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from diffusion_lm.conversion import ARSource, convert_ar_model, load_ar_model

    if args.base:
        from diffusion_lm.embedded import require_embedded_gguf

        base = require_embedded_gguf() if args.base == "embedded" else args.base
        ar, tokenizer = load_ar_model(ARSource.parse(base))
    else:
        from transformers import PreTrainedTokenizerFast
        from tokenizers import Tokenizer, models

        torch.manual_seed(0)
        vocab = {f"w{i}": i for i in range(8192)}
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")),
                                            eos_token="w1", pad_token="w0")
        config = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)
        ar = LlamaForCausalLM(config)
    ar.set_attn_implementation(args.attn)
    diffusion, tokenizer = convert_ar_model(ar, tokenizer)
    diffusion.set_attn_implementation(args.attn)
    # the objective the model's config names (what `diffusion-lm adapt --attention-mode` sets)
    diffusion.config.attention_mode = args.attention_mode
    diffusion.config.diffusion_block_size = args.diffusion_block_size if args.attention_mode == "block" else None
    return ar, diffusion, tokenizer


def run_phase(phase: str, args, queue) -> None:
    from diffusion_lm.modeling.corruption import maskable_positions
    from diffusion_lm.objective import ObjectiveSettings, diffusion_objective

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ar, diffusion, tokenizer = build_models(args)
    model = (ar if phase == "causal-lm" else diffusion).to(device).train()
    del ar, diffusion  # only the measured model stays alive
    teacher = None
    if phase in KEEP_AR_PHASES:
        from diffusion_lm.distillation import ARTeacher

        model.config.context_attention = "causal"
        if phase == "diffusion-keep-ar-lora":
            from diffusion_lm.adapt_run import with_lora_adapter

            model = with_lora_adapter(model, 32).train()
        teacher = ARTeacher.of(model)  # the frozen copy (or the adapter switch) exists from before the first step
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size - 1
    batches = [torch.randint(2, vocab, (args.batch_size, args.block_size), generator=generator).to(device)
               for _ in range(args.steps + args.warmup)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def noise(input_ids, index):
        draw = torch.Generator().manual_seed(index)
        # one level per sequence (full attention) or per block of each sequence (block diffusion)
        shape = (input_ids.shape[0],) if args.attention_mode != "block" else \
            (input_ids.shape[0], input_ids.shape[1] // args.diffusion_block_size)
        levels = (1e-3 + (1 - 1e-3) * torch.rand(shape, generator=draw)).to(device)
        return levels, torch.rand(input_ids.shape, generator=draw).to(device)

    def diffusion_loss(input_ids, index, full_logits=False):
        maskable = maskable_positions(None, input_ids)
        levels, draws = noise(input_ids, index)
        if full_logits:
            return full_logits_loss(model, input_ids, maskable, levels, draws)
        settings = ObjectiveSettings(model.config.mask_token_id)
        soft_targets = None
        if teacher is not None:
            settings = ObjectiveSettings(model.config.mask_token_id, distill_weight=0.5, ar_weight=1.0)
            soft_targets = teacher.next_token_distributions(input_ids)
        return diffusion_objective(model, input_ids, maskable, settings, noise_levels=levels, mask_draws=draws,
                                   anneal_ratio=0.5 if phase == "diffusion-anneal" else None, soft_targets=soft_targets)

    def step(input_ids, index):
        with autocast:
            if phase == "causal-lm":
                loss = model(input_ids=input_ids, labels=input_ids).loss
            else:
                loss = diffusion_loss(input_ids, index, full_logits=phase == "diffusion-full-logits").loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    agreement = None
    if phase == "diffusion" and args.attention_mode != "block":  # same corruption, both computations, first
        with torch.no_grad(), autocast:
            agreement = abs(float(diffusion_loss(batches[0], 0).loss)
                            - float(diffusion_loss(batches[0], 0, full_logits=True).loss))
    for index, input_ids in enumerate(batches[: args.warmup]):
        step(input_ids, index)  # allocates the optimizer state, which then stays held
    if device.type == "cuda":
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        held = current_rss_mib()
        reset_peak_rss()
    start = time.perf_counter()
    for index, input_ids in enumerate(batches[args.warmup :], start=args.warmup):
        step(input_ids, index)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib()
    elapsed = time.perf_counter() - start
    queue.put({"phase": phase, "tokens_per_s": args.steps * args.batch_size * args.block_size / elapsed,
               "peak_mib": peak, "step_mib": peak - held, "agreement": agreement})


def phases_for(attention_mode: str) -> tuple[str, ...]:
    """The full-logits comparison exists for full attention only (block diffusion scores [noisy ; clean])."""
    if attention_mode != "block":
        return PHASES
    return tuple(p for p in PHASES if p != "diffusion-full-logits") + KEEP_AR_PHASES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="AR checkpoint (Hub id, dir, .gguf) or 'embedded'; default: tiny random LLaMA")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps; at least 1 (allocates optimizer state)")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (both phases)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3, help="phases alternate this many times; medians are shown")
    parser.add_argument("--attention-mode", default="block", choices=["block", "bidirectional"],
                        help="diffusion objective: block diffusion (default, as `diffusion-lm adapt`) or full "
                             "attention (the paper's)")
    parser.add_argument("--diffusion-block-size", type=int, default=16, help="positions per block (block mode)")
    parser.add_argument("--no-memory-pass", action="store_true",
                        help="CPU: skip the second pass that measures memory under a 64 KiB mmap threshold (memory "
                             "then comes from the timing pass)")
    parser.add_argument("--same-process", action="store_true",
                        help="run every phase in this process (a quick check that each runs; memory numbers then "
                             "include the earlier phases, and there is no memory pass)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step allocates the optimizer state")
    if args.attention_mode == "block" and (args.diffusion_block_size < 2 or args.block_size % args.diffusion_block_size):
        parser.error(f"--block-size {args.block_size} must be a multiple of --diffusion-block-size "
                     f"{args.diffusion_block_size} (>= 2)")
    phases = phases_for(args.attention_mode)

    context = mp.get_context("spawn")

    def measure(phase: str, environment: dict) -> dict:
        if args.same_process:
            import queue

            results = queue.SimpleQueue()
            run_phase(phase, args, results)
            return results.get()
        previous = {key: os.environ.get(key) for key in environment}
        os.environ.update(environment)  # read by the spawned interpreter's allocator at start
        try:
            queue = context.Queue()
            process = context.Process(target=run_phase, args=(phase, args, queue))
            process.start()
            result = queue.get()
            process.join()
            return result
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # On CPU a second pass measures memory with every allocation >= 64 KiB memory-mapped, so RSS follows the live
    # tensors instead of glibc's retained heap (which depends on the order of frees more than on what is alive);
    # tokens/s come from the first pass, under the default allocator.
    memory_pass = not args.device.startswith("cuda") and not (args.no_memory_pass or args.same_process)
    runs = {phase: [] for phase in phases}
    memory_runs = {phase: [] for phase in phases}
    for _ in range(args.rounds):  # alternating phases spreads machine noise evenly over them
        for phase in phases:
            runs[phase].append(measure(phase, {}))
            if memory_pass:
                memory_runs[phase].append(measure(phase, {"MALLOC_MMAP_THRESHOLD_": "65536"}))
    results = {}
    for phase in phases:
        memory_source = memory_runs[phase] if memory_pass else runs[phase]
        results[phase] = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs[phase])}
        for key in ("peak_mib", "step_mib"):
            results[phase][key] = statistics.median(r[key] for r in memory_source)

    base = results["causal-lm"]
    memory_kind = "peak CUDA MiB in steps" if args.device.startswith("cuda") else \
        "peak RSS MiB in steps" + (" (64 KiB mmap threshold)" if memory_pass else "")

    def ratio(value: float, baseline: float) -> str:
        return f"{value / baseline:.3f}" if baseline > 0 else "-"

    objective = "full attention" if args.attention_mode != "block" else f"block diffusion ({args.diffusion_block_size})"
    print(f"\nmedians of {args.rounds} rounds; model={args.base or 'tiny-llama(4x256)'} objective={objective} "
          f"device={args.device} attn={args.attn} "
          f"batch={args.batch_size}x{args.block_size} steps={args.steps} (after {args.warmup} warm-up) "
          f"gradient checkpointing={'on' if args.gradient_checkpointing else 'off'}")
    print(f"| phase | tokens/s | ratio vs causal-lm | {memory_kind} | ratio | step MiB (peak - held between steps) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for phase in phases:
        r = results[phase]
        print(f"| {phase} | {r['tokens_per_s']:.0f} | {ratio(r['tokens_per_s'], base['tokens_per_s'])} | "
              f"{r['peak_mib']:.0f} | {ratio(r['peak_mib'], base['peak_mib'])} | {r['step_mib']:.0f} | "
              f"{ratio(r['step_mib'], base['step_mib'])} |")
    if args.attention_mode != "block":
        agreement = max(r["agreement"] for r in runs["diffusion"])
        print(f"quality: |chunked masked-only loss - full-logits loss| on the same corruption = {agreement:.2e} nats")


if __name__ == "__main__":
    main()
