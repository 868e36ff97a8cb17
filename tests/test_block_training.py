"""Block-diffusion training (issue 10): the one-pass [noisy ; clean] objective against a per-block hand computation,
its attention mask, annealing, DiffusionTrainer and LoRA SFT on block models, and the settings it refuses."""

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from tiny import tiny_diffusion_model

from diffusion_lm.adapt import AdaptSettings, resolve_settings
from diffusion_lm.data import DiffusionDataCollator
from diffusion_lm.modeling.block_diffusion import (
    per_token_noise_levels,
    prediction_indices,
    two_stream_attention_pattern,
)
from diffusion_lm.modeling.corruption import mask_tokens, maskable_positions
from diffusion_lm.objective import ObjectiveSettings, diffusion_objective
from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments


def block_model(family="llama", block_size=4, attn_implementation="sdpa", seed=0):
    model, tokenizer = tiny_diffusion_model(family, seed=seed)
    model.set_attn_implementation(attn_implementation)
    model.config.attention_mode = "block"
    model.config.diffusion_block_size = block_size
    return model, tokenizer


def hand_computed_weighted_sum(model, clean, noisy, is_masked, token_levels, attention_mask, block_size):
    """sum over masked tokens of CE / t, one block at a time: the model runs on [clean blocks < k ; noisy block k]
    (block mode, 2D mask) and token j is read at logit j - 1 of that run."""
    total = 0.0
    seq_len = clean.shape[1]
    with torch.no_grad():
        for start in range(0, seq_len, block_size):
            end = min(start + block_size, seq_len)
            ids = torch.cat([clean[:, :start], noisy[:, start:end]], dim=1)
            logits = model(input_ids=ids, attention_mask=attention_mask[:, :end]).logits
            for row in range(clean.shape[0]):
                for j in range(max(start, 1), end):
                    if is_masked[row, j]:
                        log_probs = F.log_softmax(logits[row, j - 1].double(), dim=-1)
                        total += -log_probs[clean[row, j]].item() / token_levels[row, j].item()
    return total


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_one_pass_loss_equals_the_per_block_hand_computation(family, attn_implementation):
    block_size, seq_len = 4, 14  # the last block is partial
    model, _ = block_model(family, block_size, attn_implementation)
    torch.manual_seed(1)
    clean = torch.randint(6, 60, (3, seq_len))
    attention_mask = torch.ones_like(clean)
    attention_mask[2, 11:] = 0  # right padding in one row
    maskable = maskable_positions(attention_mask, clean)
    block_levels = torch.tensor([[0.9, 0.5, 0.3, 0.7], [0.2, 0.95, 0.6, 0.4], [0.8, 0.8, 0.5, 0.9]])
    outputs = {}
    for normalization in ("masked_tokens", "elbo"):
        generator = torch.Generator().manual_seed(7)
        outputs[normalization] = diffusion_objective(
            model, clean, maskable, ObjectiveSettings(model.config.mask_token_id, normalization=normalization),
            attention_mask=attention_mask, noise_levels=block_levels, generator=generator)
    # the same corruption, drawn the same way
    token_levels = per_token_noise_levels(block_levels, seq_len, block_size)
    noisy, is_masked = mask_tokens(clean, maskable, token_levels, model.config.mask_token_id,
                                   generator=torch.Generator().manual_seed(7))
    assert is_masked.any() and (is_masked[:, ::block_size] | ~maskable[:, ::block_size]).any()
    expected = hand_computed_weighted_sum(model, clean, noisy, is_masked, token_levels, attention_mask, block_size)
    num_masked, num_modelled = int(is_masked.sum()), int(maskable.sum())
    assert outputs["elbo"].num_masked.item() == num_masked and outputs["elbo"].num_modelled.item() == num_modelled
    assert outputs["elbo"].weighted_sum.item() == pytest.approx(expected, rel=1e-5)
    assert outputs["masked_tokens"].loss.item() == pytest.approx(expected / num_masked, rel=1e-5)
    assert outputs["elbo"].loss.item() == pytest.approx(expected / num_modelled, rel=1e-5)


