"""Fast diffusion decoding: KV caches, confidence-threshold parallel decoding, LM head on the read positions only,
early stop at EOS, accounting, transformers' processors / criteria, and block-diffusion models' exact cache."""

import pytest
import torch
from tiny import run_clean_process, tiny_ar_model, tiny_diffusion_model
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

BOS, EOS, PAD = 1, 2, 0
FAMILIES = ["gpt2", "llama", "qwen2"]


def tiny(family="llama", attn="sdpa", mode="bidirectional", block=None, seed=0):
    model, tokenizer = tiny_diffusion_model(family, seed=seed)
    model.set_attn_implementation(attn)
    model.config.attention_mode = mode
    model.config.diffusion_block_size = block
    return model


def left_padded_batch():
    """Three prompts of different lengths (one of them not a multiple of any block size used here)."""
    prompts = [[BOS, 10, 11, 12, 13, 14, 15], [BOS, 20, 21], [BOS, 30, 31, 32, 33]]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def decode(model, ids, mask=None, **kwargs):
    settings = dict(max_new_tokens=12, steps=12, block_length=4, return_dict_in_generate=True, eos_token_id=None)
    settings.update(kwargs)
    return model.generate(ids, attention_mask=mask, **settings)


# --- full-attention models: the cached path is exact when refreshed every step ---------------------------------------
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_cache_refreshed_every_step_equals_the_uncached_decode(family, attn, kv_cache):
    model = tiny(family, attn)
    ids, mask = left_padded_batch()
    exact = decode(model, ids, mask)
    cached = decode(model, ids, mask, kv_cache=kv_cache, kv_cache_refresh="step")
    assert torch.equal(cached.sequences, exact.sequences)
    # one whole-canvas refresh plus one windowed pass per step
    assert cached.forward_passes.tolist() == [2 * n for n in exact.forward_passes.tolist()]


@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
@pytest.mark.parametrize("family", FAMILIES)
def test_infilling_with_a_step_refreshed_cache_equals_the_uncached_decode(family, kv_cache):
    """Holes before a given suffix (max_new_tokens=0; the same number of holes per row, which blocks need): the
    cache sees the suffix as 'after the block'."""
    model = tiny(family)
    mask = model.config.mask_token_id
    ids = torch.tensor([[BOS, 10, 11, mask, mask, mask, mask, 12, 13, mask, mask, 14, 15],
                        [BOS, 20, mask, mask, 21, 22, 23, 24, mask, mask, mask, mask, 25]])
    settings = dict(max_new_tokens=0, steps=6, block_length=2)
    exact = decode(model, ids, **settings)
    cached = decode(model, ids, kv_cache=kv_cache, kv_cache_refresh="step", **settings)
    assert torch.equal(cached.sequences, exact.sequences)
    fast = decode(model, ids, kv_cache=kv_cache, threshold=0.9, **settings)
    assert (fast.sequences != mask).all()
    kept = ids != mask  # the given prefix and suffix are never rewritten
    assert torch.equal(fast.sequences[kept], ids[kept])


@pytest.mark.parametrize("layout", ["diffugpt", "diffullama"])
def test_checkpoints_imported_from_the_reference_releases_decode_with_the_cache(tmp_path, layout):
    from test_reference_import import numbered_tokenizer, write_diffugpt_reference

    from diffusion_lm.reference_import import import_reference

    release = tmp_path / "release"
    tokenizer = numbered_tokenizer(10_600)  # the reference mask ids (10541, 811) exist
    if layout == "diffugpt":
        write_diffugpt_reference(release, tokenizer)
    else:
        tiny_ar_model("llama", vocab_size=len(tokenizer)).save_pretrained(release)
        tokenizer.save_pretrained(release)
    model, _ = import_reference(str(release))
    ids = torch.tensor([[BOS, 10, 11, 12, 13]])
    exact = decode(model, ids)
    for kv_cache in ("prefix", "dual"):
        cached = decode(model, ids, kv_cache=kv_cache, kv_cache_refresh="step")
        assert torch.equal(cached.sequences, exact.sequences), kv_cache
        assert (decode(model, ids, kv_cache=kv_cache, threshold=0.9).sequences != model.config.mask_token_id).all()


@pytest.mark.parametrize("refresh", ["block", "incremental"])
@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_approximate_caches_run_fewer_positions_and_fill_every_hole(kv_cache, refresh):
    model = tiny("llama")
    seen = []
    hook = model.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]),
                                                 with_kwargs=True)
    ids, mask = left_padded_batch()
    out = decode(model, ids, mask, kv_cache=kv_cache, kv_cache_refresh=refresh)
    hook.remove()
    canvas = ids.shape[1] + 12
    assert (out.sequences != model.config.mask_token_id).all()
    assert out.forward_passes.tolist() == [12, 12, 12]  # no extra passes: refreshes serve a step
    assert seen[0] == canvas  # the first step sees the whole canvas
    if refresh == "block":
        assert seen.count(canvas) == 3  # one whole-canvas pass per block
    else:
        assert seen.count(canvas) == 1
    windows = [n for n in seen if n != canvas]
    if kv_cache == "dual":  # the block and the position left of it (incremental: once also the block before it)
        assert min(windows) == 5 and max(windows) == (5 if refresh == "block" else 9)
    else:  # the block, the position left of it and everything after the block
        assert windows[0] == canvas - (ids.shape[1] - 1)


