"""Continual pre-training end to end on tiny checkpoints: CLI, Auto loading, exact resume, accelerate."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from tiny import WORDS, save_tiny_ar_checkpoint, tiny_tokenizer
from transformers import AutoModel, TrainerCallback

from diffusion_lm.adapt import AdaptSettings
from diffusion_lm.adapt_run import run_adaptation
from diffusion_lm.cli import main
from diffusion_lm.data import DiffusionDataCollator, load_text_dataset, pack_tokens
from diffusion_lm.modeling.block_diffusion import per_token_noise_levels, sample_block_noise_levels
from diffusion_lm.modeling.corruption import mask_tokens, maskable_positions
from diffusion_lm.modeling.generation_diffusion import fast_decoding_defaults
from diffusion_lm.modeling.noise_schedule import sample_noise_levels


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    docs = [" ".join(rng.choice(WORDS[:60]) for _ in range(rng.randint(10, 40))) for _ in range(80)]
    path.write_text("\n\n".join(docs))
    return str(path)


def tiny_flags(base, corpus, out, steps=4):
    return ["adapt", "--base", base, "--dataset", corpus, "--output-dir", out, "--max-steps", str(steps),
            "--anneal-steps", "2", "--block-size", "16", "--batch-size", "4", "--save-steps", "2",
            "--logging-steps", "1", "--seed", "0", "--no-sample"]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_cli_adapts_a_tiny_checkpoint_that_loads_through_automodel(tmp_path, corpus, family):
    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), family)
    out = str(tmp_path / "out")
    assert main(tiny_flags(base, corpus, out)) == 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.json",
                 "generation_config.json", "diffusion_lm_training.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, ".staging"))
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert model.config.mask_token_id == 90 and model.config.model_type.startswith("diffu")
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert [e["anneal_ratio"] for e in logged[:2]] == [0.5, 1.0]
    assert all("loss_unweighted" in e for e in logged)
    info = json.load(open(os.path.join(out, "diffusion_lm_training.json")))
    assert info["steps"] == 4 and info["block_size"] == 16 and info["anneal_steps"] == 2
    # the fast-decoding defaults of the model's objective ship in generation_config.json (block diffusion by
    # default: its exact prefix cache) and are what a bare generate() uses
    assert model.config.attention_mode == "block" and model.config.diffusion_block_size == 4
    assert model.config.context_attention == "causal"  # the default recipe: the context is the AR model
    assert info["ar_loss_weight"] == 1.0 and info["distill_weight"] == 0.5
    saved = json.load(open(os.path.join(out, "generation_config.json")))
    expected = fast_decoding_defaults(model.config)
    assert expected["kv_cache"] == "prefix" and expected["alg"] == "left_to_right" and expected["verify"] == "causal"
    assert {key: saved[key] for key in expected} == expected
    out_ids = model.generate(torch.tensor([[1, 10, 11, 12]]), max_new_tokens=8, return_dict_in_generate=True)
    assert out_ids.tokens_per_forward.item() >= 1.0 and (out_ids.sequences != 90).all()
    assert out_ids.verifications is not None  # a bare generate() of a causal-context checkpoint self-verifies


class CrashAfter(TrainerCallback):
    """Dies like a killed process right after ``step`` (its checkpoint is already on disk)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


def logged_losses(out):
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    return {e["step"]: (e["loss"], e["anneal_ratio"]) for e in state["log_history"] if "loss" in e}


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path, corpus):
    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), "llama")

    def settings(out):
        return AdaptSettings(base=base, dataset=corpus, output_dir=out, max_steps=8, anneal_steps=6, block_size=16,
                             batch_size=4, save_steps=4, logging_steps=1, seed=0, sample_prompt="",
                             learning_rate=1e-3)

    run_adaptation(settings(str(tmp_path / "straight")))
    interrupted = settings(str(tmp_path / "resumed"))
    with pytest.raises(KeyboardInterrupt):
        run_adaptation(interrupted, callbacks=[CrashAfter(6)])
    assert os.path.isdir(tmp_path / "resumed" / "checkpoint-4")
    interrupted.resume = True
    run_adaptation(interrupted)
    straight, resumed = logged_losses(tmp_path / "straight"), logged_losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 9))  # steps 1-4 come from checkpoint-4's trainer state
    for step in range(5, 9):
        assert resumed[step][0] == pytest.approx(straight[step][0], rel=1e-5), step
        assert resumed[step][1] == straight[step][1]


