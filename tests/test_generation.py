"""Diffusion decoding behind model.generate: rules, schedule, blocks, shift, infilling, EOS, batches, PEFT, CLI.

Most tests replace the model's forward with scripted logits, so which position a rule commits and when is known
exactly; the AR-identity, batch and PEFT tests run real tiny models.
"""

import copy
import math

import pytest
import torch
from tiny import run_clean_process, tiny_ar_model, tiny_diffusion_model, tiny_tokenizer
from transformers import AutoModel, GenerationConfig

from diffusion_lm import DiffusionGenerationConfig, DiffusionGenerationOutput, infill
from diffusion_lm.conversion import convert_ar_model
from diffusion_lm.modeling.modeling_diffusion_utils import MaskedDiffusionLMOutput
from diffusion_lm.modeling.unmasking import (
    random_unmask_probability,
    select_positions,
    tokens_per_step,
    top_k_filter,
    top_p_filter,
)

BOS, EOS, PAD = 1, 2, 0


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer): a converted tiny LLaMA (vocabulary 91, [MASK] = 90), shared by tests that only read it."""
    return tiny_diffusion_model("llama")


@pytest.fixture
def model():
    """A fresh tiny model per test (tests replace its forward with scripted logits)."""
    return tiny_diffusion_model("llama")[0]


# --- scripted logits --------------------------------------------------------------------------------------------
def distribution(top: dict[int, float], vocab: int, mask_id: int) -> torch.Tensor:
    """Logits (log-probabilities) with probability top[t] for the listed tokens and the rest of the mass spread
    evenly over the other tokens (the mask token gets none)."""
    probs = torch.zeros(vocab, dtype=torch.float64)
    others = [t for t in range(vocab) if t not in top and t != mask_id]
    rest = 1.0 - sum(top.values())
    probs[others] = max(rest, 1e-12) / len(others)
    for token, p in top.items():
        probs[token] = p
    logits = probs.log()
    logits[mask_id] = -1e9
    return logits.float()


def script(model, position_logits):
    """Make ``model`` return fixed logits: ``position_logits(input_ids)`` -> (B, L, V), row j being the prediction for
    position j. They are returned shifted (row j - 1), as the real model produces them. Returns the list of inputs
    every forward pass saw."""
    calls = []

    def forward(input_ids=None, attention_mask=None, logits_to_keep=None, **kwargs):
        calls.append(input_ids.clone())
        per_position = position_logits(input_ids)
        logits = torch.cat([per_position[:, 1:], per_position[:, -1:]], dim=1)
        if isinstance(logits_to_keep, torch.Tensor):  # the LM head runs only on the rows generate reads
            logits = logits[:, logits_to_keep]
        return MaskedDiffusionLMOutput(logits=logits)

    model.forward = forward
    return calls


def static_table(model, rows: dict[int, torch.Tensor], default: torch.Tensor | None = None):
    """position_logits for ``script``: the same logits at every step; ``rows`` by absolute position."""
    vocab, mask_id = model.config.vocab_size, model.config.mask_token_id
    default = default if default is not None else distribution({3: 0.5}, vocab, mask_id)

    def position_logits(x):
        table = default.expand(x.shape[1], vocab).clone()
        for position, logits in rows.items():
            table[position] = logits
        return table.expand(x.shape[0], -1, -1)

    return position_logits


def commit_order(history, start: int, mask_id: int = 90) -> list[list[int]]:
    """For each step, the positions (>= start) that stopped being masks in that step (batch row 0)."""
    order = []
    before = torch.cat([history[0][0, :start], torch.full_like(history[0][0, start:], mask_id)])
    for state in history:
        row = state[0]
        changed = ((before == mask_id) & (row != mask_id)).nonzero().flatten().tolist()
        order.append([p for p in changed if p >= start])
        before = row
    return order


PROMPT = torch.tensor([[BOS, 10]])
# three positions whose proposals rank differently under each rule (probabilities of the top tokens)
A = {20: 0.50, 21: 0.49}  # confidence .50, margin .01, entropy ~.79 (lowest)
B = {22: 0.45, 23: 0.05}  # confidence .45, margin .40, entropy ~3.1 (rest spread over the vocabulary)
C = {24: 0.40, 25: 0.20, 26: 0.20, 27: 0.20}  # confidence .40, margin .20, entropy ~1.33
EXPECTED_ORDER = {  # positions 2, 3, 4 hold C, A, B
    "confidence": [3, 4, 2],
    "margin": [4, 2, 3],
    "entropy": [3, 2, 4],
    "left_to_right": [2, 3, 4],
}


@pytest.mark.parametrize("alg", sorted(EXPECTED_ORDER))
def test_each_rule_commits_positions_in_its_order(model, alg):
    v, m = model.config.vocab_size, model.config.mask_token_id
    calls = script(model, static_table(model, {2: distribution(C, v, m), 3: distribution(A, v, m),
                                               4: distribution(B, v, m)}))
    out = model.generate(PROMPT, max_new_tokens=3, steps=3, alg=alg, return_dict_in_generate=True,
                         output_history=True)
    assert isinstance(out, DiffusionGenerationOutput)
    assert commit_order(out.history, 2) == [[p] for p in EXPECTED_ORDER[alg]]
    assert out.sequences[0].tolist() == [BOS, 10, 24, 20, 22]  # greedy: the top token of each position
    assert len(calls) == 3


def test_shift_reads_position_j_from_logit_j_minus_1(model):
    """The raw logit row 1 (last prompt position) is the prediction for the first generated position."""
    v, m = model.config.vocab_size, model.config.mask_token_id

    def forward(input_ids=None, attention_mask=None, **kwargs):
        raw = distribution({40: 0.9}, v, m).expand(input_ids.shape[0], input_ids.shape[1], v).clone()
        raw[:, 1] = distribution({41: 0.9}, v, m)  # only row 1 differs
        keep = kwargs.get("logits_to_keep")
        return MaskedDiffusionLMOutput(logits=raw[:, keep] if isinstance(keep, torch.Tensor) else raw)

    model.forward = forward
    out = model.generate(PROMPT, max_new_tokens=3, steps=3)
    assert out[0].tolist() == [BOS, 10, 41, 40, 40]
    # without the shift, row 2 predicts position 2
    model.config.shift = False
    assert model.generate(PROMPT, max_new_tokens=3, steps=3)[0].tolist() == [BOS, 10, 40, 40, 40]
    model.config.shift = True


def test_tokens_per_step_are_exact_and_the_last_step_commits_the_rest(model):
    torch.manual_seed(0)
    table = torch.randn(16, model.config.vocab_size) * 3
    script(model, lambda x: table[: x.shape[1]].expand(x.shape[0], -1, -1))
    for steps, expected in [(4, [3, 3, 2, 2]), (10, [1] * 10), (1, [10]), (3, [4, 3, 3])]:
        for alg in ("confidence", "margin", "entropy", "left_to_right"):
            out = model.generate(PROMPT, max_new_tokens=10, steps=steps, alg=alg, return_dict_in_generate=True,
                                 output_history=True)
            assert [len(c) for c in commit_order(out.history, 2)] == expected, (steps, alg)
            assert (out.sequences != model.config.mask_token_id).all()
    assert tokens_per_step(torch.tensor([10, 3]), 4).tolist() == [[3, 1], [3, 1], [2, 1], [2, 0]]


def test_history_has_one_entry_per_step_and_idle_steps_cost_no_forward(model):
    calls = script(model, static_table(model, {}))
    steps_seen = []
    out = model.generate(PROMPT, max_new_tokens=3, steps=5, return_dict_in_generate=True, output_history=True,
                         step_callback=lambda step, x, logits: steps_seen.append((step, logits is None)))
    assert len(out.history) == 5
    assert steps_seen == [(0, False), (1, False), (2, False), (3, True), (4, True)]
    assert len(calls) == 3  # steps 4 and 5 had nothing to commit
    assert torch.equal(out.history[-1], out.sequences)
    assert model.generate(PROMPT, max_new_tokens=3, steps=5, return_dict_in_generate=True).history is None


def test_blocks_finish_in_order_even_when_later_blocks_are_more_confident(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    # positions 2..9; the second block (6..9) is far more confident than the first
    rows = {p: distribution({30 + p: 0.3 + 0.01 * p}, v, m) for p in range(2, 6)}
    rows.update({p: distribution({30 + p: 0.9}, v, m) for p in range(6, 10)})
    calls = script(model, static_table(model, rows))
    out = model.generate(PROMPT, max_new_tokens=8, steps=4, block_length=4, return_dict_in_generate=True,
                         output_history=True)
    order = commit_order(out.history, 2)
    assert [len(c) for c in order] == [2, 2, 2, 2]
    assert set(order[0] + order[1]) == {2, 3, 4, 5} and set(order[2] + order[3]) == {6, 7, 8, 9}
    assert order[0] == [4, 5]  # within a block, the rule decides (most confident first)
    assert len(calls) == 4
    # without blocks, the confident positions go first
    out = model.generate(PROMPT, max_new_tokens=8, steps=4, return_dict_in_generate=True, output_history=True)
    assert set(commit_order(out.history, 2)[0]) <= {6, 7, 8, 9}


def test_steps_are_split_across_blocks(model):
    script(model, static_table(model, {}))
    out = model.generate(PROMPT, max_new_tokens=8, steps=5, block_length=4, alg="left_to_right",
                         return_dict_in_generate=True, output_history=True)
    # 5 steps over 2 blocks: 3 then 2; block 1 (4 tokens, 3 steps) commits 2, 1, 1; block 2 commits 2, 2
    assert commit_order(out.history, 2) == [[2, 3], [4], [5], [6, 7], [8, 9]]


def test_random_rule_commits_with_the_reverse_step_probability(model):
    script(model, static_table(model, {}))
    batch, n, steps = 64, 40, 4
    prompt = PROMPT.expand(batch, -1)
    generator = torch.Generator().manual_seed(0)
    out = model.generate(prompt, max_new_tokens=n, steps=steps, alg="random", generator=generator,
                         return_dict_in_generate=True, output_history=True)
    mask_id = model.config.mask_token_id
    remaining = [batch * n] + [int((h[:, 2:] == mask_id).sum()) for h in out.history]
    for k in range(steps):  # k-th step: steps - k - 1 remain after it -> probability 1 / (steps - k)
        share = (remaining[k] - remaining[k + 1]) / remaining[k]
        expected = 1 / (steps - k)
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / remaining[k]) + 1e-9, (k, share)
    assert remaining[-1] == 0
    assert [random_unmask_probability(k, 8) for k in range(8)] == pytest.approx([1 / (k + 1) for k in range(8)])


def test_prompt_tokens_are_frozen_and_padding_untouched(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    # the scripted model "wants" token 50 everywhere, prompt positions included
    script(model, static_table(model, {}, default=distribution({50: 0.99}, v, m)))
    prompt = torch.tensor([[PAD, PAD, BOS, 10, 11], [BOS, 12, 13, 14, 15]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    for alg in ("confidence", "random", "entropy"):
        out = model.generate(prompt, attention_mask=mask, max_new_tokens=4, steps=2, alg=alg, temperature=1.0,
                             return_dict_in_generate=True, output_history=True)
        for state in out.history:
            assert torch.equal(state[:, :5], prompt)
        assert (out.sequences[:, 5:] == 50).all()


def test_infilling_fills_only_the_holes_and_sees_both_sides(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    seen = script(model, static_table(model, {}, default=distribution({50: 0.9}, v, m)))
    x = torch.tensor([[BOS, 10, m, m, 11, m, 12]])
    out = model.generate(x, max_new_tokens=0, steps=3, return_dict_in_generate=True, output_history=True)
    holes = x == m
    assert torch.equal(out.sequences[~holes], x[~holes])
    assert (out.sequences[holes] == 50).all()
    assert seen[0][0, -1] == 12  # the suffix is part of every forward pass
    for state in out.history:
        assert torch.equal(state[~holes], x[~holes])


def test_infill_returns_the_text_of_the_gap(tiny):
    model, tokenizer = tiny
    text = infill(model, tokenizer, "the cat sat", "the end", 3)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert isinstance(text, str) and 1 <= len(ids) <= 3
    full = infill(model, tokenizer, "the cat sat", "the end", 3, return_full_text=True)
    assert full.startswith("the cat sat") and full.endswith("the end")
    batch = infill(model, tokenizer, ["the cat sat", "a dog"], ["the end", "on the mat ."], 3)
    assert batch[0] == text  # left padding does not change a row's result
    with pytest.raises(ValueError, match="n_tokens"):
        infill(model, tokenizer, "a", "b", 0)


def test_everything_after_the_first_generated_eos_is_padding(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    rows = {4: distribution({EOS: 0.95}, v, m), 6: distribution({EOS: 0.95}, v, m)}
    script(model, static_table(model, rows, default=distribution({50: 0.9}, v, m)))
    prompt = torch.tensor([[BOS, EOS]])  # an EOS in the prompt is not a generated one
    out = model.generate(prompt, max_new_tokens=6, steps=6, pad_token_id=PAD, eos_token_id=EOS,
                         return_dict_in_generate=True, output_history=True)
    assert out.sequences[0].tolist() == [BOS, EOS, 50, 50, EOS, PAD, PAD, PAD]
    assert out.history[-1][0, 6] == EOS  # the history keeps what was decoded
    # several EOS ids (e.g. end-of-turn): the first of any of them counts
    out = model.generate(prompt, max_new_tokens=6, steps=6, pad_token_id=PAD, eos_token_id=[77, EOS])
    assert out[0].tolist() == [BOS, EOS, 50, 50, EOS, PAD, PAD, PAD]
    # infilling keeps the suffix after an EOS in the hole
    x = torch.tensor([[BOS, 10, m, m, m, m, 12]])
    out = model.generate(x, max_new_tokens=0, steps=4, pad_token_id=PAD, eos_token_id=EOS)
    assert out[0].tolist() == [BOS, 10, 50, 50, EOS, PAD, 12]


def test_alg_temperature_draws_positions_at_random(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    rows = {p: distribution({30: 0.2 + 0.1 * (p - 2)}, v, m) for p in range(2, 7)}
    script(model, static_table(model, rows))

    def first_committed(**kwargs):
        out = model.generate(PROMPT, max_new_tokens=5, steps=5, return_dict_in_generate=True, output_history=True,
                             **kwargs)
        return commit_order(out.history, 2)[0][0]

    assert first_committed() == 6
    assert first_committed(alg_temperature=1e-4, generator=torch.Generator().manual_seed(0)) == 6
    firsts = {first_committed(alg_temperature=10.0, generator=torch.Generator().manual_seed(s)) for s in range(12)}
    assert len(firsts) > 1


def test_sampling_filters_and_greedy(model):
    v, m = model.config.vocab_size, model.config.mask_token_id
    script(model, static_table(model, {}, default=distribution({50: 0.4, 51: 0.35, 52: 0.25}, v, m)))
    gen = lambda **kw: model.generate(PROMPT, max_new_tokens=12, steps=4, **kw)[0, 2:]  # noqa: E731
    assert (gen(temperature=0.0) == 50).all()
    assert (gen(temperature=1.0, top_k=1) == 50).all()
    assert (gen(temperature=1.0, top_p=0.3) == 50).all()
    assert (gen(temperature=5.0, do_sample=False) == 50).all()  # do_sample=False forces greedy
    assert (gen(temperature=0.0, do_sample=True) == 50).all()  # an explicit 0 is greedy
    torch.manual_seed(0)
    assert len(set(gen(do_sample=True).tolist())) > 1  # transformers' habit: do_sample alone samples at T = 1
    torch.manual_seed(0)
    sampled = gen(temperature=1.0, top_p=0.7)  # the nucleus holds 50 and 51 only
    assert set(sampled.tolist()) <= {50, 51} and len(set(sampled.tolist())) == 2
    torch.manual_seed(0)
    assert set(gen(temperature=1.0, top_k=3).tolist()) <= {50, 51, 52}


def test_greedy_reads_the_confidence_from_the_filtered_distribution():
    """As Dream: top-p / top-k filter before the confidence, also under greedy decoding (the argmax stays)."""
    from diffusion_lm.modeling.unmasking import propose_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]))
    tokens, probs = propose_tokens(logits)
    assert tokens.tolist() == [0, 2] and probs[0, 0].item() == pytest.approx(0.5)
    tokens, probs = propose_tokens(logits, top_p=0.75)  # nuclei {0, 1} and {2, 1}
    assert tokens.tolist() == [0, 2]
    assert probs[0].tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0])
    assert probs[1].tolist() == pytest.approx([0.0, 0.2 / 0.9, 0.7 / 0.9])
    tokens, probs = propose_tokens(logits, top_k=1)
    assert tokens.tolist() == [0, 2] and probs.max(dim=-1).values.tolist() == pytest.approx([1.0, 1.0])


def test_same_seed_same_output(tiny):
    model, tokenizer = tiny
    ids = tokenizer("the cat sat on", return_tensors="pt").input_ids
    ids = torch.cat([torch.tensor([[BOS]]), ids], dim=1)
    for alg in ("random", "confidence"):
        kwargs = dict(max_new_tokens=8, steps=4, alg=alg, temperature=1.0, alg_temperature=0.5)
        a = model.generate(ids, generator=torch.Generator().manual_seed(3), **kwargs)
        b = model.generate(ids, generator=torch.Generator().manual_seed(3), **kwargs)
        torch.manual_seed(3)
        c = model.generate(ids, **kwargs)
        torch.manual_seed(3)
        d = model.generate(ids, **kwargs)
        assert torch.equal(a, b) and torch.equal(c, d)
        others = [model.generate(ids, generator=torch.Generator().manual_seed(s), **kwargs) for s in range(4, 8)]
        assert any(not torch.equal(a, o) for o in others)


# --- real models ----------------------------------------------------------------------------------------------
def varied_ar_model(family):
    """The seed-0 tiny AR model with its weights pushed away from the near-uniform init, so greedy decoding does not
    just repeat a token (which would make an identity test weak)."""
    ar = tiny_ar_model(family, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in ar.named_parameters():
            if "norm" not in name and "ln_" not in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    return ar


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("varied", [False, True])
def test_left_to_right_greedy_on_causal_model_equals_ar_greedy_generate(family, varied):
    """The shift end to end: one token per step, leftmost first, causal attention = the AR model's greedy decode."""
    if varied:
        ar = varied_ar_model(family)
        diffusion, _ = convert_ar_model(copy.deepcopy(ar), tiny_tokenizer(), attention_mode="causal")
        diffusion.eval()
    else:  # the converted model as tests/tiny.py builds it, from the same seed
        ar = tiny_ar_model(family, seed=0)
        diffusion, _ = tiny_diffusion_model(family, seed=0, attention_mode="causal")
    prompt = torch.tensor([[BOS, 10, 20, 30], [BOS, 7, 8, 9]])
    n = 12
    expected = ar.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                           pad_token_id=PAD)
    # the AR loop stops once every row has hit EOS; diffusion pads after EOS instead
    expected = torch.nn.functional.pad(expected, (0, prompt.shape[1] + n - expected.shape[1]), value=PAD)
    got = diffusion.generate(prompt, max_new_tokens=n, steps=n, alg="left_to_right", temperature=0.0)
    assert torch.equal(got, expected)
    if varied:  # not vacuous: the output varies, and another order (confidence) decodes other tokens
        assert len(set(got[:, 4:].flatten().tolist())) > 4
        assert not torch.equal(diffusion.generate(prompt, max_new_tokens=n, steps=n, alg="confidence"), got)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_result_does_not_depend_on_batch_mates(family):
    model, tokenizer = tiny_diffusion_model(family)
    with torch.no_grad():  # a random tiny model is nearly uniform: sharpen it so rules rank by more than float noise
        model.lm_head.weight.mul_(20)
    prompts = [[BOS, 10, 20, 30, 40, 50], [BOS, 7], [BOS, 60, 61, 62]]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    for alg in ("confidence", "entropy", "left_to_right"):
        batch = model.generate(ids, attention_mask=mask, max_new_tokens=8, steps=4, alg=alg)
        for row, p in enumerate(prompts):
            single = model.generate(torch.tensor([p]), max_new_tokens=8, steps=4, alg=alg)
            assert batch[row, width - len(p):].tolist() == single[0].tolist(), (alg, row)
            assert (batch[row, : width - len(p)] == PAD).all()


