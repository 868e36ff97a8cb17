"""The model card of a checkpoint directory: ``README.md`` rendered from ``templates/diffusion_lm_card.md``.

The card is rendered from the training record (``training_record.TrainingInfo``) plus what the checkpoint itself
says (config, generation config, tokenizer, weights). ``checkpoint.save_checkpoint`` writes it once per save;
``diffusion-lm card DIR`` (``write_card``) renders it again.
"""

from __future__ import annotations

import json
import math
import os
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .models import FAMILY_NAMES, require_diffusion_checkpoint_dir
from .paths import read_json
from .training_record import TrainingInfo, merge_eval_results

CARD_TEMPLATE_NAME = "diffusion_lm_card.md"
# the template says this in a comment; a README without it was written by hand and is never re-rendered
GENERATED_CARD_MARKER = "<!-- diffusion-lm model card -->"
CARD_TAGS = ("diffusion-lm", "masked-diffusion")
# keys of the training record that describe the checkpoint itself: the card reads them from the checkpoint
CHECKPOINT_KEYS = {"shift", "mask_token", "mask_token_id", "mask_token_reused", "attention_mode"}

USAGE_PROMPT = "Once upon a time, there was a"
USAGE_INFILL_PREFIX = "The cat sat on the"
USAGE_INFILL_SUFFIX = "and then it was happy."


def card_template_path() -> str:
    """The Jinja template the card is rendered from (package data, so it ships in the wheel)."""
    return str(resources.files("diffusion_lm") / "templates" / CARD_TEMPLATE_NAME)


