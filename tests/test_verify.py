"""Self-verified decoding (verify="causal"), the entropy-bound commit rule and block sub-blocks with a dual cache."""

import pytest
import torch
from test_fast_decoding import BOS, FAMILIES, PAD, left_padded_batch, tiny
from tiny import run_clean_process, tiny_diffusion_model
from transformers import StoppingCriteria, StoppingCriteriaList

from diffusion_lm.modeling.attention_annealing import allowed_to_additive, attention_pattern
from diffusion_lm.modeling.self_verification import greedy_acceptance, speculative_acceptance
from diffusion_lm.modeling.unmasking import entropy_bound_commit


@torch.no_grad()
def causal_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """The model's causal mode decoded greedily by hand: the whole sequence recomputed for every token, no cache, the
    causal pattern built from positions, the [MASK] token never chosen."""
    ids = list(prompt)
    for _ in range(new_tokens):
        x = torch.tensor([ids])
        positions = torch.arange(len(ids))[None]
        mask = allowed_to_additive(attention_pattern("causal", positions, positions), model.dtype)
        logits = model(input_ids=x, attention_mask=mask, position_ids=positions).logits[0, -1].float()
        logits[model.config.mask_token_id] = float("-inf")
        ids.append(int(logits.argmax()))
    return ids


def verify(model, ids, mask=None, **kwargs):
    settings = dict(max_new_tokens=12, verify="causal", return_dict_in_generate=True, eos_token_id=None)
    settings.update(kwargs)
    return model.generate(ids, attention_mask=mask, **settings)


# --- greedy: token for token the causal greedy decode --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bidirectional", "block"])
@pytest.mark.parametrize("family", FAMILIES)
def test_verify_equals_the_causal_greedy_loop(family, mode):
    model = tiny(family, mode=mode, block=4 if mode == "block" else None)
    ids, mask = left_padded_batch()
    out = verify(model, ids, mask, draft_length=3)
    for row in range(ids.shape[0]):
        prompt = ids[row][mask[row].bool()].tolist()
        expected = causal_greedy(model, prompt, 12)
        assert out.sequences[row, ids.shape[1]:].tolist() == expected[len(prompt):], row
    assert (out.accepted_per_verification >= 1).all()
    assert out.verifications.tolist() == [round(12 / float(a)) for a in out.accepted_per_verification]


@pytest.mark.parametrize("kv_cache", [None, "dual"])
def test_verify_batch_rows_equal_their_single_decodes(kv_cache):
    """Rows accept different counts; each row's text is its own single-sequence decode (with the incremental drafter
    cache and with the uncached draft)."""
    model = tiny("llama")
    ids, mask = left_padded_batch()
    batch = verify(model, ids, mask, kv_cache=kv_cache, draft_length=4)
    for row in range(3):
        single = verify(model, ids[row:row + 1, (1 - mask[row]).sum():], kv_cache=kv_cache, draft_length=4)
        assert single.sequences[0, -12:].tolist() == batch.sequences[row, -12:].tolist()


def test_a_draft_that_is_always_right_commits_draft_length_plus_one_per_verification():
    model = tiny("llama")
    with torch.no_grad():  # every logit 0 in both modes: the draft (argmax, token 0) is always the causal choice
        model.model.norm.weight.zero_()
    ids = torch.tensor([[BOS, 10, 11]])
    out = verify(model, ids, max_new_tokens=15, draft_length=4)
    assert out.sequences[0, 3:].tolist() == causal_greedy(model, [BOS, 10, 11], 15)[3:]
    # 15 tokens = 3 rounds of 4 accepted + 1: 3 verifications and 3 drafts
    assert out.verifications.tolist() == [3] and out.accepted_per_verification.tolist() == [5.0]
    assert out.forward_passes.tolist() == [6] and out.tokens_per_forward.tolist() == [2.5]


