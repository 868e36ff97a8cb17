"""Train an adapted diffusion model for parallel decoding: self-distillation on its own causal greedy decode.

    python training/parallelism_distillation.py --model runs/diffusion-lm-adapt --output_dir runs/parallel
    python training/parallelism_distillation.py recipe.yaml                    # the same fields as YAML keys
    python training/parallelism_distillation.py ... --resume                  # continue an interrupted run

The recipe (``diffusion_lm.parallelism``): corpus prompts continued by the model's own causal greedy decode, then the
model's diffusion objective on them with a LoRA adapter (``--lora_r``, 0 = full fine-tuning) and the distillation term
against the checkpoint itself (``--distill_weight``), so the drafts learn what the causal verifier accepts while the
verifier stays put. The generated sequences are kept in OUTPUT_DIR/self_distillation.json (reused on --resume).
Before and after training it prints tokens per forward of ``verify="causal"`` on held-out prompts; the merged model
(no adapter files) is written to OUTPUT_DIR with its card and training record. Every field of
``DiffusionTrainingArguments`` (transformers' ``TrainingArguments`` plus the diffusion ones) is a flag.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "corpus",
                            "enwiki", "enwiki_train-01-of-04.jsonl")
CORPUS_FILE = "self_distillation.json"
# the recipe's own defaults for TrainingArguments fields (a flag or a YAML key overrides them)
TRAINING_DEFAULTS = dict(max_steps=100, learning_rate=5e-4, lr_scheduler_type="cosine", warmup_steps=10,
                         per_device_train_batch_size=4, distill_weight=0.5, save_steps=50, logging_steps=10,
                         report_to="none", save_total_limit=2)


@dataclass
class ParallelismArguments:
    model: str = field(metadata={"help": "the adapted diffusion checkpoint to train (directory or Hub id)"})
    dataset: str = field(default=DEFAULT_DATA, metadata={"help": "text corpus the prompts are cut from (.jsonl/.txt)"})
    text_column: str = field(default="text", metadata={"help": "the dataset's text field"})
    num_sequences: int = field(default=256, metadata={"help": "training sequences (prompt + continuation)"})
    prompt_tokens: int = field(default=64, metadata={"help": "corpus tokens per prompt"})
    new_tokens: int = field(default=64, metadata={"help": "causal greedy tokens generated after each prompt"})
    generation_batch_size: int = field(default=16, metadata={"help": "prompts decoded together"})
    eval_prompts: int = field(default=8, metadata={"help": "held-out prompts for tokens per forward before / after"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (0 = full fine-tuning); the saved model is merged"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * lora_r)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in output_dir from its last checkpoint"})
    overwrite_output_dir: bool = field(default=False,
                                       metadata={"help": "replace another run's model or checkpoints in output_dir"})

    def validate(self) -> None:
        for name in ("num_sequences", "prompt_tokens", "new_tokens", "generation_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_prompts < 0:
            raise ValueError(f"eval_prompts must be >= 0, got {self.eval_prompts}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0 = full fine-tuning), got {self.lora_r}")


def parse(argv=None):
    from transformers import HfArgumentParser

    from diffusion_lm.trainer import DiffusionTrainingArguments

    parser = HfArgumentParser((ParallelismArguments, DiffusionTrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        import yaml

        with open(argv[0], encoding="utf-8") as f:
            values = {**TRAINING_DEFAULTS, **(yaml.safe_load(f) or {})}
        return parser.parse_dict(values)
    return parser.parse_args_into_dataclasses(argv)


def iter_documents(path: str, text_column: str):
    """The documents of ``path`` in order, read lazily (enwiki shards are hundreds of MB; the prompts need the first
    few dozen documents)."""
    from diffusion_lm.data import check_text_file
    from diffusion_lm.paths import require_local_path

    path = require_local_path(path, "dataset")
    check_text_file(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not path.endswith((".jsonl", ".json")):
                yield line
                continue
            try:
                yield json.loads(line)[text_column]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}, line {number}: not a JSON object with a {text_column!r} field "
                                 f"({type(error).__name__})") from None


def self_distillation_corpus(recipe: ParallelismArguments, model, tokenizer, output_dir: str):
    """(training sequences, held-out prompts, tokens per forward of the data's decode): generated once, kept in
    OUTPUT_DIR/self_distillation.json and reused while the settings that made it are unchanged."""
    from diffusion_lm.parallelism import causal_greedy_continuations, corpus_prompts
    from diffusion_lm.paths import read_json, write_json
    from diffusion_lm.tokens import pad_token_id

    made_by = {key: getattr(recipe, key) for key in ("model", "dataset", "text_column", "num_sequences",
                                                    "prompt_tokens", "new_tokens", "eval_prompts")}
    path = os.path.join(output_dir, CORPUS_FILE)
    saved = read_json(path) or {}
    if saved.get("made_by") == made_by:
        print(f"reusing the self-distillation corpus in {path}", flush=True)
        return saved["sequences"], saved["eval_prompts"], saved["tokens_per_forward"]
    prompts = corpus_prompts(iter_documents(recipe.dataset, recipe.text_column), tokenizer, recipe.prompt_tokens,
                             recipe.num_sequences + recipe.eval_prompts)  # stops reading once it has them
    started = time.time()

    def progress(done, total):
        print(f"  causal greedy continuations: {done}/{total} ({time.time() - started:.0f} s)", flush=True)

    sequences, tokens_per_forward = causal_greedy_continuations(
        model, prompts[: recipe.num_sequences], recipe.new_tokens, recipe.generation_batch_size,
        pad_token_id(tokenizer), progress)
    write_json(path, {"made_by": made_by, "sequences": sequences, "eval_prompts": prompts[recipe.num_sequences:],
                      "tokens_per_forward": tokens_per_forward}, indent=None)
    return sequences, prompts[recipe.num_sequences:], tokens_per_forward


def verify_tokens_per_forward(model, prompts, new_tokens: int, pad_id: int) -> float:
    from diffusion_lm.parallelism import causal_greedy_continuations

    return causal_greedy_continuations(model, prompts, new_tokens, len(prompts), pad_id)[1] if prompts else float("nan")


def main(argv=None) -> int:
    from datasets import Dataset

    from diffusion_lm.adapt_run import with_lora_adapter
    from diffusion_lm.checkpoint import (FINAL_STAGING, latest_intact_checkpoint, load_checkpoint, replace_final_model,
                                         require_free_output_dir, save_checkpoint)
    from diffusion_lm.data import DiffusionDataCollator
    from diffusion_lm.distillation import is_peft_model
    from diffusion_lm.tokens import pad_token_id
    from diffusion_lm.trainer import DiffusionTrainer

    recipe, args = parse(argv)
    recipe.validate()
    started = time.time()
    output_dir = args.output_dir
    if not recipe.resume:
        require_free_output_dir(output_dir, resumable=True, overwrite=recipe.overwrite_output_dir)
    model, tokenizer = load_checkpoint(recipe.model)
    pad_id = pad_token_id(tokenizer)
    sequences, eval_prompts, data_tokens_per_forward = self_distillation_corpus(recipe, model, tokenizer, output_dir)
    before = verify_tokens_per_forward(model, eval_prompts, recipe.new_tokens, pad_id)
    print(f"verify='causal' tokens per forward before training: {before:.2f} held-out "
          f"({data_tokens_per_forward:.2f} on the training prompts)", flush=True)

    if recipe.lora_r:
        model = with_lora_adapter(model, recipe.lora_r, recipe.lora_alpha)
    model.train()
    trainer = DiffusionTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": sequences}),
                               data_collator=DiffusionDataCollator(pad_id), processing_class=tokenizer)
    checkpoint = latest_intact_checkpoint(output_dir) if recipe.resume and os.path.isdir(output_dir) else None
    training_loss = trainer.train(resume_from_checkpoint=checkpoint).training_loss

    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        model = model.merge_and_unload()
    model.eval()
    after = verify_tokens_per_forward(model, eval_prompts, recipe.new_tokens, pad_id)
    print(f"verify='causal' tokens per forward after training: {after:.2f} held-out (before: {before:.2f})",
          flush=True)
    sequence_tokens = recipe.prompt_tokens + recipe.new_tokens
    info = {
        "stage": "parallelism",
        "base_model": recipe.model,
        "datasets": [recipe.dataset],
        "steps": trainer.state.global_step,
        "tokens": trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps
        * sequence_tokens * trainer.accelerator.num_processes,
        "block_size": sequence_tokens,
        "learning_rate": args.learning_rate,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
        * trainer.accelerator.num_processes,
        "notes": "self-distillation on the model's own causal greedy decode (training/parallelism_distillation.py)",
        "extra": {"recipe": {k: v for k, v in asdict(recipe).items() if k not in ("resume", "overwrite_output_dir")},
                  "distill_weight": args.distill_weight, "ar_loss_weight": args.ar_loss_weight,
                  "final_train_loss": training_loss,
                  "verify_tokens_per_forward_before": before, "verify_tokens_per_forward_after": after},
    }
    if trainer.args.should_save:
        staging = os.path.join(output_dir, FINAL_STAGING)
        shutil.rmtree(staging, ignore_errors=True)
        save_checkpoint(model, tokenizer, staging, info, repo_id=os.path.basename(os.path.abspath(output_dir)))
        replace_final_model(staging, output_dir)
        trainer.save_state()
    print(f"wrote {output_dir} in {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    debug = "--debug" in sys.argv  # ours, not TrainingArguments' --debug: a traceback for a refused input
    try:
        sys.exit(main([a for a in sys.argv[1:] if a != "--debug"]))
    except (ValueError, FileNotFoundError) as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
