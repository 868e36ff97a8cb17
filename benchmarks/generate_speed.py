"""Decoding speed and quality: the AR base's ``generate`` vs diffusion decoding {no cache, prefix, dual} x
{1, 2, 4 tokens per step; confidence threshold 0.9 and 0.7}, the entropy-bound rule, sub-blocks with a dual cache
(block-diffusion models), self-verified decoding (``verify="causal"``) and the model's own causal mode run as an AR
loop, all measured in one run, printed as tables of ratios. Every row runs on full-attention and block-diffusion
models (the grid is the model's: a block model decodes its own blocks, so its cache rows are none / prefix and its
"dual" rows use sub-blocks; a full-attention model's analogue of sub-blocks is a smaller ``block_length``).

Speed (per batch size): new tokens/s, ratio to the AR model's own ``generate`` (KV cache, greedy, same weights),
tokens per forward pass, and token agreement with the exact decode (no cache, one token per step) of the same prompts.
Quality (with ``--model``, a real adapted checkpoint): generative perplexity of continuations under the AR base,
distinct-2, agreement with the exact decode, and LAMBADA accuracy (``--lambada``) for the exact and the default
fast setting. All decoding is greedy; diffusion decodes in blocks of ``--block-length``.

    python benchmarks/generate_speed.py                                      # tiny random LLaMA: speed only
    python benchmarks/generate_speed.py --model runs/smollm2-enwiki --ar-base embedded \\
        --quality-data ../shared/data/corpus/enwiki/enwiki_validation.jsonl \\
        --lambada ../shared/data/eval/lambada_test_plain_text.txt             # the issue's full table
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

THRESHOLDS = (0.9, 0.7)
TOKENS_PER_STEP = (1, 2, 4)
CACHES = (None, "prefix", "dual")
ENTROPY_BOUNDS = (0.5, 2.0)
DRAFT_LENGTHS = (4, 8)
SUB_BLOCKS = (4, 8)


def is_block_model(model) -> bool:
    return getattr(model.config, "attention_mode", None) == "block"


def model_caches(block_model: bool) -> tuple:
    """The cache modes of the speed grid: a block model sees nothing after its block ('dual' needs sub-blocks)."""
    return CACHES[:2] if block_model else CACHES


def fast_cache(block_model: bool) -> str:
    return "prefix" if block_model else "dual"


def settings_grid(new_tokens: int, grid: str, block_model: bool = False) -> list[dict]:
    """Diffusion settings: every cache mode with 1/2/4 tokens per step and each threshold (steps = an upper bound)."""
    rows = []
    for cache in model_caches(block_model):
        for tps in TOKENS_PER_STEP:
            rows.append(dict(kv_cache=cache, steps=new_tokens // tps, threshold=None))
        for threshold in THRESHOLDS:
            rows.append(dict(kv_cache=cache, steps=new_tokens, threshold=threshold))
    if grid == "small":  # the exact decode, and the cached rows that matter for choosing defaults
        rows = [r for r in rows if r["kv_cache"] is None and r["steps"] == new_tokens and r["threshold"] is None
                or r["kv_cache"] is not None]
    return rows


def refresh_and_block_rows(new_tokens: int, block_length: int, block_model: bool = False,
                           model_block: int | None = None) -> list[dict]:
    """Batch-1 rows that pick the defaults: whole-sequence refresh per block (Fast-dLLM) against the incremental one,
    and smaller blocks, all at threshold 0.9. A block model's cache is exact (no refresh to choose) and its blocks are
    its own: its rows are sub-blocks with the dual cache instead."""
    if block_model:
        return [dict(kv_cache="dual", steps=new_tokens, threshold=0.9, sub_block_length=size)
                for size in SUB_BLOCKS if size < (model_block or 0)]
    rows = [dict(kv_cache=cache, steps=new_tokens, threshold=0.9, kv_cache_refresh="block") for cache in CACHES[1:]]
    rows += [dict(kv_cache="dual", steps=new_tokens, threshold=0.9, block_length=size)
             for size in (8, 16) if size < block_length]
    return rows


def new_rule_rows(new_tokens: int, block_model: bool, model_block: int | None = None) -> list[dict]:
    """The entropy-bound rule, sub-blocks (block models) and self-verified decoding, on the model's fast cache."""
    cache = fast_cache(block_model)
    rows = [dict(kv_cache=cache, steps=new_tokens, threshold=None, entropy_bound=bound) for bound in ENTROPY_BOUNDS]
    if block_model:
        rows += [dict(kv_cache="dual", steps=new_tokens, threshold=0.9, sub_block_length=size)
                 for size in SUB_BLOCKS if size < (model_block or 0)]
    lengths = [model_block] if block_model else DRAFT_LENGTHS
    rows += [dict(kv_cache=cache, steps=new_tokens, threshold=None, verify="causal", draft_length=k)
             for k in lengths]
    return rows