def test_verify_stops_at_eos_and_at_stopping_criteria_like_the_token_loop():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])
    free = causal_greedy(model, [BOS, 10, 11], 12)[3:]
    eos = free[5]
    out = verify(model, ids, eos_token_id=eos, pad_token_id=PAD, draft_length=4)
    first = free.index(eos)
    assert out.sequences[0, 3:3 + first + 1].tolist() == free[:first + 1]
    assert (out.sequences[0, 3 + first + 1:] == PAD).all()

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 3 + 7, dtype=torch.bool)

    stopped = verify(model, ids, stopping_criteria=StoppingCriteriaList([StopAfter()]), pad_token_id=PAD,
                     draft_length=4)
    assert stopped.sequences[0, 3:10].tolist() == free[:7] and (stopped.sequences[0, 10:] == PAD).all()


def test_verify_streams_committed_tokens_in_order():
    model = tiny("llama")
    ids = torch.tensor([[BOS, 10, 11]])

    class Collect:
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.reshape(-1).tolist())

        def end(self):
            self.ended = True

    streamer = Collect()
    out = verify(model, ids, streamer=streamer, draft_length=4)
    assert streamer.puts[0] == [BOS, 10, 11] and streamer.ended
    assert sum(streamer.puts[1:], []) == out.sequences[0, 3:].tolist()


# --- acceptance accounting on scripted logits ------------------------------------------------------------------------
def scripted_logits(choices, vocab=6):
    logits = torch.full((len(choices), vocab), -5.0)
    logits[torch.arange(len(choices)), torch.tensor(choices)] = 5.0
    return logits


@pytest.mark.parametrize("agree", [0, 1, 2, 3, 4])
def test_greedy_acceptance_a_draft_that_agrees_for_k_tokens_accepts_k_plus_one(agree):
    causal = [3, 1, 4, 1, 5]  # the causal argmax at the 4 draft positions and the one after
    draft = causal[:4]
    if agree < 4:
        draft = causal[:agree] + [(causal[agree] + 1) % 6] + causal[agree + 1:4]
    accepted, next_token = greedy_acceptance(torch.tensor([draft]), torch.tensor([4]),
                                             scripted_logits(causal)[None])
    assert accepted.tolist() == [agree]
    assert next_token.tolist() == [causal[agree]]  # the causal model's own token: agree + 1 committed


def test_greedy_acceptance_respects_each_rows_draft_length():
    causal = scripted_logits([3, 1, 4, 1, 5])[None].expand(2, -1, -1)
    draft = torch.tensor([[3, 1, 4, 1], [3, 1, 4, 1]])
    accepted, next_token = greedy_acceptance(draft, torch.tensor([4, 2]), causal)
    assert accepted.tolist() == [4, 2] and next_token.tolist() == [5, 4]


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_speculative_acceptance_keeps_the_causal_distribution():
    """A Markov target p(x1) p(x2 | x1) on 3 tokens, a poor context-free drafter q: decoding two tokens with the rule
    (rounds as verify runs them) gives the target's joint law (chi-square, 8 degrees of freedom)."""
    generator = torch.Generator().manual_seed(0)
    p1 = torch.tensor([0.6, 0.3, 0.1])
    p2 = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.3, 0.6, 0.1]])  # p(x2 | x1)
    q = torch.tensor([[0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])  # draft laws of the two positions
    n = 40_000
    draft = torch.stack([torch.multinomial(q[i], n, replacement=True, generator=generator) for i in range(2)], 1)
    target = torch.stack([p1.expand(n, 3), p2[draft[:, 0]], torch.full((n, 3), 1 / 3)], dim=1)  # p at x1, x2, x3
    accepted, next_token = speculative_acceptance(draft, torch.full((n,), 2), q.expand(n, 2, 3), target, generator)
    first = torch.where(accepted >= 1, draft[:, 0], next_token)
    second = torch.where(accepted >= 2, draft[:, 1], torch.where(accepted == 1, next_token, -1))
    # rows whose first round committed one token draw x2 in a second round: a one-token draft from q[0]'s law
    redo = second < 0
    draft2 = torch.multinomial(q[0], int(redo.sum()), replacement=True, generator=generator)[:, None]
    target2 = torch.stack([p2[first[redo]], torch.full((int(redo.sum()), 3), 1 / 3)], dim=1)
    accepted2, next2 = speculative_acceptance(draft2, torch.ones(int(redo.sum()), dtype=torch.long),
                                              q[:1].expand(int(redo.sum()), 1, 3), target2, generator)
    second[redo] = torch.where(accepted2 >= 1, draft2[:, 0], next2)
    counts = torch.bincount(first * 3 + second, minlength=9).float()
    joint = (p1[:, None] * p2).flatten()
    assert chi_square(counts, joint) < 26.1  # the 0.001 critical value of chi-square with 8 degrees of freedom
    # and the drafter's own law is far from it (the test can fail)
    draft_joint = (q[0][:, None] * q[1][None]).flatten()
    assert chi_square(counts, draft_joint) > 1000


def test_sampled_verify_runs_and_is_reproducible():
    model = tiny("llama")
    ids, mask = left_padded_batch()
    a = verify(model, ids, mask, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(1))
    b = verify(model, ids, mask, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.sequences, b.sequences)
    assert (a.sequences[:, -12:] != model.config.mask_token_id).all()


# --- bad input ------------------------------------------------------------------------------------------------------
def test_bad_verify_settings_fail_before_any_forward():
    model = tiny("llama")
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    ids = torch.tensor([[BOS, 10]])
    with pytest.raises(ValueError, match="verify must be None or one of"):
        verify(model, ids, verify="bidirectional")
    with pytest.raises(ValueError, match="draft_length"):
        verify(model, ids, draft_length=0)
    from transformers import LogitsProcessorList, TopKLogitsWarper
    with pytest.raises(ValueError, match="logits_processor"):
        verify(model, ids, logits_processor=LogitsProcessorList([TopKLogitsWarper(3)]))
    holes = torch.tensor([[False, True]])
    with pytest.raises(ValueError, match="infill_mask"):
        verify(model, ids, infill_mask=holes)
    with pytest.raises(ValueError, match="streamer"):
        verify(model, torch.tensor([[BOS, 10], [BOS, 11]]), streamer=object())
    model.config.shift = False
    with pytest.raises(ValueError, match="verify='causal' needs a model with the AR shift"):
        verify(model, ids)
    model.config.shift = True
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="verify='causal' needs attention patterns"):
        verify(model, ids)
    assert calls == []


