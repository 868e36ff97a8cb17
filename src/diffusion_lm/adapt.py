"""``diffusion-lm adapt``: convert an AR checkpoint and continue pre-training it with the diffusion objective."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from transformers.trainer_utils import get_last_checkpoint

from .conversion import DEFAULT_MASK_TOKEN, ARSource, convert_ar_model, load_ar_model
from .data import DiffusionDataCollator, load_text_dataset, pack_tokens
from .hub import write_card
from .embedded import EMBEDDED_BASE_LICENSE, EMBEDDED_BASE_NAME, require_embedded_gguf, sample_embedded_corpus
from .presets import load_preset
from .trainer import DiffusionTrainer, DiffusionTrainingArguments

EMBEDDED_CORPUS_NAME = "embedded:smollm2-self-samples"


@dataclass
class AdaptSettings:
    """Every knob of an adaptation run. Defaults are the embedded, offline, CPU-sized demo."""

    base: str | None = None  # Hub id, directory or .gguf path; None = embedded SmolLM2-135M-Instruct
    dataset: str | None = None  # Hub name or local file(s); None = text sampled from the base model
    dataset_config: str | None = None
    dataset_split: str = "train"
    text_column: str = "text"
    streaming: bool = False
    eval_dataset: str | None = None
    eval_samples: int = 64
    output_dir: str = "runs/diffusion-lm-adapt"
    mask_token: str | None = DEFAULT_MASK_TOKEN
    reuse_mask_token_id: int | None = None
    block_size: int = 128
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_steps: int = 60
    anneal_steps: int = 20
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    loss_normalization: str = "masked_tokens"
    bf16: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None
    seed: int = 42
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # default with --eval-dataset: evaluate only at start (if asked) and at the end
    eval_on_start: bool = False
    resume: str | bool | None = None  # True/"latest" = last checkpoint in output_dir, or a checkpoint path
    report_to: str = "none"
    sample_prompt: str | None = "The history of"
    extra_training_args: dict = field(default_factory=dict)

    def apply(self, values: dict, source: str) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown} in {source}")
        for name, value in values.items():
            setattr(self, name, value)


def resolve_settings(preset: str | None, overrides: dict) -> AdaptSettings:
    """Defaults, then the preset, then explicit overrides (CLI flags), in that order of precedence."""
    settings = AdaptSettings()
    if preset:
        settings.apply(load_preset(preset), f"preset {preset!r}")
        settings.output_dir = overrides.get("output_dir") or f"runs/diffusion-lm-{os.path.basename(preset)}"
    settings.apply({k: v for k, v in overrides.items() if v is not None}, "arguments")
    if settings.reuse_mask_token_id is not None and "mask_token" not in overrides:
        settings.mask_token = None
    if settings.block_size < 2 or settings.batch_size < 1 or settings.max_steps < 1:
        raise ValueError("block_size must be >= 2, batch_size >= 1 and max_steps >= 1")
    return settings


def training_arguments(settings: AdaptSettings, has_eval: bool) -> DiffusionTrainingArguments:
    use_bf16 = settings.bf16 and (torch.cuda.is_available() or torch.backends.mps.is_available())
    return DiffusionTrainingArguments(
        output_dir=settings.output_dir,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        bf16=use_bf16,
        # without an accelerator, torch.distributed processes (accelerate launch / torchrun) use gloo on CPU
        use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
        anneal_steps=settings.anneal_steps,
        loss_normalization=settings.loss_normalization,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=settings.eval_steps or settings.max_steps,
        eval_on_start=settings.eval_on_start and has_eval,
        report_to=settings.report_to,
        # passed only when wanted: the argument is deprecated in transformers 5 (``activation_checkpointing``)
        **({"gradient_checkpointing": True} if settings.gradient_checkpointing else {}),
        **settings.extra_training_args,
    )


def load_base(settings: AdaptSettings):
    """(AR model, tokenizer, base name for the card)."""
    base = settings.base or require_embedded_gguf()
    source = ARSource.parse(base)
    dtype = torch.bfloat16 if settings.bf16 and torch.cuda.is_available() else torch.float32
    model, tokenizer = load_ar_model(source, dtype=dtype)
    return model, tokenizer, (EMBEDDED_BASE_NAME if settings.base is None else base)


def build_train_dataset(settings: AdaptSettings, ar_model, tokenizer, args: DiffusionTrainingArguments):
    with args.main_process_first(desc="preparing the corpus"):
        if settings.dataset is None:
            corpus_file = os.path.join(settings.output_dir, "embedded_corpus.jsonl")
            if os.path.isfile(corpus_file):
                raw = load_text_dataset(corpus_file)
            else:
                print("Sampling the embedded corpus from the base model ...", flush=True)
                raw = Dataset.from_dict({"text": sample_embedded_corpus(ar_model, tokenizer, seed=settings.seed)})
                if args.should_save:
                    os.makedirs(settings.output_dir, exist_ok=True)
                    raw.to_json(corpus_file)
        else:
            raw = load_text_dataset(
                settings.dataset,
                split=settings.dataset_split,
                config_name=settings.dataset_config,
                streaming=settings.streaming,
            )
        return pack_tokens(raw, tokenizer, settings.block_size, text_column=settings.text_column)


def build_eval_dataset(settings: AdaptSettings, tokenizer):
    if settings.eval_dataset is None:
        return None
    packed = pack_tokens(load_text_dataset(settings.eval_dataset), tokenizer, settings.block_size,
                         text_column=settings.text_column)
    return packed.select(range(min(settings.eval_samples, len(packed))))


def resume_checkpoint(settings: AdaptSettings) -> str | None:
    if settings.resume in (None, False, ""):
        return None
    if settings.resume in (True, "latest", "true"):
        last = get_last_checkpoint(settings.output_dir) if os.path.isdir(settings.output_dir) else None
        if last is None:
            print(f"No checkpoint in {settings.output_dir}; starting from the base model.", flush=True)
        return last
    if not os.path.isdir(settings.resume):
        raise ValueError(f"--resume checkpoint not found: {settings.resume}")
    return settings.resume


def save_final(trainer: DiffusionTrainer, tokenizer, settings: AdaptSettings, info: dict) -> None:
    """Model, tokenizer, trainer_state.json and the adaptation record into output_dir, file by file atomically."""
    staging = os.path.join(settings.output_dir, ".final-staging")
    trainer.save_model(staging)
    if trainer.args.should_save:
        tokenizer.save_pretrained(staging)
        # README.md model card + diffusion_lm_training.json, named after the output directory (not the staging one)
        write_card(staging, info, repo_id=os.path.basename(os.path.abspath(settings.output_dir)))
        # config.json last: a reader that sees it sees complete weights
        files = sorted(os.listdir(staging), key=lambda name: name == "config.json")
        for name in files:
            os.replace(os.path.join(staging, name), os.path.join(settings.output_dir, name))
        shutil.rmtree(staging, ignore_errors=True)
        trainer.save_state()
    trainer.accelerator.wait_for_everyone()


def run_adaptation(settings: AdaptSettings, callbacks: list | None = None) -> dict:
    """The whole run: load, convert, pack, train (resumable), save, sample. Returns a summary dict."""
    started = time.time()
    ar_model, tokenizer, base_name = load_base(settings)
    args = training_arguments(settings, has_eval=settings.eval_dataset is not None)
    train_dataset = build_train_dataset(settings, ar_model, tokenizer, args)
    eval_dataset = build_eval_dataset(settings, tokenizer)
    model, tokenizer = convert_ar_model(
        ar_model, tokenizer, mask_token=settings.mask_token, reuse_mask_token_id=settings.reuse_mask_token_id,
        seed=settings.seed,
    )
    del ar_model
    if settings.attn_implementation:
        model.set_attn_implementation(settings.attn_implementation)
    model.config._name_or_path = base_name
    trainer = DiffusionTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DiffusionDataCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(settings))
    tokens_seen = trainer.state.global_step * settings.batch_size * settings.gradient_accumulation_steps * \
        settings.block_size * trainer.accelerator.num_processes
    info = {
        "stage": "adapt",
        "base_model": base_name,
        "datasets": [settings.dataset or EMBEDDED_CORPUS_NAME],
        "steps": trainer.state.global_step,
        "tokens": tokens_seen,
        "block_size": settings.block_size,
        "anneal_steps": settings.anneal_steps,
        "shift": bool(model.config.shift),
        "mask_token": tokenizer.convert_ids_to_tokens(model.config.mask_token_id),
        "mask_token_id": model.config.mask_token_id,
        "mask_token_reused": settings.reuse_mask_token_id is not None,
        "loss_normalization": settings.loss_normalization,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler_type,
        "global_batch_size": settings.batch_size * settings.gradient_accumulation_steps * trainer.accelerator.num_processes,
        "final_train_loss": result.training_loss,
    }
    if settings.base is None:
        info["license"] = EMBEDDED_BASE_LICENSE
    save_final(trainer, tokenizer, settings, info)
    summary = {**info, "output_dir": settings.output_dir, "wall_time_s": round(time.time() - started, 1)}
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if evaluations:  # the Trainer evaluated at the last step already (eval_steps defaults to max_steps)
        summary["eval_loss_elbo_first"] = evaluations[0]["eval_loss"]
        summary["eval_loss_elbo_final"] = evaluations[-1]["eval_loss"]
    if settings.sample_prompt and trainer.args.should_save:
        summary["sample"] = sample_text(trainer.model, tokenizer, settings.sample_prompt, settings.seed)
    return summary


def sample_text(model, tokenizer, prompt: str, seed: int, new_tokens: int = 32) -> str:
    """A short diffusion-decoded continuation, to show the adapted model works."""
    model.eval()
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        output = model.generate(input_ids, max_new_tokens=new_tokens, steps=new_tokens, generator=generator)
    sequences = output.sequences if hasattr(output, "sequences") else output
    return tokenizer.decode(sequences[0], skip_special_tokens=True)
