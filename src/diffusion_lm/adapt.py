"""The settings of ``diffusion-lm adapt`` and their reconciliation with a recorded run.

``AdaptSettings`` is every knob of an adaptation run (a YAML key, an attribute and a flag each);
``resolve_settings`` merges defaults, a preset or config file and the command line. A run records its settings in
its output directory before the first step (``RUN_RECORD_NAME``): ``--resume`` continues from that record, refusing
a flag that contradicts it, and ``resume_checkpoint`` picks the checkpoint to continue from. The run itself is
``diffusion_lm.adapt_run``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field

from .checkpoint import checkpoint_problem, checkpoint_step, latest_intact_checkpoint, require_free_output_dir
from .conversion import DEFAULT_MASK_TOKEN
from .paths import read_json, write_json
from .presets import load_preset
from .training_settings import check_attention_settings, check_block_curriculum

# the settings of the run in output_dir, written before training starts: `--resume` alone continues from it
RUN_RECORD_NAME = ".adapt_run.json"
# settings a resumed run may change: they decide what is logged and kept, not what is trained
RESUME_MAY_CHANGE = {"resume", "output_dir", "sample_prompt", "logging_steps", "save_steps", "save_total_limit",
                     "report_to", "overwrite_output_dir"}
# local-path settings, compared as absolute paths (relative ones resolve against the run's working directory)
PATH_SETTINGS = ("base", "dataset", "eval_dataset")
FLOAT_SETTINGS = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2")


def _setting(default=None, help: str = "", *, factory=None, **argparse_options):
    """A field of ``AdaptSettings``: the YAML key, the attribute and the ``--flag`` (``HfArgumentParser`` reads the
    help text and any other argparse options from the metadata)."""
    metadata = {"help": help, **argparse_options}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class AdaptSettings:
    """Every knob of an adaptation run. Defaults are the embedded, offline, CPU-sized demo.

    One name per setting: the field name is the key of a config / preset YAML file (``hub_configs/*.yaml``,
    ``diffusion-lm adapt --config FILE``), the attribute, and the command-line flag (``--block_size`` or
    ``--block-size``); ``diffusion-lm adapt`` parses this dataclass with ``transformers.HfArgumentParser``.
    """

    base: str | None = _setting(None, "AR checkpoint: Hub id, directory or .gguf file (default: the embedded "
                                      "SmolLM2-135M-Instruct)")
    dataset: str | None = _setting(None, "Hub dataset name or local txt/json/jsonl/csv/parquet file(s) (default: "
                                         "text sampled from the base model)")
    dataset_config: str | None = _setting(None, "Hub dataset configuration name")
    dataset_split: str = _setting("train", "split to train on")
    text_column: str = _setting("text", "column holding the documents")
    streaming: bool = _setting(False, "stream the dataset instead of downloading it")
    eval_dataset: str | None = _setting(None, "held-out text file(s) for the diffusion loss during/after training")
    eval_samples: int = _setting(64, "held-out blocks to evaluate on")
    output_dir: str = _setting("runs/diffusion-lm-adapt", "where checkpoints and the final model go (with a config "
                                                          "file or preset: runs/diffusion-lm-NAME)")
    mask_token: str | None = _setting(DEFAULT_MASK_TOKEN, "add this string as the [MASK] token")
    reuse_mask_token_id: int | None = _setting(None, "use an existing token id as [MASK] (e.g. 10541 for GPT-2, 811 "
                                                     "for LLaMA) instead of adding --mask-token")
    block_size: int = _setting(128, "tokens per packed training sequence")
    batch_size: int = _setting(4, "sequences per device per step")
    gradient_accumulation_steps: int = _setting(1, "micro-batches per optimizer step")
    # the embedded demo: 30 block-diffusion steps cost what 60 full-attention steps do
    max_steps: int = _setting(30, "optimizer steps")
    anneal_steps: int = _setting(10, "steps of attention-mask annealing (0 = the target attention from the start)")
    learning_rate: float = _setting(1e-4, "peak learning rate")
    lr_scheduler_type: str = _setting("cosine", "transformers scheduler name (cosine, constant, linear, ...)")
    warmup_steps: int = _setting(3, "learning-rate warm-up steps")
    weight_decay: float = _setting(0.0, "AdamW weight decay")
    adam_beta1: float = _setting(0.9, "AdamW beta1")
    adam_beta2: float = _setting(0.999, "AdamW beta2")
    loss_normalization: str = _setting("masked_tokens", "divide the loss by the masked tokens (reference) or by the "
                                                        "modelled tokens (elbo)", choices=["masked_tokens", "elbo"])
    bf16: bool = _setting(False, "bf16 mixed precision (GPU)")
    gradient_checkpointing: bool = _setting(False, "recompute activations in the backward pass")
    attn_implementation: str | None = _setting(None, "attention kernels", choices=["eager", "sdpa",
                                                                                   "flash_attention_2"])
    # block diffusion (METHOD.md section 9) is the default: at the demo's budget it gives the better model and
    # sample (README); "bidirectional" is the paper's full-attention objective, which its presets select
    attention_mode: str = _setting("block", "block: block diffusion, bidirectional inside blocks of "
                                            "--diffusion-block-size positions and causal across them; bidirectional: "
                                            "full-attention diffusion (the paper's objective)",
                                   choices=["bidirectional", "block"])
    diffusion_block_size: int | None = _setting(4, "positions per block with --attention-mode block (divides "
                                                    "--block-size; dropped with bidirectional unless given)")
    context_attention: str | None = _setting(None, "with --attention-mode block: how the context (prompt, "
                                                    "committed blocks) attends - causal (token-causal: the context "
                                                    "stream is the AR model itself, which --ar-loss-weight trains and "
                                                    "causal verification decodes with; the default) or block "
                                                    "(block-causal, BD3-LM)",
                                             choices=["block", "causal"])
    ar_loss_weight: float | None = _setting(None, "next-token (AR) loss on the clean stream beside the diffusion "
                                                  "loss (needs causal context; default: 1 with causal context, else 0)")
    distill_weight: float | None = _setting(None, "distillation from the frozen AR base: each scored prediction is "
                                                  "trained against (1 - w) * the token + w * the base's next-token "
                                                  "distribution (default: 0.5 for causal-context block models, else "
                                                  "0 = off)")
    distill_top_k: int = _setting(64, "teacher tokens kept per position (renormalised)")
    block_curriculum: str | None = _setting(None, "block sizes and the steps where each starts, 'SIZE:STEP,...' "
                                                  "(e.g. 1:0,4:20,16:40; size 1 is the AR model); ends at "
                                                  "--diffusion-block-size")
    lora_r: int = _setting(0, "0: train every weight; > 0: a PEFT LoRA adapter of this rank on every linear layer "
                              "over the frozen base (plus the [MASK] embedding row), merged into the saved model")
    lora_alpha: int | None = _setting(None, "LoRA alpha (default 2 x --lora-r)")
    # ablations of the method (METHOD.md): False reads position j's prediction at j instead of j - 1
    shift: bool = _setting(True, "read each position's prediction one to the left (the AR shift); --no-shift is the "
                                 "ablation")
    # ablation: same architecture and tokenizer, randomly initialised weights (the AR weights are not used)
    from_scratch: bool = _setting(False, "ablation: random initialisation of the base's architecture instead of its "
                                         "weights")
    seed: int = _setting(42, "random seed (data order, noise, initialisation)")
    logging_steps: int = _setting(5, "log every N steps")
    save_steps: int = _setting(50, "checkpoint every N steps")
    save_total_limit: int | None = _setting(2, "checkpoints kept")
    # default with eval_dataset: evaluate only at start (if asked) and at the end
    eval_steps: int | None = _setting(None, "evaluate every N steps (needs --eval-dataset; default: at the end)")
    eval_on_start: bool = _setting(False, "also evaluate before the first step")
    # "latest" (or True from Python) = last checkpoint in output_dir, or a checkpoint path
    resume: str | None = _setting(None, "resume from the last checkpoint in --output-dir (no value), or from the "
                                        "given checkpoint directory", nargs="?", const="latest")
    # a run never replaces another run's finished model (or checkpoints) unasked
    overwrite_output_dir: bool = _setting(False, "start a new run in an --output-dir that holds another run's "
                                                 "finished model or checkpoints (they are replaced)",
                                          aliases=["--overwrite"])
    report_to: str = _setting("none", "none, tensorboard, wandb, ...")
    sample_prompt: str | None = _setting("The history of", "prompt of the sample generated at the end ('' or "
                                                           "--no-sample: none)")
    extra_training_args: dict = _setting(help="more DiffusionTrainingArguments, as a mapping (config files only)",
                                         factory=dict)

    def apply(self, values: dict, source: str) -> None:
        """Set the named fields; ValueError naming any key that is not a field (a config file's typo)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))} in {source}; settings are the "
                             "fields of AdaptSettings (`diffusion-lm adapt --help`)")
        for name, value in values.items():
            setattr(self, name, _number(name, value))

    def validate(self) -> None:
        """ValueError naming the setting (and its CLI flag) for values no run can use; nothing is loaded."""
        at_least = {"block_size": 2, "batch_size": 1, "gradient_accumulation_steps": 1, "max_steps": 1,
                    "save_steps": 1, "logging_steps": 1, "eval_samples": 1, "anneal_steps": 0, "warmup_steps": 0}
        optional_at_least = {"eval_steps": 1, "save_total_limit": 1, "reuse_mask_token_id": 0}
        for name, minimum in [*at_least.items(), *optional_at_least.items()]:
            value = getattr(self, name)
            if value is None and name in optional_at_least:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{_flag(name)} must be an integer >= {minimum}, got {value!r}")
        for name in ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"{_flag(name)} must be a number, got {value!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"{_flag('learning_rate')} must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"{_flag('weight_decay')} must be >= 0, got {self.weight_decay}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.reuse_mask_token_id is None and not self.mask_token:
            raise ValueError("--mask-token must be a non-empty string (or pass --reuse-mask-token-id)")
        if self.eval_steps is not None and self.eval_dataset is None:
            raise ValueError("--eval-steps needs --eval-dataset")
        if self.streaming and self.dataset is None:
            raise ValueError("--streaming needs --dataset (the embedded corpus is sampled, not streamed)")
        check_attention_settings(self.attention_mode, self.diffusion_block_size, self.block_size,
                                 self.attn_implementation)
        self.validate_adaptation_recipe()

    @property
    def effective_context_attention(self) -> str:
        """``context_attention`` with its default: causal for block models."""
        return self.context_attention or "causal"

    @property
    def causal_context(self) -> bool:
        return self.attention_mode == "block" and self.effective_context_attention == "causal"

    @property
    def effective_ar_loss_weight(self) -> float:
        """``ar_loss_weight`` with its default: 1 where the clean stream is causal, else 0."""
        return self.ar_loss_weight if self.ar_loss_weight is not None else float(self.causal_context and self.shift)

    @property
    def effective_distill_weight(self) -> float:
        """``distill_weight`` with its default: 0.5 for causal-context block models, else 0."""
        return self.distill_weight if self.distill_weight is not None else (0.5 if self.causal_context else 0.0)

    def validate_adaptation_recipe(self) -> None:
        """The teacher, AR-loss, curriculum and LoRA settings (ValueError naming the flag)."""
        for name in ("distill_weight", "ar_loss_weight"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{_flag(name)} must be a number >= 0, got {value!r}")
        if self.effective_distill_weight > 1:
            raise ValueError(f"--distill-weight must be in [0, 1], got {self.distill_weight}")
        for name, minimum in (("distill_top_k", 1), ("lora_r", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{_flag(name)} must be an integer >= {minimum}, got {value!r}")
        if self.lora_alpha is not None and (not isinstance(self.lora_alpha, int) or self.lora_alpha < 1 or
                                            not self.lora_r):
            raise ValueError(f"--lora-alpha must be an integer >= 1 and needs --lora-r > 0, got {self.lora_alpha!r}")
        if self.context_attention not in (None, "block", "causal"):
            raise ValueError(f"--context-attention must be 'block' or 'causal', got {self.context_attention!r}")
        block = self.attention_mode == "block"
        if self.context_attention == "causal" and not block:
            raise ValueError("--context-attention causal needs --attention-mode block")
        if self.effective_ar_loss_weight and (not self.causal_context or not self.shift):
            raise ValueError("--ar-loss-weight needs --attention-mode block with --context-attention causal and the "
                             "shift: under block-causal context the clean stream sees the tokens it would predict")
        if self.block_curriculum is not None:
            check_block_curriculum(self.block_curriculum, self.diffusion_block_size if block else None,
                                   self.block_size)

    def run_record(self) -> dict:
        """The settings as saved in ``output_dir``: what `--resume` continues (JSON values only)."""
        record = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        record["working_dir"] = os.getcwd()  # relative paths in the record resolve against it
        return record


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _number(name: str, value):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: numbers for the float fields, as the command line parses them."""
    if isinstance(value, str) and name in FLOAT_SETTINGS:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _absolute_reference(value, working_dir: str):
    """A local path as an absolute path (relative to ``working_dir``); Hub ids and None as they are."""
    from .paths import looks_local

    if not isinstance(value, str):
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return os.path.normpath(expanded)
    candidate = os.path.join(working_dir, expanded)
    if looks_local(value) or os.path.exists(candidate):
        return os.path.normpath(candidate)
    return value


def load_run_record(output_dir: str) -> dict | None:
    path = os.path.join(output_dir, RUN_RECORD_NAME)
    try:
        record = read_json(path, f"run record {path}")
    except ValueError as error:
        raise ValueError(f"{error}; start a new run") from None
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ValueError(f"run record {path} is not a JSON object; start a new run")
    return record


def save_run_record(settings: "AdaptSettings") -> None:
    write_json(os.path.join(settings.output_dir, RUN_RECORD_NAME), settings.run_record())


def contradictions(record: dict, requested: dict, requested_dir: str | None = None) -> list[str]:
    """``--flag value`` (recorded value) for each requested setting that differs from the run record."""
    requested_dir = requested_dir or os.getcwd()
    recorded_dir = record.get("working_dir") or requested_dir
    found = []
    for name, value in requested.items():
        if name in RESUME_MAY_CHANGE or name not in record:
            continue
        recorded = record[name]
        wanted = json.loads(json.dumps(value, default=str))
        if name in PATH_SETTINGS:
            recorded, wanted = _absolute_reference(recorded, recorded_dir), _absolute_reference(wanted, requested_dir)
        if wanted != recorded:
            found.append(f"{_flag(name)} {value!r} (the run used {record[name]!r})")
    return found


def settings_from_record(record: dict, output_dir: str) -> "AdaptSettings":
    """The recorded run's settings, with relative local paths resolved against the run's working directory when
    they do not resolve from here."""
    names = {f.name for f in dataclasses.fields(AdaptSettings)}
    settings = AdaptSettings(**{k: v for k, v in record.items() if k in names})
    working_dir = record.get("working_dir")
    for name in PATH_SETTINGS:
        value = getattr(settings, name)
        if isinstance(value, str) and working_dir and not os.path.exists(os.path.expanduser(value)):
            candidate = _absolute_reference(value, working_dir)
            if candidate != value and os.path.exists(candidate):
                setattr(settings, name, candidate)
    settings.output_dir = output_dir
    return settings


def config_name(config: str) -> str:
    """The run name a preset or config file gives the default output directory: ``gpt2``, ``my-run.yaml`` -> my-run."""
    return os.path.splitext(os.path.basename(config))[0] if config.endswith((".yaml", ".yml")) else \
        os.path.basename(config)


def resolve_settings(config: str | None, overrides: dict) -> AdaptSettings:
    """Defaults, then the config file (a preset name or a YAML path, keys = ``AdaptSettings`` fields), then explicit
    overrides (CLI flags), in that order of precedence. Without ``output_dir`` in either, a config's runs go to
    ``runs/diffusion-lm-NAME``.

    With ``resume`` and a run record in the output directory, the record is the run: its settings are used, and a
    config value or flag that contradicts it is a ValueError naming it (logging / saving flags may change).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config_values = load_preset(config) if config else {}
    source = f"config {config!r}"
    AdaptSettings().apply(config_values, source)  # unknown keys, before anything else
    if overrides.get("resume"):
        resumed = _resumed_settings(config, config_values, overrides)
        if resumed is not None:
            return resumed
    settings = AdaptSettings()
    if config:
        settings.apply(config_values, source)
        settings.output_dir = _default_output_dir(config, config_values)
    settings.apply(overrides, "arguments")
    if settings.attention_mode != "block" and "diffusion_block_size" not in {**config_values, **overrides}:
        settings.diffusion_block_size = None  # the default block size goes with the default (block) objective
    if settings.reuse_mask_token_id is not None and "mask_token" not in overrides:
        settings.mask_token = None
    settings.validate()
    return settings


def _default_output_dir(config: str | None, config_values: dict) -> str:
    if config_values.get("output_dir"):
        return config_values["output_dir"]
    return f"runs/diffusion-lm-{config_name(config)}" if config else AdaptSettings.output_dir


def _resumed_settings(config: str | None, config_values: dict, overrides: dict) -> AdaptSettings | None:
    """The recorded run of the output directory (None when it has no record)."""
    output_dir = overrides.get("output_dir")
    resume = overrides["resume"]
    if output_dir is None and isinstance(resume, str) and resume not in ("latest", "true") and os.path.isdir(resume):
        output_dir = os.path.dirname(os.path.normpath(resume))  # --resume runs/x/checkpoint-40 alone
    if output_dir is None:
        output_dir = _default_output_dir(config, config_values)
    record = load_run_record(output_dir)
    if record is None:
        return None
    AdaptSettings().apply({k: v for k, v in overrides.items() if k != "resume"}, "arguments")  # unknown names
    requested = {**{k: _number(k, v) for k, v in config_values.items()}, **overrides}
    if "reuse_mask_token_id" in overrides and "mask_token" not in overrides:
        requested["mask_token"] = None
    problems = contradictions(record, requested)
    if problems:
        source = f" (from --config {config})" if config else ""
        raise ValueError(f"--resume: {problems[0]}{source} contradicts the run recorded in {output_dir}; drop the "
                         "flag to continue that run, or start a new one in another --output-dir")
    settings = settings_from_record(record, output_dir)
    settings.apply({k: v for k, v in overrides.items() if k in RESUME_MAY_CHANGE}, "arguments")
    settings.validate()
    return settings


def resume_checkpoint(settings: AdaptSettings) -> str | None:
    """The checkpoint to resume from (None: start from the base), after checking the run record agrees."""
    if settings.resume in (None, False, ""):
        return None
    record = load_run_record(settings.output_dir)
    if record is not None:
        problems = contradictions(record, dataclasses.asdict(settings))
        if problems:
            raise ValueError(f"resume: {problems[0]} contradicts the run recorded in {settings.output_dir}")
    if settings.resume in (True, "latest", "true"):
        # the newest checkpoint that is intact: a damaged newer one (full disk, dying node) is skipped with a warning
        last = latest_intact_checkpoint(settings.output_dir) if os.path.isdir(settings.output_dir) else None
        if last is None:
            if record is None:
                raise FileNotFoundError(f"--resume: nothing to resume in {settings.output_dir} (no run record, no "
                                        "checkpoint-* directory); drop --resume to start a new run")
            print(f"No checkpoint in {settings.output_dir} yet; starting the recorded run from the base model.",
                  flush=True)
            return None
    else:
        last = str(settings.resume)
        if not os.path.isfile(os.path.join(last, "trainer_state.json")):
            raise FileNotFoundError(f"--resume: {last} is not a checkpoint directory (no trainer_state.json)")
        problem = checkpoint_problem(last)
        if problem is not None:
            raise ValueError(f"--resume: checkpoint {last} is damaged: {problem}; resume from an earlier one")
    if record is None:  # a run from before run records: check what its checkpoint and corpus still tell
        embedded_corpus = os.path.join(settings.output_dir, "embedded_corpus.jsonl")
        if settings.dataset is None and not os.path.isfile(embedded_corpus):
            raise ValueError(f"--resume: {settings.output_dir} has no run record ({RUN_RECORD_NAME}) and was not "
                             "trained on the embedded corpus; pass the run's --base, --dataset and schedule flags")
        with open(os.path.join(last, "trainer_state.json"), encoding="utf-8") as f:
            recorded_max_steps = json.load(f).get("max_steps")
        if recorded_max_steps and recorded_max_steps != settings.max_steps:
            raise ValueError(f"--resume: --max-steps {settings.max_steps} contradicts the run's "
                             f"{recorded_max_steps} (from {last}/trainer_state.json)")
        print(f"No run record in {settings.output_dir}: resuming with the settings given.", flush=True)
    print(f"Resuming {settings.output_dir} from {last} (step {checkpoint_step(last)} of {settings.max_steps}).",
          flush=True)
    return last



def claim_output_dir(settings: AdaptSettings) -> None:
    """A new run's output directory: ValueError when it holds another run's finished model or checkpoints (unless
    ``overwrite_output_dir``); with ``overwrite_output_dir``, that run's checkpoints, record and sampled corpus go
    (its final model stays until the new one replaces it)."""
    from .checkpoint import require_free_output_dir

    require_free_output_dir(settings.output_dir, resumable=True, overwrite=settings.overwrite_output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # before the Trainer exists: torchrun / accelerate's rank
    if settings.overwrite_output_dir and main_process and os.path.isdir(settings.output_dir):
        for name in os.listdir(settings.output_dir):
            path = os.path.join(settings.output_dir, name)
            if name.startswith("checkpoint-") and os.path.isdir(path):
                shutil.rmtree(path)
            elif name in (RUN_RECORD_NAME, "embedded_corpus.jsonl"):
                os.remove(path)



def adaptation_recipe(settings: AdaptSettings) -> dict:
    """The recipe's settings that differ from plain diffusion training, for the run record and the card."""
    recipe = {}
    if settings.attention_mode == "block":
        recipe["context_attention"] = settings.effective_context_attention
    if settings.effective_ar_loss_weight:
        recipe["ar_loss_weight"] = settings.effective_ar_loss_weight
    if settings.effective_distill_weight:
        recipe.update(distill_weight=settings.effective_distill_weight, distill_top_k=settings.distill_top_k,
                      distill_teacher="the AR base (" + ("LoRA adapter disabled" if settings.lora_r else
                                                         "frozen copy") + ")")
    if settings.block_curriculum:
        recipe["block_curriculum"] = settings.block_curriculum
    if settings.lora_r:
        recipe.update(lora_r=settings.lora_r, lora_alpha=settings.lora_alpha or 2 * settings.lora_r,
                      lora_merged=True)
    return recipe


__all__ = ["RUN_RECORD_NAME", "AdaptSettings", "adaptation_recipe", "claim_output_dir", "config_name", "contradictions",
           "load_run_record", "resolve_settings", "resume_checkpoint", "save_run_record", "settings_from_record"]