def render_card(
    model_dir: str | os.PathLike,
    training_info: TrainingInfo | dict | None = None,
    *,
    repo_id: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card of a checkpoint directory.

    ``training_info`` defaults to the directory's ``diffusion_lm_training.json``. ``repo_id`` is the model id the
    usage snippet loads; without it the snippet loads the directory by its name (``push`` renders it again for the
    repository it uploads to). The tokenizer and generation config are optional here, so a checkpoint that a Trainer
    is still writing gets a card too.
    """
    require_diffusion_checkpoint_dir(model_dir)
    info = TrainingInfo.coerce(training_info) or TrainingInfo.load(model_dir) or TrainingInfo()
    config = read_json(os.path.join(model_dir, "config.json"))
    generation = read_json(os.path.join(model_dir, "generation_config.json")) or {}
    model_id = repo_id or os.path.basename(os.path.normpath(os.path.abspath(model_dir)))
    model_type = config.get("model_type")
    family = FAMILY_NAMES.get(model_type, model_type or "unknown")
    mask = _mask_token_facts(model_dir, config.get("mask_token_id"))

    parent = info.reference if info.stage == "import" else info.base_model  # the model this one derives from
    card_data = ModelCardData(
        model_name=model_id.split("/")[-1],
        base_model=_hub_id_or_none(parent),
        datasets=[d for d in info.datasets if _hub_id_or_none(d)] or None,
        language=info.language or None,
        license=info.license or "other",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=list(dict.fromkeys([*CARD_TAGS, model_type or "diffusion", *(tags or [])])),
        eval_results=[EvalResult(**result) for result in info.eval_results] or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=card_template_path(),
        marker=GENERATED_CARD_MARKER,
        title=model_id.split("/")[-1],
        summary=_summary(info, family),
        attention_sentence=_attention_sentence(config),
        block_method=("; block diffusion as in BD3-LM (Arriola et al., ICLR 2025) and Fast-dLLM v2"
                      if config.get("attention_mode") == "block" else ""),
        repo_id=model_id,
        usage=_usage_values(),
        details=_table(_detail_rows(config, generation, family, model_dir)),
        adaptation=_table(_adaptation_rows(info, config, mask)),
        evaluations=_table(_evaluation_rows(info.eval_results)),
        notes=info.notes,
        license_known=info.license is not None,
    )


def write_card(
    model_dir: str | os.PathLike,
    training_info: TrainingInfo | dict | None = None,
    *,
    repo_id: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """Render the card into ``model_dir/README.md`` (replacing it); a given ``training_info`` is saved too."""
    info = TrainingInfo.coerce(training_info)
    if info is not None:
        require_diffusion_checkpoint_dir(model_dir)
        info.save(model_dir)
    card = render_card(model_dir, info, repo_id=repo_id, tags=tags)
    card.save(os.path.join(model_dir, "README.md"))
    return card


def is_generated_card(text: str) -> bool:
    return GENERATED_CARD_MARKER in text


def _table(rows: list[tuple]) -> list[tuple[str, ...]]:
    # a literal "|" in a markdown table cell (as in "<|mdm_mask|>") would end the cell
    return [tuple(str(cell).replace("|", "\\|") for cell in row) for row in rows]


def _summary(info: TrainingInfo, family: str) -> str:
    base = f"`{info.base_model}`" if info.base_model else None
    if info.stage == "import":
        return (f"A masked-diffusion language model ({family} architecture) converted from the reference release "
                f"`{info.reference}` into diffusion-lm's model classes; weights unchanged.")
    if info.stage == "convert":
        return (f"A {family} model converted into a masked-diffusion language model"
                f"{f' from {base}' if base else ''}; it has not been trained with the diffusion objective yet.")
    if info.stage == "sft":
        return (f"A masked-diffusion language model ({family} architecture) instruction-tuned"
                f"{f' from {base}' if base else ''} with the masked-diffusion objective on the responses.")
    if info.stage == "parallelism":
        return (f"A masked-diffusion language model ({family} architecture) trained for parallel decoding"
                f"{f' from {base}' if base else ''}: self-distillation on its own causal greedy decode, so that its "
                "drafts agree with what its causal mode verifies.")
    if info.stage == "adapt":
        return (f"A masked-diffusion language model adapted{f' from the autoregressive model {base}' if base else ''}"
                f" by continual pre-training with the masked-diffusion objective ({family} architecture).")
    return f"A masked-diffusion language model ({family} architecture)."


def _attention_sentence(config: dict) -> str:
    if config.get("attention_mode") == "block":
        return (f"attention is bidirectional inside blocks of {config.get('diffusion_block_size')} positions and causal "
                "across them, so blocks are generated one after another over an exact KV cache.")
    return "attention is bidirectional."


def _usage_values() -> dict[str, Any]:
    # JSON string literals are valid Python string literals
    return {
        "prompt": json.dumps(USAGE_PROMPT),
        "infill_prefix": json.dumps(USAGE_INFILL_PREFIX),
        "infill_suffix": json.dumps(USAGE_INFILL_SUFFIX),
        "max_new_tokens": 32,
        "steps": 32,
        "infill_tokens": 6,
    }


def _detail_rows(config: dict, generation: dict, family: str, model_dir) -> list[tuple[str, str]]:
    architecture = (config.get("architectures") or ["?"])[0]
    rows = [("Architecture", f"`{architecture}` ({family} decoder, model type `{config.get('model_type')}`)")]
    num_parameters = _count_parameters(model_dir)
    if num_parameters:
        rows.append(("Parameters", f"{_human(num_parameters)} ({num_parameters:,})"))
    if config.get("vocab_size"):
        rows.append(("Vocabulary", f"{config['vocab_size']:,} tokens"))
    attention = config.get("attention_mode", "bidirectional")
    if attention == "block":
        described = (f"block diffusion: bidirectional inside blocks of {config.get('diffusion_block_size')} positions, "
                     "causal across them")
    else:
        described = "bidirectional (no causal mask)" if attention == "bidirectional" else f"{attention}"
    rows.append(("Attention", described))
    if config.get("dtype"):
        rows.append(("Weights dtype", f"`{config['dtype']}`"))
    if generation:
        steps = generation.get("steps")
        parts = [f"{steps} denoising steps" if steps is not None else "steps set by the threshold",
                 f"`{generation.get('alg', '?')}` unmasking"]
        if generation.get("threshold") is not None:
            parts.append(f"confidence threshold {generation['threshold']}")
        if generation.get("kv_cache"):
            parts.append(f"`kv_cache=\"{generation['kv_cache']}\"`")
        if generation.get("block_length"):
            parts.append(f"blocks of {generation['block_length']}")
        decoding = ", ".join(parts)
        if generation.get("verify"):  # a call naming steps / alg / threshold (as the snippets above) sets it aside
            decoding = (f"`verify=\"{generation['verify']}\"` (diffusion drafts, the model's causal mode verifies: "
                        f"its causal greedy decode); calls that name diffusion settings: {decoding}")
        rows.append(("Default decoding", decoding))
    return rows


def _adaptation_rows(info: TrainingInfo, config: dict, mask: dict) -> list[tuple[str, str]]:
    stage = {
        "convert": "conversion only (no diffusion training)",
        "adapt": "continual pre-training (adaptation)",
        "sft": "supervised fine-tuning",
        "parallelism": "parallelism self-distillation",
        "import": f"imported from `{info.reference}`",
    }.get(info.stage, "not recorded")
    rows = [("Stage", stage), ("Base model", _linked(info.base_model) if info.base_model else "not recorded")]
    rows.append(("Training steps", f"{info.steps:,}" if info.steps is not None else "not recorded"))
    rows.append(("Training tokens", f"{_human(info.tokens)} ({info.tokens:,})" if info.tokens else "not recorded"))
    rows.append(("Block size", f"{info.block_size:,} tokens" if info.block_size else "not recorded"))
    if info.anneal_steps is None:
        rows.append(("Attention-mask annealing", "not recorded"))
    elif info.anneal_steps <= 1:
        target = "block attention" if config.get("attention_mode") == "block" else "full bidirectional attention"
        rows.append(("Attention-mask annealing", f"none ({target} from the first step)"))
    else:
        target = "block attention" if config.get("attention_mode") == "block" else "full"
        rows.append(("Attention-mask annealing", f"{info.anneal_steps:,} steps (causal OR random links, then {target})"))
    shift = config.get("shift", True)
    rows.append(("Shift", "yes: the logit at position i predicts token i + 1" if shift else "no"))
    mask_text = f"id {mask['id']}" if mask["token"] is None else f"`{mask['token']}` (id {mask['id']})"
    if mask["added"] is not None:
        mask_text += ", added to the vocabulary" if mask["added"] else ", an existing vocabulary token reused"
    rows.append(("Mask token", mask_text))
    if info.learning_rate is not None:
        rows.append(("Learning rate", f"{info.learning_rate:g}"))
    if info.global_batch_size is not None:
        rows.append(("Global batch size", f"{info.global_batch_size:,} sequences"))
    if info.datasets:
        rows.append(("Datasets", ", ".join(_linked(d, "datasets") for d in info.datasets)))
    for key in sorted(set(info.extra) - CHECKPOINT_KEYS):
        value = info.extra[key]
        text = value if isinstance(value, str) else f"`{json.dumps(value)}`"
        rows.append((key.replace("_", " ").capitalize(), text))
    return rows


def _evaluation_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    rows = []
    for result in results:
        dataset = result["dataset_name"] + (f" ({result['dataset_split']})" if result.get("dataset_split") else "")
        metric = result.get("metric_name") or result["metric_type"]
        value = result["metric_value"]
        value = f"{value:.4g}" if isinstance(value, float) else str(value)
        source = result.get("source_name") or "this checkpoint"
        if result.get("source_url"):
            source = f"[{source}]({result['source_url']})"
        rows.append((dataset, metric, value, source))
    return rows


def _mask_token_facts(model_dir, mask_token_id: int | None) -> dict[str, Any]:
    """The mask token's string and whether it was added (a special added token) or reused from the vocabulary."""
    facts = {"id": mask_token_id, "token": None, "added": None}
    if mask_token_id is None or not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
        return facts
    tokenizer = load_tokenizer(model_dir)
    facts["token"] = tokenizer.convert_ids_to_tokens(mask_token_id)
    facts["added"] = mask_token_id in tokenizer.added_tokens_decoder
    return facts


def load_tokenizer(model_dir):
    from transformers import AutoTokenizer

    # diffusion_lm registered its model types with the Auto classes on import, so no remote-code prompt here
    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)


