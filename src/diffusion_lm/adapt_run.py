"""``diffusion-lm adapt``: convert an AR checkpoint and continue pre-training it with the diffusion objective.

The run: load the base, convert it, pack the corpus, train with ``DiffusionTrainer`` (resumable), save the final
model atomically (``checkpoint.save_final_model``) and sample from it. Its settings, and their reconciliation with a
recorded run, are ``diffusion_lm.adapt``.
"""

from __future__ import annotations

import os
import time

import torch
from datasets import Dataset, IterableDataset

from .adapt import (
    AdaptSettings,
    adaptation_recipe,
    claim_output_dir,
    load_run_record,
    resume_checkpoint,
    save_run_record,
)
from .checkpoint import checkpoint_step, load_checkpoint, save_final_model
from .conversion import (
    ARSource,
    check_block_size,
    check_reusable_token_id,
    convert_ar_model,
    load_ar_config,
    load_ar_model,
)
from .data import DiffusionDataCollator, load_text_dataset, pack_tokens
from .embedded import EMBEDDED_BASE_LICENSE, EMBEDDED_BASE_NAME, require_embedded_gguf, sample_embedded_corpus
from .infilling import decode_text
from .trainer import DiffusionTrainer, DiffusionTrainingArguments
from .training_record import TrainingInfo

EMBEDDED_CORPUS_NAME = "embedded:smollm2-self-samples"


# AdaptSettings fields passed to DiffusionTrainingArguments under their own names
SAME_NAMED_TRAINING_FIELDS = (
    "output_dir", "max_steps", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "warmup_steps",
    "weight_decay", "adam_beta1", "adam_beta2", "anneal_steps", "loss_normalization", "distill_top_k",
    "block_curriculum", "seed", "logging_steps", "save_steps", "save_total_limit", "report_to",
)


def training_arguments(settings: AdaptSettings, has_eval: bool) -> DiffusionTrainingArguments:
    use_bf16 = settings.bf16 and (torch.cuda.is_available() or torch.backends.mps.is_available())
    return DiffusionTrainingArguments(
        **{name: getattr(settings, name) for name in SAME_NAMED_TRAINING_FIELDS},
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        bf16=use_bf16,
        # without an accelerator, torch.distributed processes (accelerate launch / torchrun) use gloo on CPU
        use_cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
        distill_weight=settings.effective_distill_weight,
        ar_loss_weight=settings.effective_ar_loss_weight,
        data_seed=settings.seed,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=settings.eval_steps or settings.max_steps,
        eval_on_start=settings.eval_on_start and has_eval,
        # passed only when wanted: the argument is deprecated in transformers 5 (``activation_checkpointing``)
        **({"gradient_checkpointing": True} if settings.gradient_checkpointing else {}),
        **settings.extra_training_args,
    )


def load_base(settings: AdaptSettings):
    """(AR model, tokenizer, base name for the card). The family, ``block_size`` and the reused mask token id are
    checked against the base's config and tokenizer before its weights (or any data) load."""
    base = settings.base or require_embedded_gguf()
    source = ARSource.parse(base)
    config = load_ar_config(source)
    check_block_size(config, settings.block_size)
    dtype = torch.bfloat16 if settings.bf16 and torch.cuda.is_available() else torch.float32
    model, tokenizer = load_ar_model(source, dtype=dtype)
    if settings.reuse_mask_token_id is not None:
        check_reusable_token_id(tokenizer, settings.reuse_mask_token_id)
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
        packed = pack_tokens(raw, tokenizer, settings.block_size, text_column=settings.text_column)
        require_blocks(packed, settings.dataset or "the embedded corpus", settings.block_size, "--dataset")
        return packed


def require_blocks(packed, name: str, block_size: int, flag: str) -> None:
    """ValueError naming the corpus when it yields no full block of ``block_size`` tokens."""
    if isinstance(packed, IterableDataset):
        empty = next(iter(packed), None) is None
    else:
        empty = len(packed) == 0
    if empty:
        raise ValueError(f"{flag} {name} is shorter than one block of {block_size} tokens; give it more text or "
                         "use a smaller --block-size")


def build_eval_dataset(settings: AdaptSettings, tokenizer):
    if settings.eval_dataset is None:
        return None
    packed = pack_tokens(load_text_dataset(settings.eval_dataset), tokenizer, settings.block_size,
                         text_column=settings.text_column)
    require_blocks(packed, settings.eval_dataset, settings.block_size, "--eval-dataset")
    return packed.select(range(min(settings.eval_samples, len(packed))))


def _finished_training_loss(settings: AdaptSettings, state) -> float | None:
    """The training loss of a run that had finished: from its record, else the logged losses."""
    record = TrainingInfo.load(settings.output_dir)
    if record is not None and record.steps == state.global_step and record.extra.get("final_train_loss") is not None:
        return record.extra["final_train_loss"]
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else None