def test_first_token_of_a_block_is_predicted_from_the_clean_stream():
    # with the shift, token j is read at j - 1: noisy stream inside a block, clean stream (index L + j - 1) at a start
    assert prediction_indices(8, 4).tolist() == [0, 1, 2, 8 + 3, 4, 5, 6]
    assert prediction_indices(8, 1).tolist() == [8, 9, 10, 11, 12, 13, 14]  # block 1 = AR: always the clean stream
    assert prediction_indices(8, 4, shift=False).tolist() == list(range(8))


def test_two_stream_mask_structure():
    seq_len, block_size = 10, 4  # blocks 0-3, 4-7, 8-9
    key_is_token = torch.ones(2, seq_len, dtype=torch.bool)
    key_is_token[1, 9] = False
    pattern = two_stream_attention_pattern(2, seq_len, block_size, key_is_token)
    assert pattern.shape == (2, 1, 2 * seq_len, 2 * seq_len)
    block = [p // block_size for p in range(seq_len)]
    for row in range(2):
        for q in range(seq_len):
            for k in range(seq_len):
                real = bool(key_is_token[row, k])
                noisy_q, clean_q, noisy_k, clean_k = q, seq_len + q, k, seq_len + k
                # noisy block: itself (bidirectional) and the clean blocks before it, never clean block k or later
                assert pattern[row, 0, noisy_q, noisy_k] == (block[k] == block[q] and real)
                assert pattern[row, 0, noisy_q, clean_k] == (block[k] < block[q] and real)
                # clean stream: block-causal over clean blocks, never a noisy position
                assert pattern[row, 0, clean_q, clean_k] == (block[k] <= block[q] and real)
                assert not pattern[row, 0, clean_q, noisy_k]
    # nothing per row without padding or annealing: one (1, 1, 2L, 2L) pattern serves the batch
    assert two_stream_attention_pattern(8, seq_len, block_size).shape == (1, 1, 2 * seq_len, 2 * seq_len)


def test_annealing_is_causal_inside_the_noisy_block_at_ratio_zero_and_grows_with_the_ratio():
    seq_len, block_size = 16, 8
    plain = two_stream_attention_pattern(4, seq_len, block_size)
    at_zero = two_stream_attention_pattern(4, seq_len, block_size, anneal_ratio=0.0)
    half = two_stream_attention_pattern(4, seq_len, block_size, anneal_ratio=0.5,
                                        generator=torch.Generator().manual_seed(0))
    positions = torch.arange(seq_len)
    same_block = (positions[:, None] // block_size) == (positions[None, :] // block_size)
    causal_in_block = same_block & (positions[None, :] <= positions[:, None])
    # the links are one draw shared by the batch (as the reference): without padding one pattern serves every row
    assert at_zero.shape[0] == half.shape[0] == 1
    assert torch.equal(at_zero[0, 0, :seq_len, :seq_len], causal_in_block)
    # everything but the noisy block's attention to itself is the block pattern, whatever the ratio
    outside = torch.ones(2 * seq_len, 2 * seq_len, dtype=torch.bool)
    outside[:seq_len, :seq_len] = False
    for annealed in (at_zero, half):
        assert torch.equal(annealed[:, 0][:, outside], plain[:, 0][:, outside])
    noisy = half[0, 0, :seq_len, :seq_len]
    assert (noisy >= causal_in_block).all() and not (noisy & ~same_block).any()
    extra = noisy & ~causal_in_block
    assert 0.3 < extra.sum() / (same_block & ~causal_in_block).sum() < 0.7  # Bernoulli(0.5) links
    # training's links: a hash of (seed, positions), the same for a longer sequence and for every row
    hashed = two_stream_attention_pattern(2, seq_len, block_size, anneal_ratio=0.5, anneal_seed=7)
    longer = two_stream_attention_pattern(2, 2 * seq_len, block_size, anneal_ratio=0.5, anneal_seed=7)
    assert torch.equal(hashed[0, 0, :seq_len, :seq_len], longer[0, 0, :seq_len, :seq_len])
    other_seed = two_stream_attention_pattern(2, seq_len, block_size, anneal_ratio=0.5, anneal_seed=8)
    assert not torch.equal(hashed, other_seed)


def test_annealed_objective_at_ratio_zero_matches_causal_blocks_over_a_block_mode_cache():
    # at ratio 0 a noisy block sees the clean blocks before it (block-causal, in a KV cache as in decoding) and
    # itself causally: the hand computation writes the clean prefix in block mode, then runs the noisy block in
    # causal mode on top of that cache
    from transformers import DynamicCache

    block_size, seq_len, level = 4, 12, 0.6
    model, _ = block_model("llama", block_size, "eager")
    clean = torch.randint(6, 60, (2, seq_len), generator=torch.Generator().manual_seed(3))
    maskable = maskable_positions(None, clean)
    levels = torch.full((2, 3), level)
    output = diffusion_objective(model, clean, maskable, ObjectiveSettings(model.config.mask_token_id),
                                 noise_levels=levels, anneal_ratio=0.0, generator=torch.Generator().manual_seed(5))
    noisy, is_masked = mask_tokens(clean, maskable, per_token_noise_levels(levels, seq_len, block_size),
                                   model.config.mask_token_id, generator=torch.Generator().manual_seed(5))
    total = 0.0
    with torch.no_grad():
        for start in range(0, seq_len, block_size):
            cache = DynamicCache()
            if start:
                model.config.attention_mode = "block"
                prefix_logits = model(input_ids=clean[:, :start], cache=cache).logits
            model.config.attention_mode = "causal"
            block_logits = model(input_ids=noisy[:, start:start + block_size], cache=cache).logits
            for row in range(2):
                for j in range(max(start, 1), start + block_size):
                    if is_masked[row, j]:
                        row_logits = prefix_logits[row, j - 1] if j == start else block_logits[row, j - 1 - start]
                        total += F.cross_entropy(row_logits[None].double(), clean[row, j][None]).item() / level
    assert is_masked.sum() > 3
    assert output.weighted_sum.item() == pytest.approx(total, rel=1e-5)


def packed_rows(count=8, length=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Dataset.from_dict({"input_ids": torch.randint(6, 60, (count, length), generator=generator).tolist()})


def test_diffusion_trainer_runs_two_steps_on_a_block_model_and_evaluates_the_block_elbo(tmp_path):
    model, tokenizer = block_model("llama", 4, "sdpa")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen = []
    model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda m, a, k: seen.append(tuple(k["attention_mask"].shape)), with_kwargs=True)
    args = DiffusionTrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                                      per_device_eval_batch_size=4, anneal_steps=2, learning_rate=1e-3,
                                      report_to="none", use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = DiffusionTrainer(model=model, args=args, train_dataset=packed_rows(), eval_dataset=packed_rows(4, seed=1),
                               data_collator=DiffusionDataCollator(tokenizer.pad_token_id))
    trainer.train()
    assert trainer.state.global_step == 2
    assert seen[0] == (4, 1, 32, 32)  # step 0 anneals: a mask drawn per sequence over [noisy ; clean]
    assert seen[1] == (4, 1, 32, 32)  # no padding, not annealing: one pattern broadcast over the batch
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:  # one micro-batch per step: the loss is the step's 1/t-weighted loss per masked token
        assert entry["loss"] == pytest.approx(entry["loss_weighted"], abs=1e-4) and entry["loss"] > 1.0
    first, second = trainer.evaluate()["eval_loss"], trainer.evaluate()["eval_loss"]
    # every evaluation scores the corruptions of one fixed noise stream (seeded by args.seed): the block ELBO of
    # the four evaluation rows, computed here directly
    rows = torch.tensor(packed_rows(4, seed=1)["input_ids"])
    with torch.no_grad():
        expected = diffusion_objective(model.eval(), rows, maskable_positions(None, rows),
                                       ObjectiveSettings(model.config.mask_token_id, normalization="elbo",
                                                         stratified=True),
                                       attention_mask=torch.ones_like(rows),
                                       generator=torch.Generator().manual_seed(args.seed)).loss.item()
    assert first == second == pytest.approx(expected, rel=1e-5)


def test_lora_sft_on_a_block_model_trains_only_the_adapter(tmp_path, monkeypatch):
    from peft import LoraConfig

    import diffusion_lm.objective as objective

    from diffusion_lm.sft import DiffusionSFTConfig, DiffusionSFTTrainer

    model, tokenizer = block_model("llama", 4, "sdpa")
    base_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    pairs = [("what is one plus one ?", " two"), ("hello", " good morning sun"), ("story", " once upon a time")]
    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs * 2])
    args = DiffusionSFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=3,
                              learning_rate=1e-2, save_strategy="no", report_to=[], use_cpu=True, bf16=False,
                              disable_tqdm=True, logging_steps=1, seed=0, max_length=24,
                              activation_checkpointing=False)
    calls = []
    block_objective = objective.block_diffusion_objective

    def recording_objective(*args, **kwargs):  # the SFT loss must reach the block objective through the PEFT model
        output = block_objective(*args, **kwargs)
        calls.append(output)
        return output

    monkeypatch.setattr(objective, "block_diffusion_objective", recording_objective)

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = DiffusionSFTTrainer(model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    assert trainer.state.global_step == 2 and len(calls) == 2
    assert all(torch.isfinite(output.loss) and output.num_masked > 0 for output in calls)
    changed = {name for name, p in trainer.model.named_parameters() if "lora_" in name
               and not torch.equal(p.detach(), torch.zeros_like(p))}
    assert any("lora_B" in name for name in changed)  # lora_B starts at zero: it moved
    for name, p in trainer.model.get_base_model().named_parameters():
        if "lora_" not in name:
            original_name = name.replace("base_layer.", "")
            assert torch.equal(p.detach(), base_weights[original_name]), name


def test_block_objective_refuses_left_padding():
    model, _ = block_model("llama", 4)
    ids = torch.randint(6, 60, (1, 8))
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="right padding"):
        diffusion_objective(model, ids, maskable_positions(attention_mask, ids), ObjectiveSettings(mask_token_id=1),
                            attention_mask=attention_mask)


