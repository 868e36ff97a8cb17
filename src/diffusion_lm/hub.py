"""Hub round trip: push-ready checkpoint directories, their model cards, and uploads.

A checkpoint directory is push-ready when it holds everything ``AutoModel.from_pretrained(dir,
trust_remote_code=True)`` needs with only torch and transformers installed: ``config.json`` with ``auto_map``, the
configuration / modeling / generation code files, safetensors weights, ``generation_config.json``, the tokenizer with
its mask token, and a ``README.md`` model card rendered from ``templates/diffusion_lm_card.md`` (also reachable as
``model_cards/diffusion_lm_card.md`` in the repository).

What produced a checkpoint is recorded next to it in ``diffusion_lm_training.json`` (see ``TrainingInfo``); the card
is rendered from that record plus what the checkpoint itself says (config, generation config, tokenizer, weights).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .modeling.modeling_diffusion_hub import TRAINER_LEFTOVER_FILES, files_to_upload

TRAINING_INFO_NAME = "diffusion_lm_training.json"
CARD_TEMPLATE_NAME = "diffusion_lm_card.md"
# the template says this in a comment; a README without it was written by hand and is never re-rendered
GENERATED_CARD_MARKER = "<!-- diffusion-lm model card -->"

STAGES = ("convert", "adapt", "sft", "import")
CARD_TAGS = ("diffusion-lm", "masked-diffusion")
FAMILY_NAMES = {"diffugpt": "GPT-2", "diffullama": "LLaMA", "diffuqwen2": "Qwen2"}
REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM")
# what checkpoint code may import: it runs as remote code where only torch and transformers are promised
# (huggingface_hub is a dependency of transformers; the model code uses it only to upload)
REMOTE_CODE_PACKAGES = {"torch", "transformers", "huggingface_hub"}
EVAL_RESULT_REQUIRED = ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
EVAL_RESULT_KEYS = {f.name for f in fields(EvalResult)}
# keys of the training record that describe the checkpoint itself: the card reads them from the checkpoint
CHECKPOINT_KEYS = {"shift", "mask_token", "mask_token_id", "mask_token_reused", "attention_mode"}
# files a Trainer leaves in its output directory that do not belong in a model repository
TRAINER_FILES = TRAINER_LEFTOVER_FILES

USAGE_PROMPT = "Once upon a time, there was a"
USAGE_INFILL_PREFIX = "The cat sat on the"
USAGE_INFILL_SUFFIX = "and then it was happy."


# ---------------------------------------------------------------------------------------------------------------
# the training record
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TrainingInfo:
    """What produced a checkpoint. Saved as ``diffusion_lm_training.json`` (one flat JSON object) and rendered into
    the card. Every key is optional; keys not listed here are kept in ``extra`` and shown as further settings.

    Keys that describe the checkpoint itself (``shift``, ``mask_token``, ``mask_token_id``, ``mask_token_reused``,
    ``attention_mode``) may be present; the card takes those from the checkpoint's config and tokenizer instead.
    """

    stage: str | None = None  # "convert", "adapt", "sft" or "import"
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
        self.eval_results = [_checked_eval_result(result) for result in self.eval_results]
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
        path = os.path.join(directory, TRAINING_INFO_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TrainingInfo | None":
        """The record saved in ``directory``, or None when it has none."""
        path = os.path.join(directory, TRAINING_INFO_NAME)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def coerce(cls, value: "TrainingInfo | dict | None") -> "TrainingInfo | None":
        if value is None or isinstance(value, cls):
            return value
        return cls.from_dict(value)


def _checked_eval_result(result: dict[str, Any]) -> dict[str, Any]:
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


def record_eval_results(model_dir: str | os.PathLike, results: list[dict[str, Any]], **card_kwargs) -> ModelCard:
    """Add evaluation results (``EvalResult`` keyword dicts) to a checkpoint's record and re-render its card.

    A result for the same (task, dataset, split, metric) replaces the old one.
    """
    _require_checkpoint_dir(model_dir)
    info = TrainingInfo.load(model_dir) or TrainingInfo()
    new = [_checked_eval_result(result) for result in results]

    def key(result):
        return tuple(result.get(k) for k in ("task_type", "dataset_type", "dataset_config", "dataset_split",
                                             "metric_type", "metric_name"))

    replaced = {key(result) for result in new}
    info.eval_results = [result for result in info.eval_results if key(result) not in replaced] + new
    return write_card(model_dir, info, **card_kwargs)


# ---------------------------------------------------------------------------------------------------------------
# the card
# ---------------------------------------------------------------------------------------------------------------
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
    _require_checkpoint_dir(model_dir)
    info = TrainingInfo.coerce(training_info) or TrainingInfo.load(model_dir) or TrainingInfo()
    config = _read_json(os.path.join(model_dir, "config.json"))
    generation = _read_json(os.path.join(model_dir, "generation_config.json")) or {}
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
        _require_checkpoint_dir(model_dir)
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
        rows.append(("Default decoding", ", ".join(parts)))
    return rows


def _adaptation_rows(info: TrainingInfo, config: dict, mask: dict) -> list[tuple[str, str]]:
    stage = {
        "convert": "conversion only (no diffusion training)",
        "adapt": "continual pre-training (adaptation)",
        "sft": "supervised fine-tuning",
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
    tokenizer = _load_tokenizer(model_dir)
    facts["token"] = tokenizer.convert_ids_to_tokens(mask_token_id)
    facts["added"] = mask_token_id in tokenizer.added_tokens_decoder
    return facts


def _load_tokenizer(model_dir):
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


# ---------------------------------------------------------------------------------------------------------------
# push-ready checkpoints
# ---------------------------------------------------------------------------------------------------------------
def save_for_hub(
    model,
    tokenizer,
    out_dir: str | os.PathLike,
    training_info: TrainingInfo | dict | None = None,
    *,
    repo_id: str | None = None,
    **save_kwargs,
) -> str:
    """Write a push-ready checkpoint: model (with code), tokenizer, training record and card. Returns ``out_dir``.

    Every checkpoint writer (adapt, sft, import-reference) calls this for its final directory. The record is also
    kept on the model (``model.training_info``), so a later ``model.save_pretrained`` / ``model.push_to_hub`` carries
    it on. Raises ValueError when the result is not push-ready (see ``push_readiness_problems``).
    """
    from .modeling.modeling_diffusion_hub import DiffusionAutoMapMixin

    if not isinstance(model, DiffusionAutoMapMixin):
        raise ValueError(
            f"save_for_hub expects a diffusion-lm model, got {type(model).__name__} "
            "(merge a PEFT adapter first with merge_and_unload())"
        )
    mask_token_id = model.config.mask_token_id
    if mask_token_id is None:
        raise ValueError("the model has no mask_token_id in its config")
    if tokenizer.mask_token_id != mask_token_id:
        raise ValueError(
            f"tokenizer mask token id {tokenizer.mask_token_id} differs from the model's mask_token_id "
            f"{mask_token_id}; set it with conversion.set_mask_token"
        )
    info = TrainingInfo.coerce(training_info)
    os.makedirs(out_dir, exist_ok=True)
    if info is not None:
        info.save(out_dir)
        model.training_info = info.to_dict()
    model.save_pretrained(out_dir, **save_kwargs)
    tokenizer.save_pretrained(out_dir)
    card = write_card(out_dir, repo_id=repo_id, tags=getattr(model, "model_tags", None))
    model.model_card_text = str(card)
    ensure_push_ready(out_dir)
    return str(out_dir)


def push_readiness_problems(model_dir: str | os.PathLike) -> list[str]:
    """What keeps ``model_dir`` from loading on the Hub with only torch + transformers (empty when push-ready)."""
    if not os.path.isdir(model_dir):
        return [f"{model_dir} is not a directory"]
    config = _read_json(os.path.join(model_dir, "config.json"))
    if config is None:
        return ["config.json is missing"]
    problems = []
    auto_map = config.get("auto_map") or {}
    for auto_class in REQUIRED_AUTO_CLASSES:
        if auto_class not in auto_map:
            problems.append(f"config.json auto_map has no {auto_class} entry")
    modules = {entry.split("--")[-1].rsplit(".", 1)[0] for entry in auto_map.values() if isinstance(entry, str)}
    checked: set[str] = set()
    for module in sorted(modules):
        problems += _code_problems(model_dir, f"{module}.py", checked)
    problems += _weight_problems(model_dir, config)
    if not os.path.isfile(os.path.join(model_dir, "generation_config.json")):
        problems.append("generation_config.json is missing")
    problems += _tokenizer_problems(model_dir, config.get("mask_token_id"))
    readme = os.path.join(model_dir, "README.md")
    if not os.path.isfile(readme):
        problems.append("README.md (model card) is missing")
    else:
        card = ModelCard.load(readme)
        if not card.data.to_dict():
            problems.append("README.md has no YAML metadata")
    return problems


def ensure_push_ready(model_dir: str | os.PathLike) -> None:
    problems = push_readiness_problems(model_dir)
    if problems:
        raise ValueError(f"{model_dir} is not ready to push: " + "; ".join(problems))


def _code_problems(model_dir, filename: str, checked: set[str]) -> list[str]:
    """Missing code files and imports the Hub environment will not have, following relative imports."""
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    if filename in checked:
        return []
    checked.add(filename)
    path = os.path.join(model_dir, filename)
    if not os.path.isfile(path):
        return [f"code file {filename} is missing"]
    problems = []
    # get_imports skips imports guarded by try/except, as transformers does when it checks remote code
    foreign = sorted(
        name for name in get_imports(path)
        if name not in REMOTE_CODE_PACKAGES and name not in sys.stdlib_module_names
    )
    if foreign:
        problems.append(f"{filename} imports {foreign}, which a torch + transformers environment lacks")
    for module in get_relative_imports(path):
        problems += _code_problems(model_dir, f"{module}.py", checked)
    return problems


def _weight_problems(model_dir, config: dict) -> list[str]:
    index = _read_json(os.path.join(model_dir, "model.safetensors.index.json"))
    if index is not None:
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing = [shard for shard in shards if not os.path.isfile(os.path.join(model_dir, shard))]
        return [f"weight shards missing: {missing}"] if missing or not shards else []
    if os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        return []
    return ["no safetensors weights (model.safetensors or model.safetensors.index.json)"]


def _tokenizer_problems(model_dir, mask_token_id: int | None) -> list[str]:
    if not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
        return ["tokenizer files are missing (tokenizer_config.json)"]
    if mask_token_id is None:
        return ["config.json has no mask_token_id"]
    tokenizer = _load_tokenizer(model_dir)
    if tokenizer.mask_token_id != mask_token_id:
        return [f"the tokenizer's mask token id is {tokenizer.mask_token_id}, the config's {mask_token_id}"]
    return []


# ---------------------------------------------------------------------------------------------------------------
# upload
# ---------------------------------------------------------------------------------------------------------------
def commit_operations(model_dir: str | os.PathLike, repo_id: str | None = None) -> list[CommitOperationAdd]:
    """The files an upload of ``model_dir`` commits, as huggingface_hub commit operations.

    The selection is ``files_to_upload`` (shared with ``model.push_to_hub``): Trainer leftovers (optimizer state,
    checkpoint-* folders, logs), pickles and hidden files stay behind, and a symbolic link pointing outside
    ``model_dir`` is refused. A card rendered by diffusion-lm is rendered again for ``repo_id`` so its usage snippet
    names the repository; a hand-written README.md is uploaded as it is.
    """
    model_dir = os.fspath(model_dir)
    operations = []
    for path_in_repo in files_to_upload(model_dir):
        path = os.path.join(model_dir, *path_in_repo.split("/"))
        if path_in_repo == "README.md" and repo_id is not None:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if is_generated_card(text):
                tags = ModelCard(text, ignore_metadata_errors=True).data.tags  # keep tags added since
                card = render_card(model_dir, repo_id=repo_id, tags=tags)
                operations.append(CommitOperationAdd("README.md", str(card).encode("utf-8")))
                continue
        operations.append(CommitOperationAdd(path_in_repo, path))
    return operations


def push_checkpoint(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
):
    """Upload a push-ready checkpoint directory to ``repo_id`` (created if needed) in one commit.

    The token comes from ``token``, else ``HF_TOKEN`` or the stored login (huggingface_hub's usual lookup).
    ``revision`` names a branch, created from main when it does not exist. Returns huggingface_hub's CommitInfo.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repo id {repo_id!r}: {error}") from None
    ensure_push_ready(model_dir)
    operations = commit_operations(model_dir, repo_id)  # refusals (links out of the folder) come before any request
    api = api or HfApi(token=token)
    created = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if created != repo_id:  # the card names the repository as the Hub spells it
        repo_id, operations = created, commit_operations(model_dir, created)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or "Upload diffusion-lm checkpoint",
        revision=revision,
        create_pr=create_pr,
    )


# ---------------------------------------------------------------------------------------------------------------
def _require_checkpoint_dir(model_dir) -> None:
    """A card describes a diffusion checkpoint: anything else would get a card that states false facts."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"checkpoint directory not found: {model_dir}")
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"{model_dir} has no config.json; is it a diffusion-lm checkpoint directory?")
    try:
        model_type = (_read_json(config_path) or {}).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config_path} is not a JSON object: {error}") from None
    if model_type not in FAMILY_NAMES:
        raise ValueError(
            f"{model_dir} is not a diffusion checkpoint (model_type {model_type!r}, expected one of "
            f"{', '.join(FAMILY_NAMES)}): adapt it first (`diffusion-lm adapt`)"
        )


def _read_json(path) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
