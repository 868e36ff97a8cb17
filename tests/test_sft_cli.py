"""``diffusion-lm sft`` / ``diffusion-lm chat`` on tiny checkpoints (CPU, seconds)."""

import io
import json
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from tiny import save_tiny_ar_checkpoint, tiny_diffusion_model

from diffusion_lm.cli import main

ROWS = [
    {"instruction": "what is one plus one ?", "input": "", "output": "two"},
    {"instruction": "hello", "input": "", "output": "good morning sun"},
]


@pytest.fixture
def checkpoint(tmp_path):
    directory = str(tmp_path / "base")
    model, tokenizer = tiny_diffusion_model("llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    return str(path)


def summary_of(out: str) -> dict:
    """The JSON summary the command prints last (Trainer's log lines come before it)."""
    start = out.rfind("\n{\n")
    return json.loads(out[start + 1 if start >= 0 else 0:])


def sft(*extra):
    return main(["sft", "--batch-size", "2", "--max-steps", "2", "--logging-steps", "1", "--max-length", "32", *extra])


def test_full_sft_writes_checkpoint_record_and_card(checkpoint, alpaca_file, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert sft("--model", checkpoint, "--dataset", alpaca_file, "--output-dir", out, "--format", "plain") == 0
    summary = summary_of(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["train_rows"] == 2
    assert os.path.isfile(os.path.join(out, "model.safetensors"))
    record = json.load(open(os.path.join(out, "diffusion_lm_training.json")))
    assert record["stage"] == "sft" and record["steps"] == 2 and record["base_model"] == checkpoint
    card = open(os.path.join(out, "README.md")).read()
    assert "diffusion-lm model card" in card and "supervised fine-tuning" in card
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).config.model_type == "diffullama"


def test_lora_sft_with_merge_writes_the_full_model_where_the_next_commands_look(
    checkpoint, alpaca_file, tmp_path, capsys, monkeypatch
):
    out = str(tmp_path / "sft")
    assert sft("--model", checkpoint, "--dataset", alpaca_file, "--output-dir", out, "--lora", "--lora-r", "4",
               "--train-embeddings", "--merge", "--eval-dataset", alpaca_file) == 0
    summary = summary_of(capsys.readouterr().out)
    assert {"eval_loss_before", "eval_loss_after"} <= set(summary)
    # OUTPUT_DIR is the merged full model, push-ready, with its card; the adapter sits in OUTPUT_DIR/adapter
    from diffusion_lm.push import commit_operations, push_readiness_problems

    assert push_readiness_problems(out) == []
    assert json.load(open(os.path.join(out, "diffusion_lm_training.json")))["stage"] == "sft"
    assert "diffusion-lm model card" in open(os.path.join(out, "README.md")).read()
    adapter_dir = os.path.join(out, "adapter")
    adapter = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    assert adapter["r"] == 4 and set(adapter["modules_to_save"]) == {"embed_tokens", "lm_head"}
    assert adapter["base_model_name_or_path"] == checkpoint
    assert json.load(open(os.path.join(adapter_dir, "diffusion_lm_training.json")))["lora"]["r"] == 4
    assert not any(op.path_in_repo.startswith("adapter/") for op in commit_operations(out, "me/sft"))
    # the commands after it in the README find a full model there
    assert main(["generate", out, "--prompt", "hello", "--max-new-tokens", "4"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", out, "--max-new-tokens", "4"]) == 0
    assert main(["chat", adapter_dir, "--max-new-tokens", "4"]) == 0  # the adapter still loads on its base


def test_lora_adapter_records_its_base_by_absolute_path(checkpoint, alpaca_file, tmp_path, monkeypatch, capsys):
    # train from a relative base path, then load the adapter from another working directory
    monkeypatch.chdir(os.path.dirname(checkpoint))
    relative_base = os.path.basename(checkpoint)
    assert sft("--model", relative_base, "--dataset", alpaca_file, "--output-dir", "lora-out", "--lora",
               "--lora-r", "4", "--save-steps", "1") == 0
    adapter_dir = os.path.join(os.path.dirname(checkpoint), "lora-out")
    for directory in (adapter_dir, os.path.join(adapter_dir, "checkpoint-2")):
        base = json.load(open(os.path.join(directory, "adapter_config.json")))["base_model_name_or_path"]
        assert base == checkpoint
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", adapter_dir, "--max-new-tokens", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [(["--max-steps", "0"], "max-steps"), (["--merge"], "--lora"), (["--batch-size", "0"], "batch-size")],
)
def test_sft_rejects_bad_arguments(checkpoint, alpaca_file, tmp_path, extra, message, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LM_DEBUG", "1")  # the command line re-raises: the errors themselves are checked
    with pytest.raises(ValueError, match=message):
        sft("--model", checkpoint, "--dataset", alpaca_file, "--output-dir", str(tmp_path / "o"), *extra)


def test_sft_rejects_an_ar_checkpoint(alpaca_file, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LM_DEBUG", "1")
    ar = save_tiny_ar_checkpoint(str(tmp_path / "ar"))
    with pytest.raises(ValueError, match="not a diffusion LM"):
        sft("--model", ar, "--dataset", alpaca_file, "--output-dir", str(tmp_path / "o"))


@pytest.mark.parametrize("lora", [False, True])
def test_chat_session_answers_each_line_and_exits(checkpoint, tmp_path, monkeypatch, capsys, lora):
    data = tmp_path / "chat.jsonl"
    turns = [("hello", "good morning sun"), ("story", "once upon a time")]
    data.write_text("\n".join(
        json.dumps({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}) for q, a in turns
    ))
    out = str(tmp_path / "chat-model")
    flags = ["--lora", "--lora-r", "8", "--train-embeddings"] if lora else []
    sft("--model", checkpoint, "--dataset", str(data), "--output-dir", out, "--max-steps", "200",
        "--learning-rate", "5e-3", "--lr-scheduler-type", "constant", "--logging-steps", "100", *flags)
    capsys.readouterr()
    # the tiny model only learned single turns: each line on its own
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nstory\nexit\nnever read\n"))
    assert main(["chat", out, "--max-new-tokens", "8", "--no-history"]) == 0
    assert capsys.readouterr().out.splitlines() == ["good morning sun", "once upon a time"]
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\nstory\n"))  # blank lines skipped, EOF ends the session
    assert main(["chat", out, "--max-new-tokens", "8"]) == 0
    replies = capsys.readouterr().out.splitlines()
    assert len(replies) == 2 and replies[0] == "good morning sun"  # the second turn sees the first (history)