def label(setting: dict, new_tokens: int) -> str:
    cache = setting["kv_cache"] or "none"
    if setting.get("verify"):
        return f"{cache:<6} verify causal, draft {setting['draft_length']}"
    if setting.get("entropy_bound") is not None:
        return f"{cache:<6} entropy bound {setting['entropy_bound']}"
    if setting.get("sub_block_length") is not None:
        return f"{cache:<6} thr {setting['threshold']} sub-block {setting['sub_block_length']}"
    if "kv_cache_refresh" in setting or "block_length" in setting:
        extra = f"refresh {setting['kv_cache_refresh']}" if "kv_cache_refresh" in setting else \
            f"block {setting['block_length']}"
        return f"{cache:<6} thr {setting['threshold']} {extra}"
    if setting["threshold"] is not None:
        return f"{cache:<6} thr {setting['threshold']}"
    return f"{cache:<6} {new_tokens // setting['steps']} tok/step"


def parse_extra_setting(spec: str, new_tokens: int) -> dict:
    """``CACHE,TOKENS_PER_STEP`` or ``CACHE,thr=T[,block=N]`` (also ``ent=B``, ``sub=N``, ``verify=K``) -> {row name:
    generate kwargs}."""
    cache, *fields = spec.split(",")
    setting = dict(kv_cache=None if cache == "none" else cache, steps=new_tokens, threshold=None)
    for field in fields:
        key, _, value = field.partition("=")
        if not value:
            setting["steps"] = new_tokens // int(key)
        elif key == "thr":
            setting["threshold"] = float(value)
        elif key == "block":
            setting["block_length"] = int(value)
        elif key == "ent":
            setting["entropy_bound"] = float(value)
        elif key == "sub":
            setting["sub_block_length"] = int(value)
        elif key == "verify":
            setting.update(verify="causal", draft_length=int(value))
        else:
            raise ValueError(f"--quality-extra {spec!r}: unknown field {key!r} (TOKENS_PER_STEP, thr=T, block=N, "
                             "ent=B, sub=N, verify=K)")
    return {label(setting, new_tokens).strip(): setting}


def load_models(args):
    """(AR model, diffusion model, diffusion tokenizer, description)."""
    from diffusion_lm.conversion import ARSource, convert_ar_model, load_ar_model

    if args.model:
        from transformers import AutoModel, AutoTokenizer

        diffusion = AutoModel.from_pretrained(args.model, trust_remote_code=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=True)
        base = args.ar_base
        if base == "embedded":
            from diffusion_lm.embedded import require_embedded_gguf

            base = require_embedded_gguf()
        ar, _ = load_ar_model(ARSource.parse(base), dtype=torch.float32)
        return ar.eval(), diffusion.eval(), tokenizer, f"{args.model} (AR base {args.ar_base})"
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
    diffusion, tokenizer = convert_ar_model(ar, tokenizer)
    description = "tiny random LLaMA 4 x 256, vocab 8192 (speed only)"
    if args.random_block_size:
        diffusion.config.attention_mode = "block"
        diffusion.config.diffusion_block_size = args.random_block_size
        description += f", block diffusion in blocks of {args.random_block_size}"
    return ar.eval(), diffusion.eval(), tokenizer, description


