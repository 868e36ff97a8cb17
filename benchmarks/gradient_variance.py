"""Does low-discrepancy noise across a training batch lower the variance of the gradient?

For one fixed batch of held-out text, the gradient of the training loss (masked-token normalisation, full attention
after annealing, or the model's block objective) is computed --draws times with fresh noise for each of two samplers of
the noise levels t (one per sequence; for block-diffusion models, the default, one per block of each sequence):
  iid          t_i ~ U(eps, 1) independently
  stratified   one t from each of B (x blocks) equal strata of (eps, 1), shuffled (MDLM's low-discrepancy sampler)
and the table reports the total gradient variance (sum over parameters of the per-coordinate variance across draws),
its ratio to the squared norm of the mean gradient, and the spread of the loss itself.

    python benchmarks/gradient_variance.py --model runs/ablation/full --data ../shared/data/corpus/enwiki/enwiki_validation.jsonl
    python benchmarks/gradient_variance.py --model runs/diffusion-lm-adapt --data corpus.txt --batch-size 2 --draws 2
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="adapted diffusion checkpoint")
    parser.add_argument("--data", required=True, help="held-out text file (.jsonl / .json / .txt)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--draws", type=int, default=16, help="gradients per sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from diffusion_lm.checkpoint import load_checkpoint
    from diffusion_lm.evaluation.likelihood import read_text_documents, token_blocks
    from diffusion_lm.modeling.block_diffusion import sample_block_noise_levels
    from diffusion_lm.modeling.corruption import maskable_positions
    from diffusion_lm.modeling.noise_schedule import DEFAULT_EPS, sample_noise_levels
    from diffusion_lm.objective import ObjectiveSettings, block_diffusion_settings, diffusion_objective

    if args.draws < 2:
        raise SystemExit("--draws must be at least 2 (a variance needs two gradients)")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_checkpoint(args.model, dtype=torch.float32, device="cpu")
    model.train()
    settings = ObjectiveSettings(model.config.mask_token_id, normalization="masked_tokens", shift=model.config.shift)
    # block diffusion (the default objective) draws one level per block; full attention one per sequence
    diffusion_block = block_diffusion_settings(model.config)
    if diffusion_block is not None and args.block_size % diffusion_block:
        raise SystemExit(f"--block-size {args.block_size} must be a multiple of the model's diffusion block "
                         f"({diffusion_block})")

    def draw_levels(rows, stratified, generator):
        if diffusion_block is None:
            return sample_noise_levels(rows, DEFAULT_EPS, stratified=stratified, generator=generator)
        return sample_block_noise_levels(rows, args.block_size, diffusion_block, DEFAULT_EPS, stratified=stratified,
                                         generator=generator)

    blocks = token_blocks(read_text_documents(args.data), tokenizer, args.block_size, args.batch_size)
    ids = torch.tensor(blocks)
    maskable = maskable_positions(None, ids)
    parameters = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for name, stratified in (("iid", False), ("stratified", True)):
        generator = torch.Generator().manual_seed(args.seed)
        mean = [torch.zeros_like(p) for p in parameters]
        m2 = [torch.zeros_like(p) for p in parameters]
        losses = []
        started = time.perf_counter()
        for draw in range(args.draws):
            levels = draw_levels(len(ids), stratified, generator)
            model.zero_grad(set_to_none=True)
            output = diffusion_objective(model, ids, maskable, settings, noise_levels=levels, generator=generator)
            output.loss.backward()
            losses.append(float(output.loss.detach()))
            with torch.no_grad():  # Welford: running mean and sum of squared deviations per coordinate
                for p, mu, s in zip(parameters, mean, m2):
                    delta = p.grad - mu
                    mu += delta / (draw + 1)
                    s += delta * (p.grad - mu)
        variance = sum(float(s.sum()) for s in m2) / (args.draws - 1)
        mean_norm2 = sum(float((mu ** 2).sum()) for mu in mean)
        loss_mean = sum(losses) / len(losses)
        loss_sd = (sum((x - loss_mean) ** 2 for x in losses) / (len(losses) - 1)) ** 0.5
        rows.append((name, variance, mean_norm2, loss_mean, loss_sd, time.perf_counter() - started))
        print(f"[gradient_variance] {name}: total variance {variance:.4g}", flush=True)

    objective = "full attention" if diffusion_block is None else f"block diffusion, blocks of {diffusion_block}"
    print(f"\n{args.model} ({objective}): batch {len(ids)} x {args.block_size} tokens, {args.draws} noise draws per "
          "sampler\n")
    print("| sampler | total grad variance | vs iid | variance / |mean grad|^2 | loss mean | loss sd |")
    print("|---|---|---|---|---|---|")
    for name, variance, mean_norm2, loss_mean, loss_sd, _ in rows:
        print(f"| {name} | {variance:.4g} | {variance / rows[0][1]:.2f}x | {variance / mean_norm2:.2f} | "
              f"{loss_mean:.3f} | {loss_sd:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
