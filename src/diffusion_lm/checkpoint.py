"""Diffusion checkpoints in and out: the one loader and the one save path.

- ``load_checkpoint``: a diffusion checkpoint (directory, Hub id, or a PEFT adapter directory on top of one) with its
  tokenizer, for every command, the evaluators, the lm-eval adapter and the recipes in ``training/``.
- ``save_checkpoint``: model, tokenizer, training record and card into a push-ready directory, each file written
  once; ``adapt``, ``sft --merge`` and ``import-reference`` save through it.
- ``save_final_model`` / ``replace_final_model``: a training run's final model into its output directory, replacing
  an older one by renames only, so a killed save never mixes the two.
- Trainer checkpoints: which one a resume continues from (``latest_intact_checkpoint``), and whether an output
  directory holds another run's work (``require_free_output_dir``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil

import torch

from .damaged_files import damaged_json_files, damaged_weight_files, torch_file_problem
from .paths import ordinary_permissions, read_json
from .training_record import TRAINING_RECORD_NAME

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None, flag: str = "--device") -> str:
    """The device to run on: ``device`` checked against this machine (None: ``default_device()``). ValueError naming
    the device and what to use instead when torch does not know it or this machine lacks it."""
    if device is None:
        return default_device()
    name = str(device)
    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{flag} {name!r} is not a torch device; use cpu, cuda, cuda:N or mps (leave {flag} out "
                         f"for {default_device()}, what this machine has)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{flag} {name}: CUDA is not available on this machine ({why}); use {flag} cpu, or leave "
                             f"{flag} out to run on {default_device()}")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); use one of those or {flag} cpu")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{flag} {name}: MPS (Apple GPU) is not available on this machine; use {flag} cpu, or leave "
                         f"{flag} out to run on {default_device()}")
    elif parsed.type not in ("cpu", "cuda", "mps", "meta") and not _backend_available(parsed.type):
        raise ValueError(f"{flag} {name}: torch has no usable {parsed.type!r} backend on this machine; use {flag} "
                         f"cpu, or leave {flag} out to run on {default_device()}")
    return name


def _backend_available(device_type: str) -> bool:
    module = getattr(torch, device_type, None)
    available = getattr(module, "is_available", None)
    try:
        return bool(available()) if callable(available) else False
    except Exception:  # noqa: BLE001 - a backend that cannot even say is not usable
        return False


@contextlib.contextmanager
def explain_checkpoint_errors(path: str, what: str = "model"):
    """Loading the checkpoint at ``path`` inside the block: errors that come from its files (a damaged weights file,
    a config.json that is not JSON or holds an invalid value) become ValueError naming the file and the problem, not
    an unexplained library exception."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised unchanged unless the checkpoint's files explain it
        explained = _checkpoint_error_message(error, path, what)
        if explained is None:
            raise
        raise ValueError(explained) from error


def _checkpoint_error_message(error: BaseException, path: str, what: str) -> str | None:
    local = os.path.isdir(path)
    config_file = os.path.join(path, "config.json") if local else f"config.json of {path}"
    name = type(error).__name__
    text = str(error)
    if local:  # a damaged file explains any failure: name it first
        damaged = damaged_json_files(path) + damaged_weight_files(path)
        if damaged:
            file, problem = damaged[0]
            return f"{what}: {file} is damaged: {problem}; re-download it or save the checkpoint again"
    if name == "StrictDataclassFieldValidationError":  # huggingface_hub's strict configs (transformers >= 5)
        field = getattr(error, "field", None) or (text.split("'")[1] if "'" in text else "?")
        cause = error.__cause__ or error
        return f"{what}: {config_file} has an invalid value for {field!r}: {_first_line(cause)}"
    if name == "StrictDataclassClassValidationError":
        cause = error.__cause__ or error
        return f"{what}: {config_file} has an invalid setting: {_first_line(cause)}"
    if isinstance(error, ValueError) and local and text.split():
        # a config's own check ("alg must be one of ...; got 'x'"): name the file that holds the field
        field = text.split()[0].strip("'\"`:")
        for file in ("generation_config.json", "config.json"):
            values = read_json(os.path.join(path, file))
            if isinstance(values, dict) and field in values:
                return f"{what}: {os.path.join(path, file)} has an invalid setting: {_first_line(error)}"
    if isinstance(error, OSError) and "not a valid JSON file" in text:
        return f"{what}: {config_file} is not valid JSON (damaged or cut short); re-download or re-save the checkpoint"
    weights_error = name == "SafetensorError" or "deserializ" in text or "PytorchStreamReader" in text or \
        "unexpected EOF" in text or "invalid load key" in text or name == "UnpicklingError"
    if weights_error:
        return f"{what}: a weights file of {path} is damaged ({_first_line(error)}); re-download it or save the " \
               "checkpoint again"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


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
    from transformers import AutoTokenizer

    from .paths import looks_local, resolve_model_reference

    torch_dtype = resolve_dtype(dtype)
    target = None if device is None else resolve_device(device)  # a device this machine lacks: before any loading
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

        with explain_checkpoint_errors(path, what):
            model = PeftModel.from_pretrained(base, path)
            if os.path.isfile(os.path.join(path, "tokenizer_config.json")):
                tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    else:
        with explain_checkpoint_errors(path, what):
            model, tokenizer = _load_diffusion_directory(path, torch_dtype, trust_remote_code)
    if target is not None:
        model = model.to(target)
    return model.eval(), tokenizer


