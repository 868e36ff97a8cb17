"""Diffusion checkpoints in and out: the one loader and the one save path.

- ``load_checkpoint``: a diffusion checkpoint (directory, Hub id, or a PEFT adapter directory on top of one) with its
  tokenizer, for every command, the evaluators, the lm-eval adapter and the recipes in ``training/``.
- ``save_checkpoint``: model, tokenizer, training record and card into a push-ready directory, each file written
  once; ``adapt``, ``sft --merge`` and ``import-reference`` save through it.
"""

from __future__ import annotations

import os

import torch

from .paths import read_json

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype):
    """A ``torch.dtype`` (or ``"auto"``) from a dtype or its name; None means float32."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype or torch.float32
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)} or a torch.dtype, got {dtype!r}")
    return getattr(torch, dtype)


def load_checkpoint(
    path: str,
    *,
    dtype: torch.dtype | str | None = torch.float32,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    what: str = "model",
):
    """``(model, tokenizer)`` of a diffusion checkpoint, in eval mode.

    ``path`` is a Hub id, a checkpoint directory or a PEFT adapter directory (``adapter_config.json``; its base is
    loaded from ``base_model_name_or_path`` and the adapter put on top; the adapter's own tokenizer wins when it has
    one). ``dtype``: a ``torch.dtype``, one of ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``
    (default float32). ``device``: where to move the model (None: where transformers loads it, the CPU).

    Trust rule: checkpoints of diffusion-lm's model types always load with the installed library's classes, so no
    code from the checkpoint runs. Any other checkpoint must be a diffusion LM (its config names a
    ``mask_token_id``) and brings its own code, which runs only with ``trust_remote_code=True``.
    ``what`` names the argument in error messages (``"MODEL_DIR"``, ``"--model"``).
    FileNotFoundError for a missing local path, ValueError for a checkpoint that is not a diffusion LM.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

    from .models import DIFFUSION_MODEL_TYPES, is_diffusion_config
    from .paths import looks_local, resolve_model_reference

    torch_dtype = resolve_dtype(dtype)
    path = resolve_model_reference(path, what)
    adapter = read_json(os.path.join(path, "adapter_config.json")) if os.path.isdir(path) else None
    if adapter is not None:
        base_path = adapter.get("base_model_name_or_path")
        if not base_path:
            raise ValueError(f"adapter {path} does not name its base model (base_model_name_or_path)")
        if looks_local(base_path) and not os.path.exists(os.path.expanduser(base_path)):
            raise FileNotFoundError(f"adapter {path} names its base model {base_path}, which does not exist "
                                    "(from this working directory)")
        base, tokenizer = load_checkpoint(base_path, dtype=dtype, trust_remote_code=trust_remote_code,
                                          what=f"the base model of adapter {path}")
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, path)
        if os.path.isfile(os.path.join(path, "tokenizer_config.json")):
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    else:
        config_dict, _ = PretrainedConfig.get_config_dict(path)
        model_type = config_dict.get("model_type")
        if not is_diffusion_config(config_dict):
            raise ValueError(f"{path} is a {model_type!r} checkpoint, not a diffusion LM: adapt it first "
                             "(`diffusion-lm adapt`)")
        ours = model_type in DIFFUSION_MODEL_TYPES
        if not ours and not trust_remote_code:
            raise ValueError(f"{path} is a {model_type!r} diffusion checkpoint with its own code; it runs only with "
                             "trust_remote_code=True (--trust-remote-code)")
        trust = trust_remote_code and not ours  # ours: the library's classes, never the checkpoint's copy
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
        quantization = getattr(config, "quantization_config", None)
        if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
            # a checkpoint converted from GGUF holds dequantised weights; the stale entry would mark it as quantized
            # (and Trainer refuses to fine-tune quantized models)
            del config.quantization_config
        model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch_dtype, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def save_checkpoint(
    model,
    tokenizer,
    directory: str | os.PathLike,
    record=None,
    *,
    tags: list[str] | None = None,
    repo_id: str | None = None,
    weights_saved: bool = False,
    **save_kwargs,
) -> str:
    """Write a push-ready checkpoint into ``directory``: model (weights, config, code), tokenizer, training record
    (``diffusion_lm_training.json``, when ``record`` is given) and the model card (``README.md``), each once.
    Returns ``directory``.

    ``record``: a ``TrainingInfo`` or its dict (validated before anything is written). ``tags``: extra card tags
    (default: the model's ``model_tags``). ``repo_id``: the model id the card's usage snippet loads (default: the
    directory's name). ``weights_saved=True``: the weights and config are already in ``directory`` (a Trainer's
    ``save_model``, which gathers sharded weights on every process); only the rest is written. Other keyword
    arguments go to ``model.save_pretrained``. ValueError when the model is not a diffusion-lm model, its mask token
    disagrees with the tokenizer's, or the result is not push-ready (``push.push_readiness_problems``).
    """
    from .model_card import write_card
    from .modeling.modeling_diffusion_compat import DiffusionAutoMapMixin
    from .push import ensure_push_ready
    from .training_record import TrainingInfo

    if not isinstance(model, DiffusionAutoMapMixin):
        raise ValueError(
            f"save_checkpoint expects a diffusion-lm model, got {type(model).__name__} "
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
    info = TrainingInfo.coerce(record)
    os.makedirs(directory, exist_ok=True)
    if not weights_saved:
        model.save_pretrained(directory, **save_kwargs)
    tokenizer.save_pretrained(directory)
    write_card(directory, info, repo_id=repo_id, tags=tags if tags is not None else getattr(model, "model_tags", None))
    ensure_push_ready(directory)
    return str(directory)


__all__ = ["DTYPE_NAMES", "default_device", "load_checkpoint", "resolve_dtype", "save_checkpoint"]
