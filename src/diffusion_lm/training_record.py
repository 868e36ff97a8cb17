"""The training record: what produced a checkpoint, saved next to it as ``diffusion_lm_training.json``.

One flat JSON object (see ``TrainingInfo``). ``checkpoint.save_checkpoint`` writes it; the card
(``model_card.render_card``) is rendered from it plus what the checkpoint itself says.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from huggingface_hub import EvalResult

from .paths import read_json

TRAINING_RECORD_NAME = "diffusion_lm_training.json"
STAGES = ("convert", "adapt", "sft", "import", "parallelism")
EVAL_RESULT_REQUIRED = ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
EVAL_RESULT_KEYS = {f.name for f in fields(EvalResult)}
# what makes two evaluation results the same entry: a new result with this key replaces the old one
EVAL_RESULT_IDENTITY = ("task_type", "dataset_type", "dataset_config", "dataset_split", "metric_type", "metric_name")


@dataclass
class TrainingInfo:
    """What produced a checkpoint. Saved as ``diffusion_lm_training.json`` (one flat JSON object) and rendered into
    the card. Every key is optional; keys not listed here are kept in ``extra`` and shown as further settings.

    Keys that describe the checkpoint itself (``shift``, ``mask_token``, ``mask_token_id``, ``mask_token_reused``,
    ``attention_mode``) may be present; the card takes those from the checkpoint's config and tokenizer instead.
    """

    stage: str | None = None  # "convert", "adapt", "sft", "import" or "parallelism"
    base_model: str | None = None  # Hub id or path the weights started from (the AR model; for sft the diffusion model)
    datasets: list[str] = field(default_factory=list)  # Hub ids or paths of the training data
    language: list[str] = field(default_factory=list)
    license: str | None = None  # Hub license id; the base model's license usually applies
    steps: int | None = None  # optimizer steps
    tokens: int | None = None  # training tokens processed
    block_size: int | None = None  # tokens per packed training sequence
    anneal_steps: int | None = None  # attention-mask annealing steps (0 = none)
    learning_rate: float | None = None
    global_batch_size: int | None = None  # sequences per optimizer step
    eval_results: list[dict[str, Any]] = field(default_factory=list)  # huggingface_hub.EvalResult keyword arguments
    reference: str | None = None  # for imports: the released checkpoint this one was converted from
    notes: str | None = None  # free text, shown in the card
    diffusion_lm_version: str | None = None
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # any other JSON value (scheduler, loss normalisation, ...)

    def __post_init__(self):
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(f"training info: stage must be one of {STAGES}, got {self.stage!r}")
        if self.schema_version != 1:
            raise ValueError(f"training info: schema_version {self.schema_version} is not supported (expected 1)")
        for name in ("datasets", "language"):
            value = getattr(self, name)
            value = [value] if isinstance(value, str) else list(value or [])
            if not all(isinstance(item, str) for item in value):
                raise ValueError(f"training info: {name} must be a list of strings, got {value!r}")
            setattr(self, name, value)
        for name in ("steps", "tokens", "block_size", "anneal_steps", "global_batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"training info: {name} must be a non-negative integer, got {value!r}")
        if self.learning_rate is not None and not isinstance(self.learning_rate, (int, float)):
            raise ValueError(f"training info: learning_rate must be a number, got {self.learning_rate!r}")
        self.eval_results = [checked_eval_result(result) for result in self.eval_results]
        try:
            json.dumps(self.extra)
        except TypeError as error:
            raise ValueError(f"training info: extra settings must be JSON values ({error})") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingInfo":
        if not isinstance(data, dict):
            raise ValueError(f"training info must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        extra = dict(data.get("extra") or {})
        extra.update({key: value for key, value in data.items() if key not in known and key != "extra"})
        return cls(**{key: value for key, value in data.items() if key in known}, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object stored on disk (extra keys at top level, empty values left out)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data = {key: value for key, value in data.items() if value not in (None, [], {})}
        data.update({key: value for key, value in self.extra.items() if key not in data})
        return data

    def save(self, directory: str | os.PathLike) -> str:
        if self.diffusion_lm_version is None:
            from . import __version__

            self.diffusion_lm_version = __version__
        path = os.path.join(directory, TRAINING_RECORD_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TrainingInfo | None":
        """The record saved in ``directory``, or None when it has none."""
        data = read_json(os.path.join(directory, TRAINING_RECORD_NAME))
        if data is None:
            return None
        return cls.from_dict(data)

    @classmethod
    def coerce(cls, value: "TrainingInfo | dict | None") -> "TrainingInfo | None":
        if value is None or isinstance(value, cls):
            return value
        return cls.from_dict(value)


def checked_eval_result(result: dict[str, Any]) -> dict[str, Any]:
    if isinstance(result, EvalResult):
        result = {k: v for k, v in vars(result).items() if k in EVAL_RESULT_KEYS and v is not None}
    if not isinstance(result, dict):
        raise ValueError(f"training info: each eval result must be a JSON object, got {result!r}")
    missing = [key for key in EVAL_RESULT_REQUIRED if key not in result]
    unknown = sorted(set(result) - EVAL_RESULT_KEYS)
    if missing or unknown:
        raise ValueError(f"training info: eval result {result!r} lacks {missing} / has unknown keys {unknown}")
    try:
        EvalResult(**result)  # huggingface_hub's own checks (e.g. source_name needs source_url)
    except (TypeError, ValueError) as error:
        raise ValueError(f"training info: eval result {result!r}: {error}") from None
    return dict(result)


def merge_eval_results(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with ``new`` added; a new result with the identity of an old one (same task, dataset, split, metric
    and metric name) replaces it. A paper's row (``metric_name`` unset) and a measured one sit side by side."""
    new = [checked_eval_result(result) for result in new]

    def identity(result):
        return tuple(result.get(key) for key in EVAL_RESULT_IDENTITY)

    replaced = {identity(result) for result in new}
    return [result for result in old if identity(result) not in replaced] + new


__all__ = ["STAGES", "TRAINING_RECORD_NAME", "TrainingInfo", "checked_eval_result", "merge_eval_results"]
