"""Write evaluation results into a checkpoint's model card metadata (``model-index``), via huggingface_hub."""

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


def eval_results_for_card(task_results: dict, settings: dict | None = None):
    """``huggingface_hub.EvalResult`` entries (values in percent) for the tasks of one model."""
    from huggingface_hub import EvalResult

    entries = []
    for task, metrics in task_results.items():
        if task not in _CARD_TASKS:
            continue
        task_type, pretty_name, metric_keys = _CARD_TASKS[task]
        dataset, config, split = HUB_DATASETS[task]
        for key, metric_type in metric_keys:
            if key not in metrics:
                continue
            entries.append(
                EvalResult(
                    task_type=task_type,
                    dataset_type=dataset,
                    dataset_name=pretty_name,
                    dataset_config=config,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_value=round(100 * float(metrics[key]), 2),
                    metric_name=f"{metric_type} (zero-shot, {metrics.get('num_examples', '?')} examples)",
                    metric_args=dict(settings) if settings else None,
                )
            )
    return entries


def update_model_card(model_dir: str, task_results: dict, settings: dict | None = None, model_name: str | None = None):
    """Merge the results into ``model_dir/README.md``'s model-index (same dataset + metric replaced); returns the
    card. A missing README gets a minimal card."""
    from huggingface_hub import ModelCard, ModelCardData

    if not os.path.isdir(model_dir):
        raise ValueError(f"--update-card needs a local model directory, got {model_dir!r}")
    path = os.path.join(model_dir, "README.md")
    name = model_name or os.path.basename(os.path.normpath(model_dir))
    if os.path.isfile(path):
        card = ModelCard.load(path)
    else:
        card = ModelCard(f"---\n{ModelCardData(model_name=name).to_yaml()}\n---\n\n# {name}\n")
    new = eval_results_for_card(task_results, settings)
    replaced = {(e.dataset_type, e.metric_type) for e in new}
    kept = [e for e in (card.data.eval_results or []) if (e.dataset_type, e.metric_type) not in replaced]
    card.data.eval_results = kept + new
    if not card.data.model_name:  # model-index needs a name
        card.data.model_name = name
    card.save(path)
    return card
