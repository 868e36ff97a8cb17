"""The diffusion objective against hand computation; corruption never touches given tokens or position 0."""

import copy
import math

import pytest
import torch
from diffusion_lm.modeling.attention_annealing import annealing_ratio
from diffusion_lm.modeling.corruption import mask_tokens, maskable_positions
from diffusion_lm.modeling.diffusion_loss import masked_diffusion_loss
from diffusion_lm.modeling.noise_schedule import reverse_unmask_probability, sample_noise_levels
from diffusion_lm.objective import ObjectiveSettings, diffusion_objective
from tiny import tiny_diffusion_model


def log_softmax_at(row, index):
    return row[index] - math.log(sum(math.exp(v) for v in row))


def test_loss_matches_hand_computation_for_both_normalizations():
    # batch of 2 sequences of length 4, vocab 3; logits[i] predicts token i+1 (the shift)
    logits = torch.tensor(
        [
            [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 2.0, 0.0], [9.0, 9.0, 9.0]],
            [[0.0, 0.0, 1.0], [1.0, -1.0, 0.0], [0.2, 0.1, 0.0], [9.0, 9.0, 9.0]],
        ]
    )
    clean = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
    is_masked = torch.tensor([[False, True, False, True], [False, False, True, True]])
    maskable = torch.tensor([[False, True, True, True], [False, True, True, True]])
    t = torch.tensor([0.5, 0.25])
    # masked positions: seq0 pos1 (logit row 0, target 2), pos3 (row 2, target 0); seq1 pos2 (row 1, target 0),
    # pos3 (row 2, target 2)
    ce = [
        -log_softmax_at([1.0, 0.0, -1.0], 2),
        -log_softmax_at([0.0, 2.0, 0.0], 0),
        -log_softmax_at([1.0, -1.0, 0.0], 0),
        -log_softmax_at([0.2, 0.1, 0.0], 2),
    ]
    weighted = ce[0] / 0.5 + ce[1] / 0.5 + ce[2] / 0.25 + ce[3] / 0.25
    per_masked = masked_diffusion_loss(logits, clean, is_masked, t, maskable, normalization="masked_tokens")
    per_token = masked_diffusion_loss(logits, clean, is_masked, t, maskable, normalization="elbo")
    assert per_masked.loss.item() == pytest.approx(weighted / 4, rel=1e-6)
    assert per_token.loss.item() == pytest.approx(weighted / 6, rel=1e-6)
    assert per_masked.unweighted_loss.item() == pytest.approx(sum(ce) / 4, rel=1e-6)


def test_position_zero_never_contributes_and_last_logit_is_unused():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    clean = torch.randint(0, 7, (2, 5))
    is_masked = torch.rand(2, 5) < 0.5
    t = torch.tensor([0.3, 0.8])
    base = masked_diffusion_loss(logits, clean, is_masked, t).loss
    flipped = is_masked.clone()
    flipped[:, 0] = ~flipped[:, 0]
    other_logits = logits.clone()
    other_logits[:, -1] = 100.0
    assert masked_diffusion_loss(logits, clean, flipped, t).loss == base
    assert masked_diffusion_loss(other_logits, clean, is_masked, t).loss == base


def test_masked_positions_come_from_the_indicator_not_token_identity():
    logits = torch.randn(1, 4, 5)
    mask_id = 3
    clean = torch.tensor([[1, 3, 3, 2]])  # the mask id is also a real token here
    is_masked = torch.tensor([[False, False, False, True]])
    out = masked_diffusion_loss(logits, clean, is_masked, torch.tensor([0.5]))
    assert out.num_masked.item() == 1


def test_given_tokens_padding_and_position_zero_are_never_masked():
    torch.manual_seed(0)
    ids = torch.randint(5, 50, (8, 20))
    attention_mask = torch.ones_like(ids)
    attention_mask[:, 15:] = 0
    given = torch.zeros_like(ids, dtype=torch.bool)
    given[:, :6] = True
    maskable = maskable_positions(attention_mask, ids, given)
    noisy, is_masked = mask_tokens(ids, maskable, torch.ones(8), mask_token_id=99)
    assert not is_masked[:, :6].any() and not is_masked[:, 15:].any()
    assert is_masked[:, 6:15].all()  # t = 1 masks every maskable token
    assert (noisy[is_masked] == 99).all() and (noisy[~is_masked] == ids[~is_masked]).all()


def test_masking_rate_follows_the_noise_level():
    ids = torch.zeros(4, 4000, dtype=torch.long)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    _, is_masked = mask_tokens(ids, maskable, t, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(is_masked.float().mean(1), t, atol=0.03, rtol=0)


def test_noise_levels_and_schedule():
    t = sample_noise_levels(10000, eps=1e-3, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 1e-3 and t.max() <= 1.0
    strat = sample_noise_levels(8, stratified=True, eps=0.0, generator=torch.Generator().manual_seed(0))
    assert sorted((strat * 8).floor().long().tolist()) == list(range(8))
    assert float(reverse_unmask_probability(0.5, 0.25)) == pytest.approx(0.5)
    assert annealing_ratio(0, 0) == 1.0
    assert annealing_ratio(0, 10) == pytest.approx(0.1)
    assert annealing_ratio(9, 10) == 1.0 and annealing_ratio(50, 10) == 1.0
    with pytest.raises(ValueError):
        sample_noise_levels(2, eps=1.5)
    with pytest.raises(ValueError):
        masked_diffusion_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long),
                              torch.zeros(1, 2, dtype=torch.bool), torch.ones(1), normalization="mean")


def test_objective_is_float32_and_differentiable_under_bf16():
    """Under bf16 weights the loss is float32, and both it and the LM head's gradient (through the head that runs
    only on the scored positions) match a float64 hand computation on the full logits of the same weights."""
    model, tokenizer = tiny_diffusion_model("llama")
    model = model.to(torch.bfloat16).train()
    reference = copy.deepcopy(model).double()  # the same (bf16-representable) weights, in float64
    ids = torch.randint(6, 80, (2, 12), generator=torch.Generator().manual_seed(0))
    maskable = maskable_positions(None, ids)
    levels = torch.tensor([0.5, 0.9])
    out = diffusion_objective(model, ids, maskable, ObjectiveSettings(tokenizer.mask_token_id), noise_levels=levels,
                              generator=torch.Generator().manual_seed(3))
    assert out.loss.dtype == torch.float32
    out.loss.backward()

    noisy, is_masked = mask_tokens(ids, maskable, levels, tokenizer.mask_token_id,
                                   generator=torch.Generator().manual_seed(3))
    assert int(out.num_masked) == int(is_masked.sum()) > 3
    logits = reference(input_ids=noisy).logits  # logit j - 1 predicts token j (the shift)
    rows, cols = is_masked.nonzero(as_tuple=True)
    terms = torch.nn.functional.cross_entropy(logits[rows, cols - 1], ids[rows, cols], reduction="none")
    expected = (terms / levels.double()[rows]).sum() / len(rows)  # 1/t weights, per masked token
    expected.backward()
    assert out.loss.item() == pytest.approx(expected.item(), rel=2e-3)
    grad, expected_grad = model.lm_head.weight.grad.double(), reference.lm_head.weight.grad
    assert expected_grad.norm() > 0
    assert ((grad - expected_grad).norm() / expected_grad.norm()).item() < 0.05