def test_peft_wrapped_model_generates():
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_diffusion_model("llama")
    ids = torch.tensor([[BOS, 10, 20, 30]])
    expected = model.generate(ids, max_new_tokens=6, steps=3)
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], r=4))
    peft_model.eval()
    # a fresh LoRA adapter is the identity: same tokens, through PeftModelForCausalLM.generate
    assert torch.equal(peft_model.generate(input_ids=ids, max_new_tokens=6, steps=3), expected)
    assert torch.equal(peft_model.generate(ids, max_new_tokens=6, steps=3), expected)

    # a non-zero adapter is really in effect inside generate
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    seen = []
    peft_model.generate(input_ids=ids, max_new_tokens=6, steps=1, step_callback=lambda s, x, logits: seen.append(
        (x.clone(), logits)))
    with torch.no_grad():
        own = peft_model(input_ids=torch.cat([ids, torch.full((1, 6), model.config.mask_token_id)], 1)).logits
    predictions = seen[0][1]  # the LM head ran on the generated positions only
    assert predictions.positions.tolist() == list(range(ids.shape[1], ids.shape[1] + 6))
    torch.testing.assert_close(predictions.logits, own[:, predictions.positions - 1])
    with pytest.raises(ValueError, match="model_kwargs"):
        peft_model.generate(input_ids=ids, max_new_tokens=2, bogus=1)


