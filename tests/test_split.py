"""Training does not depend on how an optimizer step's batch is split: over micro-batches (gradient accumulation),
over processes (data parallelism, FSDP), or how its micro-batches are padded (tests/split_worker.py trains)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from split_worker import train

from diffusion_lm.training_noise import sample_keys, sample_noise

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "split_worker.py")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[name].float() - b[name].float()).abs().max().item() for name in a)


@pytest.mark.parametrize(
    "setting",
    [dict(anneal_steps=4), dict(normalization="elbo"), dict(block_size=4, anneal_steps=4), dict(trainer_kind="sft")],
    ids=["annealed", "elbo", "block", "sft"],
)
def test_accumulation_split_takes_the_same_steps(tmp_path, setting):
    """4 x 1, 2 x 2 and 1 x 4 (batch x accumulation): the same weights after two SGD steps (lr 0.5, no clipping,
    so a loss scale that depended on the split would show), while the weights themselves move by O(1)."""
    start = {name: value.detach().clone() for name, value in train_initial().items()}
    whole = train(str(tmp_path / "a"), batch=4, accumulation=1, **setting)
    assert max_difference(whole, start) > 0.5
    for batch, accumulation in ((2, 2), (1, 4)):
        split = train(str(tmp_path / f"{batch}"), batch=batch, accumulation=accumulation, **setting)
        assert max_difference(whole, split) < 1e-5, (batch, accumulation)


def train_initial() -> dict:
    from tiny import tiny_diffusion_model

    return tiny_diffusion_model("llama", seed=0)[0].state_dict()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(args: list[str], *, config_file: str | None = None) -> None:
    """``accelerate launch`` of the worker on 2 CPU processes (gloo)."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    command += ["--config_file", config_file] if config_file else ["--multi_gpu"]
    command += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port()), WORKER, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env.update(HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def test_two_processes_take_the_steps_of_one(tmp_path):
    """accelerate launch --multi_gpu --num_processes 2 (gloo on CPU) x batch 1 x accumulation 2 = batch 4 x 1."""
    whole = train(str(tmp_path / "whole.safetensors"), batch=4, accumulation=1)
    launch([str(tmp_path / "ddp.safetensors"), "--batch", "1", "--accumulation", "2"])
    assert max_difference(whole, load_file(str(tmp_path / "ddp.safetensors"))) < 1e-5


def test_shipped_fsdp_config_trains_on_two_processes_and_saves_a_full_checkpoint(tmp_path):
    """training/accelerate/fsdp2.yaml (num_processes and mixed precision overridden for the CPU) shards the model
    over 2 processes, takes the 1-process steps, and leaves one full safetensors checkpoint AutoModel loads."""
    from transformers import AutoModel

    whole = train(str(tmp_path / "whole.safetensors"), batch=4, accumulation=1)
    out = tmp_path / "fsdp"
    launch([str(out), "--batch", "1", "--accumulation", "2", "--save-model"],
           config_file=os.path.join(REPO, "training", "accelerate", "fsdp2.yaml"))
    assert (out / "model.safetensors").is_file() and not list(out.glob("*fsdp*"))
    model = AutoModel.from_pretrained(str(out), trust_remote_code=True)
    assert type(model).__name__ == "DiffuLlamaForMaskedDiffusion"
    assert max_difference(whole, model.state_dict()) < 1e-4


def test_a_sample_keeps_its_noise_whatever_its_padding_and_batch():
    ids = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 8, 9, 0, 0, 0]])
    present = ids != 0
    keys = sample_keys(ids, present)
    assert keys[0] == sample_keys(ids[:1, :4], present[:1, :4])[0] != keys[1]
    wide = sample_noise(keys, 6, seed=0, epoch=0, eps=1e-3)
    narrow = sample_noise(keys[1:], 3, seed=0, epoch=0, eps=1e-3)
    assert torch.equal(wide.noise_levels[1:], narrow.noise_levels)
    assert torch.equal(wide.mask_draws[1:, :3], narrow.mask_draws)
    # a new epoch (or seed) corrupts the same sample afresh
    assert not torch.equal(sample_noise(keys, 6, seed=0, epoch=1, eps=1e-3).mask_draws, wide.mask_draws)
    assert not torch.equal(sample_noise(keys, 6, seed=1, epoch=0, eps=1e-3).noise_levels, wide.noise_levels)


