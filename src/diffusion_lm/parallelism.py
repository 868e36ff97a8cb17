"""Training for parallelism: self-distillation on the model's own causal greedy decode (issue 22, item 2).

Self-verified decoding (``verify="causal"``) commits a drafted token only where it equals the causal mode's greedy
choice, so tokens per forward rise exactly as far as the diffusion drafter predicts, in one forward, what the causal
mode writes one token at a time. This recipe trains that, on the model's own trajectories (dParallel / CDLM-style
self-distillation):

1. **Data**: corpus prompts, each continued by the model's own causal greedy decode (generated with
   ``verify="causal"``, which is lossless: the continuation *is* the causal greedy decode, in fewer forwards).
2. **Objective**: the model's own diffusion objective on prompt + continuation. On the continuation every token is the
   causal mode's argmax given the tokens before it, so the masked positions of a block learn to reproduce, in
   parallel, the tokens the verifier will accept.
3. **Keeping the verifier**: a LoRA adapter over the frozen checkpoint, and the distillation term (``distill_weight``)
   against the checkpoint itself (the teacher is the model with its adapter disabled): the causal mode, which decides
   every committed token, stays where it was, and with it the text.

``training/parallelism_distillation.py`` runs it end to end.
"""

from __future__ import annotations

import torch

from .data import blocks_from_documents
from .tokens import left_pad


def corpus_prompts(documents, tokenizer, prompt_tokens: int, count: int) -> list[list[int]]:
    """``count`` prompts of ``prompt_tokens`` tokens cut from ``documents`` by the packing rule (documents joined with
    EOS). ValueError naming the shortfall when the documents hold fewer."""
    if prompt_tokens < 1 or count < 1:
        raise ValueError(f"prompt_tokens and the number of prompts must be >= 1, got {prompt_tokens} and {count}")
    prompts = blocks_from_documents(documents, tokenizer, prompt_tokens, max_blocks=count)
    if len(prompts) < count:
        raise ValueError(f"the dataset holds {len(prompts)} prompts of {prompt_tokens} tokens, fewer than the "
                         f"{count} asked for (num_sequences + eval_prompts)")
    return prompts


@torch.no_grad()
def causal_greedy_continuations(model, prompts: list[list[int]], new_tokens: int, batch_size: int = 16,
                                pad_token_id: int = 0, progress=None) -> tuple[list[list[int]], float]:
    """Each prompt followed by ``new_tokens`` tokens of the model's causal greedy decode (no EOS stop), generated with
    ``verify="causal"`` in batches of ``batch_size`` left-padded prompts. Returns (sequences, the mean tokens the
    decode committed per forward: how parallel the model already is on this data)."""
    if new_tokens < 1 or batch_size < 1:
        raise ValueError(f"new_tokens and batch_size must be >= 1, got {new_tokens} and {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    sequences: list[list[int]] = []
    tokens, forwards = 0, 0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        ids, mask = left_pad(chunk, pad_token_id, device=device)
        width = ids.shape[1]
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, verify="causal", temperature=0.0,
                             eos_token_id=None, return_dict_in_generate=True)
        sequences += [list(p) + out.sequences[row, width:].tolist() for row, p in enumerate(chunk)]
        tokens += new_tokens * len(chunk)
        forwards += int(out.forward_passes.sum())
        if progress is not None:
            progress(len(sequences), len(prompts))
    return sequences, tokens / max(forwards, 1)


__all__ = ["causal_greedy_continuations", "corpus_prompts"]
