"""GSM8K in the reference SFT format, and its exact-match score (METHOD.md section 4).

Reference format (DiffuLLaMA / Diffusion-of-Thought): the question is the prompt; the target keeps only the
calculator annotations and the final answer, "<<48/2=24>> <<48+24=72>> #### 72". Accuracy is the exact match of the
text after the last "####" (commas removed). ``style="full"`` keeps GSM8K's whole worked solution instead.

Prompts match ``diffusion-lm eval --tasks gsm8k``: the chat template when the tokenizer has one, else
"Question: ...\\nAnswer:", so a model trained here scores the same way there.
"""

from __future__ import annotations

import json
import os
import re

from diffusion_lm.evaluation.tasks import gsm8k_final_answer, gsm8k_prompt

CALCULATION = re.compile(r"<<[^<>]*>>")
STYLES = ("calc", "full")
HUB_DATASET = ("openai/gsm8k", "main")
# ../shared/data/eval/gsm8k beside the repository, when present
LOCAL_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "eval",
                                           "gsm8k"))


def default_data() -> str:
    return LOCAL_DATA if os.path.isdir(LOCAL_DATA) else HUB_DATASET[0]


def load_gsm8k(data: str, split: str) -> list[dict]:
    """Rows {question, answer} of ``split`` from a folder with ``{split}.jsonl``, a .jsonl file, or the Hub."""
    if split not in ("train", "test"):
        raise ValueError(f"GSM8K split must be 'train' or 'test', got {split!r}")
    path = os.path.join(data, f"{split}.jsonl") if os.path.isdir(data) else data
    if path.endswith(".jsonl"):
        if not os.path.isfile(path):
            raise ValueError(f"GSM8K file not found: {path}")
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        from datasets import load_dataset

        rows = list(load_dataset(data, HUB_DATASET[1] if data == HUB_DATASET[0] else None, split=split))
    for row in rows[:1]:
        if "question" not in row or "answer" not in row:
            raise ValueError(f"GSM8K rows need 'question' and 'answer', got keys {sorted(row)}")
    return rows


def reference_target(answer: str, style: str = "calc") -> str:
    """The training target of one GSM8K answer: "<<calc=result>> ... #### n" (calc) or the full solution."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    final = gsm8k_final_answer(answer)
    if final is None:
        raise ValueError(f"GSM8K answer without '####': {answer[:80]!r}")
    if style == "full":
        return answer.strip()
    return " ".join([*CALCULATION.findall(answer), f"#### {final}"])


prompt_of = gsm8k_prompt  # the evaluation's prompt rule (diffusion_lm.evaluation.tasks)


def sft_rows(records: list[dict], style: str = "calc", chat: bool = False) -> list[dict]:
    """prompt/completion rows TRL accepts (conversational when ``chat``)."""
    rows = []
    for record in records:
        target = reference_target(record["answer"], style)
        if chat:
            rows.append({"prompt": prompt_of(record["question"], True),
                         "completion": [{"role": "assistant", "content": target}]})
        else:
            rows.append({"prompt": prompt_of(record["question"], False), "completion": " " + target})
    return rows


def exact_match(prediction: str, answer: str) -> bool:
    predicted = gsm8k_final_answer(prediction)
    return predicted is not None and predicted == gsm8k_final_answer(answer)


def score(model, tokenizer, records: list[dict], *, chat: bool, max_new_tokens: int = 128, steps: int | None = None,
          batch_size: int = 8, **generate_kwargs) -> dict:
    """Greedy diffusion decoding of each question; exact match of the final answer, plus how often a "####" answer
    was produced at all."""
    from diffusion_lm.chat_generation import generate_completions

    outputs = generate_completions(model, tokenizer, [prompt_of(r["question"], chat) for r in records],
                                   max_new_tokens=max_new_tokens, steps=steps or max_new_tokens,
                                   batch_size=batch_size, **generate_kwargs)
    hits = [exact_match(output, record["answer"]) for output, record in zip(outputs, records)]
    return {
        "exact_match": sum(hits) / max(len(hits), 1),
        "answered": sum("####" in output for output in outputs) / max(len(outputs), 1),
        "num_examples": len(records),
        "outputs": outputs,
    }
