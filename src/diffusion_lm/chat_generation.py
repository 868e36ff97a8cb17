"""Chat generation helpers shared by SFT, the chat command and the GSM8K recipe: stop tokens of a chat template,
the generation settings of a chat model, prompt encoding and batched completion."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .infilling import decode_text

def chat_stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Special token(s) that close an assistant turn in the tokenizer's chat template (e.g. ``<|im_end|>``)."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    user = [{"role": "user", "content": "hi"}]
    try:
        prefix = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": "ok"}], tokenize=False)
    except Exception:  # templates may reject the probe (e.g. they require a system turn); then nothing to add
        return []
    # what the template writes after the assistant's text closes the turn
    end = full.rfind("ok")
    if not full.startswith(prefix) or end < len(prefix):
        return []
    suffix_ids = tokenizer(full[end + 2 :], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special
    }
    return [i for i in suffix_ids if i in special][:1]


def configure_chat_generation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make ``model.generate`` stop at EOS and at the chat template's end-of-turn token; set pad / mask ids."""
    config = model.generation_config
    eos = config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    for token_id in [tokenizer.eos_token_id, *chat_stop_token_ids(tokenizer)]:
        if token_id is not None and token_id not in eos:
            eos.append(token_id)
    config.eos_token_id = eos if len(eos) != 1 else eos[0]
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if getattr(config, "mask_token_id", None) is None and getattr(model.config, "mask_token_id", None) is not None:
        config.mask_token_id = model.config.mask_token_id


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict], chat: bool = False) -> list[int]:
    """Token ids of a prompt as SFT saw it: chat messages (or ``chat=True`` text as one user turn) through the chat
    template with the generation prompt; plain text through the tokenizer as TRL tokenizes prompts."""
    if isinstance(prompt, str) and chat:
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat prompts need a tokenizer with a chat template")
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"])
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt is a string or a list of chat messages, got {type(prompt).__name__}")
    return tokenizer(prompt)["input_ids"]


@torch.no_grad()
def generate_completions(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str | list[dict]],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    chat: bool = False,
    **generate_kwargs,
) -> list[str]:
    """Diffusion-decode one reply per prompt (greedy unless ``temperature`` is given); returns the decoded replies,
    cut at the first EOS / end-of-turn token. Batches are left-padded with an attention mask (inference only)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generate_kwargs.setdefault("temperature", 0.0)
    stops = model.generation_config.eos_token_id
    stops = set([] if stops is None else [stops] if isinstance(stops, int) else stops)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    replies = []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode_prompt(tokenizer, p, chat) for p in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in encoded], device=device)
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask if not attention_mask.all() else None,
            max_new_tokens=max_new_tokens,
            **generate_kwargs,
        )
        for row in output[:, width:].tolist():
            cut = next((i for i, token in enumerate(row) if token in stops), len(row))
            replies.append(decode_text(tokenizer, row[:cut], model.config).strip())
    return replies
