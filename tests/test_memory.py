"""The training loss computes logits only where it reads them (masked positions under the shift), in chunks whose
logits are recomputed in backward, and gives the loss and gradients of the full-logits computation."""

from __future__ import annotations

import torch
from tiny import tiny_diffusion_model

from diffusion_lm.modeling.corruption import maskable_positions, mask_tokens
from diffusion_lm.modeling.diffusion_loss import masked_diffusion_loss
from diffusion_lm.modeling.modeling_diffusion_utils import cross_entropy_at_targets
from diffusion_lm.objective import ObjectiveSettings, diffusion_objective


def test_chunked_cross_entropy_matches_full_logits_in_value_and_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    targets = torch.randint(0, 50, (3, 7))
    targets[torch.rand(3, 7) < 0.5] = -100
    calls = []
    head.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    chunked = cross_entropy_at_targets(hidden, head, targets, chunk_size=3)
    scored = targets != -100
    assert max(calls) <= 3 and sum(calls) == int(scored.sum())  # the head never sees an unscored position
    calls.clear()
    grads = torch.autograd.grad(chunked.sum(), (hidden, head.weight))
    assert sum(calls) == int(scored.sum())  # backward recomputes each chunk's logits instead of keeping them
    full = torch.nn.functional.cross_entropy(head(hidden).transpose(1, 2), targets, reduction="none")
    assert torch.allclose(chunked, full, atol=1e-6) and (chunked[~scored] == 0).all()
    expected = torch.autograd.grad(full.sum(), (hidden, head.weight))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_objective_runs_the_lm_head_only_on_masked_positions_and_equals_the_full_logits_loss():
    model, _ = tiny_diffusion_model("llama")
    torch.manual_seed(1)
    input_ids = torch.randint(6, 80, (4, 24))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 18:] = 0
    maskable = maskable_positions(attention_mask, input_ids)
    levels = torch.tensor([0.2, 0.5, 0.7, 0.9])
    draws = torch.rand(input_ids.shape)
    rows = []
    handle = model.lm_head.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    for normalization in ("masked_tokens", "elbo"):
        rows.clear()
        model.zero_grad()
        settings = ObjectiveSettings(mask_token_id=model.config.mask_token_id, normalization=normalization)
        output = diffusion_objective(model, input_ids, maskable, settings, attention_mask=attention_mask,
                                     noise_levels=levels, mask_draws=draws)
        assert sum(rows) == int(output.num_masked)  # nothing unscored reaches the head
        output.loss.backward()
        new_grad = model.lm_head.weight.grad.clone()
        handle.remove()
        model.zero_grad()
        noisy, is_masked = mask_tokens(input_ids, maskable, levels, model.config.mask_token_id, draws=draws)
        logits = model(input_ids=noisy, attention_mask=attention_mask).logits
        reference = masked_diffusion_loss(logits, input_ids, is_masked, levels, maskable, normalization=normalization)
        reference.loss.backward()
        assert torch.allclose(output.loss, reference.loss, atol=1e-5)
        assert torch.allclose(new_grad, model.lm_head.weight.grad, atol=1e-5)
        handle = model.lm_head.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    handle.remove()


def test_cpu_training_memory_maps_large_buffers(tmp_path, monkeypatch):
    """On CPU the trainers fix glibc's mmap threshold (freed activation buffers go back to the system instead of
    piling up in a fragmented heap); 0 leaves the allocator alone; a negative value is refused."""
    import pytest

    import diffusion_lm.trainer as trainer_module
    from diffusion_lm.data import DiffusionDataCollator
    from diffusion_lm.trainer import DiffusionTrainer, DiffusionTrainingArguments

    calls = []
    monkeypatch.setattr(trainer_module, "set_cpu_mmap_threshold", lambda threshold: calls.append(threshold) or True)
    model, tokenizer = tiny_diffusion_model("llama")
    for threshold, expected in ((None, [1 << 20]), (0, [])):
        calls.clear()
        extra = {} if threshold is None else {"cpu_mmap_threshold": threshold}
        args = DiffusionTrainingArguments(str(tmp_path), use_cpu=True, report_to=[], **extra)
        DiffusionTrainer(model=model, args=args, data_collator=DiffusionDataCollator(tokenizer.pad_token_id))
        assert calls == expected
    with pytest.raises(ValueError, match="cpu_mmap_threshold"):
        DiffusionTrainingArguments(str(tmp_path), use_cpu=True, cpu_mmap_threshold=-1)
    # the diffusion fields follow transformers' own: output_dir stays the first positional argument
    from diffusion_lm.sft import DiffusionSFTConfig

    assert DiffusionTrainingArguments(str(tmp_path), use_cpu=True).output_dir == str(tmp_path)
    assert DiffusionSFTConfig(str(tmp_path), use_cpu=True, bf16=False).output_dir == str(tmp_path)


def test_set_cpu_mmap_threshold_reaches_glibc():
    import platform

    from diffusion_lm.trainer import set_cpu_mmap_threshold

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert set_cpu_mmap_threshold(1 << 20) is True
    else:
        assert set_cpu_mmap_threshold(1 << 20) in (True, False)


def test_the_default_chunk_holds_a_fixed_number_of_logits_whatever_the_vocabulary():
    from diffusion_lm.modeling.modeling_diffusion_utils import LOSS_CHUNK_ELEMENTS

    for vocab in (50, 1000):
        head = torch.nn.Linear(4, vocab, bias=False)
        rows = []
        head.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
        hidden = torch.randn(1, 40_000, 4)
        cross_entropy_at_targets(hidden, head, torch.randint(0, vocab, (1, 40_000)))
        assert max(rows) == min(40_000, LOSS_CHUNK_ELEMENTS // vocab) and sum(rows) == 40_000