@pytest.mark.parametrize("overrides,match", [
    ({"attention_mode": "block", "diffusion_block_size": 5, "block_size": 128}, r"diffusion_block_size.*divide"),
    ({"attention_mode": "block", "diffusion_block_size": 0}, r"diffusion_block_size.*>= 1"),
    ({"attention_mode": "block", "diffusion_block_size": None}, r"needs diffusion_block_size"),
    ({"attention_mode": "bidirectional", "diffusion_block_size": 4},
     r"diffusion_block_size.*only used with attention_mode 'block'"),
    ({"attention_mode": "block", "diffusion_block_size": 4, "attn_implementation": "flash_attention_2"},
     r"attn_implementation"),
    ({"attention_mode": "causal"}, r"attention_mode"),
])
def test_adapt_settings_refuse_bad_block_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        AdaptSettings(**overrides).validate()
    if None not in overrides.values():  # flags cannot say None: the rest come through the CLI's resolution too
        with pytest.raises(ValueError, match=match):
            resolve_settings(None, overrides)


def test_adapt_settings_accept_block_diffusion():
    settings = resolve_settings(None, {"attention_mode": "block", "diffusion_block_size": 8, "block_size": 128})
    assert settings.attention_mode == "block" and settings.diffusion_block_size == 8


def test_block_diffusion_is_the_default_objective_and_the_paper_presets_keep_full_attention():
    default = resolve_settings(None, {})
    assert (default.attention_mode, default.diffusion_block_size, default.max_steps) == ("block", 4, 30)
    # asking for the paper's objective drops the default block size instead of refusing it
    full = resolve_settings(None, {"attention_mode": "bidirectional"})
    assert (full.attention_mode, full.diffusion_block_size) == ("bidirectional", None)
    for preset in ("gpt2", "gpt2-medium", "Llama-2-7b", "SmolLM2-135M"):
        settings = resolve_settings(preset, {})
        assert (settings.attention_mode, settings.diffusion_block_size) == ("bidirectional", None), preset


