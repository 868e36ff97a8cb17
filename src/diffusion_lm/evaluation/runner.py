"""Run the paper's zero-shot tasks on a diffusion LM (and its AR base), collect results, print the table.

Task runners take an evaluator (``DiffusionEvaluator`` or ``AREvaluator``) and a list of examples from
``tasks.load_task``; they return a metrics dict. ``evaluate_tasks`` runs several tasks for one evaluator;
``format_table`` prints the models side by side in the column order of the paper's Table 1.
"""

from __future__ import annotations

import math
import re
import time
from typing import Sequence

from ..infilling import decode_text
from .evaluators import context_token_ids, continuation_token_ids, cut_at_eos
from .scoring import ScoringRequest
from .tasks import (
    CompletionExample,
    InfillingExample,
    MathExample,
    MultipleChoiceExample,
    canonical_task_name,
    gsm8k_final_answer,
    gsm8k_prompt,
)

# table columns: (title, task, metric); values are printed x100
TABLE_COLUMNS = (
    ("Lambada", "lambada", "acc"),
    ("HellaSwag", "hellaswag", "acc"),
    ("Wino", "winogrande", "acc"),
    ("SIQA", "siqa", "acc"),
    ("PIQA", "piqa", "acc"),
    ("GSM8K", "gsm8k", "exact_match"),
)
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL")


def _model_config(evaluator):
    return getattr(getattr(evaluator, "model", None), "config", None)


def stderr(values: Sequence[float]) -> float:
    """Standard error of the mean of per-example values (sample standard deviation / sqrt(n)), as lm-eval's
    ``*_stderr``: the uncertainty from the finite set of examples."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def run_multiple_choice(evaluator, examples: Sequence[MultipleChoiceExample], progress: bool = True) -> dict:
    """Accuracy of picking the choice with the lowest per-token loss (diffusion: Monte-Carlo; AR: exact NLL)."""
    tokenizer = evaluator.tokenizer
    requests, keys, owners = [], [], []
    for index, example in enumerate(examples):
        for choice, (context, continuation) in enumerate(example.choices):
            requests.append(
                ScoringRequest.from_parts(
                    context_token_ids(tokenizer, context), continuation_token_ids(tokenizer, continuation)
                )
            )
            # every choice of an example draws the same noise (common random numbers): the noise then moves the
            # choices' scores together instead of deciding which is lower; it depends on (seed, example) only
            keys.append((index,))
            owners.append(index)
    scores = evaluator.score(requests, keys, progress=progress and f"{evaluator.kind} choices")
    per_example: list[list[float]] = [[] for _ in examples]
    for owner, score in zip(owners, scores):
        per_example[owner].append(score.per_token)
    predictions = [min(range(len(losses)), key=losses.__getitem__) for losses in per_example]
    correct = [int(p == e.label) for p, e in zip(predictions, examples)]
    return {"acc": sum(correct) / len(correct), "acc_stderr": stderr(correct), "num_examples": len(correct),
            "predictions": predictions}


def run_lambada(evaluator, examples: Sequence[CompletionExample], progress: bool = True) -> dict:
    """Exact match of the last word, generated at its gold token length."""
    tokenizer = evaluator.tokenizer
    items = [
        (context_token_ids(tokenizer, e.context), len(continuation_token_ids(tokenizer, " " + e.target)), [])
        for e in examples
    ]
    generated = evaluator.fill_many(items, list(range(len(items))), progress=progress and f"{evaluator.kind} lambada")
    outputs = [decode_text(tokenizer, ids, _model_config(evaluator)).strip() for ids in generated]
    correct = [int(text == e.target) for text, e in zip(outputs, examples)]
    return {"acc": sum(correct) / len(correct), "acc_stderr": stderr(correct), "num_examples": len(correct),
            "outputs": outputs}


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Mean ROUGE-1/2/L F-measures (rouge-score package, Porter stemming) and their standard errors."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:  # optional dependency of the eval extra
        raise ImportError("ROCStories needs the rouge-score package: pip install 'diffusion-lm[eval]'") from error
    scorer = rouge_scorer.RougeScorer(list(ROUGE_METRICS), use_stemmer=True)
    values: dict[str, list[float]] = {metric: [] for metric in ROUGE_METRICS}
    for prediction, reference in zip(predictions, references):
        for metric, value in scorer.score(reference, prediction).items():
            values[metric].append(value.fmeasure)
    means = {metric: sum(v) / len(v) for metric, v in values.items()}
    return {**means, **{f"{metric}_stderr": stderr(v) for metric, v in values.items()}}


def run_rocstories(evaluator, examples: Sequence[InfillingExample], progress: bool = True) -> dict:
    """Sentence 3 generated at its gold length between sentences 1-2 and 4-5 (AR: from sentences 1-2 only)."""
    tokenizer = evaluator.tokenizer
    items = [
        (
            context_token_ids(tokenizer, e.prefix),
            len(continuation_token_ids(tokenizer, " " + e.middle)),
            continuation_token_ids(tokenizer, " " + e.suffix),
        )
        for e in examples
    ]
    generated = evaluator.fill_many(items, list(range(len(items))), progress=progress and f"{evaluator.kind} rocstories")
    outputs = [decode_text(tokenizer, ids, _model_config(evaluator)).strip() for ids in generated]
    metrics = rouge_scores(outputs, [e.middle for e in examples])
    return {**metrics, "num_examples": len(examples), "outputs": outputs}


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number in a text, commas removed (the lenient GSM8K extraction)."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def gsm8k_prompt_ids(tokenizer, question: str) -> list[int]:
    """The question through the tokenizer's chat template when it has one, else "Question: ...\\nAnswer:"."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(gsm8k_prompt(question, chat=True), tokenize=False,
                                             add_generation_prompt=True)
        return continuation_token_ids(tokenizer, text)  # the template already holds the special tokens
    return context_token_ids(tokenizer, gsm8k_prompt(question, chat=False))


