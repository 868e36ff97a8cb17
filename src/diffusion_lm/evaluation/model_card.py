"""Evaluation results as model card entries (``model-index``), in one dataset vocabulary.

Results go into the checkpoint's training record (``model_card.record_eval_results``), from which the card is
rendered, so a later re-render keeps them. ``card_dataset_fields`` names each task's dataset the same way for
measured results and for results a paper reports (``reference_import``): a measured row sits beside the paper's row
of the same task, and a re-run replaces its own earlier row.
"""

from __future__ import annotations

import os

from .tasks import HUB_DATASETS

# task -> (task type, dataset name shown, [(metric key in our results, model-index metric type)])
_CARD_TASKS = {
    "piqa": ("multiple-choice", "PIQA", [("acc", "accuracy")]),
    "siqa": ("multiple-choice", "Social IQa", [("acc", "accuracy")]),
    "winogrande": ("multiple-choice", "WinoGrande", [("acc", "accuracy")]),
    "hellaswag": ("multiple-choice", "HellaSwag", [("acc", "accuracy")]),
    "lambada": ("text-generation", "LAMBADA", [("acc", "accuracy")]),
    "rocstories": ("text-generation", "ROCStories (infilling)", [(m, m) for m in ("rouge1", "rouge2", "rougeL")]),
    "gsm8k": ("text-generation", "GSM8K", [("exact_match", "exact_match")]),
}


def card_dataset_fields(task: str) -> dict:
    """The ``EvalResult`` fields that name ``task``'s dataset: task type, Hub dataset id (``dataset_type``), shown
    name, configuration and split. ValueError for a task without a card entry."""
    if task not in _CARD_TASKS:
        raise ValueError(f"no model card entry for task {task!r}; known: {', '.join(_CARD_TASKS)}")
    task_type, pretty_name, _ = _CARD_TASKS[task]
    dataset, config, split = HUB_DATASETS[task]
    fields = {"task_type": task_type, "dataset_type": dataset, "dataset_name": pretty_name, "dataset_split": split}
    if config:
        fields["dataset_config"] = config
    return fields


def eval_results_for_card(task_results: dict, settings: dict | None = None) -> list[dict]:
    """``huggingface_hub.EvalResult`` keyword dicts (values in percent) for the tasks of one model."""
    entries = []
    for task, metrics in task_results.items():
        if task not in _CARD_TASKS:
            continue
        # settings and example count go into metric_args, so a re-run replaces the entry (same name)
        arguments = {**(settings or {}), "num_examples": metrics.get("num_examples")}
        for key, metric_type in _CARD_TASKS[task][2]:
            if key not in metrics:
                continue
            entries.append({
                **card_dataset_fields(task),
                "metric_type": metric_type,
                "metric_value": round(100 * float(metrics[key]), 2),
                "metric_name": f"{metric_type} (zero-shot)",
                "metric_args": {k: v for k, v in arguments.items() if v is not None},
            })
    return entries


def update_model_card(model_dir: str, task_results: dict, settings: dict | None = None):
    """Put one model's task results into ``model_dir``'s training record and card; returns the card."""
    from ..model_card import record_eval_results

    if not os.path.isdir(model_dir):
        raise ValueError(f"--update-card needs a local model directory, got {model_dir!r}")
    entries = eval_results_for_card(task_results, settings)
    if not entries:
        raise ValueError("no task result to write into the model card")
    return record_eval_results(model_dir, entries)
