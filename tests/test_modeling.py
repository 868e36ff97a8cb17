"""Model classes: bidirectional after adaptation, annealing really in effect, padding masked, AR equivalence."""

import pytest
import torch
from tiny import tiny_ar_model, tiny_diffusion_model
from transformers import AutoConfig, AutoModel

FAMILIES = ["gpt2", "llama", "qwen2"]


def attention_layers(model):
    return [m for name, m in model.named_modules() if name.endswith(("self_attn", ".attn"))]


def capture_layer_masks(model, causal_flags=None):
    """Record the attention_mask every attention layer receives (and its is_causal argument in ``causal_flags``)."""
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs.get("attention_mask"))
        if causal_flags is not None:
            causal_flags.append(kwargs.get("is_causal"))

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in attention_layers(model)]
    return seen, handles


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_later_token_changes_earlier_logits(family, attn):
    model, _ = tiny_diffusion_model(family)
    model.set_attn_implementation(attn)
    x = torch.randint(6, 80, (2, 12))
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 80
    with torch.no_grad():
        before, after = model(x).logits, model(changed).logits
    assert (before[:, 3] - after[:, 3]).abs().max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_causal_mode_and_zero_anneal_ratio_reproduce_the_ar_model(family, attn):
    ar = tiny_ar_model(family)
    ar.set_attn_implementation(attn)
    diffusion, _ = tiny_diffusion_model(family, attention_mode="causal")
    diffusion.set_attn_implementation(attn)
    bidirectional, _ = tiny_diffusion_model(family)
    bidirectional.set_attn_implementation(attn)
    x = torch.randint(6, 80, (2, 12))
    with torch.no_grad():
        expected = ar(x).logits
        vocab = expected.shape[-1]
        torch.testing.assert_close(diffusion(x).logits[..., :vocab], expected, atol=1e-5, rtol=1e-4)
        # annealing at ratio 0 is the causal pattern: exactly the AR model
        torch.testing.assert_close(bidirectional(x, anneal_ratio=0.0).logits[..., :vocab], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_annealed_pattern_allows_share_r_of_future_positions(ratio):
    model, _ = tiny_diffusion_model("llama")
    seen, handles = capture_layer_masks(model)
    length = 64
    torch.manual_seed(0)
    with torch.no_grad():
        model(torch.randint(6, 80, (4, length)), anneal_ratio=ratio)
    for h in handles:
        h.remove()
    mask = seen[0]
    assert mask.shape == (4, 1, length, length)
    allowed = mask == 0
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    share = allowed[:, 0][:, future].float().mean().item()
    n = 4 * int(future.sum())
    assert abs(share - ratio) < 4 * (ratio * (1 - ratio) / n) ** 0.5
    assert allowed[:, 0][:, ~future].all()  # the causal part is always open
    # really in effect: a future token now influences an earlier position in some draws and not in others


def test_annealing_changes_the_output():
    model, _ = tiny_diffusion_model("llama")
    x = torch.randint(6, 80, (1, 16))
    with torch.no_grad():
        torch.manual_seed(0)
        half = model(x, anneal_ratio=0.5).logits
        causal = model(x, anneal_ratio=0.0).logits
        full = model(x).logits
    assert not torch.allclose(half, causal) and not torch.allclose(half, full)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", [{}, {"anneal_ratio": 0.5}, {"anneal_ratio": 0.0}])
def test_padded_keys_get_no_attention(family, mode):
    model, _ = tiny_diffusion_model(family)
    x = torch.randint(6, 80, (2, 10))
    attention_mask = torch.ones_like(x)
    attention_mask[0, 7:] = 0  # right padding
    attention_mask[1, :3] = 0  # left padding
    other = x.clone()
    other[0, 7:] = 5
    other[1, :3] = 5
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(x, attention_mask=attention_mask, **mode).logits
        torch.manual_seed(0)
        b = model(other, attention_mask=attention_mask, **mode).logits
    real = attention_mask.bool()
    torch.testing.assert_close(a[real], b[real])


def test_bidirectional_path_builds_no_square_mask():
    model, _ = tiny_diffusion_model("llama")
    model.set_attn_implementation("sdpa")
    causal_flags = []
    seen, handles = capture_layer_masks(model, causal_flags)
    x = torch.randint(6, 80, (2, 10))
    padding = torch.ones_like(x)
    padding[0, -2:] = 0
    with torch.no_grad():
        model(x)
        model(x, attention_mask=torch.ones_like(x))
        model(x, anneal_ratio=1.0)
        model(x, attention_mask=padding)
    for h in handles:
        h.remove()
    layers = len(attention_layers(model))
    assert all(m is None for m in seen[: 3 * layers])
    assert all(m.shape == (2, 1, 1, 10) for m in seen[3 * layers :])
    # without a mask, SDPA / flash kernels would apply their own causal mask unless the call says is_causal=False
    assert causal_flags == [False] * len(seen)


def test_flash_attention_refuses_annealing():
    model, _ = tiny_diffusion_model("llama")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="annealed, causal or block"):
        model(torch.randint(6, 80, (1, 8)), anneal_ratio=0.5)


def test_weight_names_match_the_ar_checkpoint():
    for family in FAMILIES:
        ar = tiny_ar_model(family)
        diffusion, _ = tiny_diffusion_model(family)
        assert set(ar.state_dict()) == set(diffusion.state_dict())


def test_bad_config_values_are_rejected():
    from diffusion_lm import DiffuLlamaConfig

    with pytest.raises(Exception, match="attention_mode"):
        DiffuLlamaConfig(attention_mode="sideways")
    with pytest.raises(Exception, match="mask_token_id"):
        DiffuLlamaConfig(vocab_size=10, mask_token_id=10)


def test_saved_model_loads_through_auto_classes(tmp_path):
    model, tokenizer = tiny_diffusion_model("gpt2")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path, trust_remote_code=True)
    assert config.auto_map["AutoModel"].endswith("DiffuGPTForMaskedDiffusion")
    assert config.auto_map["AutoModelForCausalLM"].endswith("DiffuGPTForMaskedDiffusion")
    for trust in (False, True):
        loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=trust)
        x = torch.randint(6, 80, (1, 8))
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
