"""Issue 21: adaptation that keeps the AR model: distillation from the frozen AR base, an AR loss on the clean stream
of causal-context block models, LoRA adaptation and the block-size curriculum."""

import json
import os
from dataclasses import replace

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from tiny import tiny_diffusion_model

from diffusion_lm.adapt import AdaptSettings
from diffusion_lm.adapt_run import with_lora_adapter
from diffusion_lm.data import DiffusionDataCollator
from diffusion_lm.distillation import ARTeacher
from diffusion_lm.modeling.attention_annealing import build_attention_mask
from diffusion_lm.modeling.block_diffusion import per_token_noise_levels, two_stream_attention_pattern
from diffusion_lm.modeling.corruption import mask_tokens, maskable_positions
from diffusion_lm.objective import ObjectiveSettings, diffusion_objective
from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments
from diffusion_lm.training_settings import check_block_curriculum, curriculum_block_size, parse_block_curriculum

BLOCK = 4


def model_of(mode: str, family: str = "llama", context: str = "block", seed: int = 0):
    model, tokenizer = tiny_diffusion_model(family, seed=seed)
    model.set_attn_implementation("eager")
    if mode == "block":
        model.config.attention_mode = "block"
        model.config.diffusion_block_size = BLOCK
        model.config.context_attention = context
    return model, tokenizer


def causal_logits(model, ids):
    """The model's causal mode: every position attends the positions <= its own."""
    mask = build_attention_mask(None, *ids.shape, model.dtype, ids.device, mode="causal")
    return model(input_ids=ids, attention_mask=mask).logits


def hand_teacher(model, ids, k):
    """(ids, probs) of each token's top-k under the causal mode, renormalised; entry 0 empty."""
    with torch.no_grad():
        probs = torch.softmax(causal_logits(model, ids).double(), dim=-1)[:, :-1]
    top = probs.topk(k, dim=-1)
    values = top.values / top.values.sum(-1, keepdim=True)
    pad = lambda t: torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)  # noqa: E731
    return pad(top.indices), pad(values)


def student_logits(model, mode, clean, noisy, attention_mask):
    """Logits that predict each token (entry j: token j), computed the slow way: full attention on the noisy
    sequence; block diffusion one block at a time over [clean blocks < k ; noisy block k]."""
    seq_len = clean.shape[1]
    out = torch.zeros(clean.shape[0], seq_len, model.config.vocab_size, dtype=torch.float64)
    with torch.no_grad():
        if mode != "block":
            logits = model(input_ids=noisy, attention_mask=attention_mask).logits.double()
            out[:, 1:] = logits[:, :-1]
            return out
        for start in range(0, seq_len, BLOCK):
            end = min(start + BLOCK, seq_len)
            ids = torch.cat([clean[:, :start], noisy[:, start:end]], dim=1)
            logits = model(input_ids=ids, attention_mask=attention_mask[:, :end]).logits.double()
            for j in range(max(start, 1), end):
                out[:, j] = logits[:, j - 1]
    return out


@pytest.mark.parametrize("mode", ["bidirectional", "block"])
def test_distillation_term_equals_a_hand_computation(mode):
    model, _ = model_of(mode)
    torch.manual_seed(3)
    clean = torch.randint(6, 60, (2, 12))
    attention_mask = torch.ones_like(clean)
    attention_mask[1, 10:] = 0
    maskable = maskable_positions(attention_mask, clean)
    levels = torch.tensor([[0.9, 0.5, 0.7], [0.4, 0.95, 0.6]]) if mode == "block" else torch.tensor([0.7, 0.5])
    top_k, weight = 5, 0.3
    teacher = ARTeacher.of(model, top_k).next_token_distributions(clean, attention_mask)
    expected_ids, expected_probs = hand_teacher(model, clean, top_k)
    assert torch.equal(teacher[0][:, 1:][maskable[:, 1:]], expected_ids[:, 1:][maskable[:, 1:]])
    torch.testing.assert_close(teacher[1].double()[:, 1:][maskable[:, 1:]], expected_probs[:, 1:][maskable[:, 1:]])

    settings = ObjectiveSettings(mask_token_id=model.config.mask_token_id)
    output = diffusion_objective(model, clean, maskable, replace(settings, distill_weight=weight),
                                 attention_mask=attention_mask, noise_levels=levels, soft_targets=teacher,
                                 generator=torch.Generator().manual_seed(5))
    token_levels = per_token_noise_levels(levels, 12, BLOCK) if mode == "block" else levels[:, None].expand(-1, 12)
    noisy, is_masked = mask_tokens(clean, maskable, token_levels, model.config.mask_token_id,
                                   generator=torch.Generator().manual_seed(5))
    log_q = F.log_softmax(student_logits(model, mode, clean, noisy, attention_mask), dim=-1)
    total = kl = 0.0
    for row, j in is_masked.nonzero().tolist():
        hard = -log_q[row, j, clean[row, j]].item()
        p, ids = expected_probs[row, j], expected_ids[row, j]
        soft = -(p * log_q[row, j, ids]).sum().item()
        total += ((1 - weight) * hard + weight * soft) / token_levels[row, j].item()
        kl += soft + (p * p.log()).sum().item()
    count = int(is_masked.sum())
    assert count > 0
    assert output.loss.item() == pytest.approx(total / count, rel=1e-4)
    assert output.distill_kl_sum.item() == pytest.approx(kl, rel=1e-4, abs=1e-6)
    # weight 0 is the plain objective
    plain = diffusion_objective(model, clean, maskable, settings, attention_mask=attention_mask, noise_levels=levels,
                                generator=torch.Generator().manual_seed(5))
    zero = diffusion_objective(model, clean, maskable, replace(settings, distill_weight=0.0),
                               attention_mask=attention_mask, noise_levels=levels, soft_targets=teacher,
                               generator=torch.Generator().manual_seed(5))
    assert zero.loss.item() == pytest.approx(plain.loss.item(), rel=1e-6)