def test_stratified_noise_covers_every_stratum_of_the_step_once():
    keys = [f"sample-{i}" for i in range(8)]
    whole = sample_noise(keys, 4, seed=0, epoch=0, eps=0.0, slots=list(range(8)), num_slots=8, step_seed=(0, 3))
    strata = torch.floor(whole.noise_levels * 8).long()
    assert sorted(strata.tolist()) == list(range(8))
    # the same rows, handed over as two micro-batches, get the same levels
    halves = [sample_noise(keys[i:i + 4], 4, seed=0, epoch=0, eps=0.0, slots=list(range(i, i + 4)), num_slots=8,
                           step_seed=(0, 3)) for i in (0, 4)]
    assert torch.equal(torch.cat([h.noise_levels for h in halves]), whole.noise_levels)
    # block diffusion: every block column is stratified over the step
    blocks = sample_noise(keys, 8, seed=0, epoch=0, eps=0.0, num_blocks=3, slots=list(range(8)), num_slots=8,
                          step_seed=(0, 3))
    for column in blocks.noise_levels.T:
        assert sorted(torch.floor(column * 8).long().tolist()) == list(range(8))


def test_a_streaming_dataset_on_two_processes_trains_on_each_sample_once_per_epoch(tmp_path):
    """An IterableDataset (2 shards) under 2 processes: one epoch (2 steps x global batch 4 = the 8 samples) trains
    on every sample exactly once (accelerate dispatches slices of each global batch to the processes)."""
    import json

    from split_worker import streaming_rows
    from tiny import tiny_diffusion_model

    out = str(tmp_path / "stream.safetensors")
    launch([out, "--batch", "1", "--accumulation", "2", "--streaming"])
    seen = [key for rank in (0, 1) for key in json.load(open(f"{out}.rank{rank}.json"))]
    rows = streaming_rows(tiny_diffusion_model("llama")[1])
    assert sorted(seen) == sorted(sample_keys(torch.tensor([row["input_ids"] for row in rows])))
    assert len(set(seen)) == 8


def test_shipped_launch_configs_say_what_training_readme_promises():
    """The three launch configs parse with accelerate's own loader and carry the settings training/README.md
    describes; the FSDP units are the models' decoder layers."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from tiny import tiny_diffusion_model

    folder = os.path.join(REPO, "training", "accelerate")
    fsdp = load_config_from_file(os.path.join(folder, "fsdp2.yaml"))
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.mixed_precision == "bf16"
    assert fsdp.fsdp_config["fsdp_version"] == 2 and fsdp.fsdp_config["fsdp_reshard_after_forward"] is True
    assert fsdp.fsdp_config["fsdp_activation_checkpointing"] is True
    assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a full checkpoint at every save
    for stage in (2, 3):
        config = load_config_from_file(os.path.join(folder, f"deepspeed_zero{stage}.yaml"))
        assert config.distributed_type == DistributedType.DEEPSPEED and config.mixed_precision == "bf16"
        assert config.deepspeed_config["zero_stage"] == stage
    assert load_config_from_file(os.path.join(folder, "deepspeed_zero3.yaml")).deepspeed_config[
        "zero3_save_16bit_model"] is True
    # TRANSFORMER_BASED_WRAP without a class list wraps the model's _no_split_modules: its decoder layers
    for family, layer in (("llama", "LlamaDecoderLayer"), ("gpt2", "GPT2Block"), ("qwen2", "Qwen2DecoderLayer")):
        model = tiny_diffusion_model(family)[0]
        assert layer in model._no_split_modules
        assert any(type(module).__name__ == layer for module in model.modules())