def test_lm_head_sees_only_the_block_positions():
    model = tiny("llama")
    rows = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[1]))
    ids = torch.tensor([[BOS, 10, 11, 12, 13]])
    decode(model, ids, kv_cache="dual", max_new_tokens=16, steps=16, block_length=8)
    hook.remove()
    # each step reads the predictions of the current block's masked positions only: 8, 7, ..., 1 per block
    assert rows == list(range(8, 0, -1)) * 2


# --- confidence threshold ------------------------------------------------------------------------------------------
def test_threshold_one_is_exactly_the_fixed_schedule():
    model = tiny("llama")
    ids, mask = left_padded_batch()
    for kwargs in (dict(), dict(kv_cache="dual"), dict(steps=6)):
        plain = decode(model, ids, mask, **kwargs)
        thresholded = decode(model, ids, mask, threshold=1.0, **kwargs)
        assert torch.equal(plain.sequences, thresholded.sequences)
        assert torch.equal(plain.forward_passes, thresholded.forward_passes)


def test_a_tiny_threshold_finishes_each_block_in_one_forward():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])
    out = decode(model, ids, max_new_tokens=16, steps=16, block_length=4, threshold=1e-9)
    assert out.forward_passes.tolist() == [4]
    assert out.tokens_per_forward.tolist() == [4.0]
    assert (out.sequences != model.config.mask_token_id).all()


def test_threshold_commits_confident_positions_beyond_the_schedule():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])
    first_step = []
    plain = decode(model, ids, max_new_tokens=8, steps=8, block_length=8,
                   step_callback=lambda step, x, predictions: first_step.append(predictions) if step == 0 else None)
    confidence = first_step[0].logits[0].softmax(-1).max(-1).values.sort(descending=True).values
    # a threshold between the 3rd and 4th most confident first-step proposals commits 3 positions in step 1
    threshold = float(confidence[2] + confidence[3]) / 2
    fast = decode(model, ids, max_new_tokens=8, steps=8, block_length=8, threshold=threshold)
    assert plain.forward_passes.item() == 8
    assert fast.forward_passes.item() < 8


# --- early stop, accounting, processors ----------------------------------------------------------------------------
class BanToken(LogitsProcessor):
    def __init__(self, token):
        self.token = token

    def __call__(self, input_ids, scores):
        scores[:, self.token] = float("-inf")
        return scores


def test_eos_stops_decoding_after_its_block():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])
    free = decode(model, ids, max_new_tokens=16, steps=16, block_length=4, eos_token_id=None)
    first_token = int(free.sequences[0, 3])
    stopped = decode(model, ids, max_new_tokens=16, steps=16, block_length=4, eos_token_id=first_token,
                     pad_token_id=PAD)
    assert stopped.forward_passes.item() == 4 < free.forward_passes.item()  # only the first block was decoded
    assert stopped.sequences[0, 3].item() == first_token
    assert (stopped.sequences[0, 4:] == PAD).all()
    assert stopped.tokens_per_forward.item() == pytest.approx(1 / 4)  # one token up to EOS, in four passes


def test_logits_processor_and_stopping_criteria_are_applied():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])
    free = decode(model, ids)
    banned = int(free.sequences[0, 3])
    out = decode(model, ids, logits_processor=LogitsProcessorList([BanToken(banned)]))
    assert banned not in out.sequences[0, 3:].tolist()

    class AfterFirstBlock(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.ones(input_ids.shape[0], dtype=torch.bool)

    stopped = decode(model, ids, stopping_criteria=StoppingCriteriaList([AfterFirstBlock()]), pad_token_id=PAD)
    assert stopped.forward_passes.item() == 4 and (stopped.sequences[0, 7:] == PAD).all()


def test_bad_cache_settings_fail_before_any_forward():
    model = tiny("llama", mode="block", block=4)
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="kv_cache='dual'"):
        decode(model, torch.tensor([[BOS, 10]]), kv_cache="dual")
    with pytest.raises(ValueError, match="block_length 8 differs from the model's diffusion_block_size 4"):
        decode(model, torch.tensor([[BOS, 10]]), block_length=8)
    with pytest.raises(ValueError, match="kv_cache"):
        decode(model, torch.tensor([[BOS, 10]]), kv_cache="sideways")
    with pytest.raises(ValueError, match="threshold"):
        decode(model, torch.tensor([[BOS, 10]]), threshold=-0.5)
    assert calls == []