@pytest.mark.slow
def test_two_process_accelerate_launch_completes(tmp_path, corpus):
    # `--multi_gpu` makes accelerate spawn torch.distributed workers; without a GPU they join over gloo on CPU
    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), "gpt2")
    out = str(tmp_path / "out")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "diffusion_lm.cli", *tiny_flags(base, corpus, out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.load(open(os.path.join(out, "diffusion_lm_training.json")))
    assert info["global_batch_size"] == 8  # 4 per process x 2 processes
    AutoModel.from_pretrained(out, trust_remote_code=True)


def test_packing_joins_documents_with_eos(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "the cat sat"}\n{"text": "a dog ran"}\n{"text": ""}\n')
    tokenizer = tiny_tokenizer()
    packed = pack_tokens(load_text_dataset(str(path)), tokenizer, 4)
    stream = [t for row in packed["input_ids"] for t in row]
    eos = tokenizer.eos_token_id
    words = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    # 3 + 1 + 3 + 1 = 8 tokens: two full blocks, the empty document adds nothing
    assert stream == words("the cat sat") + [eos] + words("a dog ran") + [eos]
    assert [len(row) for row in packed["input_ids"]] == [4, 4]
    batch = DiffusionDataCollator(pad_token_id=0)([{"input_ids": [5, 6, 7]}, {"input_ids": [5]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_bad_inputs_fail_early(tmp_path, capsys):
    assert main(["adapt", "--preset", "no-such-model"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown preset"):  # --debug re-raises
        main(["adapt", "--preset", "no-such-model", "--debug"])
    with pytest.raises(ValueError, match="text column"):
        path = tmp_path / "d.jsonl"
        path.write_text('{"body": "x"}\n')
        pack_tokens(load_text_dataset(str(path)), tiny_tokenizer(), 4)
    with pytest.raises(ValueError, match="loss_normalization"):
        from diffusion_lm.trainer import DiffusionTrainingArguments

        DiffusionTrainingArguments(output_dir=str(tmp_path), loss_normalization="mean")


def test_presets_load_and_cli_flags_override():
    from diffusion_lm.adapt import resolve_settings
    from diffusion_lm.presets import available_presets

    assert {"gpt2", "gpt2-medium", "Llama-2-7b", "SmolLM2-135M"} <= set(available_presets())
    settings = resolve_settings("gpt2", {"max_steps": 10, "block_size": 256})
    assert settings.reuse_mask_token_id == 10541 and settings.mask_token is None
    assert settings.anneal_steps == 10000 and settings.max_steps == 10 and settings.block_size == 256
    llama = resolve_settings("llama-2-7b", {})
    assert llama.reuse_mask_token_id == 811 and llama.lr_scheduler_type == "constant" and llama.adam_beta2 == 0.95


@pytest.mark.parametrize("anneal_steps,expect_square", [(0, False), (100, True)])
def test_trainer_builds_an_annealing_mask_only_while_annealing(tmp_path, anneal_steps, expect_square):
    from tiny import tiny_diffusion_model

    from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments

    model, tokenizer = tiny_diffusion_model("llama")
    seen = []
    for layer in model.model.layers:
        layer.self_attn.register_forward_pre_hook(lambda m, a, k: seen.append(k.get("attention_mask")),
                                                  with_kwargs=True)
    train = [{"input_ids": list(range(6, 22))} for _ in range(8)]
    args = DiffusionTrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                      anneal_steps=anneal_steps, report_to="none", use_cpu=True, save_strategy="no")
    DiffusionTrainer(model=model, args=args, train_dataset=train,
                     data_collator=DiffusionDataCollator(tokenizer.pad_token_id)).train()
    assert seen
    if expect_square:
        assert all(m is not None and m.shape == (4, 1, 16, 16) for m in seen)
    else:
        assert all(m is None for m in seen)


def test_trainer_requires_a_mask_token(tmp_path):
    from tiny import tiny_diffusion_model

    from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments

    model, _ = tiny_diffusion_model("gpt2")
    model.config.mask_token_id = None
    args = DiffusionTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="mask token"):
        DiffusionTrainer(model=model, args=args)


@pytest.mark.parametrize("attention_mode", ["bidirectional", "block"])
def test_trainer_refuses_a_left_padded_batch(tmp_path, attention_mode):
    from tiny import tiny_diffusion_model

    from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments

    model, _ = tiny_diffusion_model("llama")
    if attention_mode == "block":
        model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    trainer = DiffusionTrainer(model=model, args=DiffusionTrainingArguments(output_dir=str(tmp_path),
                                                                            report_to="none", use_cpu=True))
    ids = torch.tensor([[0, 0, 1, 10, 11, 12, 13, 14], [1, 10, 11, 12, 13, 14, 15, 16]])
    left = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    with pytest.raises(ValueError, match="left-padded"):
        trainer.compute_loss(model, {"input_ids": ids, "attention_mask": left})
    right = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])
    model.train()

    def loss_of(input_ids):  # a training-mode batch outside a step draws its noise from the global RNG
        torch.manual_seed(0)
        return trainer.compute_loss(model, {"input_ids": input_ids, "attention_mask": right}, return_outputs=True)

    loss, output = loss_of(ids)
    # what the padding holds is neither seen nor scored
    other_padding = ids.clone()
    other_padding[0, 6:] = torch.tensor([50, 51])
    assert loss_of(other_padding)[0].item() == loss.item()
    # the same draws by hand: the loss is the 1/t-weighted cross-entropy of the masked real tokens per masked token
    torch.manual_seed(0)
    maskable = maskable_positions(right, ids)
    if attention_mode == "block":
        levels = sample_block_noise_levels(2, 8, 4, trainer.args.noise_eps, stratified=True)
        token_levels = per_token_noise_levels(levels, 8, 4)
    else:
        token_levels = sample_noise_levels(2, trainer.args.noise_eps, stratified=True)[:, None].expand(-1, 8)
    noisy, is_masked = mask_tokens(ids, maskable, token_levels, model.config.mask_token_id)
    assert int(output.num_masked) == int(is_masked.sum()) > 0 and not is_masked[0, 6:].any()
    total = 0.0
    with torch.no_grad():
        for row, j in is_masked.nonzero().tolist():
            if attention_mode == "block":  # the block's noisy tokens after the clean earlier blocks
                start = j - j % 4
                logits = model(input_ids=torch.cat([ids[row, :start], noisy[row, start:start + 4]])[None],
                               attention_mask=right[row:row + 1, :start + 4]).logits[0]
                logits = logits[start - 1] if j == start else logits[j - 1]
            else:
                logits = model(input_ids=noisy[row:row + 1], attention_mask=right[row:row + 1]).logits[0, j - 1]
            total += torch.nn.functional.cross_entropy(logits[None].double(), ids[row, j][None]).item() / \
                token_levels[row, j].item()
    assert loss.item() == pytest.approx(total / int(is_masked.sum()), rel=1e-4)


@pytest.mark.smollm2
def test_embedded_gguf_converts_with_a_dedicated_mask_token(smollm2_gguf):
    from diffusion_lm.conversion import convert_checkpoint

    model, tokenizer = convert_checkpoint(smollm2_gguf)
    assert tokenizer.mask_token == "<|mdm_mask|>" and model.config.mask_token_id == 49152
    assert model.config.vocab_size == 49153 and model.config.tie_word_embeddings
    assert getattr(model.config, "quantization_config", None) is None  # weights are dequantised float32
    embeddings = model.get_input_embeddings().weight
    assert embeddings.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    mean = embeddings[:-1].mean(0)
    assert torch.allclose(embeddings[-1], mean, atol=0.05 * embeddings[:-1].std(0).max().item())


def test_a_save_killed_midway_leaves_no_checkpoint_to_resume_from(tmp_path, corpus, monkeypatch):
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), "llama")
    original = Trainer._save_optimizer_and_scheduler

    def dies_on_second_checkpoint(self, output_dir):
        if output_dir.endswith("checkpoint-4"):
            raise KeyboardInterrupt("killed while writing the optimizer state")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", dies_on_second_checkpoint)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_adaptation(AdaptSettings(base=base, dataset=corpus, output_dir=str(out), max_steps=6, block_size=16,
                                     batch_size=4, save_steps=2, seed=0, sample_prompt=""))
    assert (out / ".staging" / "checkpoint-4").is_dir()  # the half-written one stayed in staging
    assert not (out / "checkpoint-4").exists()
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-2")


