"""``diffusion-lm sft``: instruction-tune a diffusion LM with TRL's SFTTrainer, optionally with LoRA.

    diffusion-lm sft --model DIR --dataset PATH_OR_HUB_ID --output-dir DIR [--lora] [--max-steps N]
    diffusion-lm sft --config sft.yaml [--max-steps N]    # keys: the flags' field names; flags override the file

The flags are the fields of ``SFTScriptArguments`` and ``DiffusionSFTConfig`` (TRL's SFTConfig plus the diffusion
fields), parsed by ``transformers.HfArgumentParser``; ``--push_to_hub --hub_model_id REPO_ID`` uploads the result.

Local datasets: .json / .jsonl in alpaca (instruction/input/output[/history]), ShareGPT (``conversations``),
``messages``, prompt/completion or ``text`` form. Multi-GPU: ``accelerate launch -m diffusion_lm.cli sft ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Literal

from ..sft import DiffusionSFTConfig


@dataclass
class SFTScriptArguments:
    """What ``diffusion-lm sft`` trains and writes besides the trainer's settings (TRL's ``ScriptArguments`` /
    ``ModelConfig`` pattern); parsed together with ``DiffusionSFTConfig``, whose fields are the other flags."""

    model: str | None = field(default=None, metadata={"help": "diffusion checkpoint (directory or Hub id), e.g. the "
                                                              "output of `adapt` (required)"})
    dataset: str | None = field(default=None, metadata={"help": "local .json/.jsonl file or Hub dataset name "
                                                                "(required)"})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name"})
    dataset_split: str = field(default="train", metadata={"help": "split to train on"})
    eval_dataset: str | None = field(default=None, metadata={"help": "held-out file / Hub name: diffusion loss "
                                                                     "evaluated before and after training"})
    eval_split: str = field(default="test", metadata={"help": "split of a Hub --eval-dataset"})
    limit: int | None = field(default=None, metadata={"help": "train on the first N rows only"})
    format: Literal["auto", "chat", "plain"] = field(
        default="auto", metadata={"help": "alpaca rows through the chat template (chat) or as plain text (plain); "
                                          "auto: chat when the tokenizer has a chat template"})
    lora: bool = field(default=False, metadata={"help": "train a LoRA adapter (all linear layers) instead of the "
                                                        "full model"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 x rank)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    train_embeddings: bool = field(default=False, metadata={"help": "with --lora, train the input embeddings and LM "
                                                                    "head in full (modules_to_save)"})
    merge: bool = field(default=False, metadata={"help": "with --lora, write the merged full model to OUTPUT_DIR and "
                                                         "keep the adapter in OUTPUT_DIR/adapter"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "write into an --output-dir that holds a "
                                                                        "finished model (it is replaced)",
                                                                "aliases": ["--overwrite"]})


CONFIG_CLASSES = (SFTScriptArguments, DiffusionSFTConfig)
# this command's defaults where they differ from DiffusionSFTConfig's (a config file or a flag overrides them)
COMMAND_DEFAULTS = {"lr_scheduler_type": "cosine", "max_length": 512, "seed": 0, "report_to": "none",
                    "eval_strategy": "no", "bf16": False}
# flag spellings kept from before the dataclass parser: --batch-size sets both per-device batch sizes
ALIASES = {"batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
           "epochs": ("num_train_epochs",)}


def add_arguments(parser: argparse.ArgumentParser, name: str = "sft") -> None:
    from . import explicit_flags_only

    explicit_flags_only(parser, CONFIG_CLASSES)
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file of settings: keys are the field names of these flags (model, dataset, lora, "
                             "max_steps, per_device_train_batch_size, ...); flags given here override it")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=argparse.SUPPRESS,
                        help="per_device_train_batch_size and per_device_eval_batch_size together (default 8)")
    parser.add_argument("--epochs", type=float, default=argparse.SUPPRESS, help="num_train_epochs")


def _load_config(path: str) -> dict:
    from ..paths import read_text, require_local_path
    from ..presets import parse_yaml

    path = require_local_path(path, "--config", kind="file")
    values = parse_yaml(read_text(path, "config file"), path)
    if not isinstance(values, dict):
        raise ValueError(f"config {path} must be a mapping of settings")
    return values


def resolve_arguments(args: argparse.Namespace) -> tuple[SFTScriptArguments, DiffusionSFTConfig]:
    """Dataclass defaults < this command's defaults < ``--config`` file < flags given; the learning rate defaults to
    1e-4 with LoRA, 2e-5 otherwise; without save_steps / save_strategy only the final model is saved."""
    from . import given_fields

    script_names = {f.name for f in dataclasses.fields(SFTScriptArguments)}
    config_names = {f.name for f in dataclasses.fields(DiffusionSFTConfig) if f.init}
    from_file = _load_config(args.config) if getattr(args, "config", None) else {}
    given = {**given_fields(args, SFTScriptArguments), **given_fields(args, DiffusionSFTConfig)}
    for alias, targets in ALIASES.items():
        if hasattr(args, alias):
            given.update({target: getattr(args, alias) for target in targets})
    unknown = sorted(set(from_file) - script_names - config_names)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))} in config {args.config!r}; settings "
                         "are the fields of SFTScriptArguments and DiffusionSFTConfig (`diffusion-lm sft --help`)")
    values = {**COMMAND_DEFAULTS, **from_file, **given}
    if "per_device_train_batch_size" in values:
        values.setdefault("per_device_eval_batch_size", values["per_device_train_batch_size"])
    script = SFTScriptArguments(**{k: v for k, v in values.items() if k in script_names})
    for required in ("model", "dataset", "output_dir"):
        if values.get(required) is None:
            raise ValueError(f"--{required.replace('_', '-')} is required (a flag or the {required!r} key of --config)")
    trainer = {k: v for k, v in values.items() if k in config_names}
    _validate(script, trainer)
    trainer.setdefault("learning_rate", 1e-4 if script.lora else 2e-5)
    if "save_steps" not in trainer and "save_strategy" not in trainer:
        trainer["save_strategy"] = "no"
    # transformers 5 names it activation_checkpointing; --no-gradient-checkpointing turns both off
    checkpointing = trainer.get("gradient_checkpointing", True)
    if "activation_checkpointing" in config_names:
        trainer.setdefault("activation_checkpointing", checkpointing)
    else:  # transformers 5.0 has only gradient_checkpointing
        trainer["gradient_checkpointing"] = checkpointing
    if isinstance(trainer.get("report_to"), str):
        trainer["report_to"] = [] if trainer["report_to"] == "none" else trainer["report_to"].split(",")
    return script, DiffusionSFTConfig(**trainer)


def _validate(script: SFTScriptArguments, trainer: dict) -> None:
    for name, flag in (("per_device_train_batch_size", "--batch-size"),
                       ("gradient_accumulation_steps", "--gradient-accumulation-steps"),
                       ("max_length", "--max-length"), ("logging_steps", "--logging-steps")):
        if name in trainer and trainer[name] is not None and trainer[name] < 1:
            raise ValueError(f"{flag} must be >= 1")
    if script.lora_r < 1:
        raise ValueError("--lora-r must be >= 1")
    max_steps = trainer.get("max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        raise ValueError("--max-steps must be a positive number of steps")
    if script.limit is not None and script.limit < 1:
        raise ValueError("--limit must be >= 1")
    if (script.train_embeddings or script.merge) and not script.lora:
        raise ValueError("--train-embeddings and --merge only apply with --lora")


def run(args: argparse.Namespace) -> int:
    from . import check_references, hub_access

    script, config = resolve_arguments(args)
    with hub_access(check_references(args, script)):  # paths a config file named get the flags' early check
        return train(script, config)


def train(script: SFTScriptArguments, config: DiffusionSFTConfig) -> int:
    from ..checkpoint import load_checkpoint, require_free_output_dir
    from ..sft import DiffusionSFTTrainer, lora_config_for
    from ..sft_data import load_sft_dataset

    # another run's finished model is replaced only when asked (checked before anything loads)
    require_free_output_dir(config.output_dir, resumable=False, overwrite=script.overwrite_output_dir)

    model, tokenizer = load_checkpoint(script.model, what="--model")
    chat = script.format == "chat" or (script.format == "auto" and bool(tokenizer.chat_template))
    if script.format == "chat" and not tokenizer.chat_template:
        raise ValueError("--format chat needs a tokenizer with a chat template")
    train = load_sft_dataset(script.dataset, split=script.dataset_split, chat=chat, config_name=script.dataset_config)
    if script.limit is not None:
        train = train.select(range(min(script.limit, len(train))))
    evaluation = None
    if script.eval_dataset:
        evaluation = load_sft_dataset(script.eval_dataset, split=script.eval_split, chat=chat,
                                      config_name=script.dataset_config)
    # a merged run pushes the merged model at the end (below); Trainer's push would upload the adapter
    push_repo = (config.hub_model_id or os.path.basename(os.path.abspath(config.output_dir))) \
        if config.push_to_hub else None
    if push_repo and script.merge:
        config.push_to_hub = False
    peft_config = None
    if script.lora:
        peft_config = lora_config_for(model, r=script.lora_r, alpha=script.lora_alpha, dropout=script.lora_dropout,
                                      train_embeddings=script.train_embeddings)
    trainer = DiffusionSFTTrainer(model, args=config, train_dataset=train, eval_dataset=evaluation,
                                  processing_class=tokenizer, peft_config=peft_config)
    trainer.dataset_names.append(script.dataset)
    summary = {"model": script.model, "dataset": script.dataset, "train_rows": len(train), "lora": script.lora}
    if evaluation is not None:
        summary["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    result = trainer.train()
    summary["train_loss"] = result.training_loss
    summary["steps"] = result.global_step
    if evaluation is not None:
        summary["eval_loss_after"] = trainer.evaluate()["eval_loss"]
    # with --merge, OUTPUT_DIR is the full model that generate / chat / eval / push find there; the adapter is kept
    # in a sub-folder (push leaves it out)
    output_dir = config.output_dir
    adapter_dir = os.path.join(output_dir, "adapter") if script.merge else output_dir
    trainer.save_model(adapter_dir)
    if script.merge and trainer.is_world_process_zero():
        from ..checkpoint import save_checkpoint

        record = trainer.training_record()  # read before merging: it describes the adapter
        save_checkpoint(trainer.model.merge_and_unload(), tokenizer, output_dir, record)
        summary["adapter_dir"] = adapter_dir
    if push_repo and script.merge:
        if trainer.is_world_process_zero():
            from ..push import push_checkpoint

            push_checkpoint(output_dir, push_repo)
    elif push_repo:
        trainer.push_to_hub(dataset_name=script.dataset)
    summary["output_dir"] = output_dir
    print(json.dumps(summary, indent=2, default=str))
    return 0
