"""SFT dataset formats -> what TRL's ``SFTTrainer`` accepts: Alpaca (instruction/input/output, LLaMA-Factory),
ShareGPT ``conversations``, ``messages``, prompt/completion and plain text."""

from __future__ import annotations

import json
import os
from typing import Any

from datasets import Dataset

from .paths import read_json, read_text

# ShareGPT / LLaMA-Factory role names -> chat-template roles
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                   "observation": "tool", "tool": "tool", "function_call": "assistant"}


def sharegpt_to_messages(example: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory / ShareGPT ``conversations`` (from/value; human/gpt) -> ``messages`` (role/content)."""
    messages = []
    for turn in example["conversations"]:
        role = _SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise ValueError(f"unknown conversation role {turn['from']!r}; expected one of {sorted(_SHAREGPT_ROLES)}")
        messages.append({"role": role, "content": turn["value"]})
    if example.get("system"):
        messages.insert(0, {"role": "system", "content": example["system"]})
    return {"messages": messages}


def sharegpt_dataset_to_messages(dataset):
    """A dataset of ShareGPT ``conversations`` rows -> ``messages`` rows (the one ShareGPT conversion, used by
    :func:`to_trl_format` and by ``DiffusionSFTTrainer`` for datasets handed to it directly)."""
    return dataset.map(sharegpt_to_messages, remove_columns=["conversations"])


def split_last_assistant_turn(example: dict[str, Any]) -> dict[str, Any]:
    """``messages`` -> ``prompt`` (everything before the last assistant message) / ``completion`` (the rest)."""
    messages = example["messages"]
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise ValueError(f"a conversation has no assistant message to learn: {messages!r:.200}")
    if last == 0:
        raise ValueError("a conversation starts with the assistant message: there is no prompt to condition on")
    return {"prompt": messages[:last], "completion": messages[last:]}


ALPACA_PROMPT = "{instruction}\n\n{input}"


def alpaca_to_prompt_completion(example: dict[str, Any], chat: bool) -> dict[str, Any]:
    """Alpaca / LLaMA-Factory (instruction, input, output[, history, system]) -> prompt/completion.

    ``chat=True`` gives conversational messages (rendered by the chat template, history turns included);
    ``chat=False`` gives plain text, the prompt ending in a newline, with history turns prepended as text.
    """
    if "instruction" not in example or "output" not in example:
        raise ValueError(f"alpaca rows need 'instruction' and 'output', got keys {sorted(example)}")
    query = example["instruction"].strip()
    if example.get("input"):
        query = ALPACA_PROMPT.format(instruction=query, input=example["input"].strip())
    history = example.get("history") or []
    if chat:
        prompt = [{"role": "system", "content": example["system"]}] if example.get("system") else []
        for user, assistant in history:
            prompt += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        prompt.append({"role": "user", "content": query})
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": example["output"]}]}
    turns = [f"{user}\n{assistant}\n\n" for user, assistant in history]
    return {"prompt": "".join(turns) + query + "\n", "completion": example["output"]}


def load_sft_dataset(
    dataset: str, *, split: str = "train", chat: bool = True, config_name: str | None = None
) -> Dataset:
    """A dataset in a format TRL accepts, from a local .json/.jsonl file or a Hub name.

    Alpaca rows (instruction/input/output, as in LLaMA-Factory) become prompt/completion (conversational when
    ``chat``); ShareGPT ``conversations`` become ``messages``; ``messages``, ``prompt``/``completion`` and ``text``
    rows pass through.
    """
    from datasets import load_dataset

    from .paths import looks_local

    if looks_local(dataset) and not os.path.exists(dataset):
        raise FileNotFoundError(f"dataset file not found: {dataset}")  # a local path never goes to the Hub
    if dataset.endswith((".json", ".jsonl")):
        if not os.path.isfile(dataset):
            raise ValueError(f"dataset file not found: {dataset}")
        rows = _read_json_rows(dataset)
        if not rows:
            raise ValueError(f"dataset file {dataset} has no rows")
        data = Dataset.from_list(rows)
    elif os.path.exists(dataset) and not os.path.isdir(dataset):
        raise ValueError(f"unsupported dataset file {dataset}: use .json or .jsonl")
    else:
        data = load_dataset(dataset, config_name, split=split)
    return to_trl_format(data, chat=chat)


def to_trl_format(data: Dataset, *, chat: bool = True) -> Dataset:
    columns = set(data.column_names)
    if {"instruction", "output"} <= columns:
        return data.map(alpaca_to_prompt_completion, fn_kwargs={"chat": chat}, remove_columns=data.column_names)
    if "conversations" in columns:
        return sharegpt_dataset_to_messages(data.remove_columns(sorted(columns - {"conversations", "system"})))
    if "messages" in columns or {"prompt", "completion"} <= columns or "text" in columns:
        return data
    raise ValueError(
        f"unrecognised SFT dataset columns {sorted(columns)}: expected instruction/input/output (alpaca), "
        "conversations (ShareGPT), messages, prompt/completion, or text"
    )


def _read_json_rows(path: str) -> list[dict[str, Any]]:
    if path.endswith(".jsonl"):
        rows = []
        for number, line in enumerate(read_text(path, "dataset file").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"dataset file {path}, line {number}: not valid JSON ({error})") from None
        return rows
    rows = read_json(path, f"dataset file {path}")
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of rows")
    return rows