def _load_diffusion_directory(path: str, torch_dtype, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

    from .models import DIFFUSION_MODEL_TYPES, is_diffusion_config

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
    return model, tokenizer


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
    ordinary_permissions(directory)  # safetensors leaves model.safetensors private (0600)
    return str(directory)


def checkpoint_step(checkpoint: str) -> int:
    """The optimizer step a Trainer checkpoint was saved at."""
    with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
        return int(json.load(f).get("global_step", 0))


FINAL_STAGING = ".final-staging"
FINAL_PREVIOUS = ".final-previous"
# top-level files of a final model in output_dir (what a new final model replaces as a whole)
FINAL_MODEL_FILES = (
    "config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json",
    "pytorch_model*.bin", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
    "chat_template.*", "README.md", TRAINING_RECORD_NAME, "training_args.bin", "*.py",
)


def final_model_files(directory: str, also: set[str] = frozenset()) -> list[str]:
    """Top-level files of the final model in ``directory`` (checkpoints, corpus and hidden files excluded)."""
    found = []
    for name in os.listdir(directory):
        if name.startswith(".") or not os.path.isfile(os.path.join(directory, name)):
            continue
        if name in also or any(fnmatch.fnmatch(name, pattern) for pattern in FINAL_MODEL_FILES):
            found.append(name)
    return found


def replace_final_model(staging: str, output_dir: str) -> None:
    """Put the complete model in ``staging`` in place of the one in ``output_dir``, by renames only.

    The old model's files leave first (config.json first of all), the new ones arrive after (config.json last):
    a kill at any point leaves a complete model or one without config.json that nothing loads, never new weights
    beside the old config, card or record. A resume rewrites the final model from the last checkpoint.
    """
    new_files = sorted(os.listdir(staging), key=lambda name: name == "config.json")
    previous = os.path.join(output_dir, FINAL_PREVIOUS)
    shutil.rmtree(previous, ignore_errors=True)
    os.makedirs(previous)
    old_files = final_model_files(output_dir, also=set(new_files))
    for name in sorted(old_files, key=lambda name: name != "config.json"):
        os.replace(os.path.join(output_dir, name), os.path.join(previous, name))
    for name in new_files:
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def save_final_model(trainer, tokenizer, output_dir: str, record: dict):
    """A ``Trainer``'s model with ``tokenizer``, its card, training ``record`` and trainer_state.json into
    ``output_dir``, replacing an older final model atomically (see ``replace_final_model``). Call on every process.
    Returns the saved model (a LoRA run's merged one)."""
    from .distillation import is_peft_model
    from .modeling.generation_diffusion import fast_decoding_defaults

    staging = os.path.join(output_dir, FINAL_STAGING)
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)  # left by a save that was killed
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = is_peft_model(model)
    if merged:  # the adapter is folded into the weights: the saved model is a plain diffusion checkpoint
        model = model.merge_and_unload()
    # the checkpoint's generation_config.json carries the measured fast-decoding defaults (README, "Fast decoding")
    model.generation_config.update(**fast_decoding_defaults(model.config))
    if not merged:
        trainer.save_model(staging)  # on every process: gathers sharded weights
    if trainer.args.should_save:
        # tokenizer, diffusion_lm_training.json and the README.md card, named after the output directory (not the
        # staging one)
        save_checkpoint(model, tokenizer, staging, record, repo_id=os.path.basename(os.path.abspath(output_dir)),
                        weights_saved=not merged)
        replace_final_model(staging, output_dir)
        trainer.save_state()
    trainer.accelerator.wait_for_everyone()
    return model


