"""Import of the released reference checkpoints (METHOD.md section 6) into diffusion-lm's classes.

Two layouts exist:

- **DiffuGPT** (diffusionfamily/diffugpt-s, -m): a GPT-2 ``config.json`` and tokenizer, and one ``model.safetensors``
  written by a wrapper module: ``embed_tokens.weight``, ``denoise_model.<GPT2Model keys without wte>`` and
  ``lm_head.weight`` (tied, may be absent). The mask token is id 10541 for -s (its tokenizer has none) and the added
  token ``[¨M¨]`` (id 50257) for -m.
- **DiffuLLaMA** (diffusionfamily/diffullama): a plain ``LlamaForCausalLM`` checkpoint; mask token id 811.

The diffusion LMs published with their own remote code (LLaDA, Dream, Fast-dLLM v2, SDAR) are described in
``diffusion_lm.hub_imports`` and imported by the same entry point, ``import_reference``.

Weights are not changed; the output is a push-ready diffusion-lm checkpoint (see ``diffusion_lm.checkpoint.save_checkpoint``).
"""

from __future__ import annotations

import os

import torch
from huggingface_hub import ModelCard, snapshot_download
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .conversion import configure_generation, diffusion_config_from_ar, set_mask_token
from .checkpoint import resolve_dtype, save_checkpoint
from .evaluation.model_card import card_dataset_fields
from .hub_imports import (
    SUPPORTED_MODEL_TYPES,
    HubRelease,
    architecture_fields,
    diffusion_fields,
    hub_release,
    release_notes,
    release_weights,
)
from .models import diffusion_classes_for
from .paths import read_json
from .training_record import TrainingInfo
from .modeling.modeling_diffugpt import DiffuGPTForMaskedDiffusion
from .modeling.modeling_diffullama import DiffuLlamaForMaskedDiffusion

# mask ids the reference models were trained with, when their tokenizer files do not name a mask token
DEFAULT_MASK_TOKEN_IDS = {"diffugpt": 10541, "diffullama": 811}
DIFFUGPT_ADDED_MASK_TOKEN = "[¨M¨]"  # diffugpt-m's added token (id 50257)
# the causal-mask buffers older GPT-2 checkpoints carry are not weights; a bidirectional model has no use for them
IGNORED_UNEXPECTED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# what snapshot_download fetches: configs, tokenizer files, weights and the card, not training leftovers
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
SOURCE_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "README.md"]

_PAPER = "https://arxiv.org/abs/2410.17891"
# paper Table 1: the zero-shot tasks in the paper's column order, as ``evaluation.tasks`` names them; their card rows
# use the evaluator's dataset vocabulary (``card_dataset_fields``), so a measured result sits beside the paper's
_TABLE1_TASKS = ("lambada", "hellaswag", "winogrande", "siqa", "piqa")


def _paper_results(accuracies: tuple[float, ...], rouge: tuple[float, float, float]) -> list[dict]:
    """Paper Table 1 as EvalResult keyword dicts: accuracies in task order, ROCStories infilling ROUGE-1/2/L."""
    source = {"source_name": "Gong et al. 2025, Table 1", "source_url": _PAPER}
    results = [
        {**card_dataset_fields(task), "metric_type": "accuracy", "metric_value": value, **source}
        for task, value in zip(_TABLE1_TASKS, accuracies)
    ]
    results += [
        {**card_dataset_fields("rocstories"), "metric_type": metric, "metric_value": value, **source}
        for metric, value in zip(("rouge1", "rouge2", "rougeL"), rouge)
    ]
    return results


# What METHOD.md states about each release's adaptation and results, for its card (shown as reported, not re-run).
REFERENCE_RELEASES = {
    "diffusionfamily/diffugpt-s": dict(
        base_model="openai-community/gpt2", anneal_steps=10_000,
        eval_results=_paper_results((21.6, 33.4, 50.8, 37.0, 57.7), (13.7, 1.4, 12.6)),
    ),
    "diffusionfamily/diffugpt-m": dict(
        base_model="openai-community/gpt2-medium", steps=160_000, block_size=1024, anneal_steps=10_000,
        learning_rate=3e-4, global_batch_size=1280,
        eval_results=_paper_results((30.3, 37.2, 52.6, 39.0, 59.6), (18.7, 2.7, 17.0)),
    ),
    "diffusionfamily/diffullama": dict(
        base_model="meta-llama/Llama-2-7b-hf", tokens=65_000_000_000, block_size=2049, anneal_steps=0,
        learning_rate=2e-5,
        eval_results=_paper_results((53.9, 58.7, 56.4, 43.2, 63.3), (23.3, 5.5, 21.2)),
    ),
}


