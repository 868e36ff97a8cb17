"""Train a tiny diffusion LLaMA for two optimizer steps under one batch layout and save its weights.

Run in-process by tests/test_split.py (one process) and under ``accelerate launch --num_processes 2`` (two), so
every layout trains through the same code. ``python tests/split_worker.py OUT --batch B --accumulation A
[--trainer sft] [--normalization elbo] [--block-size K] [--anneal-steps N] [--save-model] [--streaming]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tiny import WORDS, tiny_diffusion_model  # noqa: E402

GLOBAL_BATCH = 4
STEPS = 2


def pretraining_rows(tokenizer, count: int) -> list[dict]:
    """Sequences of different lengths, so every layout pads its micro-batches differently."""
    rng = random.Random(0)
    rows = []
    for index in range(count):
        words = [rng.choice(WORDS[:60]) for _ in range(6 + (5 * index) % 11)]
        rows.append({"input_ids": [tokenizer.bos_token_id] + tokenizer.convert_tokens_to_ids(words)})
    return rows


def streaming_rows(tokenizer) -> list[dict]:
    return [{"input_ids": row["input_ids"][:7]} for row in pretraining_rows(tokenizer, GLOBAL_BATCH * STEPS)]


def sft_rows(count: int) -> list[dict]:
    rng = random.Random(1)
    return [{"prompt": " ".join(rng.choice(WORDS[:40]) for _ in range(2 + index % 3)),
             "completion": " " + " ".join(rng.choice(WORDS[:40]) for _ in range(1 + (3 * index) % 5))}
            for index in range(count)]


def run_fsdp_on_cpu() -> None:
    """accelerate 1.x enables FSDP only for accelerator devices (a CPU run becomes MULTI_CPU, which ignores the FSDP
    plugin); torch's FSDP2 itself runs on CPU over gloo. For the CPU test of the shipped FSDP config, accelerate is
    told the processes are "GPU" processes whose device is the CPU - everything else (plugin, wrapping, sharding,
    state-dict gathering) is accelerate's and torch's own code path."""
    from accelerate.state import DistributedType, PartialState

    PartialState._prepare_backend = lambda self, cpu=False, sagemaker_dp=False, backend=None: (
        "gloo", DistributedType.MULTI_GPU)

    def set_device(self):
        if self.device is None:
            self.device = torch.device("cpu")

    PartialState.set_device = set_device


def recording_trainer():
    from diffusion_lm.trainer import DiffusionTrainer

    class Recording(DiffusionTrainer):
        trained_keys: list[str] = []

        def sample_keys(self, inputs):
            keys = super().sample_keys(inputs)
            self.trained_keys = self.trained_keys + keys
            return keys

    return Recording


def train(out: str, *, batch: int, accumulation: int, trainer_kind: str = "pretrain",
          normalization: str = "masked_tokens", block_size: int | None = None, anneal_steps: int = 2,
          fsdp: bool = False, streaming: bool = False) -> dict[str, torch.Tensor]:
    if os.environ.get("ACCELERATE_USE_FSDP", "false") == "true":
        run_fsdp_on_cpu()
    from diffusion_lm.data import DiffusionDataCollator
    from diffusion_lm.sft import DiffusionSFTConfig, DiffusionSFTTrainer
    from diffusion_lm.trainer import DiffusionTrainingArguments

    RecordingTrainer = recording_trainer()

    model, tokenizer = tiny_diffusion_model("llama", seed=0)
    if block_size:
        model.config.diffusion_block_size = block_size
        model.config.attention_mode = "block"
    model.train()
    work = tempfile.mkdtemp()
    common = dict(output_dir=work, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                  max_steps=STEPS, learning_rate=0.5, lr_scheduler_type="constant", weight_decay=0.0,
                  loss_normalization=normalization, save_strategy="no", report_to=[],
                  use_cpu=os.environ.get("ACCELERATE_USE_FSDP", "false") != "true",  # see run_fsdp_on_cpu
                  disable_tqdm=True, logging_steps=1, seed=0, dataloader_num_workers=0,
                  # plain SGD without clipping: a loss scale that depended on the split would show in the weights
                  # (Adam and clipping would hide it)
                  optim="sgd", max_grad_norm=0.0)
    if fsdp:  # as the LLaMA-2-7B preset asks (FSDP's own activation checkpointing takes over)
        common["gradient_checkpointing"] = True
    if trainer_kind == "sft":
        trainer = DiffusionSFTTrainer(
            model, args=DiffusionSFTConfig(**common, max_length=24, eos_filler="random", bf16=False),
            train_dataset=Dataset.from_list(sft_rows(GLOBAL_BATCH * STEPS)), processing_class=tokenizer)
    else:
        args = DiffusionTrainingArguments(**common, anneal_steps=anneal_steps)
        data = Dataset.from_list(pretraining_rows(tokenizer, GLOBAL_BATCH * STEPS))
        if streaming:  # packed blocks of one length, as `adapt --streaming` trains on
            data = Dataset.from_list(streaming_rows(tokenizer)).to_iterable_dataset(num_shards=2)
        trainer = RecordingTrainer(model=model, args=args, data_collator=DiffusionDataCollator(tokenizer.pad_token_id),
                                   train_dataset=data)
    trainer.train()
    if streaming:  # which samples this process trained on
        with open(f"{out}.rank{trainer.accelerator.process_index}.json", "w") as f:
            json.dump(trainer.trained_keys, f)
    if fsdp:
        trainer.save_model(out)
        return {}
    weights = {name: value.detach().cpu().contiguous() for name, value in trainer.model.state_dict().items()}
    if trainer.is_world_process_zero():
        save_file(weights, out)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--accumulation", type=int, required=True)
    parser.add_argument("--trainer", default="pretrain", choices=["pretrain", "sft"])
    parser.add_argument("--normalization", default="masked_tokens")
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--anneal-steps", type=int, default=2)
    parser.add_argument("--save-model", action="store_true", help="save_model(out) (a directory) instead of a file")
    parser.add_argument("--streaming", action="store_true", help="an IterableDataset; writes OUT.rank<i>.json")
    args = parser.parse_args()
    train(args.out, batch=args.batch, accumulation=args.accumulation, trainer_kind=args.trainer,
          normalization=args.normalization, block_size=args.block_size, anneal_steps=args.anneal_steps,
          fsdp=args.save_model, streaming=args.streaming)


if __name__ == "__main__":
    main()