def run_adaptation(settings: AdaptSettings, callbacks: list | None = None) -> dict:
    """The whole run: load, convert, pack, train (resumable), save, sample. Returns a summary dict.

    Resuming a run whose checkpoint already reached ``max_steps`` trains no further step: the final model is
    written again from that checkpoint (as when the run was killed during its final save).
    """
    from transformers import TrainerState

    from .embedded import is_embedded_name

    started = time.time()
    if is_embedded_name(settings.base):
        settings.base = None  # --base embedded: the default base, by name
    settings.validate()
    if not settings.resume:
        claim_output_dir(settings)
    checkpoint = resume_checkpoint(settings)
    args = training_arguments(settings, has_eval=settings.eval_dataset is not None)
    finished = checkpoint is not None and checkpoint_step(checkpoint) >= settings.max_steps
    if finished:
        print(f"{checkpoint} already reached --max-steps {settings.max_steps}: no further training, writing the "
              "final model from it.", flush=True)
        model, tokenizer = load_checkpoint_model(checkpoint)
        base_name = model.config.name_or_path = (EMBEDDED_BASE_NAME if settings.base is None else settings.base)
        train_dataset = eval_dataset = None
    else:
        ar_model, tokenizer, base_name = load_base(settings)
        train_dataset = build_train_dataset(settings, ar_model, tokenizer, args)
        eval_dataset = build_eval_dataset(settings, tokenizer)
        # a new run (or an old one without a record) is recorded once its data is ready, before the first step
        if args.should_save and (not settings.resume or load_run_record(settings.output_dir) is None):
            save_run_record(settings)
        model, tokenizer = convert_ar_model(
            ar_model, tokenizer, mask_token=settings.mask_token, reuse_mask_token_id=settings.reuse_mask_token_id,
            shift=settings.shift, seed=settings.seed,
        )
        del ar_model
        if settings.from_scratch:
            model = reinitialized(model, settings.seed)
        model.config.name_or_path = base_name
        # block diffusion is a property of the model: its config carries the mode and block size for decoding
        model.config.attention_mode = settings.attention_mode
        model.config.diffusion_block_size = settings.diffusion_block_size
        model.config.context_attention = settings.effective_context_attention if settings.attention_mode == "block" \
            else "block"
        if settings.lora_r:
            model = with_lora_adapter(model, settings.lora_r, settings.lora_alpha)
    if settings.attn_implementation:
        model.set_attn_implementation(settings.attn_implementation)
    trainer = DiffusionTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DiffusionDataCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    if finished:
        trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
        training_loss = _finished_training_loss(settings, trainer.state)
    else:
        training_loss = trainer.train(resume_from_checkpoint=checkpoint).training_loss
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
        "attention_mode": model.config.attention_mode,
        "diffusion_block_size": model.config.diffusion_block_size,
        "shift": bool(model.config.shift),
        "initialization": "random (from scratch)" if settings.from_scratch else "AR weights",
        "mask_token": tokenizer.convert_ids_to_tokens(model.config.mask_token_id),
        "mask_token_id": model.config.mask_token_id,
        "mask_token_reused": settings.reuse_mask_token_id is not None,
        "loss_normalization": settings.loss_normalization,
        **adaptation_recipe(settings),
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler_type,
        "global_batch_size": settings.batch_size * settings.gradient_accumulation_steps * trainer.accelerator.num_processes,
        "final_train_loss": training_loss,
    }
    if settings.base is None:
        info["license"] = EMBEDDED_BASE_LICENSE
    saved = save_final_model(trainer, tokenizer, settings.output_dir, info)
    summary = {**info, "output_dir": settings.output_dir, "wall_time_s": round(time.time() - started, 1)}
    if checkpoint is not None:
        summary["resumed_from"] = checkpoint
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if evaluations:  # the Trainer evaluated at the last step already (eval_steps defaults to max_steps)
        summary["eval_loss_elbo_first"] = evaluations[0]["eval_loss"]
        summary["eval_loss_elbo_final"] = evaluations[-1]["eval_loss"]
    if settings.sample_prompt and trainer.args.should_save:
        summary["sample"] = sample_text(saved, tokenizer, settings.sample_prompt, settings.seed)
    return summary


def with_lora_adapter(model, r: int, alpha: int | None = None):
    """``model`` under a PEFT LoRA adapter of rank ``r`` on every linear layer; the base weights stay frozen except
    the [MASK] row of the embedding (a new token has no trained embedding), kept tied to the LM head."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2 * r,
        lora_dropout=0.0,
        target_modules="all-linear",
        trainable_token_indices=[model.config.mask_token_id],
        ensure_weight_tying=bool(getattr(model.config, "tie_word_embeddings", False)),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def reinitialized(model, seed: int):
    """The same architecture and config (vocabulary, mask id, shift) with fresh random weights: the from-scratch
    ablation."""
    torch.manual_seed(seed)
    fresh = type(model)(model.config).to(model.dtype)
    fresh.tie_weights()
    return fresh


def load_checkpoint_model(checkpoint: str):
    """The diffusion model and tokenizer a Trainer checkpoint holds (float32, the library's classes), with the
    diffusion decoding defaults."""
    from .conversion import configure_generation

    model, tokenizer = load_checkpoint(checkpoint)
    configure_generation(model, tokenizer)
    return model, tokenizer


def sample_text(model, tokenizer, prompt: str, seed: int, new_tokens: int = 32) -> str:
    """A short diffusion-decoded continuation, to show the adapted model works."""
    model.eval()
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        output = model.generate(input_ids, max_new_tokens=new_tokens, steps=new_tokens, generator=generator)
    sequences = output.sequences if hasattr(output, "sequences") else output
    return decode_text(tokenizer, sequences[0].tolist(), model.config)

__all__ = ["EMBEDDED_CORPUS_NAME", "run_adaptation", "with_lora_adapter"]
