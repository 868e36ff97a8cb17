"""`diffusion-lm adapt --output-dir D --resume` continues the recorded run, stops at --max-steps, and the final model
replaces an older one atomically."""

import hashlib
import json
import os
import random

import pytest
import torch
from safetensors.torch import load_file
from tiny import WORDS, save_tiny_ar_checkpoint
from transformers import AutoModel, TrainerCallback

import diffusion_lm.checkpoint as checkpoint_module
from diffusion_lm.adapt import RUN_RECORD_NAME, AdaptSettings
from diffusion_lm.adapt_run import run_adaptation
from diffusion_lm.cli import main


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(WORDS[:60]) for _ in range(30)) for _ in range(60)))
    return str(path)


@pytest.fixture
def base(tmp_path):
    return save_tiny_ar_checkpoint(str(tmp_path / "ar"), "llama")


def cli_flags(base, corpus, out, steps):
    return ["adapt", "--base", base, "--dataset", corpus, "--output-dir", out, "--max-steps", str(steps),
            "--anneal-steps", "2", "--block-size", "16", "--batch-size", "2", "--save-steps", "2",
            "--logging-steps", "1", "--learning-rate", "1e-3", "--seed", "0", "--no-sample"]


class KillAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def record(out):
    return json.load(open(os.path.join(out, "diffusion_lm_training.json")))


def logged_steps(out):
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    return [entry["step"] for entry in state["log_history"] if "loss" in entry]


def test_resume_with_only_the_output_dir_continues_the_recorded_run(tmp_path, base, corpus, capsys, monkeypatch):
    out = str(tmp_path / "run")
    settings = AdaptSettings(base=base, dataset=corpus, output_dir=out, max_steps=6, anneal_steps=2, block_size=16,
                             batch_size=2, save_steps=2, logging_steps=1, learning_rate=1e-3, seed=0,
                             sample_prompt="")
    with pytest.raises(KeyboardInterrupt):
        run_adaptation(settings, callbacks=[KillAfter(3)])
    assert os.path.isfile(os.path.join(out, RUN_RECORD_NAME))
    monkeypatch.chdir(tmp_path)  # the record's paths resolve from any working directory
    assert main(["adapt", "--output-dir", out, "--resume", "--no-sample"]) == 0
    printed = capsys.readouterr().out
    assert f"from {os.path.join(out, 'checkpoint-2')} (step 2 of 6)" in printed
    info = record(out)
    assert info["base_model"] == base and info["datasets"] == [corpus]  # not the embedded base, not a new corpus
    assert info["steps"] == 6 and info["block_size"] == 16 and info["learning_rate"] == 1e-3
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]
    # flags that only change logging / saving are accepted; ones that change the run are refused, by name
    assert main(["adapt", "--output-dir", out, "--resume", "--logging-steps", "3", "--no-sample"]) == 0
    assert main(["adapt", "--output-dir", out, "--resume", "--anneal-steps", "0"]) == 2
    assert "--anneal-steps 0" in capsys.readouterr().err


def test_resume_repeating_the_recorded_flags_is_accepted(tmp_path, base, corpus, capsys):
    out = str(tmp_path / "run")
    assert main(cli_flags(base, corpus, out, steps=2)) == 0
    assert main(cli_flags(base, corpus, out, steps=2) + ["--resume"]) == 0
    assert "already reached --max-steps 2" in capsys.readouterr().out
    assert main(cli_flags(base, corpus, out, steps=3) + ["--resume"]) == 2
    assert "--max-steps 3" in capsys.readouterr().err


def test_resuming_a_finished_run_trains_no_step_past_max_steps(tmp_path, base, corpus, capsys):
    out = str(tmp_path / "run")
    assert main(cli_flags(base, corpus, out, steps=3)) == 0
    weights = load_file(os.path.join(out, "model.safetensors"))
    first_loss = record(out)["final_train_loss"]
    assert main(["adapt", "--output-dir", out, "--resume", "--no-sample"]) == 0
    info = record(out)
    assert info["steps"] == 3 and info["final_train_loss"] == first_loss
    assert logged_steps(out) == [1, 2, 3]
    assert json.load(open(os.path.join(out, "trainer_state.json")))["global_step"] == 3
    assert not os.path.exists(os.path.join(out, "checkpoint-4"))
    card = open(os.path.join(out, "README.md")).read()
    assert "| Training steps | 3 |" in card
    for name, tensor in load_file(os.path.join(out, "model.safetensors")).items():
        torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)


def _hashes(directory, names=("config.json", "model.safetensors", "README.md", "diffusion_lm_training.json")):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in names if os.path.isfile(os.path.join(directory, name))}