@pytest.mark.parametrize("bad", ["size", "flash"])
def test_trainer_refuses_a_block_model_it_cannot_train(tmp_path, bad):
    model, tokenizer = block_model("gpt2", 4, "eager")
    if bad == "size":
        model.config.diffusion_block_size = 0
    else:
        model.config._attn_implementation = "flash_attention_2"  # as set_attn_implementation would record it
    args = DiffusionTrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="diffusion_block_size" if bad == "size" else "attn_implementation"):
        DiffusionTrainer(model=model, args=args, train_dataset=packed_rows(),
                         data_collator=DiffusionDataCollator(tokenizer.pad_token_id))


def test_cli_refuses_a_block_size_that_does_not_divide_the_packing_length(capsys):
    from diffusion_lm.cli import main

    code = main(["adapt", "--attention-mode", "block", "--diffusion-block-size", "6", "--block-size", "64"])
    assert code != 0
    err = capsys.readouterr().err
    assert "diffusion_block_size" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_presets_carry_block_settings():
    smol = resolve_settings("SmolLM2-135M-block", {})
    assert smol.attention_mode == "block" and smol.block_size % smol.diffusion_block_size == 0
    qwen = resolve_settings("Qwen2.5-1.5B-block", {})
    assert qwen.attention_mode == "block" and qwen.diffusion_block_size == 32 and qwen.block_size % 32 == 0