# --- block-diffusion models ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_block_logits_ignore_later_blocks_and_see_their_own_block(family, attn):
    model = tiny(family, attn, mode="block", block=4)
    ids = torch.tensor([[BOS, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]])
    with torch.no_grad():
        base = model(input_ids=ids).logits
        later_block = ids.clone()
        later_block[0, 9] = 30  # block 2
        changed = model(input_ids=later_block).logits
        same_block = ids.clone()
        same_block[0, 7] = 30  # block 1, after position 5
        changed_inside = model(input_ids=same_block).logits
    torch.testing.assert_close(changed[:, :8], base[:, :8])  # blocks 0 and 1 never see block 2
    assert not torch.allclose(changed[:, 8:], base[:, 8:])
    assert not torch.allclose(changed_inside[:, 4:6], base[:, 4:6])  # position 5 sees position 7 in its block
    torch.testing.assert_close(changed_inside[:, :4], base[:, :4])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_block_model_cached_decode_equals_uncached(family, attn):
    model = tiny(family, attn, mode="block", block=4)
    ids, mask = left_padded_batch()  # prompt lengths 7, 3, 5: none a multiple of 4, different phases
    for kwargs in (dict(), dict(threshold=0.05), dict(alg="random", temperature=1.0)):
        exact = decode(model, ids, mask, block_length=None, generator=torch.Generator().manual_seed(0), **kwargs)
        cached = decode(model, ids, mask, block_length=None, kv_cache="prefix",
                        generator=torch.Generator().manual_seed(0), **kwargs)
        assert torch.equal(cached.sequences, exact.sequences)
        assert (exact.sequences != model.config.mask_token_id).all()


def test_block_model_prefills_once_and_stops_at_eos():
    model = tiny("llama", mode="block", block=4)
    seen = []
    model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    ids = torch.tensor([[BOS, 10, 11, 12, 13, 14]])  # 6 tokens: block 1 holds 2 prompt tokens and 2 new ones
    out = decode(model, ids, block_length=None, kv_cache="prefix")
    # canvas 18 = blocks [0,4) [4,8) [8,12) [12,16) [16,18); the new positions start at 6; 3 steps per block.
    # Block [4,8): prompt + block once (8), then the block (its prompt tokens see its masks: recomputed, 4).
    # Each later block: first step also recomputes the finished block with its final tokens (8), then the block
    # and the position left of it (5). Steps that commit nothing run nothing.
    assert seen == [8, 4, 8, 5, 5, 8, 5, 5, 6, 3]
    blocks_free = out.forward_passes.item()
    eos = int(out.sequences[0, 6])
    seen.clear()
    stopped = decode(model, ids, block_length=None, kv_cache="prefix", eos_token_id=eos, pad_token_id=PAD)
    assert stopped.forward_passes.item() == 2 < blocks_free  # the first block's two new positions, then stop
    assert (stopped.sequences[0, 7:] == PAD).all()


# --- remote code ----------------------------------------------------------------------------------------------------
REMOTE_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.tensor([[1, 10, 20]])
settings = dict(max_new_tokens=8, steps=8, block_length=4, return_dict_in_generate=True)
exact = model.generate(ids, **settings)
cached = model.generate(ids, kv_cache="dual", kv_cache_refresh="step", **settings)
fast = model.generate(ids, kv_cache="dual", threshold=0.01, **settings)
print("REPORT" + json.dumps({
    "equal": bool(torch.equal(exact.sequences, cached.sequences)),
    "fast_passes": fast.forward_passes.tolist(),
    "diffusion_lm_imported": any(name.startswith("diffusion_lm") for name in sys.modules),
}))
"""


def test_remote_code_checkpoint_decodes_with_the_cache_without_diffusion_lm(tmp_path):
    model, _ = tiny_diffusion_model("llama")
    model.save_pretrained(tmp_path / "ckpt")
    report, _ = run_clean_process(REMOTE_SCRIPT, [str(tmp_path / "ckpt")], str(tmp_path))
    assert report == {"equal": True, "fast_passes": [2], "diffusion_lm_imported": False}


# --- command line ----------------------------------------------------------------------------------------------------
def test_cli_generate_takes_kv_cache_and_threshold(tmp_path, capsys):
    from diffusion_lm.cli import main

    model, tokenizer = tiny_diffusion_model("gpt2")
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    common = ["generate", str(tmp_path / "ckpt"), "--prompt", "the cat sat", "--max-new-tokens", "8",
              "--block-length", "4", "--device", "cpu"]
    assert main(common) == 0
    exact = capsys.readouterr().out.strip().splitlines()[-1]
    # a refresh every step is as exact as no cache; a tiny threshold finishes each block in one pass
    model.generation_config.kv_cache_refresh = "step"
    model.save_pretrained(tmp_path / "ckpt")
    assert main(common + ["--kv-cache", "dual"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == exact
    assert main(common + ["--kv-cache", "prefix", "--threshold", "0.000001"]) == 0
    assert capsys.readouterr().out.strip().startswith("the cat sat")
    assert main(common + ["--threshold", "1.5"]) != 0
    assert "--threshold" in capsys.readouterr().err