def text_prompts(path: str | None, tokenizer, count: int, length: int, vocab_size: int, seed: int) -> torch.Tensor:
    """(count, length) prompts: the first ``length`` tokens of documents in ``path`` (one JSON object with "text"
    per line, or plain text paragraphs), else random ids."""
    if path is None:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(3, vocab_size - 1, (count, length), generator=generator)
        ids[:, 0] = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 1
        return ids
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"] if path.endswith(".jsonl") else line
            ids = tokenizer(text, add_special_tokens=True)["input_ids"]
            if len(ids) >= length:
                rows.append(ids[:length])
            if len(rows) == count:
                break
    if len(rows) < count:
        raise ValueError(f"{path}: only {len(rows)} documents have {length} tokens; {count} are needed")
    return torch.tensor(rows)


@torch.no_grad()
def ar_generate(ar, prompts, new_tokens, pad_id):
    return ar.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id)


@torch.no_grad()
def diffusion_generate(model, prompts, new_tokens, block_length, setting, details: dict | None = None):
    """(sequences, mean tokens per forward). A block-diffusion model decodes its own blocks: ``block_length`` is
    dropped for it. ``details`` receives the mean accepted tokens per verification of a ``verify`` row."""
    setting = dict(setting)
    if is_block_model(model):
        setting.pop("block_length", None)
    else:
        setting.setdefault("block_length", block_length)
    # named in every call (which also sets a checkpoint's default verify aside): main() fixes the order
    setting.setdefault("alg", getattr(model.generation_config, "alg", None) or "confidence")
    out = model.generate(prompts, max_new_tokens=new_tokens, temperature=0.0, eos_token_id=None,
                         return_dict_in_generate=True, **setting)
    if details is not None and out.accepted_per_verification is not None:
        details["accepted_per_verification"] = float(out.accepted_per_verification.mean())
    return out.sequences, float(out.tokens_per_forward.mean())


@torch.no_grad()
def causal_mode_generate(model, prompts, new_tokens):
    """The diffusion model's own causal mode (``attention_mode="causal"`` as a pattern) decoded greedily as an AR loop
    over a KV cache, one token per forward, [MASK] never chosen: what ``verify="causal"`` must reproduce."""
    from transformers import DynamicCache

    from diffusion_lm.modeling.attention_annealing import allowed_to_additive, attention_pattern

    batch, length = prompts.shape
    cache = DynamicCache()
    positions = torch.arange(length)[None].expand(batch, -1)
    mask = allowed_to_additive(attention_pattern("causal", positions, positions), model.dtype)
    logits = model(input_ids=prompts, attention_mask=mask, position_ids=positions, cache=cache,
                   logits_to_keep=1).logits[:, -1].float()
    tokens = [prompts]
    for i in range(new_tokens):
        logits[:, model.config.mask_token_id] = float("-inf")
        token = logits.argmax(dim=-1, keepdim=True)
        tokens.append(token)
        if i == new_tokens - 1:
            break
        position = torch.full((batch, 1), length + i)
        logits = model(input_ids=token, position_ids=position, cache=cache,
                       attention_mask=torch.zeros((1, 1, 1, length + i + 1), dtype=model.dtype)).logits[:, -1].float()
    return torch.cat(tokens, dim=1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@torch.no_grad()
def generative_perplexity(ar, sequences: torch.Tensor, prompt_length: int) -> float:
    """exp(mean NLL) of the continuations under the AR model, given their prompts."""
    total, count = 0.0, 0
    for row in sequences.split(8):
        logits = ar(input_ids=row).logits[:, prompt_length - 1:-1].float()
        targets = row[:, prompt_length:]
        total += torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="sum").item()
        count += targets.numel()
    return math.exp(total / count)


def distinct_2(sequences: torch.Tensor, prompt_length: int) -> float:
    bigrams, unique = 0, set()
    for row in sequences[:, prompt_length:].tolist():
        pairs = list(zip(row, row[1:]))
        bigrams += len(pairs)
        unique.update(pairs)
    return len(unique) / max(1, bigrams)


def agreement(sequences: torch.Tensor, reference: torch.Tensor, prompt_length: int) -> float:
    return float((sequences[:, prompt_length:] == reference[:, prompt_length:]).float().mean())


