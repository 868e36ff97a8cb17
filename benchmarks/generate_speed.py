"""Generation speed: the AR base model's ``generate`` (KV cache, greedy) vs diffusion decoding of the converted model.

Same weights, same prompt, same number of new tokens, all measured in one run:
  ar generate (KV cache)    one forward pass per new token, each over one new position (plus the prompt once)
  diffusion steps=L         one forward pass per step over the whole sequence (no cache: attention is bidirectional)
  diffusion steps=L/4       four tokens committed per step
Prints new tokens/s and forward passes per token, with the ratio of each to the AR baseline.

    python benchmarks/generate_speed.py                          # tiny LLaMA-shaped model, CPU, offline, ~1 min
    python benchmarks/generate_speed.py --base embedded          # SmolLM2-135M from the embedded GGUF
    python benchmarks/generate_speed.py --base PATH_OR_GGUF --length 128 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build_models(args):
    """(AR model, diffusion model, tokenizer) with identical weights."""
    from diffusion_lm.conversion import ARSource, convert_ar_model, load_ar_model

    if args.base:
        if args.base == "embedded":
            from diffusion_lm.embedded import require_embedded_gguf

            base = require_embedded_gguf()
        else:
            base = args.base
        ar, tokenizer = load_ar_model(ARSource.parse(base), dtype=torch.float32)
    else:
        from tokenizers import Tokenizer, models
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

        torch.manual_seed(0)
        vocab = {f"w{i}": i for i in range(8192)}
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")),
                                            bos_token="w2", eos_token="w1", pad_token="w0")
        config = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                             bos_token_id=2, eos_token_id=1, pad_token_id=0)
        ar = LlamaForCausalLM(config)
    diffusion, tokenizer = convert_ar_model(ar, tokenizer)  # copies the weights: `ar` stays the AR model
    return ar.eval(), diffusion.eval(), tokenizer


class ForwardCounter:
    """Counts the top-level forward passes of a model."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1


def measure(run, counter: ForwardCounter, repeats: int, device) -> tuple[float, int]:
    """(median seconds, forward passes per run) of ``run()``, after one warm-up call."""
    run()
    times, passes = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        before = counter.calls
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        passes.append(counter.calls - before)
    return statistics.median(times), passes[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="AR checkpoint (Hub id, directory, .gguf path) or 'embedded' (SmolLM2-135M); "
                                       "default: a tiny random LLaMA-shaped model")
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--length", type=int, default=64, help="new tokens per sequence (L)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--alg", default="confidence", help="diffusion unmasking rule")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.length < 4 or args.length % 4:
        parser.error("--length must be a multiple of 4")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ar, diffusion, tokenizer = build_models(args)
    ar, diffusion = ar.to(device), diffusion.to(device)
    ar_counter, diffusion_counter = ForwardCounter(ar), ForwardCounter(diffusion)
    generator = torch.Generator().manual_seed(0)
    vocab = ar.config.vocab_size
    prompt = torch.randint(3, vocab, (args.batch_size, args.prompt_length), generator=generator)
    if tokenizer.bos_token_id is not None:
        prompt[:, 0] = tokenizer.bos_token_id
    prompt = prompt.to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    length = args.length

    @torch.no_grad()
    def ar_generate():
        # min_new_tokens: exactly L tokens, as diffusion always decodes L positions
        return ar.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=length,
                           min_new_tokens=length, do_sample=False, pad_token_id=pad_id)

    def diffusion_generate(steps):
        return lambda: diffusion.generate(prompt, max_new_tokens=length, steps=steps, alg=args.alg, temperature=0.0)

    rows = [("ar generate (KV cache)", length, ar_generate, ar_counter)]
    rows += [(f"diffusion steps={s}", s, diffusion_generate(s), diffusion_counter) for s in (length, length // 4)]
    results = []
    for name, steps, run, counter in rows:
        seconds, passes = measure(run, counter, args.repeats, device)
        results.append((name, steps, seconds, passes))

    new_tokens = args.batch_size * length
    if args.base == "embedded":
        from diffusion_lm.embedded import EMBEDDED_BASE_NAME

        base_name = f"{EMBEDDED_BASE_NAME} (embedded GGUF, dequantised to float32)"
    else:
        base_name = args.base or "tiny llama (4 x 256, vocab 8192, random)"
    print(f"\nmodel: {base_name} | device: {device} | threads: {torch.get_num_threads()} | batch {args.batch_size} | "
          f"prompt {args.prompt_length} | new tokens L={length} | diffusion alg {args.alg} | median of {args.repeats}")
    header = (f"{'method':<24} {'steps':>5} {'fwd passes':>10} {'passes/token':>12} {'time s':>8} "
              f"{'new tok/s':>10} {'tok/s vs AR':>11} {'passes vs AR':>12}")
    print(header)
    print("-" * len(header))
    ar_rate = new_tokens / results[0][2]
    ar_passes = results[0][3]
    for name, steps, seconds, passes in results:
        rate = new_tokens / seconds
        print(f"{name:<24} {steps:>5} {passes:>10} {passes / length:>12.2f} {seconds:>8.3f} {rate:>10.1f} "
              f"{rate / ar_rate:>10.2f}x {passes / ar_passes:>11.2f}x")


if __name__ == "__main__":
    main()