def test_final_model_replacement_never_mixes_generations(tmp_path, base, corpus, monkeypatch):
    """Every rename of the final swap leaves either the complete old model, or no config.json (nothing loads)."""
    out = str(tmp_path / "run")
    assert main(cli_flags(base, corpus, out, steps=2)) == 0
    old = _hashes(out)
    states = []
    real_replace = os.replace

    def observed_replace(src, dst):
        real_replace(src, dst)
        if checkpoint_module.FINAL_STAGING in str(src) or checkpoint_module.FINAL_PREVIOUS in str(dst):
            states.append(_hashes(out))

    monkeypatch.setattr(checkpoint_module.os, "replace", observed_replace)
    # a new run writes over the old final model (asked to)
    assert main(cli_flags(base, corpus, out, steps=4) + ["--overwrite-output-dir"]) == 0
    monkeypatch.undo()
    assert len(states) > 5
    for present in states:
        # weights, card and record all old or all new (config.json may be byte-identical across the two runs)
        generation = {digest == old[name] for name, digest in present.items() if name != "config.json"}
        assert len(generation) <= 1, present
        if "config.json" in present:  # loadable: then complete
            assert len(present) == 4, present
    assert record(out)["steps"] == 4 and not os.path.exists(os.path.join(out, checkpoint_module.FINAL_PREVIOUS))


def test_kill_during_the_final_save_then_resume_ends_at_max_steps(tmp_path, base, corpus, monkeypatch, capsys):
    out = str(tmp_path / "run")
    assert main(cli_flags(base, corpus, out, steps=2)) == 0  # an older final model in the directory
    old = _hashes(out)
    real_replace = os.replace

    def killed_after_the_weights(src, dst):
        real_replace(src, dst)
        if checkpoint_module.FINAL_STAGING in str(src) and str(dst).endswith("model.safetensors"):
            raise KeyboardInterrupt("killed while moving the final model into place")

    monkeypatch.setattr(checkpoint_module.os, "replace", killed_after_the_weights)
    assert main(cli_flags(base, corpus, out, steps=4) + ["--overwrite"]) == 130
    monkeypatch.undo()
    # the new weights are in place, but neither the old config, card nor record sits beside them
    present = _hashes(out)
    assert "config.json" not in present and present["model.safetensors"] != old["model.safetensors"]
    assert all(present[name] != old[name] for name in ("README.md", "diffusion_lm_training.json") if name in present)
    capsys.readouterr()
    assert main(["adapt", "--output-dir", out, "--resume", "--no-sample"]) == 0
    assert "already reached --max-steps 4" in capsys.readouterr().out
    assert record(out)["steps"] == 4 and logged_steps(out) == [1, 2, 3, 4]
    checkpoint = load_file(os.path.join(out, "checkpoint-4", "model.safetensors"))
    for name, tensor in load_file(os.path.join(out, "model.safetensors")).items():
        torch.testing.assert_close(tensor, checkpoint[name], rtol=0, atol=0)
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert model.config.mask_token_id == 90


def test_a_run_without_a_record_resumes_only_with_its_flags(tmp_path, base, corpus, capsys):
    out = str(tmp_path / "run")
    settings = AdaptSettings(base=base, dataset=corpus, output_dir=out, max_steps=4, block_size=16, batch_size=2,
                             save_steps=2, seed=0, sample_prompt="")
    with pytest.raises(KeyboardInterrupt):
        run_adaptation(settings, callbacks=[KillAfter(3)])
    os.remove(os.path.join(out, RUN_RECORD_NAME))  # as written by a version without run records
    assert main(["adapt", "--output-dir", out, "--resume"]) == 2
    assert "--dataset" in capsys.readouterr().err  # not a silent fall-back to the embedded base and corpus
    flags = ["adapt", "--base", base, "--dataset", corpus, "--output-dir", out, "--block-size", "16",
             "--batch-size", "2", "--save-steps", "2", "--seed", "0", "--no-sample", "--resume"]
    assert main(flags + ["--max-steps", "5"]) == 2
    assert "--max-steps 5" in capsys.readouterr().err
    assert main(flags + ["--max-steps", "4"]) == 0
    assert "No run record" in capsys.readouterr().out and record(out)["steps"] == 4


# --- a kill -9 during training, then a damaged newest checkpoint --------------------------------------------------
KILL_SCRIPT = """
import os, signal, sys
from transformers import TrainerCallback
from diffusion_lm.adapt import AdaptSettings
from diffusion_lm.adapt_run import run_adaptation

class KillNine(TrainerCallback):  # the process dies as under `kill -9`: no handler, no cleanup
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)

settings = AdaptSettings(base=sys.argv[1], dataset=sys.argv[2], output_dir=sys.argv[3], **{EXACT!r})
run_adaptation(settings, callbacks=[KillNine()])
"""
EXACT = dict(max_steps=8, anneal_steps=2, block_size=16, batch_size=2, save_steps=2, save_total_limit=3,
             logging_steps=1, learning_rate=1e-3, seed=0, sample_prompt="")


def truncate(path, keep_fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep_fraction))