def test_generation_config_survives_save_and_reload(tiny, tmp_path):
    model, tokenizer = tiny
    model.generation_config.steps = 5
    model.generation_config.alg = "margin"
    try:
        model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
    finally:
        model.generation_config.steps, model.generation_config.alg = 64, "confidence"
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    assert isinstance(loaded.generation_config, DiffusionGenerationConfig)
    assert (loaded.generation_config.steps, loaded.generation_config.alg) == (5, "margin")
    assert loaded.generation_config.mask_token_id == model.config.mask_token_id
    # what transformers' own loader gives (a plain GenerationConfig) is rebuilt by generate
    plain = GenerationConfig.from_pretrained(tmp_path)
    assert type(plain) is GenerationConfig and plain.steps == 5
    rebuilt = DiffusionGenerationConfig.from_generation_config(plain)
    assert rebuilt.to_diff_dict() == loaded.generation_config.to_diff_dict()
    loaded.generation_config = plain
    ids = torch.tensor([[BOS, 10, 20]])
    out = loaded.generate(ids, max_new_tokens=5, return_dict_in_generate=True, output_history=True)
    assert len(out.history) == 5  # steps=5 came from generation_config.json
    # a model built from its config alone has a plain generation config with no diffusion fields: defaults apply
    fresh = type(model)(model.config)
    assert fresh.generate(ids, max_new_tokens=4).shape == (1, 7)