# what a Trainer checkpoint holds besides its weights, checked when present (torch.save archives)
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """What makes the Trainer checkpoint directory ``checkpoint`` unusable for resuming (None: intact): a missing or
    damaged ``trainer_state.json``, no weights, or a damaged weights, optimizer, scheduler or RNG file (as a full
    disk or a dying node leaves them). Checks headers and archive directories, not every byte."""
    checkpoint = os.fspath(checkpoint)
    state_file = os.path.join(checkpoint, "trainer_state.json")
    if not os.path.isfile(state_file):
        return "no trainer_state.json"
    damaged = dict(damaged_json_files(checkpoint))
    if state_file in damaged:
        return f"trainer_state.json is {damaged[state_file]}"
    state = read_json(state_file)
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json holds no global_step"
    if damaged:
        file, problem = next(iter(damaged.items()))
        return f"{os.path.basename(file)} is {problem}"
    weights = [name for name in os.listdir(checkpoint) if name.endswith((".safetensors", ".bin"))
               and not name.startswith("training_args")]
    if not weights and not any(name.startswith(("pytorch_model_fsdp", "global_step")) for name in
                               os.listdir(checkpoint)):
        return "no weights file"
    for file, problem in damaged_weight_files(checkpoint):
        return f"{os.path.basename(file)} is damaged: {problem}"
    for name in TRAINER_STATE_FILES:
        path = os.path.join(checkpoint, name)
        if os.path.isfile(path):
            problem = torch_file_problem(path)
            if problem:
                return f"{name} is damaged: {problem}"
    return None


def checkpoints_newest_first(directory: str | os.PathLike) -> list[str]:
    """The ``checkpoint-N`` directories of ``directory``, highest step first."""
    directory = os.fspath(directory)
    found = []
    for path in glob.glob(os.path.join(directory, "checkpoint-*")):
        suffix = os.path.basename(path)[len("checkpoint-"):]
        if suffix.isdigit() and os.path.isdir(path):
            found.append((int(suffix), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_intact_checkpoint(directory: str | os.PathLike, warn=None) -> str | None:
    """The newest checkpoint of ``directory`` that ``checkpoint_problem`` finds intact; each newer, damaged one is
    reported through ``warn`` (default: a warning on stderr naming it and what is wrong) and skipped. None when
    ``directory`` has no checkpoint; ValueError (one line) when it has checkpoints and none is intact."""
    import sys

    if warn is None:
        def warn(message):
            print(f"warning: {message}", file=sys.stderr, flush=True)

    checkpoints = checkpoints_newest_first(directory)
    skipped = []
    for checkpoint in checkpoints:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if skipped:
                warn(f"skipping {skipped[-1][0] if len(skipped) == 1 else ', '.join(c for c, _ in skipped)}: "
                     f"{'; '.join(p for _, p in skipped)}; resuming from {checkpoint}")
            return checkpoint
        skipped.append((checkpoint, problem))
    if skipped:
        details = "; ".join(f"{os.path.basename(c)}: {p}" for c, p in skipped)
        raise ValueError(f"--resume: no intact checkpoint in {os.fspath(directory)} ({details}); start a new run "
                         f"with {OVERWRITE_FLAG}")
    return None


OVERWRITE_FLAG = "--overwrite-output-dir"
# weights files of a finished model (a full model or a PEFT adapter) at the top of a directory
FINISHED_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def finished_model_in(directory: str | os.PathLike) -> str | None:
    """The weights file of the finished model ``directory`` holds (a saved model or adapter: its config and its
    weights at the top level), or None."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return None
    has_config = any(os.path.isfile(os.path.join(directory, name)) for name in ("config.json", "adapter_config.json"))
    for name in FINISHED_WEIGHTS:
        if has_config and os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def require_free_output_dir(directory: str | os.PathLike, *, resumable: bool, overwrite: bool = False) -> None:
    """ValueError when ``directory`` holds another run's finished model (or, for ``resumable`` commands, another
    run's checkpoints) and ``overwrite`` was not asked for: a run never replaces another run's work unasked. The
    message names the folder and the flags that proceed (``--resume`` when ``resumable``,
    ``--overwrite-output-dir``)."""
    if overwrite:
        return
    directory = os.fspath(directory)
    continue_hint = "pass --resume to continue that run, or " if resumable else "pass "
    finished = finished_model_in(directory)
    if finished is not None:
        raise ValueError(f"--output-dir {directory} already holds a finished model ({os.path.basename(finished)}); "
                         f"{continue_hint}{OVERWRITE_FLAG} to replace it (or choose another --output-dir)")
    checkpoints = checkpoints_newest_first(directory)
    if checkpoints:
        raise ValueError(f"--output-dir {directory} holds the checkpoints of an unfinished run "
                         f"({os.path.basename(checkpoints[0])}); {continue_hint}{OVERWRITE_FLAG} to start over (or "
                         "choose another --output-dir)")


__all__ = ["DTYPE_NAMES", "checkpoint_problem", "checkpoint_step", "default_device", "finished_model_in",
           "latest_intact_checkpoint", "load_checkpoint", "replace_final_model", "require_free_output_dir",
           "resolve_device", "resolve_dtype", "save_checkpoint", "save_final_model"]
