"""Write evaluation results into a checkpoint's model card metadata (``model-index``).

The checkpoint's card is rendered by ``diffusion_lm.hub`` from its training record; results go into that record
(``hub.record_eval_results``) so a later re-render keeps them. Without ``diffusion_lm.hub`` the README's metadata
is edited in place with huggingface_hub's ``ModelCard``.
"""

from __future__ import annotations

import os

from .tasks import HUB_DATASETS

# task -> (task type, pretty dataset name, [(metric key in our results, model-index metric type)])
_CARD_TASKS = {
    "piqa": ("multiple-choice", "PIQA", [("acc", "accuracy")]),
    "siqa": ("multiple-choice", "Social IQa", [("acc", "accuracy")]),
    "winogrande": ("multiple-choice", "WinoGrande", [("acc", "accuracy")]),
    "hellaswag": ("multiple-choice", "HellaSwag", [("acc", "accuracy")]),
    "lambada": ("text-generation", "LAMBADA", [("acc", "accuracy")]),
    "rocstories": ("text-generation", "ROCStories (infilling)", [(m, m) for m in ("rouge1", "rouge2", "rougeL")]),
    "gsm8k": ("text-generation", "GSM8K", [("exact_match", "exact_match")]),
}


def eval_results_for_card(task_results: dict, settings: dict | None = None) -> list[dict]:
    """``huggingface_hub.EvalResult`` keyword dicts (values in percent) for the tasks of one model."""
    entries = []
    for task, metrics in task_results.items():
        if task not in _CARD_TASKS:
            continue
        task_type, pretty_name, metric_keys = _CARD_TASKS[task]
        dataset, config, split = HUB_DATASETS[task]
        # settings and example count go into metric_args, so a re-run replaces the entry (same name)
        arguments = {**(settings or {}), "num_examples": metrics.get("num_examples")}
        for key, metric_type in metric_keys:
            if key not in metrics:
                continue
            entry = {
                "task_type": task_type,
                "dataset_type": dataset,
                "dataset_name": pretty_name,
                "dataset_split": split,
                "metric_type": metric_type,
                "metric_value": round(100 * float(metrics[key]), 2),
                "metric_name": f"{metric_type} (zero-shot)",
                "metric_args": {k: v for k, v in arguments.items() if v is not None},
            }
            if config:
                entry["dataset_config"] = config
            entries.append(entry)
    return entries


def _update_readme_metadata(model_dir: str, entries: list[dict], model_name: str):
    """Fallback without diffusion_lm.hub: merge into README.md's model-index (same dataset + metric replaced)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    path = os.path.join(model_dir, "README.md")
    if os.path.isfile(path):
        card = ModelCard.load(path)
    else:
        card = ModelCard(f"---\n{ModelCardData(model_name=model_name).to_yaml()}\n---\n\n# {model_name}\n")
    new = [EvalResult(**entry) for entry in entries]
    replaced = {(e.dataset_type, e.metric_type) for e in new}
    kept = [e for e in (card.data.eval_results or []) if (e.dataset_type, e.metric_type) not in replaced]
    card.data.eval_results = kept + new
    if not card.data.model_name:  # model-index needs a name
        card.data.model_name = model_name
    card.save(path)
    return card


def update_model_card(model_dir: str, task_results: dict, settings: dict | None = None):
    """Put one model's task results into ``model_dir``'s card metadata; returns the card."""
    if not os.path.isdir(model_dir):
        raise ValueError(f"--update-card needs a local model directory, got {model_dir!r}")
    entries = eval_results_for_card(task_results, settings)
    if not entries:
        raise ValueError("no task result to write into the model card")
    try:
        from ..hub import record_eval_results
    except ImportError:
        return _update_readme_metadata(model_dir, entries, os.path.basename(os.path.normpath(model_dir)))
    return record_eval_results(model_dir, entries)