def test_causal_context_clean_stream_is_the_causal_mode_and_the_ar_loss_reads_it():
    seq_len = 10
    pattern = two_stream_attention_pattern(1, seq_len, BLOCK, context_attention="causal")
    positions = torch.arange(seq_len)
    assert torch.equal(pattern[0, 0, seq_len:, seq_len:], positions[None, :] <= positions[:, None])
    model, _ = model_of("block", context="causal")
    torch.manual_seed(4)
    clean = torch.randint(6, 60, (2, seq_len))
    attention_mask = torch.ones_like(clean)
    attention_mask[0, 8:] = 0
    maskable = maskable_positions(attention_mask, clean)
    levels = torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.2, 0.6]])
    settings = ObjectiveSettings(mask_token_id=model.config.mask_token_id)
    kwargs = dict(attention_mask=attention_mask, noise_levels=levels)
    plain = diffusion_objective(model, clean, maskable, settings, generator=torch.Generator().manual_seed(1), **kwargs)
    with_ar = diffusion_objective(model, clean, maskable, replace(settings, ar_weight=0.5),
                                  generator=torch.Generator().manual_seed(1), **kwargs)
    log_q = F.log_softmax(causal_logits(model, clean).double(), dim=-1)
    ar = [-log_q[r, j - 1, clean[r, j]].item() for r, j in maskable.nonzero().tolist() if j > 0]
    assert with_ar.ar_count.item() == len(ar)
    assert with_ar.ar_sum.item() == pytest.approx(sum(ar), rel=1e-5)
    assert with_ar.loss.item() == pytest.approx(plain.loss.item() + 0.5 * sum(ar) / len(ar), rel=1e-5)
    assert with_ar.weighted_sum.item() == pytest.approx(plain.weighted_sum.item(), rel=1e-6)
    # a block-context model's clean stream sees the tokens it would predict: refused
    block_context, _ = model_of("block", context="block")
    with pytest.raises(ValueError, match="context_attention='causal'"):
        diffusion_objective(block_context, clean, maskable, replace(settings, ar_weight=0.5), **kwargs)


def test_causal_context_generation_matches_the_training_pattern_with_and_without_cache():
    """The exact prefix cache of a causal-context block model holds the context's causal keys / values: cached and
    uncached greedy decodes agree."""
    model, tokenizer = model_of("block", context="causal")
    prompt = torch.tensor([[5, 17, 23, 9, 31, 12]])
    greedy = dict(max_new_tokens=8, steps=8, alg="confidence", temperature=0.0, threshold=None)
    uncached = model.generate(prompt, kv_cache=None, **greedy)
    cached = model.generate(prompt, kv_cache="prefix", **greedy)
    uncached = uncached.sequences if hasattr(uncached, "sequences") else uncached
    cached = cached.sequences if hasattr(cached, "sequences") else cached
    assert torch.equal(uncached, cached)


def tiny_trainer(tmp_path, model, tokenizer, **args):
    torch.manual_seed(0)
    rows = [list(torch.randint(6, 60, (16,)).tolist()) for _ in range(8)]
    dataset = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * 16] * 8})
    arguments = DiffusionTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, **args)
    return DiffusionTrainer(model=model, args=arguments, train_dataset=dataset,
                            data_collator=DiffusionDataCollator(tokenizer.pad_token_id))


