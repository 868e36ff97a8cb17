"""Score a diffusion LM (full checkpoint or LoRA adapter directory) on GSM8K: exact match after the last "####".

    python training/gsm8k/evaluate.py --model DIR [--limit 100] [--max-new-tokens 96] [--output results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gsm8k_common import default_data, load_gsm8k, score  # noqa: E402

from diffusion_lm.modeling.unmasking import ALG_NAMES  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", required=True, help="checkpoint or LoRA adapter directory")
    add("--data", default=default_data(), help="folder with test.jsonl, or the Hub id openai/gsm8k")
    add("--limit", type=int, help="first N test questions (default: all 1,319)")
    add("--format", choices=["auto", "chat", "plain"], default="auto")
    add("--max-new-tokens", type=int, default=96)
    add("--steps", type=int, help="diffusion decoding steps (default: one per new token)")
    add("--alg", default="confidence", choices=ALG_NAMES)
    add("--batch-size", type=int, default=8)
    add("--device")
    add("--output", help="write the results (with every generated answer) here")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")

    from diffusion_lm.checkpoint import default_device, load_checkpoint
    from diffusion_lm.chat_generation import configure_chat_generation

    model, tokenizer = load_checkpoint(args.model, device=args.device or default_device(), what="--model")
    configure_chat_generation(model.get_base_model() if hasattr(model, "get_base_model") else model, tokenizer)
    chat = args.format == "chat" or (args.format == "auto" and bool(tokenizer.chat_template))
    records = load_gsm8k(args.data, "test")[: args.limit]
    start = time.time()
    result = score(model, tokenizer, records, chat=chat, max_new_tokens=args.max_new_tokens, steps=args.steps,
                   batch_size=args.batch_size, alg=args.alg)
    result["seconds"] = round(time.time() - start, 1)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, **result}, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "outputs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