def quality_table(args, ar, diffusion, tokenizer, pad_id, chosen, prompt_length, new_tokens, results) -> None:
    """Generative perplexity under the AR base, distinct-2 and agreement with the exact decode, per setting."""
    prompts = text_prompts(args.quality_data, tokenizer, args.quality_samples, prompt_length, ar.config.vocab_size,
                           seed=0)
    quality_rows, reference = [], None
    for name, setting in chosen.items():
        outputs, tpfs = [], []
        for batch in prompts.split(8):
            sequences, tpf = diffusion_generate(diffusion, batch, new_tokens, min(args.block_length, new_tokens),
                                                setting)
            outputs.append(sequences)
            tpfs.append(tpf)
        sequences = torch.cat(outputs)
        reference = sequences if reference is None else reference
        quality_rows.append((name, generative_perplexity(ar, sequences, prompt_length),
                             distinct_2(sequences, prompt_length), agreement(sequences, reference, prompt_length),
                             sum(tpfs) / len(tpfs)))
        print("  quality row: | {} | {:.2f} | {:.3f} | {:.3f} | {:.2f} |".format(*quality_rows[-1]), flush=True)
    ar_sequences = torch.cat([ar_generate(ar, batch, new_tokens, pad_id) for batch in prompts.split(8)])
    results["quality"]["rows"] = quality_rows
    print(f"\nQuality: {args.quality_samples} continuations of {new_tokens} tokens after {prompt_length}-token "
          f"prompts from {args.quality_data}; perplexity under the AR base (greedy AR decode of the same prompts: "
          f"{generative_perplexity(ar, ar_sequences, prompt_length):.2f})")
    print("| diffusion setting | gen. perplexity | distinct-2 | agreement with exact | tokens/forward |")
    print("|---|---:|---:|---:|---:|")
    for name, ppl, d2, agree, tpf in quality_rows:
        print(f"| {name} | {ppl:.2f} | {d2:.3f} | {agree:.3f} | {tpf:.2f} |")



