"""Evaluation of diffusion LMs side by side with their AR base (METHOD.md section 5).

- ``likelihood``: Monte-Carlo ELBO bound (bits/token, perplexity bound) and the AR model's exact NLL.
- ``scoring``: Monte-Carlo diffusion loss of token spans given a frozen context; exact AR log-likelihood.
- ``tasks``: readers for PIQA, SIQA, Winogrande, HellaSwag, LAMBADA, ROCStories, GSM8K (local files or Hub).
- ``evaluators`` / ``runner``: the tasks for a diffusion LM and an AR LM, results dict and side-by-side table.
- ``lm_eval_adapter``: the ``diffusion_lm`` model type of lm-evaluation-harness (optional, imports lm_eval).
"""

from .evaluators import AREvaluator, DecodingSettings, DiffusionEvaluator, ScoringSettings
from .likelihood import LikelihoodEstimate, ar_likelihood, diffusion_likelihood_bound, read_text_documents, token_blocks
from .model_card import update_model_card
from .runner import evaluate_models, evaluate_tasks, format_table, run_task
from .scoring import ESTIMATORS, ScoringRequest, SpanScore, ar_span_scores, diffusion_span_scores, example_generator
from .tasks import TASK_NAMES, load_task, parse_task_list

__all__ = [
    "AREvaluator",
    "DecodingSettings",
    "DiffusionEvaluator",
    "ESTIMATORS",
    "LikelihoodEstimate",
    "ScoringRequest",
    "ScoringSettings",
    "SpanScore",
    "TASK_NAMES",
    "ar_likelihood",
    "ar_span_scores",
    "diffusion_likelihood_bound",
    "diffusion_span_scores",
    "evaluate_models",
    "evaluate_tasks",
    "example_generator",
    "format_table",
    "load_task",
    "parse_task_list",
    "read_text_documents",
    "run_task",
    "token_blocks",
    "update_model_card",
]