# --- inputs ---------------------------------------------------------------------------------------------------
def test_empty_prompt_starts_from_bos(model):
    script(model, static_table(model, {}))
    assert model.generate(max_new_tokens=3)[0].tolist() == [BOS, 3, 3, 3]
    assert model.generate(torch.empty(2, 0, dtype=torch.long), max_new_tokens=2).tolist() == [[BOS, 3, 3]] * 2
    m = model.config.mask_token_id
    with pytest.raises(ValueError, match="never predicted"):
        model.generate(torch.tensor([[m, 10]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="never predicted"):  # left padding: the first real token counts
        model.generate(torch.tensor([[PAD, m, 10]]), attention_mask=torch.tensor([[0, 1, 1]]), max_new_tokens=2)


def test_max_length_num_return_sequences_and_config_object(model):
    script(model, static_table(model, {}))
    assert model.generate(PROMPT, max_length=6).shape == (1, 6)
    out = model.generate(PROMPT, max_new_tokens=3, temperature=1.0, num_return_sequences=3)
    assert out.shape == (3, 5)
    config = DiffusionGenerationConfig(max_new_tokens=2, steps=2, mask_token_id=model.config.mask_token_id)
    assert model.generate(PROMPT, config).shape == (1, 4)  # transformers' positional order
    assert model.generate(PROMPT, generation_config=config, max_new_tokens=4).shape == (1, 6)
    assert config.max_new_tokens == 2  # kwargs never change the config passed in


def test_streamer_and_callback(model):
    script(model, static_table(model, {}))

    class Recorder:
        def __init__(self):
            self.events = []

        def put(self, value):
            self.events.append(("put", value.tolist()))

        def put_draft(self, value):
            self.events.append(("draft", value.tolist()))

        def end(self):
            self.events.append(("end",))

    streamer = Recorder()
    model.generate(PROMPT, max_new_tokens=3, steps=3, streamer=streamer)
    m = model.config.mask_token_id
    assert streamer.events == [
        ("put", PROMPT.tolist()),
        ("draft", [[3, m, m]]), ("draft", [[3, 3, m]]), ("draft", [[3, 3, 3]]),
        ("put", [[3, 3, 3]]),
        ("end",),
    ]


def test_bad_arguments_fail_early_naming_the_parameter(model):
    calls = script(model, static_table(model, {}))
    cases = [
        (dict(alg="sideways"), "alg"),
        (dict(steps=0), "steps"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(temperature=-1.0), "temperature"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=200), "max_new_tokens"),  # 2 + 200 > 128 positions
        (dict(max_new_tokens=8, block_length=0), "block_length"),
        (dict(kv_cache="full"), "kv_cache"),
        (dict(kv_cache_refresh="sometimes"), "kv_cache_refresh"),
        (dict(threshold=0.0), "threshold"),
        (dict(threshold=1.5), "threshold"),
        (dict(max_length=1), "max_length"),  # shorter than the 2-token prompt
        (dict(max_new_tokens=8, block_length=2, steps=3), "steps"),
        (dict(foo=1), "foo"),
        (dict(num_beams=4), "num_beams"),
        (dict(repetition_penalty=1.3), "repetition_penalty"),
        (dict(mask_token_id=10_000), "mask_token_id"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            model.generate(PROMPT, **kwargs)
    with pytest.raises(ValueError, match="input_ids"):
        model.generate(torch.tensor([BOS, 10]))
    with pytest.raises(ValueError, match="token id 91 is outside the vocabulary"):
        model.generate(torch.tensor([[BOS, 91]]))
    with pytest.raises(ValueError, match="right padding"):  # the first new token would read a padding logit
        model.generate(torch.tensor([[BOS, 10, PAD], [BOS, 11, 12]]), attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]))
    model.config.mask_token_id = None
    model.generation_config.mask_token_id = None
    with pytest.raises(ValueError, match="mask_token_id"):
        model.generate(PROMPT)
    assert calls == []  # nothing ran a forward pass
    with pytest.raises(ValueError, match="alg"):
        DiffusionGenerationConfig(alg="nope")
    # defaults (as transformers would pass them) are accepted
    model.config.mask_token_id = model.generation_config.mask_token_id = 90
    assert model.generate(PROMPT, max_new_tokens=2, num_beams=1, use_cache=True, min_new_tokens=None).shape == (1, 4)


# --- unmasking helpers -----------------------------------------------------------------------------------------
def test_filters_and_position_selection():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(top_k_filter(logits, 2)[0, 2:]).all() and torch.isfinite(top_k_filter(logits, 2)[0, :2]).all()
    kept = torch.isfinite(top_p_filter(logits, 0.9)[0]).tolist()
    assert kept == [True, True, True, False]  # .64 + .24 < .9, + .09 reaches it
    assert torch.isfinite(top_p_filter(logits, 0.1)[0]).tolist() == [True, False, False, False]
    scores = torch.tensor([[0.5, 0.5, 0.9, 0.5]])
    eligible = torch.tensor([[True, True, True, True]])
    assert select_positions(scores, eligible, torch.tensor([2]))[0].tolist() == [True, False, True, False]
    assert select_positions(scores, eligible & torch.tensor([[True, True, False, True]]),
                            torch.tensor([1]))[0].tolist() == [True, False, False, False]  # ties: leftmost


# --- command line ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, tokenizer = tiny_diffusion_model("gpt2")
    directory = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def test_cli_generate_shows_the_trajectory(checkpoint, capsys):
    from diffusion_lm.cli import main

    assert main(["generate", checkpoint, "--prompt", "the cat sat", "--max-new-tokens", "4", "--steps", "2",
                 "--show-steps", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("step 1 |") and lines[0].count("░") == 2
    assert lines[1].startswith("step 2 |") and "░" not in lines[1]
    assert lines[-1].startswith("the cat sat")


def test_cli_infill(checkpoint, capsys):
    from diffusion_lm.cli import main

    assert main(["infill", checkpoint, "--prefix", "the cat", "--suffix", "on the mat", "--length", "3",
                 "--device", "cpu", "--seed", "1", "--temperature", "0.8"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("the cat") and text.endswith("on the mat")
    assert main(["infill", checkpoint, "--prefix", "a", "--suffix", "b", "--length", "3", "--steps", "0"]) != 0
    assert "--steps" in capsys.readouterr().err


REMOTE_CODE_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
config = model.generation_config
out = model.generate(torch.tensor([[1, 10, 20]]), max_new_tokens=4, block_length=2, return_dict_in_generate=True,
                     output_history=True)
try:
    model.generate(torch.tensor([[1, 10]]), alg="sideways")
    rejected = False
except ValueError as error:
    rejected = "alg" in str(error)
print("REPORT" + json.dumps({
    "model_module": type(model).__module__,
    "config_class": type(config).__name__,
    "config_module": type(config).__module__,
    "steps": config.steps,
    "history": len(out.history),
    "masks_left": int((out.sequences == model.config.mask_token_id).sum()),
    "rejected": rejected,
    "diffusion_lm_imported": any(name.startswith("diffusion_lm") for name in sys.modules),
}))
"""


def test_remote_code_checkpoint_generates_without_diffusion_lm(tmp_path):
    """A saved checkpoint, loaded with trust_remote_code in a process that never imports diffusion_lm."""
    model, tokenizer = tiny_diffusion_model("gpt2")
    model.generation_config.steps = 3
    model.save_pretrained(tmp_path / "ckpt")
    report, _ = run_clean_process(REMOTE_CODE_SCRIPT, [str(tmp_path / "ckpt")], str(tmp_path))
    assert report["model_module"].startswith("transformers_modules")
    assert report["config_module"].startswith("transformers_modules")
    assert report["config_class"] == "DiffusionGenerationConfig" and report["steps"] == 3
    assert report["history"] == 3 and report["masks_left"] == 0 and report["rejected"]
    assert report["diffusion_lm_imported"] is False


def test_transformers_argument_order_and_known_fields_only(model):
    """input_ids is the only positional argument (transformers' order); an attention mask in generation_config's
    place is refused before any forward pass, as is a field DiffusionGenerationConfig does not have. A loaded
    generation config's foreign entries are left out rather than refused."""
    script(model, static_table(model, {}))
    with pytest.raises(TypeError, match="attention_mask="):
        model.generate(PROMPT, torch.ones_like(PROMPT))
    with pytest.raises(ValueError, match="no field"):
        DiffusionGenerationConfig(foo=1)
    loaded = GenerationConfig(max_new_tokens=3)
    loaded.foo = 1  # a custom entry of another generator in generation_config.json
    config = DiffusionGenerationConfig.from_generation_config(loaded)
    assert config.max_new_tokens == 3 and not hasattr(config, "foo")
