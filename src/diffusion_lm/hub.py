"""Compatibility names for code written against the former ``diffusion_lm.hub`` (record, card, push in one module).

Each name now lives in the module named after what it does: ``training_record``, ``model_card``, ``push`` and
``checkpoint`` (``save_for_hub`` is ``checkpoint.save_checkpoint``). New code imports from those.
"""

from __future__ import annotations

from .checkpoint import save_checkpoint as save_for_hub
from .model_card import GENERATED_CARD_MARKER, card_template_path, record_eval_results, render_card, write_card
from .push import commit_operations, ensure_push_ready, files_to_upload, push_checkpoint, push_readiness_problems
from .training_record import TRAINING_RECORD_NAME, TrainingInfo

TRAINING_INFO_NAME = TRAINING_RECORD_NAME

__all__ = ["GENERATED_CARD_MARKER", "TRAINING_INFO_NAME", "TrainingInfo", "card_template_path", "commit_operations",
           "ensure_push_ready", "files_to_upload", "push_checkpoint", "push_readiness_problems",
           "record_eval_results", "render_card", "save_for_hub", "write_card"]