def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="adapted diffusion checkpoint directory (default: a tiny random model)")
    parser.add_argument("--ar-base", default="embedded", help="its AR base: 'embedded', a directory or a .gguf")
    parser.add_argument("--random-block-size", type=int, default=None,
                        help="without --model: make the tiny random model a block-diffusion model of these blocks")
    parser.add_argument("--prompt-length", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 8],
                        help="speed tables to measure (none: only the quality tables)")
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--grid", choices=["full", "small", "smallest"], default="full",
                        help="small: skip the slow uncached multi-token rows; smallest: the exact decode, the fast "
                             "default and one row of each new rule (verify, entropy bound, sub-blocks)")
    parser.add_argument("--batched-caches", default="none,prefix,dual",
                        help="cache modes timed at batch sizes > 1 (uncached batches of 8 x 512 positions take hours "
                             "on a CPU); agreement needs 'none' (the exact decode)")
    parser.add_argument("--speed-data", help="prompts for the speed table (default: --quality-data, else random)")
    parser.add_argument("--quality-data", help="enwiki-style .jsonl whose documents give the quality prompts")
    parser.add_argument("--quality-samples", type=int, default=64)
    parser.add_argument("--quality-prompt-length", type=int, default=None, help="default: --prompt-length")
    parser.add_argument("--quality-new-tokens", type=int, default=None, help="default: --new-tokens")
    parser.add_argument("--quality-settings", default="exact,default",
                        help="comma list of settings for the quality table: exact, default, all")
    parser.add_argument("--default", default="dual,0.9", help="the default fast setting: CACHE,THRESHOLD")
    parser.add_argument("--quality-extra", default="",
                        help="more quality rows separated by ';': 'CACHE,TOKENS_PER_STEP' or 'CACHE,thr=T[,block=N]', "
                             "with ent=B (entropy bound), sub=N (sub-blocks), verify=K (draft length) "
                             "(e.g. 'dual,4;dual,thr=0.9,block=8;dual,verify=8;prefix,thr=0.9,sub=4')")
    parser.add_argument("--lambada", help="LAMBADA test file (one passage a line) for the exact and default setting")
    parser.add_argument("--lambada-limit", type=int, default=None, help="first N items (default: all 5,153)")
    parser.add_argument("--lambada-start", type=int, default=0,
                        help="skip the first N items (to split the file across processes: --lambada-limit / "
                             "--lambada-start shards; accuracies combine weighted by their item counts)")
    parser.add_argument("--alg", default=None,
                        help="unmasking order of every diffusion row (default: the checkpoint's generation_config "
                             "alg, else confidence)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.new_tokens % 4 or args.new_tokens % min(args.block_length, args.new_tokens):
        parser.error("--new-tokens must be a multiple of 4 and of --block-length")
    if args.threads:
        torch.set_num_threads(args.threads)
    cache_default, threshold_default = args.default.split(",")
    default_setting = dict(kv_cache=None if cache_default == "none" else cache_default, steps=args.new_tokens,
                           threshold=float(threshold_default))

    ar, diffusion, tokenizer, description = load_models(args)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    block_model = is_block_model(diffusion)
    # every row decodes in one order: --alg, else the checkpoint's own (left_to_right for causal-context models)
    order = args.alg or (getattr(diffusion.generation_config, "alg", None) if args.model else None) or "confidence"
    diffusion.generation_config.alg = order
    model_block = getattr(diffusion.config, "diffusion_block_size", None) if block_model else None
    if block_model and default_setting["kv_cache"] == "dual":  # a block model's fast cache is its exact prefix cache
        default_setting["kv_cache"] = "prefix"
    grid = settings_grid(args.new_tokens, args.grid, block_model)
    extra_rows = new_rule_rows(args.new_tokens, block_model, model_block)
    if args.grid == "smallest":
        grid = [grid[0], dict(default_setting)]
        extra_rows = [extra_rows[0], extra_rows[-1]] + [r for r in extra_rows if r.get("sub_block_length")][:1]
    results = {"model": description, "threads": torch.get_num_threads(), "speed": {}, "quality": {}}
    blocks = f"its blocks of {model_block}" if block_model else f"block_length {args.block_length}"
    if block_model and getattr(diffusion.config, "context_attention", "block") == "causal":
        blocks += " (token-causal context: verify drafts and verifies in one forward per round)"
    print(f"model: {description} | threads {torch.get_num_threads()} | prompt {args.prompt_length} + "
          f"{args.new_tokens} new | {blocks} | greedy, {order} order", flush=True)

    # --- speed --------------------------------------------------------------------------------------------------
    for batch_size in args.batch_sizes:
        prompts = text_prompts(args.speed_data or args.quality_data, tokenizer, batch_size, args.prompt_length,
                               ar.config.vocab_size, seed=batch_size)
        ar_generate(ar, prompts[:, :8], 2, pad_id)  # warm-up (both model types: no block_length for block models)
        diffusion_generate(diffusion, prompts[:, :8], 4, 4, dict(steps=4))
        _, ar_seconds = timed(lambda: ar_generate(ar, prompts, args.new_tokens, pad_id))
        ar_rate = batch_size * args.new_tokens / ar_seconds
        # the diffusion model's own causal mode as an AR loop: the decode verify="causal" must reproduce
        causal_reference, causal_seconds = timed(lambda: causal_mode_generate(diffusion, prompts, args.new_tokens))
        causal_rate = batch_size * args.new_tokens / causal_seconds
        rows, reference = [], None
        allowed = {None if c == "none" else c for c in args.batched_caches.split(",")}
        batch_grid = [s for s in grid if s["kv_cache"] in allowed] if batch_size > 1 else list(grid)
        if batch_size == 1 and args.grid != "smallest":
            batch_grid += refresh_and_block_rows(args.new_tokens, args.block_length, block_model, model_block)
        batch_grid += [s for s in extra_rows if s not in batch_grid]
        exact_first = batch_grid[0]["kv_cache"] is None and batch_grid[0]["threshold"] is None \
            and batch_grid[0]["steps"] == args.new_tokens
        for setting in batch_grid:
            details = {}
            (sequences, tpf), seconds = timed(lambda: diffusion_generate(diffusion, prompts, args.new_tokens,
                                                                         args.block_length, setting, details))
            if reference is None and exact_first:  # the first row is the exact decode
                reference = sequences
            rate = batch_size * args.new_tokens / seconds
            identical = ("yes" if torch.equal(sequences, causal_reference) else "no") if setting.get("verify") else "-"
            rows.append((label(setting, args.new_tokens), rate, rate / ar_rate, tpf,
                         agreement(sequences, reference, args.prompt_length) if reference is not None
                         else float("nan"), identical, details.get("accepted_per_verification", float("nan"))))
            print(f"  measured batch {batch_size} {rows[-1][0]}: {seconds:.1f} s", flush=True)
        results["speed"][batch_size] = {"ar_tokens_per_s": ar_rate, "causal_mode_tokens_per_s": causal_rate,
                                        "rows": rows}
        print(f"\nSpeed, batch {batch_size} (AR generate: {ar_rate:.1f} new tokens/s; the diffusion model's causal mode "
              f"as an AR loop: {causal_rate:.1f} new tokens/s, {causal_rate / ar_rate:.2f}x)")
        print(f"| {'diffusion setting':<34} | tokens/s | vs AR | tokens/forward | agreement with exact | "
              "identical to the causal greedy decode | accepted / verification |")
        print("|---|---:|---:|---:|---:|:---:|---:|")
        for name, rate, ratio, tpf, agree, identical, accepted in rows:
            accepted_text = "-" if math.isnan(accepted) else f"{accepted:.2f}"
            print(f"| {name:<34} | {rate:8.1f} | {ratio:5.2f}x | {tpf:14.2f} | {agree:20.3f} | {identical} | "
                  f"{accepted_text} |")
        print(flush=True)

    # --- quality ------------------------------------------------------------------------------------------------
    if not args.model:
        print("quality columns need --model (a real adapted checkpoint); a random model has none")
        return
    prompt_length = args.quality_prompt_length or args.prompt_length
    new_tokens = args.quality_new_tokens or args.new_tokens
    names = args.quality_settings.split(",")
    exact = dict(kv_cache=None, steps=new_tokens, threshold=None)
    if block_model and default_setting["kv_cache"] == "dual":
        default_setting["kv_cache"] = "prefix"
    chosen = {"exact (none, 1 tok/step)": exact,
              f"default ({default_setting['kv_cache']}, thr {default_setting['threshold']})":
                  dict(default_setting, steps=new_tokens)}
    for extra in filter(None, args.quality_extra.split(";")):
        for name, setting in parse_extra_setting(extra, new_tokens).items():
            if block_model and setting["kv_cache"] == "dual" and not setting.get("sub_block_length"):
                # a block model sees nothing after its block: its fast cache is the exact prefix cache
                setting["kv_cache"] = "prefix"
                name = label(setting, new_tokens).strip()
            chosen[name] = setting
    if "all" in names:
        chosen.update({label(s, args.new_tokens): dict(s, steps=s["steps"] * new_tokens // args.new_tokens)
                       for s in settings_grid(args.new_tokens, args.grid, block_model) + extra_rows})
    if args.quality_samples > 0:
        quality_table(args, ar, diffusion, tokenizer, pad_id, chosen, prompt_length, new_tokens, results)

    if args.lambada:
        from diffusion_lm.evaluation.evaluators import DecodingSettings, DiffusionEvaluator
        from diffusion_lm.evaluation.runner import run_lambada
        from diffusion_lm.evaluation.tasks import read_task_file

        examples = read_task_file("lambada", args.lambada, limit=args.lambada_limit)[args.lambada_start:]
        print(f"\nLAMBADA ({len(examples)} items from item {args.lambada_start}, greedy fill of the last word's tokens)")
        print("| diffusion setting | accuracy | seconds |")
        print("|---|---:|---:|")
        for name, setting in list(chosen.items())[:2]:
            decoding = DecodingSettings(steps=None, kv_cache=setting["kv_cache"], threshold=setting["threshold"])
            evaluator = DiffusionEvaluator(diffusion, tokenizer, decoding=decoding)
            result, seconds = timed(lambda: run_lambada(evaluator, examples, progress=False))
            results["quality"][f"lambada {name}"] = result
            print(f"| {name} | {100 * result['acc']:.2f} | {seconds:.0f} |", flush=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