def test_span_scores_of_a_block_model_sum_per_block_terms_over_clean_earlier_blocks(monkeypatch):
    """Scoring a span that crosses blocks: each block's scored tokens are masked with every earlier block clean (the
    conditional the block objective trains), never two blocks at once. At the level t = 1 (estimator 'levels', one
    sample) every scored token of the block is masked, so the score is an exact sum we can compute by hand."""
    from diffusion_lm.evaluation import scoring
    from diffusion_lm.evaluation.scoring import ScoringRequest, diffusion_span_scores

    model, _ = block_model(block_size=4)
    model.eval()
    mask_id = model.config.mask_token_id
    ids = torch.randint(3, 60, (11,), generator=torch.Generator().manual_seed(3))
    scored = torch.zeros(11, dtype=torch.bool)
    scored[6:10] = True  # blocks [4, 8) and [8, 12)
    score = diffusion_span_scores(model, [ScoringRequest(ids, scored)], estimator="levels", num_samples=1)[0]

    total = 0.0
    with torch.no_grad():
        for start, end in ((4, 8), (8, 11)):
            noisy = ids[:end].clone()
            in_block = scored[:end].clone()
            in_block[:start] = False
            noisy[in_block] = mask_id
            logits = model(input_ids=noisy[None]).logits[0]
            for j in in_block.nonzero().flatten().tolist():
                total += -F.log_softmax(logits[j - 1].double(), dim=-1)[ids[j]].item()
    assert score.per_token == pytest.approx(total / 4, rel=1e-5)

    # masking both blocks at once (the full-attention rule) conditions block [8, 12) on a noised block: another number
    monkeypatch.setattr(scoring, "scoring_block_size", lambda model: None)
    joint = diffusion_span_scores(model, [ScoringRequest(ids, scored)], estimator="levels", num_samples=1)[0]
    assert joint.per_token != pytest.approx(score.per_token, rel=1e-3)
