"""Instruction-tune a diffusion LM on GSM8K (reference format) with DiffusionSFTTrainer, and score it.

    python training/gsm8k/train.py --model DIR --output-dir DIR [--lora] [--train-limit N] [--max-steps N]
    accelerate launch training/gsm8k/train.py --model DIR --output-dir DIR ...

Before and after training it reports, on the first --eval-limit test questions: GSM8K exact match (greedy diffusion
decoding), the share of answers that end in "#### n", and the held-out diffusion loss of the reference answers
(ELBO per token, fixed noise seed). Results go to OUTPUT_DIR/gsm8k_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gsm8k_common import STYLES, default_data, load_gsm8k, score, sft_rows  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", required=True, help="diffusion checkpoint (e.g. the output of `diffusion-lm adapt`)")
    add("--output-dir", required=True)
    add("--data", default=default_data(), help="folder with train.jsonl/test.jsonl, or the Hub id openai/gsm8k")
    add("--style", choices=STYLES, default="calc", help="target: calculator annotations only (reference) or full")
    add("--format", choices=["auto", "chat", "plain"], default="auto",
        help="prompt through the chat template (chat) or 'Question: ...\\nAnswer:' (plain); auto: chat if available")
    add("--train-limit", type=int, help="first N training questions (default: all 7,473)")
    add("--eval-limit", type=int, default=100, help="first N test questions to score (default 100)")
    add("--heldout-limit", type=int, help="first N test answers for the held-out loss (default: --eval-limit)")
    add("--no-eval-before", action="store_true", help="skip the evaluation of the untuned model")
    add("--lora", action="store_true")
    add("--lora-r", type=int, default=16)
    add("--lora-alpha", type=int)
    add("--train-embeddings", action="store_true", help="with --lora: embeddings and LM head trained in full")
    add("--max-steps", type=int, default=-1)
    add("--epochs", type=float, default=3.0)
    add("--learning-rate", type=float, help="default 1e-4 with --lora, 2e-5 otherwise")
    add("--lr-scheduler-type", default="cosine")
    add("--warmup-steps", type=int, default=0)
    add("--batch-size", type=int, default=8)
    add("--gradient-accumulation-steps", type=int, default=1)
    add("--max-length", type=int, default=256)
    add("--loss-normalization", choices=["masked_tokens", "elbo"], default="masked_tokens")
    add("--eos-filler", choices=["random", "max_length", "longest"], default="random",
        help="EOS filler after answers: up to a random length <= --max-length (default), always --max-length, or "
             "only the batch's longest sequence (cheapest)")
    add("--max-new-tokens", type=int, default=96, help="answer canvas for scoring (calc answers are short)")
    add("--steps", type=int, help="diffusion decoding steps (default: one per new token)")
    add("--eval-batch-size", type=int, default=8)
    add("--bf16", action="store_true")
    add("--seed", type=int, default=0)
    add("--logging-steps", type=int, default=10)
    add("--report-to", default="none")
    args = parser.parse_args(argv)
    for flag in ("eval_limit", "batch_size", "max_length", "max_new_tokens", "eval_batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    for flag in ("train_limit", "heldout_limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def evaluate(trainer, tokenizer, test_records, heldout, args, chat: bool) -> dict:
    model = trainer.model
    was_training = model.training
    model.eval()
    start = time.time()
    result = score(model, tokenizer, test_records, chat=chat, max_new_tokens=args.max_new_tokens, steps=args.steps,
                   batch_size=args.eval_batch_size)
    metrics = trainer.evaluate(eval_dataset=heldout)
    model.train(was_training)
    return {
        "exact_match": result["exact_match"],
        "answered": result["answered"],
        "heldout_elbo": metrics["eval_elbo"],
        "heldout_loss_unweighted": metrics["eval_loss_unweighted"],
        "heldout_examples": len(heldout),
        "num_examples": result["num_examples"],
        "seconds": round(time.time() - start, 1),
        "samples": result["outputs"][:5],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from datasets import Dataset

    from diffusion_lm.checkpoint import load_checkpoint
    from diffusion_lm.sft import DiffusionSFTConfig, DiffusionSFTTrainer, lora_config_for

    model, tokenizer = load_checkpoint(args.model, what="--model")
    chat = args.format == "chat" or (args.format == "auto" and bool(tokenizer.chat_template))
    if chat and not tokenizer.chat_template:
        raise ValueError("--format chat needs a tokenizer with a chat template")
    train_records = load_gsm8k(args.data, "train")[: args.train_limit]
    test_all = load_gsm8k(args.data, "test")
    test_records = test_all[: args.eval_limit]
    train = Dataset.from_list(sft_rows(train_records, args.style, chat))
    heldout = Dataset.from_list(sft_rows(test_all[: args.heldout_limit or args.eval_limit], args.style, chat))

    config = DiffusionSFTConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate or (1e-4 if args.lora else 2e-5),
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_length=args.max_length,
        loss_normalization=args.loss_normalization,
        eos_filler=args.eos_filler,
        bf16=args.bf16,
        activation_checkpointing=False,
        seed=args.seed,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to=[] if args.report_to == "none" else args.report_to.split(","),
    )
    peft_config = lora_config_for(model, r=args.lora_r, alpha=args.lora_alpha,
                                  train_embeddings=args.train_embeddings) if args.lora else None
    trainer = DiffusionSFTTrainer(model, args=config, train_dataset=train, processing_class=tokenizer,
                                  peft_config=peft_config)
    trainer.dataset_names.append("openai/gsm8k")

    results = {"model": args.model, "style": args.style, "chat": chat, "train_examples": len(train),
               "eval_limit": len(test_records), "argv": sys.argv[1:] if argv is None else argv}
    if not args.no_eval_before:
        results["before"] = evaluate(trainer, tokenizer, test_records, heldout, args, chat)
        print(json.dumps({"before": {k: v for k, v in results["before"].items() if k != "samples"}}), flush=True)
    start = time.time()
    train_result = trainer.train()
    results["train"] = {"steps": train_result.global_step, "loss": train_result.training_loss,
                        "seconds": round(time.time() - start, 1)}
    trainer.save_model(args.output_dir)
    results["after"] = evaluate(trainer, tokenizer, test_records, heldout, args, chat)
    if trainer.is_world_process_zero():
        with open(os.path.join(args.output_dir, "gsm8k_results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        summary = {key: results[key] for key in ("before", "after") if key in results}
        for part in summary.values():
            part.pop("samples", None)
        print(json.dumps({"train": results["train"], **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