# --- remote code ----------------------------------------------------------------------------------------------------
REMOTE_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.tensor([[0, 0, 1, 10, 20], [1, 30, 31, 32, 33]])
mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
out = model.generate(ids, attention_mask=mask, max_new_tokens=10, verify="causal", draft_length=3,
                     eos_token_id=None, return_dict_in_generate=True)
settings = dict(max_new_tokens=8, steps=8, eos_token_id=None)
if model.config.attention_mode == "block":  # sub-blocks: the dual cache refreshed every step is the uncached decode
    exact = model.generate(ids, attention_mask=mask, sub_block_length=2, **settings)
    cached = model.generate(ids, attention_mask=mask, sub_block_length=2, kv_cache="dual", kv_cache_refresh="step",
                            **settings)
else:
    exact = model.generate(ids, attention_mask=mask, block_length=4, **settings)
    cached = model.generate(ids, attention_mask=mask, block_length=4, kv_cache="dual", kv_cache_refresh="step",
                            **settings)
bounded = model.generate(ids, attention_mask=mask, entropy_bound=1e9, kv_cache="prefix", return_dict_in_generate=True,
                         **settings)
print("REPORT" + json.dumps({
    "sequences": out.sequences.tolist(),
    "accepted": out.accepted_per_verification.tolist(),
    "forwards": out.forward_passes.tolist(),
    "verifications": out.verifications.tolist(),
    "cached_equal": bool(torch.equal(exact, cached)),
    "bounded_passes": bounded.forward_passes.tolist(),
    "diffusion_lm_imported": any(name.startswith("diffusion_lm") for name in sys.modules),
}))
"""


@pytest.mark.parametrize("transformers_release", ["installed", "lowest"])
@pytest.mark.parametrize("mode", ["bidirectional", "block", "block-causal-context"])
def test_remote_code_checkpoint_verifies_without_diffusion_lm(tmp_path, mode, transformers_release):
    """The newest transformers and the lowest supported one (the .ci/transformers-lowest venv; skipped without it).
    A block model with token-causal context runs the fused rounds (one forward each) as remote code."""
    import sys

    from test_remote_code import lowest_python

    python = sys.executable if transformers_release == "installed" else lowest_python()
    model = tiny("qwen2", mode="bidirectional" if mode == "bidirectional" else "block",
                 block=None if mode == "bidirectional" else 4)
    if mode == "block-causal-context":
        model.config.context_attention = "causal"
    model.save_pretrained(tmp_path / "ckpt")
    report, _ = run_clean_process(REMOTE_SCRIPT, [str(tmp_path / "ckpt")], str(tmp_path), python=python)
    assert report["diffusion_lm_imported"] is False
    for row, prompt in enumerate([[1, 10, 20], [1, 30, 31, 32, 33]]):
        assert report["sequences"][row][5:] == causal_greedy(model, prompt, 10)[len(prompt):]
    assert all(a >= 1 for a in report["accepted"])
    fused = [f == v for f, v in zip(report["forwards"], report["verifications"])]
    assert fused == [mode == "block-causal-context"] * 2
    assert report["cached_equal"] is True
    assert max(report["bounded_passes"]) <= 3  # a huge entropy bound finishes each block in one forward


# --- entropy-bound commit rule ----------------------------------------------------------------------------------------
def test_entropy_bound_commits_the_most_confident_positions_while_their_entropy_fits():
    confidence = torch.tensor([[0.9, 0.5, 0.95, 0.7, 0.99]])
    entropy = torch.tensor([[0.3, 1.0, 0.2, 0.6, 0.1]])
    eligible = torch.tensor([[True, True, True, True, False]])
    # eligible in confidence order: 2 (0.2), 0 (0.3 -> 0.5), 3 (0.6 -> 1.1), 1 (1.0 -> 2.1)
    assert entropy_bound_commit(confidence, entropy, eligible, 0.5).tolist() == [[True, False, True, False, False]]
    assert entropy_bound_commit(confidence, entropy, eligible, 1.2).tolist() == [[True, False, True, True, False]]
    # a bound below every entropy still commits the most confident position
    assert entropy_bound_commit(confidence, entropy, eligible, 0.01).tolist() == [[False, False, True, False, False]]


@pytest.mark.parametrize("mode", ["bidirectional", "block"])
def test_entropy_bound_decodes_in_fewer_forwards_as_the_bound_grows(mode):
    model = tiny("llama", mode=mode, block=4 if mode == "block" else None)
    ids = torch.tensor([[BOS, 10, 11]])
    settings = dict(max_new_tokens=12, steps=12, return_dict_in_generate=True, eos_token_id=None,
                    kv_cache="prefix", block_length=None if mode == "block" else 4)
    plain = model.generate(ids, **settings)
    tiny_bound = model.generate(ids, entropy_bound=1e-9, **settings)
    huge_bound = model.generate(ids, entropy_bound=1e9, **settings)
    # a bound below every entropy commits one position a step beyond the schedule's: here the schedule itself
    assert torch.equal(tiny_bound.sequences, plain.sequences)
    assert torch.equal(tiny_bound.forward_passes, plain.forward_passes)
    assert plain.forward_passes.item() >= 10
    assert huge_bound.forward_passes.item() == 3 + (mode == "block")  # every block in one forward
    assert (huge_bound.sequences != model.config.mask_token_id).all()


def test_bad_entropy_bound_and_sub_block_settings_fail_before_any_forward():
    model = tiny("llama")
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    ids = torch.tensor([[BOS, 10]])
    with pytest.raises(ValueError, match="entropy_bound"):
        model.generate(ids, entropy_bound=0)
    with pytest.raises(ValueError, match="sub_block_length is for block-diffusion models"):
        model.generate(ids, sub_block_length=2)
    with pytest.raises(ValueError, match="sub_block_length must be"):
        model.generate(ids, sub_block_length=0)
    assert calls == []


# --- sub-blocks with a dual cache inside a block (Fast-dLLM v2) ------------------------------------------------------
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_sub_block_dual_cache_refreshed_every_step_equals_the_uncached_decode(family, attn):
    model = tiny(family, attn, mode="block", block=8)
    ids, mask = left_padded_batch()
    settings = dict(max_new_tokens=14, steps=14, sub_block_length=4, return_dict_in_generate=True,
                    eos_token_id=None)
    for extra in (dict(), dict(threshold=0.05), dict(alg="random", temperature=1.0)):
        exact = model.generate(ids, attention_mask=mask, generator=torch.Generator().manual_seed(0), **settings,
                               **extra)
        cached = model.generate(ids, attention_mask=mask, kv_cache="dual", kv_cache_refresh="step",
                                generator=torch.Generator().manual_seed(0), **settings, **extra)
        assert torch.equal(cached.sequences, exact.sequences), extra
        assert (exact.sequences != model.config.mask_token_id).all()


def test_sub_blocks_commit_left_to_right_inside_a_block_and_the_dual_cache_runs_the_sub_block_only():
    model = tiny("llama", mode="block", block=8)
    seen = []
    model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    order = []
    ids = torch.tensor([[BOS, 10, 11, 12, 13, 14, 15, 16]])  # 8 tokens: the new positions start a block
    model.generate(ids, max_new_tokens=16, steps=16, sub_block_length=4, kv_cache="dual", eos_token_id=None,
                   step_callback=lambda step, x, p: order.append(p.positions.tolist()))
    # each sub-block's positions are decoded before the next sub-block's
    firsts = [positions[0] for positions in order]
    assert firsts == sorted(firsts)
    # per block: the whole block once (block 1 with the prompt: 16; block 2 with block 1 re-run final: 16), then
    # the sub-block and the position left of it (5), once the finished sub-block too (9)
    assert seen == [16, 5, 5, 5, 9, 5, 5, 5, 16, 5, 5, 5, 9, 5, 5, 5]


# --- command line ----------------------------------------------------------------------------------------------------
def test_cli_generate_takes_verify_and_entropy_bound(tmp_path, capsys):
    from diffusion_lm.cli import main

    model, tokenizer = tiny_diffusion_model("gpt2")
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    common = ["generate", str(tmp_path / "ckpt"), "--prompt", "the cat sat", "--max-new-tokens", "8",
              "--block-length", "4", "--device", "cpu"]
    assert main(common + ["--verify", "causal", "--draft-length", "3"]) == 0
    text = capsys.readouterr().out.strip().splitlines()[-1]
    prompt = tokenizer("the cat sat")["input_ids"]
    expected = causal_greedy(model, prompt, 8)
    from diffusion_lm.infilling import decode_text
    assert text == decode_text(tokenizer, expected, model.config)
    assert main(common + ["--entropy-bound", "0.5", "--kv-cache", "dual"]) == 0
    assert capsys.readouterr().out.strip().startswith("the cat sat")
    assert main(common + ["--entropy-bound", "0"]) != 0
    assert "--entropy-bound" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["bidirectional", "block"])
def test_verify_batch_compacts_its_caches_and_stays_exact(mode, monkeypatch):
    """Rows at different block phases and acceptance counts leave dead columns; the caches compact them away (here
    whenever there is one) and the text stays the causal greedy decode."""
    import diffusion_lm.modeling.decoding_cache as decoding_cache

    monkeypatch.setattr(decoding_cache, "COMPACT_MIN_DEAD", 0)
    monkeypatch.setattr(decoding_cache, "COMPACT_DEAD_SHARE", 0.0)
    compactions = []
    gather = decoding_cache.gather_dynamic_cache
    monkeypatch.setattr(decoding_cache, "gather_dynamic_cache",
                        lambda cache, index: (compactions.append(index.shape), gather(cache, index)))
    model = tiny("llama", mode=mode, block=4 if mode == "block" else None)
    ids, mask = left_padded_batch()
    out = verify(model, ids, mask, max_new_tokens=40, draft_length=4)
    for row in range(3):
        prompt = ids[row][mask[row].bool()].tolist()
        assert out.sequences[row, ids.shape[1]:].tolist() == causal_greedy(model, prompt, 40)[len(prompt):], row
    assert len(compactions) > 5


def test_verify_stays_exact_when_the_block_context_is_token_causal():
    """A block model whose committed context attends token-causally (config.context_attention 'causal'): the drafter
    reads the committed text causally; the verified text is the causal greedy decode either way."""
    model = tiny("llama", mode="block", block=4)
    model.config.context_attention = "causal"
    ids, mask = left_padded_batch()
    out = verify(model, ids, mask, draft_length=4)
    for row in range(3):
        prompt = ids[row][mask[row].bool()].tolist()
        assert out.sequences[row, ids.shape[1]:].tolist() == causal_greedy(model, prompt, 12)[len(prompt):], row


# --- fused draft-and-verify (block models with token-causal context) -----------------------------------------------
def causal_context_model(family="llama", block=4, seed=0):
    model = tiny(family, mode="block", block=block, seed=seed)
    model.config.context_attention = "causal"
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_verify_equals_the_causal_greedy_loop_on_a_left_padded_batch(family, monkeypatch):
    """One forward verifies the pending draft and drafts the next block; rows sit at different block phases, accept
    different counts and leave dead columns (compacted here whenever there is one): every row is still the causal
    greedy decode token for token, and the two-forward rounds (fuse=False) give the same text."""
    import diffusion_lm.modeling.decoding_cache as decoding_cache
    import diffusion_lm.modeling.self_verification as self_verification

    calls = []
    fused = self_verification.fused_verify_decode
    monkeypatch.setattr(self_verification, "fused_verify_decode", lambda *a, **k: (calls.append(1), fused(*a, **k))[1])
    monkeypatch.setattr(decoding_cache, "COMPACT_MIN_DEAD", 0)
    monkeypatch.setattr(decoding_cache, "COMPACT_DEAD_SHARE", 0.0)
    model = causal_context_model(family)
    ids, mask = left_padded_batch()
    out = verify(model, ids, mask, max_new_tokens=30)
    assert calls == [1]
    for row in range(3):
        prompt = ids[row][mask[row].bool()].tolist()
        assert out.sequences[row, ids.shape[1]:].tolist() == causal_greedy(model, prompt, 30)[len(prompt):], row
    # one forward per round: tokens per forward are the tokens committed per verification
    assert torch.equal(out.forward_passes, out.verifications)
    assert torch.allclose(out.tokens_per_forward, out.accepted_per_verification)
    config = model.generation_config.__class__(max_new_tokens=30, verify="causal", eos_token_id=None,
                                               mask_token_id=model.config.mask_token_id)
    two_pass = self_verification.verify_decode(model, ids, mask, 30, config, fuse=False)
    assert torch.equal(two_pass.sequences, out.sequences)


def test_fused_verify_a_draft_that_is_always_right_commits_a_block_per_forward():
    """Every logit 0 in both modes: the drafts (argmax, token 0) always equal the causal choice. Prompt of 3 tokens,
    blocks of 4, 15 new tokens: position 3 alone (the rest of its block has no room for a draft), position 4 with the
    draft of 5 .. 7, then [5 .. 8], [9 .. 12], [13 .. 16] (three drafts + the causal token each), and 17: 6 forwards."""
    model = causal_context_model()
    with torch.no_grad():
        model.model.norm.weight.zero_()
    ids = torch.tensor([[BOS, 10, 11]])
    out = verify(model, ids, max_new_tokens=15)
    assert out.sequences[0, 3:].tolist() == causal_greedy(model, [BOS, 10, 11], 15)[3:]
    assert out.forward_passes.tolist() == [6] and out.tokens_per_forward.tolist() == [2.5]


def test_fused_verify_stops_at_eos_and_stopping_criteria_and_streams_in_order():
    model = causal_context_model()
    ids = torch.tensor([[BOS, 10, 11]])
    free = causal_greedy(model, [BOS, 10, 11], 20)[3:]
    eos = free[9]
    first = free.index(eos)
    out = verify(model, ids, max_new_tokens=20, eos_token_id=eos, pad_token_id=PAD)
    assert out.sequences[0, 3:3 + first + 1].tolist() == free[:first + 1]
    assert (out.sequences[0, 3 + first + 1:] == PAD).all()

    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 3 + 7, dtype=torch.bool)

    stopped = verify(model, ids, max_new_tokens=20, stopping_criteria=StoppingCriteriaList([StopAfter()]),
                     pad_token_id=PAD)
    assert stopped.sequences[0, 3:10].tolist() == free[:7] and (stopped.sequences[0, 10:] == PAD).all()

    class Collect:
        def __init__(self):
            self.puts = []

        def put(self, value):
            self.puts.append(value.reshape(-1).tolist())

        def end(self):
            pass

    streamer = Collect()
    streamed = verify(model, ids, max_new_tokens=20, streamer=streamer)
    assert streamer.puts[0] == [BOS, 10, 11]
    assert sum(streamer.puts[1:], []) == streamed.sequences[0, 3:].tolist() == free


def test_fused_verify_samples_reproducibly_from_the_causal_model():
    model = causal_context_model()
    ids = torch.tensor([[BOS, 10, 11]])
    runs = [verify(model, ids, max_new_tokens=16, temperature=1.0, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    assert (runs[0].sequences[0, 3:] != model.config.mask_token_id).all()


def test_fused_verify_sampled_tokens_follow_the_causal_model():
    """4 new tokens after a 3-token prompt, blocks of 4: the token at position 5 is drafted by the masks of the
    forward that commits position 4 (before that token is known) and goes through the speculative rule. Across 3,000
    rows its counts match the causal model's law given each row's own prefix (chi-square), and both accepted and
    rejected drafts occur (a row with a rejected draft needs a 4th forward)."""
    from diffusion_lm.modeling.self_verification import target_distribution

    model = causal_context_model(seed=1)
    n = 3000
    ids = torch.tensor([[BOS, 10, 11]]).expand(n, 3)
    out = verify(model, ids, max_new_tokens=4, temperature=1.0, top_k=4, generator=torch.Generator().manual_seed(0))
    assert set(out.forward_passes.tolist()) == {3, 4}
    prefix = out.sequences[:, :5]
    positions = torch.arange(5)[None].expand(n, 5)
    mask = allowed_to_additive(attention_pattern("causal", positions, positions), model.dtype)
    with torch.no_grad():
        logits = model(input_ids=prefix, attention_mask=mask, position_ids=positions).logits[:, -1].float()
    logits[:, model.config.mask_token_id] = float("-inf")
    expected = target_distribution(logits, 1.0, 4, None).sum(dim=0)
    observed = torch.bincount(out.sequences[:, 5], minlength=expected.shape[0]).float()
    assert observed[expected == 0].sum() == 0
    keep = expected > 5
    assert observed[~keep].sum() <= max(5.0, 3 * float(expected[~keep].sum()))
    statistic = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    degrees = int(keep.sum()) - 1
    assert statistic < degrees + 5 * (2 * degrees) ** 0.5, (statistic, degrees)


# --- verify as a checkpoint's default -------------------------------------------------------------------------------
def test_a_default_verify_decodes_causally_and_gives_way_to_diffusion_settings_holes_and_processors():
    """generation_config.verify = 'causal' (what causal-context checkpoints ship): a plain call is the causal greedy
    decode; a call naming a diffusion setting, filling holes or passing a logits processor decodes by diffusion
    (as verify=None would); an explicit verify='causal' with holes is still refused."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Unchanged(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores

    model = causal_context_model()
    model.generation_config.verify = "causal"
    ids = torch.tensor([[BOS, 10, 11]])
    plain = model.generate(ids, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True)
    assert plain.sequences[0, 3:].tolist() == causal_greedy(model, [BOS, 10, 11], 12)[3:]
    assert plain.verifications is not None
    for settings in (dict(steps=6), dict(alg="confidence"), dict(threshold=0.5)):
        diffusion = model.generate(ids, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True, **settings)
        off = model.generate(ids, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True, verify=None,
                             **settings)
        assert diffusion.verifications is None and torch.equal(diffusion.sequences, off.sequences), settings
    processed = model.generate(ids, max_new_tokens=8, eos_token_id=None, logits_processor=LogitsProcessorList([Unchanged()]),
                               return_dict_in_generate=True)
    assert processed.verifications is None
    holes = torch.tensor([[BOS, 10, model.config.mask_token_id, model.config.mask_token_id, 11]])
    filled = model.generate(holes, infill_mask=holes == model.config.mask_token_id, max_new_tokens=0)
    assert (filled != model.config.mask_token_id).all()
    with pytest.raises(ValueError, match="infill_mask: verify='causal'"):
        model.generate(holes, infill_mask=holes == model.config.mask_token_id, max_new_tokens=0, verify="causal")
    # a setting diffusion decoding refuses on this model stays refused when the default verify gives way to it
    with pytest.raises(ValueError, match="kv_cache='dual' has nothing to reuse"):
        model.generate(ids, max_new_tokens=8, kv_cache="dual")
