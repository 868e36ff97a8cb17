"""Every benchmark in benchmarks/ (but generate_speed.py, tested with its own fix) runs its smallest setting on both
objectives: a tiny block-diffusion model (the default of `diffusion-lm adapt`) and a tiny full-attention model."""

from __future__ import annotations

import importlib.util
import json
import os
import random

import pytest
from tiny import WORDS, save_tiny_ar_checkpoint, tiny_diffusion_model

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
OBJECTIVES = ["block", "bidirectional"]


def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    paths = {"ar": save_tiny_ar_checkpoint(str(root / "ar"), "llama")}
    for mode in OBJECTIVES:
        model, tokenizer = tiny_diffusion_model("llama")
        model.config.attention_mode = mode
        model.config.diffusion_block_size = 4 if mode == "block" else None
        paths[mode] = str(root / mode)
        model.save_pretrained(paths[mode])
        tokenizer.save_pretrained(paths[mode])
    rng = random.Random(0)
    paths["text"] = str(root / "held-out.txt")
    with open(paths["text"], "w", encoding="utf-8") as f:
        f.write("\n\n".join(" ".join(rng.choice(WORDS[6:60]) for _ in range(40)) for _ in range(6)))
    paths["eval"] = str(root / "eval")
    os.makedirs(paths["eval"])
    with open(os.path.join(paths["eval"], "piqa_valid.jsonl"), "w", encoding="utf-8") as f:
        for label in (0, 1, 0):
            f.write(json.dumps({"goal": "the cat", "sol1": "sat on the mat", "sol2": "flew over the sky",
                                "label": label}) + "\n")
    with open(os.path.join(paths["eval"], "lambada_test_plain_text.txt"), "w", encoding="utf-8") as f:
        f.write("once upon a time there lived a king\nthe dog ran under the tree\nthe sun and the moon\n")
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("mode", OBJECTIVES)
def test_train_throughput_smallest_setting(workspace, mode, capsys):
    benchmark("train_throughput").main([
        "--base", workspace["ar"], "--attention-mode", mode, "--diffusion-block-size", "4", "--block-size", "16",
        "--batch-size", "2", "--steps", "1", "--warmup", "1", "--rounds", "1", "--same-process", "--threads", "1",
        "--device", "cpu"])
    out = capsys.readouterr().out
    assert ("block diffusion (4)" if mode == "block" else "full attention") in out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "tokens/s" not in line]
    expected = ["causal-lm", "diffusion-anneal", "diffusion"] + (
        ["diffusion-full-logits"] if mode != "block" else ["diffusion-keep-ar", "diffusion-keep-ar-lora"])
    assert rows == expected
    if mode != "block":
        assert "= 0.00e+00 nats" in out  # the chunked loss equals the full-logits loss


@pytest.mark.slow
@pytest.mark.parametrize("mode", OBJECTIVES)
def test_gradient_variance_smallest_setting(workspace, mode, capsys):
    assert benchmark("gradient_variance").main([
        "--model", workspace[mode], "--data", workspace["text"], "--batch-size", "2", "--block-size", "16",
        "--draws", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert ("block diffusion, blocks of 4" if mode == "block" else "full attention") in out
    assert "| iid |" in out and "| stratified |" in out and "nan" not in out


@pytest.mark.slow
@pytest.mark.parametrize("mode", OBJECTIVES)
def test_scoring_agreement_smallest_setting(workspace, mode, capsys):
    assert benchmark("scoring_agreement").main([
        "--model", workspace[mode], "--data", workspace["eval"], "--limit", "3", "--estimators", "elbo",
        "--samples", "2", "--batch-size", "8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| elbo | 2 |" in out and "piqa (3 items) and LAMBADA (3 passages)" in out