def _count_parameters(model_dir) -> int | None:
    from safetensors import safe_open

    files = sorted(name for name in os.listdir(model_dir) if name.endswith(".safetensors"))
    if not files:
        return None
    total = 0
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def _human(number: int) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if number >= scale:
            return f"{number / scale:.1f}{suffix}"
    return str(number)


def _hub_id_or_none(name: str | None) -> str | None:
    """``name`` when it reads as a Hub repo id (not a local path); the card metadata may only name Hub repos."""
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _linked(name: str, kind: str = "") -> str:
    hub_id = _hub_id_or_none(name)
    if hub_id is None:
        return f"`{name}`"
    prefix = f"{kind}/" if kind else ""
    return f"[{hub_id}](https://huggingface.co/{prefix}{hub_id})"


def record_eval_results(model_dir: str | os.PathLike, results: list[dict[str, Any]], **card_kwargs) -> ModelCard:
    """Add evaluation results (``EvalResult`` keyword dicts) to a checkpoint's record and re-render its card.

    A result for the same (task, dataset, split, metric, metric name) replaces the old one
    (``training_record.merge_eval_results``).
    """
    require_diffusion_checkpoint_dir(model_dir)
    info = TrainingInfo.load(model_dir) or TrainingInfo()
    info.eval_results = merge_eval_results(info.eval_results, results)
    return write_card(model_dir, info, **card_kwargs)


__all__ = ["CARD_TEMPLATE_NAME", "GENERATED_CARD_MARKER", "card_template_path", "is_generated_card",
           "record_eval_results", "render_card", "write_card"]