def resolve_source(src: str, *, revision: str | None = None, token: str | None = None) -> str:
    """Local directory of ``src``: a directory as it is, or a Hub repo id downloaded with ``snapshot_download``."""
    if os.path.isdir(src):
        return src
    if os.path.exists(src):
        raise ValueError(f"SRC must be a checkpoint directory or a Hub repo id, got the file {src}")
    try:
        validate_repo_id(src)
    except HFValidationError:
        raise ValueError(f"SRC {src!r} is neither a local directory nor a Hub repo id") from None
    path = snapshot_download(src, revision=revision, token=token, allow_patterns=SOURCE_FILES)
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):  # an older repo with .bin weights only
        path = snapshot_download(src, revision=revision, token=token,
                                 allow_patterns=SOURCE_FILES + ["pytorch_model*.bin"])
    return path


def detect_layout(directory: str) -> str:
    """``"diffugpt"``, ``"diffullama"`` or a Hub release's model_type (``hub_imports.HUB_RELEASES``, lower case);
    ValueError naming what was found otherwise."""
    if os.path.isfile(os.path.join(directory, "adapter_config.json")):
        raise ValueError(f"{directory} holds a LoRA adapter: import its base model, then load the adapter with PEFT")
    config = read_json(os.path.join(directory, "config.json"))
    if config is None:
        raise ValueError(f"{directory} has no config.json")
    names = set(_weight_shapes(directory))
    model_type = config.get("model_type")
    if model_type == "gpt2":
        if "embed_tokens.weight" in names and any(name.startswith("denoise_model.") for name in names):
            return "diffugpt"
        raise ValueError(
            f"{directory} is a GPT-2 checkpoint without the DiffuGPT wrapper keys (embed_tokens.*, denoise_model.*); "
            "convert an autoregressive checkpoint with `diffusion-lm adapt` instead"
        )
    if model_type == "llama":
        if "model.embed_tokens.weight" in names:
            return "diffullama"
        raise ValueError(f"{directory} has a LLaMA config but not LlamaForCausalLM weights (model.embed_tokens.*)")
    if hub_release(model_type) is not None:
        return str(model_type).lower()
    supported = ", ".join(f"{name} ({layout})" for name, layout in SUPPORTED_MODEL_TYPES.items())
    raise ValueError(f"{directory} has model_type {model_type!r}; the importable model types are {supported}")