def test_the_teacher_never_changes_and_gets_no_gradient(tmp_path):
    model, tokenizer = model_of("block", context="causal")
    trainer = tiny_trainer(tmp_path, model, tokenizer, distill_weight=0.5, distill_top_k=8, ar_loss_weight=1.0)
    teacher = trainer.teacher.model
    before = {name: p.detach().clone() for name, p in teacher.named_parameters()}
    student_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(p, before[name]) for name, p in teacher.named_parameters())
    assert any(not torch.equal(p, student_before[name]) for name, p in model.named_parameters())
    logged = [entry for entry in trainer.state.log_history if "distill_kl" in entry]
    assert logged and all(entry["distill_kl"] >= -1e-6 and entry["ar_loss"] > 0 for entry in logged)


def test_with_lora_the_teacher_is_the_adapter_disabled_base_and_no_weights_are_copied(tmp_path):
    model, tokenizer = model_of("block", context="causal")
    base_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    base_count = sum(p.numel() for p in model.parameters())
    peft_model = with_lora_adapter(model, r=4)
    trainer = tiny_trainer(tmp_path, peft_model, tokenizer, distill_weight=0.5, distill_top_k=8)
    assert trainer.teacher.model is peft_model and trainer.teacher.share_weights
    # the model holds the base weights once plus the adapter: no second copy exists
    adapter = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n or "trainable_tokens" in n)
    assert adapter > 0
    assert sum(p.numel() for p in peft_model.parameters()) - adapter == base_count
    assert base_storages <= {p.untyped_storage().data_ptr() for p in peft_model.parameters()}
    # with the adapter disabled the teacher is exactly the base (the adapter starts at zero, so compare after a step)
    trainer.train()
    ids = torch.randint(6, 60, (1, 8))
    reference, _ = model_of("block", context="causal")
    expected = hand_teacher(reference, ids, 8)
    got = trainer.teacher.next_token_distributions(ids)
    torch.testing.assert_close(got[1].double()[:, 1:], expected[1][:, 1:], rtol=1e-4, atol=1e-5)


def test_curriculum_gives_the_configured_block_size_at_the_configured_steps(tmp_path):
    assert parse_block_curriculum("1:0, 2:2,4:3") == [(1, 0), (2, 2), (4, 3)]
    assert [curriculum_block_size("1:0,2:2,4:3", step) for step in range(5)] == [1, 1, 2, 4, 4]
    model, tokenizer = model_of("block", context="causal")
    trainer = tiny_trainer(tmp_path, model, tokenizer, block_curriculum="1:0,2:1,4:2")
    trainer.train()
    sizes = [entry["diffusion_block_size"] for entry in trainer.state.log_history if "diffusion_block_size" in entry]
    assert sizes == [1, 2, 4]
    assert model.config.diffusion_block_size == 4  # the model keeps its own block size


@pytest.mark.parametrize("overrides, message", [
    ({"distill_weight": -0.5}, "--distill-weight must be a number >= 0"),
    ({"distill_weight": 1.5}, r"--distill-weight must be in \[0, 1\]"),
    ({"ar_loss_weight": -1.0}, "--ar-loss-weight must be a number >= 0"),
    ({"ar_loss_weight": 1.0, "context_attention": "block"},
     "--ar-loss-weight needs --attention-mode block with --context-attention causal"),
    ({"ar_loss_weight": 1.0, "attention_mode": "bidirectional", "diffusion_block_size": None},
     "--ar-loss-weight needs --attention-mode block with --context-attention causal"),
    ({"lora_r": -1}, "--lora-r must be an integer >= 0"),
    ({"block_curriculum": "1:0,2:10"}, "must end at diffusion_block_size 4"),
    ({"block_curriculum": "1:0,3:5,16:10", "diffusion_block_size": 16},
     "block size 3 does not divide the packed sequence length"),
    ({"block_curriculum": "2:5,4:10"}, "the first stage must start at step 0"),
    ({"block_curriculum": "1:0,4:0"}, "the start steps must increase"),
    ({"block_curriculum": "one"}, "block_curriculum 'one'"),
    ({"context_attention": "causal", "attention_mode": "bidirectional", "diffusion_block_size": None},
     "--context-attention causal needs --attention-mode block"),
])
def test_bad_recipe_settings_are_refused_before_training(overrides, message):
    settings = AdaptSettings(**overrides)
    with pytest.raises(ValueError, match=message):
        settings.validate()


def test_trainer_refuses_a_curriculum_that_does_not_end_at_the_model_block_size(tmp_path):
    model, tokenizer = model_of("block")
    with pytest.raises(ValueError, match="must end at diffusion_block_size 4"):
        tiny_trainer(tmp_path, model, tokenizer, block_curriculum="1:0,2:1")
    with pytest.raises(ValueError, match="ar_loss_weight needs a block model with context_attention 'causal'"):
        tiny_trainer(tmp_path, model, tokenizer, ar_loss_weight=1.0)
    with pytest.raises(ValueError, match="distill_weight must be in"):
        tiny_trainer(tmp_path, model, tokenizer, distill_weight=-0.1)
    check_block_curriculum("1:0,4:2", 4, 16)