def run_gsm8k(
    evaluator, examples: Sequence[MathExample], max_new_tokens: int = 256, progress: bool = True
) -> dict:
    """Exact match of the answer after the last "####" (commas removed); also the lenient last-number match."""
    tokenizer = evaluator.tokenizer
    prompts = [gsm8k_prompt_ids(tokenizer, e.question) for e in examples]
    generated = evaluator.continue_many(
        prompts, max_new_tokens, list(range(len(prompts))), progress=progress and f"{evaluator.kind} gsm8k"
    )
    outputs = [decode_text(tokenizer, cut_at_eos(ids, tokenizer.eos_token_id), _model_config(evaluator)) for ids in generated]
    strict = [int(gsm8k_final_answer(text) == e.target) for text, e in zip(outputs, examples)]
    lenient = [int(last_number(text) == e.target) for text, e in zip(outputs, examples)]
    return {
        "exact_match": sum(strict) / len(strict),
        "exact_match_stderr": stderr(strict),
        "last_number_match": sum(lenient) / len(lenient),
        "num_examples": len(strict),
        "outputs": outputs,
    }


def run_task(evaluator, task: str, examples: Sequence, *, gsm8k_max_new_tokens: int = 256, progress: bool = True):
    task = canonical_task_name(task)
    if task in ("piqa", "siqa", "winogrande", "hellaswag"):
        return run_multiple_choice(evaluator, examples, progress)
    if task == "lambada":
        return run_lambada(evaluator, examples, progress)
    if task == "rocstories":
        return run_rocstories(evaluator, examples, progress)
    return run_gsm8k(evaluator, examples, gsm8k_max_new_tokens, progress)