def import_reference(
    src: str,
    out_dir: str | None = None,
    *,
    mask_token_id: int | None = None,
    revision: str | None = None,
    token: str | None = None,
    dtype: torch.dtype | str = "auto",  # or "float32", "bfloat16", "float16"
    repo_id: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Convert a released DiffuGPT / DiffuLLaMA / LLaDA / Dream / Fast-dLLM v2 / SDAR checkpoint (Hub id or
    directory) into our classes.

    ``mask_token_id`` overrides the release's mask id (DiffuGPT / DiffuLLaMA: the tokenizer's mask token, else
    ``[¨M¨]`` for DiffuGPT when present, else 10541 / 811; the Hub releases: their config's ``mask_token_id``, else
    the tokenizer's mask token, else their mask token's text, else the published id). A Hub release's published
    decoding settings become the generation defaults. With ``out_dir`` the result is saved there push-ready, card
    included.
    """
    dtype = resolve_dtype(dtype)  # fails on a bad name before anything is fetched
    directory = resolve_source(src, revision=revision, token=token)
    layout = detect_layout(directory)
    if not any(os.path.isfile(os.path.join(directory, name)) for name in TOKENIZER_FILES):
        raise ValueError(f"{directory} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    release = hub_release(layout)
    tokenizer = _load_tokenizer(directory, release)
    mask_token_id = _reference_mask_token_id(layout, tokenizer, mask_token_id, directory)
    if release is not None and mask_token_id == len(tokenizer):
        # the release's mask row right after the tokenizer's last id, but its tokenizer files do not name it: added
        # as a special token, it gets exactly that id
        tokenizer.add_special_tokens({"mask_token": release.mask_token})
    mask_token_id = set_mask_token(tokenizer, reuse_token_id=mask_token_id)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    if layout == "diffugpt":
        model = _load_diffugpt(directory, tokenizer, mask_token_id, dtype)
    elif layout == "diffullama":
        model = _load_diffullama(directory, tokenizer, mask_token_id, dtype)
    else:
        model = _load_hub_release(directory, release, tokenizer, mask_token_id, dtype)
    model.config.name_or_path = src
    configure_generation(model, tokenizer)
    if release is not None:  # the release's published decoding becomes the checkpoint's generation defaults
        model.generation_config.update(**release.decoding)
        model.generation_config.validate(strict=True)
    model.eval()
    if out_dir is not None:
        save_checkpoint(model, tokenizer, out_dir, _training_info(src, directory, release), repo_id=repo_id)
    return model, tokenizer


def _load_tokenizer(directory: str, release: HubRelease | None) -> PreTrainedTokenizerBase:
    """The release's tokenizer. One whose config maps AutoTokenizer to its own code (Dream's tokenization_dream.py,
    never fetched nor run) loads with the standard class of its files, and its saved config no longer names that
    code, so the imported checkpoint loads without it."""
    tokenizer_config = read_json(os.path.join(directory, "tokenizer_config.json")) or {}
    if release is None or "AutoTokenizer" not in tokenizer_config.get("auto_map", {}):
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    standard = PreTrainedTokenizerFast
    if not os.path.isfile(os.path.join(directory, "tokenizer.json")) and release.family.startswith("qwen"):
        standard = Qwen2Tokenizer  # Qwen's byte-level BPE from vocab.json + merges.txt
    tokenizer = standard.from_pretrained(directory)
    tokenizer.init_kwargs.pop("auto_map", None)
    tokenizer._auto_map = None  # what save_pretrained writes back as auto_map
    return tokenizer


def _reference_mask_token_id(layout: str, tokenizer, override: int | None, directory: str) -> int:
    if override is not None:
        return override
    release = hub_release(layout)
    if release is not None:
        configured = (read_json(os.path.join(directory, "config.json")) or {}).get("mask_token_id")
        if configured is not None:  # what the release was trained with, whatever its tokenizer files say
            return int(configured)
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    if layout == "diffugpt" and DIFFUGPT_ADDED_MASK_TOKEN in tokenizer.get_vocab():
        return tokenizer.convert_tokens_to_ids(DIFFUGPT_ADDED_MASK_TOKEN)
    if release is not None:
        return tokenizer.get_vocab().get(release.mask_token, release.mask_token_id)
    return DEFAULT_MASK_TOKEN_IDS[layout]


def _load_diffugpt(directory: str, tokenizer, mask_token_id: int, dtype) -> PreTrainedModel:
    # renamed by hand rather than with from_pretrained(key_mapping=...): a model loaded through a key mapping saves
    # its weights back under the mapped-from names, which would write the wrapper layout again
    weights = {_diffugpt_name(name): tensor for name, tensor in _load_weights(directory).items()}
    embeddings = weights["transformer.wte.weight"]
    lm_head = weights.pop("lm_head.weight", None)
    tied = lm_head is None or torch.equal(lm_head, embeddings)
    ar_config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
    config = diffusion_config_from_ar(
        ar_config,
        _checked_mask_id(mask_token_id, embeddings.shape[0]),
        mask_token_reused=_is_reused(mask_token_id, ar_config),
        vocab_size=embeddings.shape[0],  # an added mask token (diffugpt-m) can make it larger than the config says
        tie_word_embeddings=tied,
        pad_token_id=tokenizer.pad_token_id,
        shift=True,
        attention_mode="bidirectional",
    )
    if not tied:
        weights["lm_head.weight"] = lm_head
    model = DiffuGPTForMaskedDiffusion(config)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"weights in {directory} do not fit a GPT-2 of its config: {error}") from None
    _check_loading(directory, set(missing) - ({"lm_head.weight"} if tied else set()), unexpected)
    model.tie_weights()
    return model.to(embeddings.dtype if dtype == "auto" else dtype)


def _diffugpt_name(name: str) -> str:
    """Wrapper module name -> GPT2LMHeadModel name."""
    if name == "embed_tokens.weight":
        return "transformer.wte.weight"
    if name.startswith("denoise_model."):
        return "transformer." + name[len("denoise_model."):]
    return name


def _load_diffullama(directory: str, tokenizer, mask_token_id: int, dtype) -> PreTrainedModel:
    vocab_size = _weight_shapes(directory)["model.embed_tokens.weight"][0]
    ar_config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
    config = diffusion_config_from_ar(
        ar_config,
        _checked_mask_id(mask_token_id, vocab_size),
        mask_token_reused=_is_reused(mask_token_id, ar_config),
        pad_token_id=tokenizer.pad_token_id,
        shift=True,
        attention_mode="bidirectional",
    )
    model, loading_info = DiffuLlamaForMaskedDiffusion.from_pretrained(
        directory, config=config, dtype=dtype, output_loading_info=True
    )
    _check_loading(directory, loading_info["missing_keys"], loading_info["unexpected_keys"],
                   loading_info["mismatched_keys"])
    return model


def _load_hub_release(directory: str, release: HubRelease, tokenizer, mask_token_id: int, dtype) -> PreTrainedModel:
    """The release's weights under our names in the family's classes, built without a random initialisation (the
    parameters start on the meta device and take the release's tensors, in their stored dtype)."""
    from accelerate import init_empty_weights

    config_dict = read_json(os.path.join(directory, "config.json"))
    weights = release_weights(release, config_dict, _load_weights(directory), directory)
    embeddings = weights.get("model.embed_tokens.weight")
    if embeddings is None:
        raise ValueError(f"{directory} has a {release.name} config but no model.embed_tokens.weight tensor")
    fields = {**architecture_fields(release, config_dict), **diffusion_fields(release, config_dict),
              "vocab_size": embeddings.shape[0], "pad_token_id": tokenizer.pad_token_id,
              "mask_token_id": _checked_mask_id(mask_token_id, embeddings.shape[0])}
    config_class, model_class = diffusion_classes_for(release.family)
    config = config_class(**fields)
    with init_empty_weights(include_buffers=False):  # buffers (rotary frequencies) are computed, not loaded
        model = model_class(config)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"weights in {directory} do not fit a {release.name} of its config: {error}") from None
    _check_loading(directory, set(missing) - ({"lm_head.weight"} if config.tie_word_embeddings else set()),
                   unexpected)
    model.tie_weights()
    return model if dtype == "auto" else model.to(dtype)