@pytest.fixture
def killed_run(tmp_path, base, corpus):
    """A run of 8 steps killed with SIGKILL after step 7 (checkpoints 2, 4 and 6 on disk)."""
    import signal
    import subprocess
    import sys

    out = str(tmp_path / "killed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT.replace("{EXACT!r}", repr(EXACT)), base, corpus, out,
                             "7"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert {"checkpoint-2", "checkpoint-4", "checkpoint-6"} <= set(os.listdir(out))
    assert not os.path.exists(os.path.join(out, "model.safetensors"))  # no final model: it died mid-run
    return out


def test_kill_9_then_a_truncated_newest_checkpoint_resumes_from_the_previous_one_exactly(
        tmp_path, base, corpus, killed_run, capsys):
    straight = str(tmp_path / "straight")
    run_adaptation(AdaptSettings(base=base, dataset=corpus, output_dir=straight, **EXACT))
    truncate(os.path.join(killed_run, "checkpoint-6", "model.safetensors"))
    capsys.readouterr()
    assert main(["adapt", "--output-dir", killed_run, "--resume", "--no-sample"]) == 0
    captured = capsys.readouterr()
    newest = os.path.join(killed_run, "checkpoint-6")
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and newest in warning[0] and "model.safetensors" in warning[0], captured.err
    assert f"from {os.path.join(killed_run, 'checkpoint-4')} (step 4 of 8)" in captured.out
    assert record(killed_run)["steps"] == 8
    assert logged_steps(killed_run) == list(range(1, 9))
    expected = load_file(os.path.join(straight, "model.safetensors"))
    resumed = load_file(os.path.join(killed_run, "model.safetensors"))
    assert resumed.keys() == expected.keys()
    for name, tensor in resumed.items():  # the uninterrupted run's weights
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json",
                                     "rng_state.pth"])
def test_each_damaged_checkpoint_file_is_named_and_skipped(killed_run, damaged, capsys):
    from diffusion_lm.adapt import load_run_record, resume_checkpoint, settings_from_record

    truncate(os.path.join(killed_run, "checkpoint-6", damaged), 0.6)
    settings = settings_from_record(load_run_record(killed_run), killed_run)
    settings.resume = "latest"
    assert resume_checkpoint(settings) == os.path.join(killed_run, "checkpoint-4")
    err = capsys.readouterr().err
    assert "checkpoint-6" in err and damaged in err and "checkpoint-4" in err
    # named explicitly, the damaged checkpoint is refused, by name
    settings.resume = os.path.join(killed_run, "checkpoint-6")
    with pytest.raises(ValueError, match=f"checkpoint-6 is damaged: {damaged}"):
        resume_checkpoint(settings)


def test_no_intact_checkpoint_is_a_one_line_error(killed_run, capsys, monkeypatch):
    for step in (2, 4, 6):
        truncate(os.path.join(killed_run, f"checkpoint-{step}", "model.safetensors"))
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)
    assert main(["adapt", "--output-dir", killed_run, "--resume", "--no-sample"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no intact checkpoint" in err[0] and killed_run in err[0], err
    assert "Traceback" not in err[0] and "bug" not in err[0]


def test_save_total_limit_deletes_the_oldest_checkpoints_but_never_the_newest_nor_the_best(tmp_path):
    from diffusion_lm.trainer import delete_old_checkpoints

    for step in (2, 4, 6, 8, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-notes").mkdir()  # not a checkpoint: never touched
    delete_old_checkpoints(str(tmp_path), 2, keep=(None, str(tmp_path / "checkpoint-4")))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-10", "checkpoint-4", "checkpoint-notes"]
    delete_old_checkpoints(str(tmp_path), 1)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-10", "checkpoint-notes"]
    delete_old_checkpoints(str(tmp_path), None)  # no limit: nothing deleted
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-10", "checkpoint-notes"]
    # a run resumed from an earlier step writes checkpoint-6 beside a stale checkpoint-10: the new one stays
    (tmp_path / "checkpoint-6").mkdir()
    delete_old_checkpoints(str(tmp_path), 1, keep=(str(tmp_path / "checkpoint-6"),))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-10", "checkpoint-6", "checkpoint-notes"]


def test_the_best_model_is_named_by_its_final_folder_and_survives_rotation(tmp_path, base, corpus):
    """load_best_model_at_end: transformers names the best checkpoint while it is written (in the staging folder);
    the run state and the saved trainer_state.json must name the folder it is renamed to, which rotation keeps."""
    import json

    out = str(tmp_path / "best")
    settings = AdaptSettings(base=base, dataset=corpus, eval_dataset=corpus, output_dir=out, eval_steps=2,
                             **{**EXACT, "save_total_limit": 1},
                             extra_training_args={"load_best_model_at_end": True, "metric_for_best_model": "loss"})
    run_adaptation(settings)
    checkpoints = sorted(name for name in os.listdir(out) if name.startswith("checkpoint-"))
    assert checkpoints  # the newest, and the best where it is another one
    for name in checkpoints:
        with open(os.path.join(out, name, "trainer_state.json"), encoding="utf-8") as f:
            best = json.load(f)["best_model_checkpoint"]
        assert ".staging" not in best and os.path.isdir(best), best
    assert ".staging" not in os.listdir(out)
