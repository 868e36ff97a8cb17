"""The families added on the template (Qwen3, Mistral, Gemma 3): adaptation through the CLI, AR equivalence in causal
mode (sliding windows and Gemma's soft-capping included), bidirectional attention, symmetric windows, cached decoding
and LoRA SFT, on tiny random checkpoints built here (offline, CPU, seconds each). Remote-code loading on the lowest
and newest transformers: tests/test_remote_code.py (its family list includes these)."""

from __future__ import annotations

import os

import pytest
import torch
from tiny import SPECIAL, WORDS, tiny_tokenizer
from transformers import (
    AutoModel,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    MistralConfig,
    MistralForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from diffusion_lm.cli import main
from diffusion_lm.conversion import convert_ar_model

NEW_FAMILIES = ("qwen3", "mistral", "gemma3_text")
MODEL_TYPES = {"qwen3": "diffuqwen3", "mistral": "diffumistral", "gemma3_text": "diffugemma3"}
# a window the tests' sequences exceed (so it binds), and one spanning the model's positions (so it cannot)
NARROW, WIDE = 4, 64


def tiny_family_ar_model(family: str, seed: int = 0, sliding_window: int | None = WIDE):
    """A randomly initialised tiny AR model of a new family with sliding-window layers (every layer for Mistral,
    layers 1.. for Qwen3, the local layers of Gemma 3, whose logits are also soft-capped), matching
    ``tiny_tokenizer``."""
    torch.manual_seed(seed)
    common = dict(vocab_size=len(SPECIAL) + len(WORDS), bos_token_id=1, eos_token_id=2, pad_token_id=0,
                  hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=WIDE, sliding_window=sliding_window)
    if family == "qwen3":
        config = Qwen3Config(**common, tie_word_embeddings=False, use_sliding_window=sliding_window is not None,
                             max_window_layers=1)
        return Qwen3ForCausalLM(config).eval()
    if family == "mistral":
        return MistralForCausalLM(MistralConfig(**common, tie_word_embeddings=False)).eval()
    if family == "gemma3_text":
        config = Gemma3TextConfig(**common, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                  final_logit_softcapping=5.0, rope_local_base_freq=100.0)
        return Gemma3ForCausalLM(config).eval()
    raise ValueError(family)


def tiny_family_diffusion_model(family: str, seed: int = 0, sliding_window: int | None = WIDE, **convert_kwargs):
    """(diffusion model, tokenizer) converted from ``tiny_family_ar_model``."""
    ar = tiny_family_ar_model(family, seed=seed, sliding_window=sliding_window)
    model, tokenizer = convert_ar_model(ar, tiny_tokenizer(), **convert_kwargs)
    return model.eval(), tokenizer


def sliding_layers(model) -> list[bool]:
    return [window is not None for window in model.model.attention_windows()]


@pytest.fixture
def corpus(tmp_path):
    import random

    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(WORDS[:60]) for _ in range(rng.randint(10, 40)))
                                for _ in range(40)))
    return str(path)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_cli_adapts_a_tiny_checkpoint_of_each_new_family(tmp_path, corpus, family):
    base, out = str(tmp_path / "ar"), str(tmp_path / "out")
    tiny_family_ar_model(family).save_pretrained(base)
    tiny_tokenizer().save_pretrained(base)
    flags = ["adapt", "--base", base, "--dataset", corpus, "--output-dir", out, "--max-steps", "2", "--anneal-steps",
             "1", "--block-size", "16", "--batch-size", "2", "--save-steps", "2", "--seed", "0", "--no-sample"]
    assert main(flags) == 0
    model = AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    assert model.config.model_type == MODEL_TYPES[family] and model.config.attention_mode == "block"
    assert any(sliding_layers(model))
    if family == "gemma3_text":  # tied embeddings survive adaptation and loading
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # a bare generate(): the recipe's defaults (block diffusion, exact prefix cache, causal self-verification)
    output = model.generate(torch.tensor([[1, 10, 11, 12]]), max_new_tokens=8, return_dict_in_generate=True)
    assert output.verifications is not None and (output.sequences != model.config.mask_token_id).all()