def _is_reused(mask_token_id: int, ar_config) -> bool:
    """An id inside the AR vocabulary (811, 10541) is an ordinary token; one past it (diffugpt-m) was added."""
    return mask_token_id < ar_config.vocab_size


def _checked_mask_id(mask_token_id: int, vocab_size: int) -> int:
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask token id {mask_token_id} is outside the checkpoint's {vocab_size} embedding rows")
    return mask_token_id


def _check_loading(directory: str, missing, unexpected, mismatched=()) -> None:
    unexpected = [key for key in unexpected if not key.endswith(IGNORED_UNEXPECTED_SUFFIXES)]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights in {directory} do not match the reference layout: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}, mismatched {sorted(mismatched)}"
        )


def _weight_shapes(directory: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from safetensors headers (or .bin files, memory-mapped), without loading the weights."""
    from safetensors import safe_open

    shapes = {}
    for path in _weight_files(directory):
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt") as f:
                shapes.update({key: tuple(f.get_slice(key).get_shape()) for key in f.keys()})
        else:
            shapes.update({key: tuple(value.shape) for key, value in _load_bin(path).items()})
    return shapes


def _load_weights(directory: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = {}
    for path in _weight_files(directory):
        weights.update(load_file(path) if path.endswith(".safetensors") else _load_bin(path))
    return weights


def _weight_files(directory: str) -> list[str]:
    """The safetensors files when there are any, else the pytorch_model*.bin files."""
    names = sorted(os.listdir(directory))
    files = [n for n in names if n.endswith(".safetensors")]
    files = files or [n for n in names if n.startswith("pytorch_model") and n.endswith(".bin")]
    if not files:
        raise ValueError(f"no weights (*.safetensors or pytorch_model*.bin) in {directory}")
    return [os.path.join(directory, n) for n in files]


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)


def _training_info(src: str, directory: str, release: HubRelease | None = None) -> TrainingInfo:
    """The card's record: the release's published settings where known; license, languages, datasets from its card."""
    fields = dict(REFERENCE_RELEASES.get(src.rstrip("/"), {}))
    if fields:
        fields["notes"] = ("Adaptation settings and evaluation results are those reported for the reference release "
                           f"(Gong et al., ICLR 2025, [arXiv:2410.17891]({_PAPER})); they were not re-run here.")
    elif release is not None:
        fields["notes"] = release_notes(release, src)
    readme = os.path.join(directory, "README.md")
    if os.path.isfile(readme):
        card_data = ModelCard.load(readme, ignore_metadata_errors=True).data
        fields.setdefault("license", card_data.license)
        fields.setdefault("language", card_data.language or [])
        fields.setdefault("datasets", card_data.datasets or [])
    return TrainingInfo(stage="import", reference=src, **fields)