def evaluate_tasks(
    evaluator,
    task_examples: dict[str, Sequence],
    *,
    gsm8k_max_new_tokens: int = 256,
    progress: bool = True,
    keep_outputs: bool = False,
    done: dict[str, dict] | None = None,
    on_task_done=None,
) -> dict[str, dict]:
    """Metrics of every task for one evaluator; per-example outputs only with ``keep_outputs``.

    ``done``: metrics of tasks finished earlier (an interrupted run's), kept and not run again. ``on_task_done``:
    called with the results so far after each task, so that an interrupted run keeps what it finished."""
    results = dict(done or {})
    for task, examples in task_examples.items():
        if task in results:
            continue
        start = time.perf_counter()
        metrics = run_task(
            evaluator, task, examples, gsm8k_max_new_tokens=gsm8k_max_new_tokens, progress=progress
        )
        metrics["seconds"] = round(time.perf_counter() - start, 2)
        if not keep_outputs:
            metrics = {k: v for k, v in metrics.items() if k not in ("outputs", "predictions")}
        results[task] = metrics
        if on_task_done is not None:
            on_task_done(results)
    return {task: results[task] for task in [*task_examples, *(t for t in results if t not in task_examples)]}


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_table(results: dict) -> str:
    """Markdown table: one row per model (AR base first), the paper's columns, values x100.

    ``results["models"]`` maps a row label to ``{"tasks": {task: metrics}, "likelihood": {...}}``.
    """
    models = results["models"]
    present = {task for entry in models.values() for task in entry.get("tasks", {})}
    columns = [c for c in TABLE_COLUMNS if c[1] in present]
    show_rouge = "rocstories" in present
    show_ppl = any(entry.get("likelihood") for entry in models.values())
    header = ["model"] + [title for title, _, _ in columns]
    if show_rouge:
        header.append("ROCStories R1/R2/RL")
    if show_ppl:
        header.append("PPL (bound)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in models.items():
        tasks = entry.get("tasks", {})
        row = [label] + [_percent(tasks.get(task, {}).get(metric)) for _, task, metric in columns]
        if show_rouge:
            rouge = tasks.get("rocstories")
            row.append("/".join(_percent(rouge[m]) for m in ROUGE_METRICS) if rouge else "-")
        if show_ppl:
            likelihood = entry.get("likelihood")
            if not likelihood:
                row.append("-")
            else:
                kind = "exact" if likelihood.get("exact") else "<="
                row.append(f"{kind} {likelihood['perplexity']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def evaluate_models(
    evaluators: dict,
    task_examples: dict[str, Sequence],
    *,
    likelihood_blocks: Sequence[Sequence[int]] | None = None,
    gsm8k_max_new_tokens: int = 256,
    progress: bool = True,
    keep_outputs: bool = False,
    done: dict | None = None,
    on_result=None,
) -> dict:
    """``{"models": {label: {"kind", "tasks", "likelihood"}}}`` for every evaluator, on the same examples and (for
    the likelihood) the same token blocks.

    ``done``: the ``{"models": ...}`` of an interrupted run: its finished tasks (and likelihoods) are kept, not run
    again. ``on_result``: called with ``{"models": ...}`` so far each time a task or likelihood finishes."""
    from .likelihood import ar_likelihood, diffusion_likelihood_bound

    earlier = (done or {}).get("models", {})
    models = {}

    def report(label, entry):
        if on_result is not None:
            on_result({"models": {**models, label: entry}})

    for label, evaluator in evaluators.items():
        previous = earlier.get(label, {})
        entry = {"kind": evaluator.kind, "tasks": dict(previous.get("tasks", {}))}

        def task_done(tasks, label=label, entry=entry):
            entry["tasks"] = dict(tasks)
            report(label, entry)

        entry["tasks"] = evaluate_tasks(
            evaluator,
            task_examples,
            gsm8k_max_new_tokens=gsm8k_max_new_tokens,
            progress=progress,
            keep_outputs=keep_outputs,
            done=entry["tasks"],
            on_task_done=task_done,
        )
        if likelihood_blocks and previous.get("likelihood"):
            entry["likelihood"] = previous["likelihood"]
        elif likelihood_blocks:
            start = time.perf_counter()
            if evaluator.kind == "diffusion":
                s = evaluator.scoring
                estimate = diffusion_likelihood_bound(
                    evaluator.model,
                    likelihood_blocks,
                    mc_samples=s.mc_samples,
                    seed=s.seed,
                    eps=s.eps,
                    batch_size=s.batch_size,
                    progress=progress,
                )
            else:
                estimate = ar_likelihood(
                    evaluator.model, likelihood_blocks, batch_size=evaluator.batch_size, progress=progress
                )
            entry["likelihood"] = {**estimate.to_dict(), "seconds": round(time.perf_counter() - start, 2)}
            report(label, entry)
        models[label] = entry
    return {"models": models}
