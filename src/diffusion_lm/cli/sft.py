"""``diffusion-lm sft``: instruction-tune a diffusion LM with TRL's SFTTrainer, optionally with LoRA.

    diffusion-lm sft --model DIR --dataset PATH_OR_HUB_ID --output-dir DIR [--lora] [--max-steps N]

Local datasets: .json / .jsonl in alpaca (instruction/input/output[/history]), ShareGPT (``conversations``),
``messages``, prompt/completion or ``text`` form. Multi-GPU: ``accelerate launch -m diffusion_lm.cli sft ...``.
"""

from __future__ import annotations

import argparse
import json
import os


def add_arguments(parser: argparse.ArgumentParser, name: str = "sft") -> None:
    add = parser.add_argument
    add("--model", required=True, help="diffusion checkpoint (directory or Hub id), e.g. the output of `adapt`")
    add("--dataset", required=True, help="local .json/.jsonl file or Hub dataset name")
    add("--output-dir", required=True, help="where the model (or the LoRA adapter) and tokenizer are written")
    add("--dataset-config", help="Hub dataset configuration name")
    add("--dataset-split", default="train", help="split to train on (default train)")
    add("--eval-dataset", help="held-out file / Hub name: diffusion loss evaluated before and after training")
    add("--eval-split", default="test", help="split of a Hub --eval-dataset (default test)")
    add("--limit", type=int, help="train on the first N rows only")
    add("--format", choices=["auto", "chat", "plain"], default="auto",
        help="alpaca rows through the chat template (chat) or as plain text (plain); auto: chat when the tokenizer "
             "has a chat template")
    add("--lora", action="store_true", help="train a LoRA adapter (all linear layers) instead of the full model")
    add("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    add("--lora-alpha", type=int, help="LoRA alpha (default 2 x rank)")
    add("--lora-dropout", type=float, default=0.05)
    add("--train-embeddings", action="store_true",
        help="with --lora, train the input embeddings and LM head in full (modules_to_save), as the reference did")
    add("--merge", action="store_true",
        help="with --lora, write the merged full model to OUTPUT_DIR and keep the adapter in OUTPUT_DIR/adapter")
    add("--max-steps", type=int, default=-1, help="optimizer steps (default: --epochs over the data)")
    add("--epochs", type=float, default=3.0, help="epochs when --max-steps is not given (default 3)")
    add("--learning-rate", type=float, help="default 1e-4 with --lora, 2e-5 otherwise")
    add("--lr-scheduler-type", default="cosine")
    add("--warmup-steps", type=int, default=0)
    add("--weight-decay", type=float, default=0.0)
    add("--batch-size", type=int, default=8, help="sequences per device per step (default 8)")
    add("--gradient-accumulation-steps", type=int, default=1)
    add("--max-length", type=int, default=512, help="tokens per prompt + answer (longer ones are truncated)")
    add("--loss-normalization", choices=["masked_tokens", "elbo"], default="masked_tokens")
    add("--eos-filler", choices=["random", "max_length", "longest"], default="random",
        help="EOS filler after answers: up to a random length <= --max-length (default), always --max-length, or "
             "only the batch's longest sequence (cheapest)")
    add("--seed", type=int, default=0)
    add("--bf16", action="store_true", help="bf16 mixed precision")
    add("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
        help="recompute activations in backward (TRL's default; SmolLM2-135M with the README's flags peaks at 3.4 GB "
             "RSS instead of 13.7 GB; --no-gradient-checkpointing trades that memory for ~30%% speed)")
    add("--logging-steps", type=int, default=10)
    add("--save-steps", type=int, help="checkpoint every N steps (default: only the final model)")
    add("--report-to", default="none", help="none, tensorboard, wandb, ...")
    add("--push-to-hub", metavar="REPO_ID", help="push the result (adapter or model, with its card) to this Hub repo")


def _validate(args) -> None:
    for flag in ("batch_size", "gradient_accumulation_steps", "max_length", "lora_r", "logging_steps"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError("--max-steps must be a positive number of steps")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    if (args.train_embeddings or args.merge) and not args.lora:
        raise ValueError("--train-embeddings and --merge only apply with --lora")
    if not os.path.exists(args.model) and args.model.startswith((".", "/")):
        raise ValueError(f"model directory not found: {args.model}")


def run(args: argparse.Namespace) -> int:
    _validate(args)
    from ..sft import DiffusionSFTConfig, DiffusionSFTTrainer, load_sft_dataset, lora_config_for

    from ..checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(args.model, what="--model")
    chat = args.format == "chat" or (args.format == "auto" and bool(tokenizer.chat_template))
    if args.format == "chat" and not tokenizer.chat_template:
        raise ValueError("--format chat needs a tokenizer with a chat template")
    train = load_sft_dataset(args.dataset, split=args.dataset_split, chat=chat, config_name=args.dataset_config)
    if args.limit is not None:
        train = train.select(range(min(args.limit, len(train))))
    evaluation = None
    if args.eval_dataset:
        evaluation = load_sft_dataset(args.eval_dataset, split=args.eval_split, chat=chat,
                                      config_name=args.dataset_config)
    config = DiffusionSFTConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate or (1e-4 if args.lora else 2e-5),
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_length=args.max_length,
        loss_normalization=args.loss_normalization,
        eos_filler=args.eos_filler,
        seed=args.seed,
        bf16=args.bf16,
        activation_checkpointing=args.gradient_checkpointing,
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        eval_strategy="no",
        report_to=[] if args.report_to == "none" else args.report_to.split(","),
        # a merged run pushes the merged model at the end (below); Trainer's push would upload the adapter
        push_to_hub=bool(args.push_to_hub) and not args.merge,
        hub_model_id=args.push_to_hub,
    )
    peft_config = None
    if args.lora:
        peft_config = lora_config_for(model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                                      train_embeddings=args.train_embeddings)
    trainer = DiffusionSFTTrainer(model, args=config, train_dataset=train, eval_dataset=evaluation,
                                  processing_class=tokenizer, peft_config=peft_config)
    trainer.dataset_names.append(args.dataset)
    summary = {"model": args.model, "dataset": args.dataset, "train_rows": len(train), "lora": args.lora}
    if evaluation is not None:
        summary["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    summary["train_loss"] = result.training_loss
    summary["steps"] = result.global_step
    if evaluation is not None:
        summary["eval_loss_after"] = trainer.evaluate()["eval_loss"]
    # with --merge, OUTPUT_DIR is the full model that generate / chat / eval / push find there; the adapter is kept
    # in a sub-folder (push leaves it out)
    adapter_dir = os.path.join(args.output_dir, "adapter") if args.merge else args.output_dir
    trainer.save_model(adapter_dir)
    if args.merge and trainer.is_world_process_zero():
        from ..checkpoint import save_checkpoint

        record = trainer.training_record()  # read before merging: it describes the adapter
        save_checkpoint(trainer.model.merge_and_unload(), tokenizer, args.output_dir, record)
        summary["adapter_dir"] = adapter_dir
    if args.push_to_hub and args.merge:
        if trainer.is_world_process_zero():
            from ..push import push_checkpoint

            push_checkpoint(args.output_dir, args.push_to_hub)
    elif args.push_to_hub:
        trainer.push_to_hub(dataset_name=args.dataset)
    summary["output_dir"] = args.output_dir
    print(json.dumps(summary, indent=2, default=str))
    return 0
