"""A reused mask id (811 for DiffuLLaMA, 10541 for DiffuGPT-S) is an ordinary token: inside a prompt, prefix or
suffix it is text, and generate / infill / the evaluators fill only the positions they are asked to fill."""

import pytest
import torch
from tiny import tiny_diffusion_model

from diffusion_lm import infill
from diffusion_lm.evaluation.evaluators import DecodingSettings, DiffusionEvaluator

REUSED_WORD = "the"


@pytest.fixture(scope="module")
def reused():
    """(model, tokenizer, id): a tiny LLaMA whose [MASK] is the ordinary word "the"."""
    from tiny import tiny_tokenizer

    word_id = tiny_tokenizer().convert_tokens_to_ids(REUSED_WORD)
    model, tokenizer = tiny_diffusion_model("llama", mask_token=None, reuse_mask_token_id=word_id)
    assert model.config.mask_token_id == word_id and model.config.mask_token_reused
    return model, tokenizer, word_id


def ids_of(tokenizer, text):
    return tokenizer(text)["input_ids"]


def test_prompt_tokens_equal_to_a_reused_mask_id_survive_generate(reused):
    model, tokenizer, word_id = reused
    prompt = torch.tensor([ids_of(tokenizer, "the cat sat on the mat and the dog")])
    assert int((prompt == word_id).sum()) == 3
    output = model.generate(prompt, max_new_tokens=6, steps=6)
    assert torch.equal(output[:, : prompt.shape[1]], prompt)
    assert output.shape[1] == prompt.shape[1] + 6


def test_infill_mask_names_the_holes_and_everything_else_is_text(reused):
    model, tokenizer, word_id = reused
    prompt = torch.tensor([ids_of(tokenizer, "the cat sat on the mat and the dog ran")])
    holes = torch.zeros_like(prompt, dtype=torch.bool)
    holes[0, 3:5] = True  # "on the": one of them holds the reused id, the other not
    seen = []
    output = model.generate(prompt, infill_mask=holes, max_new_tokens=0, steps=2,
                            step_callback=lambda step, x, predictions: seen.append(x.clone()))
    assert torch.equal(output[~holes], prompt[~holes])
    # the holes start masked (the token they held is replaced) and only they change
    first = seen[0]
    assert int((first[0] == word_id).sum()) >= 2
    changed = (torch.stack(seen)[:, 0] != prompt[0]).any(dim=0)
    assert not bool(changed[~holes[0]].any())


def test_infill_keeps_reused_ids_in_prefix_and_suffix(reused):
    model, tokenizer, word_id = reused
    prefix, suffix = "the cat sat on the mat", "and the dog ran under the tree"
    full = infill(model, tokenizer, prefix, suffix, 3, return_full_text=True)
    assert full.startswith(prefix + " ") and full.endswith(" " + suffix)  # decoding keeps the reused word too
    assert len(full.split()) == len(prefix.split()) + 3 + len(suffix.split())
    middle = infill(model, tokenizer, prefix, suffix, 3)
    assert len(middle.split()) == 3


def test_evaluators_fill_only_the_span_and_keep_reused_ids(reused, monkeypatch):
    model, tokenizer, word_id = reused
    evaluator = DiffusionEvaluator(model, tokenizer, decoding=DecodingSettings())
    sequences = []
    generate = model.generate

    def recording_generate(*args, **kwargs):
        output = generate(*args, **kwargs)
        sequences.append((args[0].clone(), kwargs["attention_mask"].clone(), kwargs["infill_mask"].clone(), output))
        return output

    monkeypatch.setattr(model, "generate", recording_generate)
    prefix = ids_of(tokenizer, "the cat sat on the mat")
    suffix = tokenizer("the dog ran", add_special_tokens=False)["input_ids"]
    short = ids_of(tokenizer, "the sun")
    filled = evaluator.fill_many([(prefix, 2, suffix), (short, 2, suffix)], keys=[0, 1], batch_size=2)
    assert all(len(row) == 2 for row in filled)
    ids, attention_mask, holes, output = sequences[-1]
    assert int(holes.sum()) == 4  # two holes per row, nothing else
    keep = attention_mask.bool() & ~holes
    assert torch.equal(output[keep], ids[keep])
    assert int(((ids == word_id) & keep).sum()) == 5  # prompt and suffix occurrences of the reused id survived

    continued = evaluator.continue_many([prefix], 4, keys=[0])
    ids, attention_mask, holes, output = sequences[-1]
    assert not bool(holes.any()) and torch.equal(output[:, : ids.shape[1]], ids) and len(continued[0]) == 4


def test_a_dedicated_mask_token_in_the_prompt_is_still_a_hole():
    model, tokenizer = tiny_diffusion_model("llama")
    assert not model.config.mask_token_reused
    mask_id = model.config.mask_token_id
    prompt = torch.tensor([ids_of(tokenizer, "the cat sat") + [mask_id, mask_id]])
    output = model.generate(prompt, max_new_tokens=0, steps=2)
    assert not bool((output == mask_id).any())
    assert torch.equal(output[0, :3], prompt[0, :3])


def test_bad_infill_masks_are_refused(reused):
    model, tokenizer, _ = reused
    prompt = torch.tensor([ids_of(tokenizer, "the cat sat")])
    with pytest.raises(ValueError, match="infill_mask must be a tensor of the shape"):
        model.generate(prompt, infill_mask=torch.zeros(1, 2, dtype=torch.bool), max_new_tokens=2)
    with pytest.raises(ValueError, match="bool tensor"):
        model.generate(prompt, infill_mask=torch.zeros_like(prompt), max_new_tokens=2)
    padded = torch.tensor([[0, 0, *ids_of(tokenizer, "the cat")[:2]]])
    attention_mask = torch.tensor([[0, 0, 1, 1]])
    holes = torch.tensor([[True, False, False, True]])
    with pytest.raises(ValueError, match="padding position"):
        model.generate(padded, attention_mask=attention_mask, infill_mask=holes, max_new_tokens=0)
    with pytest.raises(ValueError, match="first position is never"):
        model.generate(prompt, infill_mask=torch.tensor([[True, False, False]]), max_new_tokens=0)