REMOTE_LOAD_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.tensor([[1, 10, 20, 30]])
with torch.no_grad():
    logits = model(ids).logits
out = model.generate(ids, max_new_tokens=4, steps=4, temperature=0.0, return_dict_in_generate=True)
print("REPORT" + json.dumps({"logits": logits[0, -1, :8].tolist(), "context": model.config.context_attention,
                             "sequence": out.sequences[0].tolist(),
                             "diffusion_lm_imported": any(n.startswith("diffusion_lm") for n in sys.modules)}))
"""


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_adaptation_saves_a_merged_checkpoint_that_loads_as_remote_code(tmp_path, family):
    from test_adapt import tiny_flags
    from tiny import WORDS, run_clean_process, save_tiny_ar_checkpoint

    from diffusion_lm.checkpoint import load_checkpoint
    from diffusion_lm.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(WORDS[(i * 7 + j) % 60] for j in range(30)) for i in range(60)))
    base = save_tiny_ar_checkpoint(str(tmp_path / "base"), family)
    out = tmp_path / "out"
    flags = tiny_flags(base, str(corpus), str(out), steps=3) + [
        "--diffusion-block-size", "4", "--context-attention", "causal", "--ar-loss-weight", "1", "--distill-weight",
        "0.5", "--distill-top-k", "8", "--block-curriculum", "1:0,4:2", "--lora-r", "4"]
    assert main(flags) == 0
    names = set(os.listdir(out))
    assert "model.safetensors" in names and not {"adapter_model.safetensors", "adapter_config.json"} & names
    record = json.loads((out / "diffusion_lm_training.json").read_text())
    extra = record  # the recipe's settings sit at the top level of the record
    assert extra["lora_r"] == 4 and extra["distill_weight"] == 0.5 and extra["block_curriculum"] == "1:0,4:2"
    card = (out / "README.md").read_text()
    assert "distill_weight" in card.replace(" ", "_").lower() or "Distill" in card
    model, _ = load_checkpoint(str(out))
    assert not any("lora" in name for name, _ in model.named_parameters())
    report, _ = run_clean_process(REMOTE_LOAD_SCRIPT, [str(out)], str(tmp_path))
    assert report["diffusion_lm_imported"] is False and report["context"] == "causal"
    ids = torch.tensor([[1, 10, 20, 30]])
    with torch.no_grad():
        expected = model(ids).logits[0, -1, :8]
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, rtol=1e-4, atol=1e-4)
    # the adapter was trained and merged: linear weights moved away from the base's, nothing else is missing
    from transformers import AutoModelForCausalLM

    base_weights = AutoModelForCausalLM.from_pretrained(base).state_dict()
    merged = model.state_dict()
    shared = [k for k in base_weights if k in merged and base_weights[k].shape == merged[k].shape]
    assert len(shared) >= len(base_weights) - 3
    assert any(not torch.equal(base_weights[k], merged[k]) for k in shared if k.endswith("weight"))


@pytest.mark.parametrize("lora", [False, True])
def test_sft_distils_from_its_own_causal_mode_with_and_without_lora(tmp_path, lora):
    """DiffusionSFTTrainer takes the same fields: its teacher is the model before SFT (adapter disabled with LoRA)."""
    from test_sft import config, prompt_completion_dataset

    from diffusion_lm.sft import DiffusionSFTTrainer, lora_config_for

    model, tokenizer = model_of("block", context="causal")
    extra = {"peft_config": lora_config_for(model, r=4, train_embeddings=False)} if lora else {}
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, distill_weight=0.5, distill_top_k=8,
                                                     ar_loss_weight=1.0, block_curriculum="1:0,4:2"),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer, **extra)
    assert trainer.teacher.share_weights is lora
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "distill_kl" in entry]
    assert len(logged) == 3 and all(entry["ar_loss"] > 0 for entry in logged)
    assert [entry["diffusion_block_size"] for entry in logged] == [1, 1, 4]


def test_the_default_recipe_is_causal_context_with_ar_loss_and_teacher_only_for_block_models():
    block = AdaptSettings()
    block.validate()
    assert (block.attention_mode, block.diffusion_block_size, block.effective_context_attention) == ("block", 4, "causal")
    assert block.effective_ar_loss_weight == 1.0 and block.effective_distill_weight == 0.5
    paper = AdaptSettings(attention_mode="bidirectional", diffusion_block_size=None)
    paper.validate()
    assert paper.effective_ar_loss_weight == 0.0 and paper.effective_distill_weight == 0.0
    bd3 = AdaptSettings(context_attention="block")
    bd3.validate()
    assert bd3.effective_ar_loss_weight == 0.0 and bd3.effective_distill_weight == 0.0