@pytest.mark.parametrize("family", NEW_FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_causal_mode_reproduces_the_ar_model_windows_and_soft_capping_included(family, attn):
    ar = tiny_family_ar_model(family, sliding_window=NARROW)
    ar.set_attn_implementation(attn)
    diffusion, _ = tiny_family_diffusion_model(family, sliding_window=NARROW, attention_mode="causal")
    bidirectional, _ = tiny_family_diffusion_model(family, sliding_window=NARROW)
    unwindowed, _ = tiny_family_diffusion_model(family, sliding_window=None, attention_mode="causal")
    for model in (diffusion, bidirectional, unwindowed):
        model.set_attn_implementation(attn)
    x = torch.randint(6, 80, (2, 12))
    with torch.no_grad():
        expected = ar(x).logits
        vocab = expected.shape[-1]
        torch.testing.assert_close(diffusion(x).logits[..., :vocab], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(bidirectional(x, anneal_ratio=0.0).logits[..., :vocab], expected, atol=1e-5,
                                   rtol=1e-4)
        # the window binds at this length: without it the same weights compute something else
        assert not torch.allclose(unwindowed(x).logits[..., :vocab], expected, atol=1e-4)
    if family == "gemma3_text":
        assert expected.abs().max() <= 5.0  # final_logit_softcapping = 5


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_bidirectional_attention_sees_later_tokens_within_a_symmetric_window(family):
    model, _ = tiny_family_diffusion_model(family, sliding_window=NARROW)
    x = torch.randint(6, 80, (2, 12))
    changed = x.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 80
    with torch.no_grad():
        before, after = model(x).logits, model(changed).logits
    assert (before[:, 3] - after[:, 3]).abs().max() > 1e-4  # a later token changes an earlier logit
    seen = []
    handles = [layer.self_attn.register_forward_pre_hook(lambda m, a, k: seen.append(k["attention_mask"]),
                                                          with_kwargs=True) for layer in model.model.layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    distance = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs()
    for mask, sliding in zip(seen, sliding_layers(model)):
        if sliding:  # |query - key| < window, on both sides
            assert torch.equal(mask[0, 0] == 0, distance < NARROW)
        else:
            assert mask is None


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_block_mode_applies_the_window_on_top_of_the_blocks(family):
    model, _ = tiny_family_diffusion_model(family, sliding_window=NARROW)
    model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    x = torch.randint(6, 80, (1, 12))
    changed = x.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 80
    with torch.no_grad():
        before, after = model(x).logits, model(changed).logits
    assert torch.equal(before[:, :4], after[:, :4])  # block causal: earlier blocks never see later ones
    assert (before[:, 5] - after[:, 5]).abs().max() > 1e-4  # inside the block: both ways


def decode(model, ids, **kwargs):
    settings = dict(max_new_tokens=8, steps=8, block_length=4, return_dict_in_generate=True, eos_token_id=None)
    return model.generate(ids, **{**settings, **kwargs})


@pytest.mark.parametrize("window", [WIDE, NARROW], ids=["window-cannot-bind", "window-binds"])
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_cached_decode_equals_the_uncached_decode(family, window):
    """With a window the canvas exceeds, the decoding caches pass the keys' positions so the window applies."""
    model, _ = tiny_family_diffusion_model(family, sliding_window=window)
    ids = torch.tensor([[1, 10, 11, 12, 13]])
    exact = decode(model, ids)
    for kv_cache in ("prefix", "dual"):
        cached = decode(model, ids, kv_cache=kv_cache, kv_cache_refresh="step")
        assert torch.equal(cached.sequences, exact.sequences), kv_cache
    model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    exact = decode(model, ids)
    cached = decode(model, ids, kv_cache="prefix")  # block diffusion: the exact cache
    assert torch.equal(cached.sequences, exact.sequences)
    verified = decode(model, ids, kv_cache="prefix", verify="causal", alg="left_to_right")
    assert verified.verifications is not None and verified.sequences.shape == exact.sequences.shape


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_a_window_a_ready_mask_over_a_cache_cannot_apply_is_refused_and_key_positions_apply_it(family):
    from transformers import DynamicCache

    from diffusion_lm.modeling.attention_annealing import allowed_to_additive, attention_pattern

    model, _ = tiny_family_diffusion_model(family, sliding_window=NARROW)
    x = torch.randint(6, 80, (1, 12))
    with torch.no_grad():
        full = model(x).logits
        cache = DynamicCache()
        model(x[:, :8], cache=cache)
        positions, keys = torch.arange(8, 12)[None], torch.arange(12)[None]
        mask = allowed_to_additive(attention_pattern("causal", positions, keys), model.dtype)
        with pytest.raises(ValueError, match="sliding_window 4.*key_positions"):
            model(x[:, 8:], attention_mask=mask, position_ids=positions, cache=cache)
        causal = tiny_family_diffusion_model(family, sliding_window=NARROW, attention_mode="causal")[0]
        expected = causal(x).logits[:, 8:]
        cache = DynamicCache()
        causal(x[:, :8], cache=cache)
        got = model(x[:, 8:], attention_mask=mask, position_ids=positions, cache=cache, key_positions=keys).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(full[:, 8:], expected)
    with torch.no_grad():  # without a ready mask the cached keys precede the new ones: no key_positions needed
        cache = DynamicCache()
        causal(x[:, :8], cache=cache)
        continued = causal(x[:, 8:], cache=cache).logits
    torch.testing.assert_close(continued, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_a_window_no_query_key_distance_reaches_builds_no_mask(family, monkeypatch):
    """A window longer than every query-key distance restricts nothing: the layers get the mode's own mask (none for
    unpadded bidirectional attention), so SDPA keeps its mask-free kernel."""
    import diffusion_lm.modeling.modeling_diffusion_utils as utils

    model, _ = tiny_family_diffusion_model(family, sliding_window=NARROW)
    restricted = []
    real = utils.restrict_to_window
    monkeypatch.setattr(utils, "restrict_to_window", lambda *a, **k: restricted.append(a[3]) or real(*a, **k))
    with torch.no_grad():
        model(torch.randint(6, 80, (1, NARROW)))
    assert restricted == []
    with torch.no_grad():
        model(torch.randint(6, 80, (1, NARROW + 1)))
    assert restricted and set(restricted) == {NARROW}


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_lora_sft_trains_each_new_family(tmp_path, family):
    from datasets import Dataset
    from peft import PeftModel

    from diffusion_lm.sft import DiffusionSFTConfig, DiffusionSFTTrainer, lora_config_for

    model, tokenizer = tiny_family_diffusion_model(family)
    args = DiffusionSFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                              learning_rate=1e-3, save_strategy="no", report_to=[], use_cpu=True, bf16=False,
                              disable_tqdm=True, seed=0, max_length=32, activation_checkpointing=False)
    data = Dataset.from_list([{"prompt": "what is one plus one ?", "completion": " two"},
                              {"prompt": "hello", "completion": " good morning sun"}])
    trainer = DiffusionSFTTrainer(model, args=args, train_dataset=data, processing_class=tokenizer,
                                  peft_config=lora_config_for(model, r=4))
    assert isinstance(trainer.model, PeftModel)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    trainer.save_model(str(tmp_path / "adapter"))
    assert os.path.isfile(tmp_path / "adapter" / "adapter_config.json")


def test_qwen3_presets_and_the_8b_launch_config():
    """The Qwen3 presets resolve (block diffusion, their bases); the 8B launch config parses with accelerate's own
    loader and wraps the layer class Qwen3's diffusion model declares as its FSDP unit."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from diffusion_lm.adapt import resolve_settings

    small, large = resolve_settings("Qwen3-0.6B-block", {}), resolve_settings("Qwen3-8B-block", {})
    assert (small.base, large.base) == ("Qwen/Qwen3-0.6B", "Qwen/Qwen3-8B")
    assert small.attention_mode == large.attention_mode == "block" and large.diffusion_block_size == 32
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    launch = load_config_from_file(os.path.join(repo, "training", "accelerate", "fsdp2_qwen3_8b.yaml"))
    assert launch.distributed_type == DistributedType.FSDP and launch.fsdp_config["fsdp_version"] == 2
    layer = launch.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    assert layer in tiny_family_diffusion_model("qwen3")[0]._no_split_modules