def test_final_card_is_named_after_the_output_directory(tmp_path, corpus):
    from huggingface_hub import ModelCard

    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), "gpt2")
    out = tmp_path / "my-diffugpt"
    main(tiny_flags(base, corpus, str(out), steps=2))
    card = ModelCard.load(str(out / "README.md"))
    assert card.data.model_name == "my-diffugpt" and "diffusion-lm" in card.data.tags
    assert ".final-staging" not in card.text and "| Block size | 16 tokens |" in card.text


def test_ablation_flags_train_without_shift_and_from_random_weights(tmp_path, corpus):
    """--no-shift and --from-scratch (the paper's ablations) reach the saved model: its config, its weights."""
    from safetensors.torch import load_file

    base = save_tiny_ar_checkpoint(str(tmp_path / "ar"), "llama")
    out = str(tmp_path / "out")
    flags = tiny_flags(base, corpus, out, steps=2) + ["--attention-mode", "bidirectional", "--anneal-steps", "0",
                                                      "--no-shift", "--from-scratch", "--learning-rate", "1e-9"]
    assert main(flags) == 0
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert model.config.shift is False and model.config.attention_mode == "bidirectional"
    info = json.load(open(os.path.join(out, "diffusion_lm_training.json")))
    assert info["shift"] is False and info["initialization"] == "random (from scratch)" and info["anneal_steps"] == 0
    ar = load_file(os.path.join(base, "model.safetensors"))
    adapted = load_file(os.path.join(out, "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    # with a learning rate of 1e-9 the weights are still the initial ones: random, not the AR base's
    assert adapted[name].shape == ar[name].shape and not torch.allclose(adapted[name], ar[name], atol=1e-3)
    assert model.generate(torch.tensor([[1, 10, 11]]), max_new_tokens=4).shape == (1, 7)


@pytest.mark.parametrize("attention_mode", ["bidirectional", "block"])
def test_training_noise_levels_are_stratified_across_the_micro_batch(tmp_path, monkeypatch, attention_mode):
    """One t per stratum of (eps, 1) (measured: 0.43x the gradient variance of independent draws at batch 8)."""
    from tiny import tiny_diffusion_model

    import diffusion_lm.objective as objective
    from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments

    model, _ = tiny_diffusion_model("llama")
    if attention_mode == "block":
        model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    used = []
    real_mask_tokens = objective.mask_tokens

    def recording_mask_tokens(input_ids, maskable, levels, *args, **kwargs):
        used.append(levels.clone())
        return real_mask_tokens(input_ids, maskable, levels, *args, **kwargs)

    monkeypatch.setattr(objective, "mask_tokens", recording_mask_tokens)
    ids = torch.randint(6, 60, (8, 8), generator=torch.Generator().manual_seed(0))
    for stratified in (True, False):
        args = DiffusionTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                                          stratified_noise=stratified)
        trainer = DiffusionTrainer(model=model, args=args)
        strata_hit = []
        for _ in range(20):
            trainer.compute_loss(model, {"input_ids": ids})
            levels = used[-1] if used[-1].dim() == 1 else used[-1][:, ::4].flatten()  # one per sequence / block
            u = (levels - args.noise_eps) / (1 - args.noise_eps)  # t = eps + (1 - eps) u
            strata = (u * len(levels)).floor().long().clamp(max=len(levels) - 1)
            strata_hit.append(sorted(strata.tolist()) == list(range(len(levels))))
        assert all(strata_hit) if stratified else not all(strata_hit)
