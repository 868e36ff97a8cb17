"""Training for parallelism (issue 22, item 2): self-distillation on the model's own causal greedy decode."""

import importlib.util
import json
import os
import random
import sys

import pytest
import torch
from test_verify import causal_greedy
from tiny import WORDS, tiny_diffusion_model

from diffusion_lm.checkpoint import load_checkpoint, save_checkpoint
from diffusion_lm.parallelism import causal_greedy_continuations, corpus_prompts

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "training", "parallelism_distillation.py")


def causal_context_model(seed=0):
    model, tokenizer = tiny_diffusion_model("llama", seed=seed)
    model.config.attention_mode = "block"
    model.config.diffusion_block_size = 4
    model.config.context_attention = "causal"
    model.set_attn_implementation("sdpa")
    return model, tokenizer


def recipe_module():
    spec = importlib.util.spec_from_file_location("parallelism_distillation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def tiny_corpus(path, documents=60, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(documents):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS[:40]) for _ in range(rng.randint(6, 20)))}) + "\n")
    return str(path)


def test_the_training_data_is_the_causal_greedy_decode_token_for_token():
    model, tokenizer = causal_context_model()
    prompts = [[1, 10, 11, 12], [1, 20], [1, 30, 31]]
    sequences, tokens_per_forward = causal_greedy_continuations(model, prompts, 9, batch_size=2)
    for prompt, sequence in zip(prompts, sequences):
        assert sequence == causal_greedy(model, prompt, 9)
    assert tokens_per_forward >= 1.0


def test_corpus_prompts_cut_documents_by_the_packing_rule_and_name_a_shortfall():
    _, tokenizer = causal_context_model()
    prompts = corpus_prompts(["the cat sat on the mat", "a dog ran"], tokenizer, 3, 3)
    eos = tokenizer.eos_token_id
    stream = tokenizer("the cat sat on the mat", add_special_tokens=False)["input_ids"] + [eos]
    assert prompts[:2] == [stream[:3], stream[3:6]] and len(prompts) == 3
    with pytest.raises(ValueError, match="fewer than the 10 asked"):
        corpus_prompts(["the cat"], tokenizer, 3, 10)


def recipe_flags(source, corpus, out, steps, learning_rate, lora_r):
    return ["--model", str(source), "--dataset", corpus, "--output_dir", str(out), "--num_sequences", "16",
            "--prompt_tokens", "8", "--new_tokens", "8", "--eval_prompts", "4", "--generation_batch_size", "8",
            "--lora_r", str(lora_r), "--max_steps", str(steps), "--logging_steps", "2", "--save_steps", "6",
            "--learning_rate", str(learning_rate), "--warmup_steps", "0", "--seed", "0"]


def test_the_recipe_trains_a_lora_adapter_and_saves_a_merged_model(tmp_path):
    """On a tiny causal-context block model: the output is a merged diffusion checkpoint (no adapter files) whose
    weights moved, with a training record of stage 'parallelism'; a rerun without --resume is refused, and --resume
    of the finished run reuses the generated corpus."""
    model, tokenizer = causal_context_model()
    source = save_checkpoint(model, tokenizer, tmp_path / "adapted")
    out = tmp_path / "parallel"
    flags = recipe_flags(source, tiny_corpus(tmp_path / "corpus.jsonl"), out, 12, 5e-3, 4)
    recipe = recipe_module()
    assert recipe.main(flags) == 0
    assert not any(name.startswith("adapter") for name in os.listdir(out))
    record = json.loads((out / "diffusion_lm_training.json").read_text())
    assert record["stage"] == "parallelism" and record["steps"] == 12 and record["recipe"]["lora_r"] == 4
    assert "verify_tokens_per_forward_after" in record
    assert "parallelism self-distillation" in (out / "README.md").read_text()
    trained, _ = load_checkpoint(str(out))
    assert trained.config.context_attention == "causal" and trained.config.diffusion_block_size == 4
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), model.state_dict().values()))

    with pytest.raises(ValueError, match="already holds a finished model.*--overwrite-output-dir"):
        recipe.main(flags)
    corpus_written = os.path.getmtime(out / recipe.CORPUS_FILE)
    assert recipe.main(flags + ["--resume"]) == 0
    assert os.path.getmtime(out / recipe.CORPUS_FILE) == corpus_written
    assert recipe.main(flags + ["--overwrite-output-dir"]) == 0  # the flag the refusal names exists


def test_the_recipe_makes_the_drafts_agree_with_the_causal_decode(tmp_path):
    """The training sequences are the checkpoint's causal greedy decode token for token; after training on them
    (full fine-tuning: a tiny model's LoRA learns too slowly for a test), verify="causal" commits more tokens per
    forward on those prompts than before."""
    model, tokenizer = causal_context_model()
    source = save_checkpoint(model, tokenizer, tmp_path / "adapted")
    out = tmp_path / "parallel"
    recipe = recipe_module()
    assert recipe.main(recipe_flags(source, tiny_corpus(tmp_path / "corpus.jsonl"), out, 60, 1e-2, 0)) == 0
    sequences = json.loads((out / recipe.CORPUS_FILE).read_text())["sequences"]
    for sequence in sequences[:4]:
        assert sequence == causal_greedy(model, sequence[:8], 8)
    prompts = [sequence[:8] for sequence in sequences]
    trained, _ = load_checkpoint(str(out))
    before = causal_greedy_continuations(model, prompts, 8, 16)[1]
    after = causal_greedy_continuations(trained, prompts, 8, 16)[1]
    assert after > before + 0.1, (before, after)


def test_bad_recipe_settings_are_refused_naming_the_field(tmp_path):
    recipe = recipe_module()
    for flag, value, field in [("--lora_r", "-1", "lora_r"), ("--new_tokens", "0", "new_tokens"),
                               ("--eval_prompts", "-2", "eval_prompts")]:
        with pytest.raises(ValueError, match=field):
            recipe.main(["--model", str(tmp_path), "--output_dir", str(tmp_path / "o"), flag, value])
