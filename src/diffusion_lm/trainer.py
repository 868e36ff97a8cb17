"""Continual pre-training of a diffusion LM through ``transformers.Trainer``.

``DiffusionTrainer`` only replaces what differs from causal-LM training: the loss (corrupt, predict masked tokens,
1/t weighting), the attention-annealing ratio per optimizer step, extra logged metrics, and atomic checkpoints.
Everything else (accelerate / DeepSpeed / FSDP, mixed precision, resume, logging) is the stock Trainer.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .modeling.attention_annealing import annealing_ratio
from .modeling.corruption import maskable_positions
from .modeling.diffusion_loss import LOSS_NORMALIZATIONS, DiffusionLossOutput
from .modeling.noise_schedule import DEFAULT_EPS
from .objective import block_diffusion_settings, diffusion_objective

# what an adaptation trains: full attention (the paper) or block diffusion (METHOD.md section 9)
TRAINING_ATTENTION_MODES = ("bidirectional", "block")


def check_attention_settings(
    attention_mode: str,
    diffusion_block_size: int | None,
    sequence_length: int | None = None,
    attn_implementation: str | None = None,
) -> None:
    """ValueError naming the setting (and its ``diffusion-lm adapt`` flag) for an attention set-up no run can train:
    an unknown mode, block mode without a block size >= 1 dividing the packed ``sequence_length``, a block size
    without block mode, or block mode on flash attention (which takes no attention pattern)."""
    if attention_mode not in TRAINING_ATTENTION_MODES:
        raise ValueError(f"attention_mode (--attention-mode) must be one of {TRAINING_ATTENTION_MODES}, "
                         f"got {attention_mode!r}")
    if attention_mode != "block":
        if diffusion_block_size is not None:
            raise ValueError("diffusion_block_size (--diffusion-block-size) is only used with attention_mode 'block' "
                             "(--attention-mode block)")
        return
    if diffusion_block_size is None:
        raise ValueError("attention_mode 'block' needs diffusion_block_size (--diffusion-block-size N)")
    flag = "diffusion_block_size (--diffusion-block-size)"
    if isinstance(diffusion_block_size, bool) or not isinstance(diffusion_block_size, int) or diffusion_block_size < 1:
        raise ValueError(f"{flag} must be an integer >= 1, got {diffusion_block_size!r}")
    if sequence_length is not None and sequence_length % diffusion_block_size:
        raise ValueError(f"{flag} {diffusion_block_size} must divide the packed sequence length, block_size "
                         f"(--block-size) {sequence_length}")
    if "flash" in (attn_implementation or ""):
        raise ValueError(f"attention_mode 'block' cannot run with attn_implementation {attn_implementation!r} "
                         "(--attn-implementation): flash kernels take no attention pattern; use sdpa or eager")


# shared by DiffusionTrainingArguments and DiffusionSFTConfig
STRATIFIED_NOISE_HELP = (
    "One noise level from each of B equal strata of (eps, 1) per micro-batch of B sequences (blocks: of B x blocks) "
    "instead of B independent draws: the same objective, 0.43x the gradient variance on SmolLM2-135M "
    "(benchmarks/gradient_variance.py)."
)


@dataclass
class DiffusionTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the masked-diffusion knobs."""

    anneal_steps: int = field(
        default=0,
        metadata={"help": "Optimizer steps over which attention anneals from causal to bidirectional (0 = off)."},
    )
    loss_normalization: str = field(
        default="masked_tokens",
        metadata={"help": "'masked_tokens' (reference: per masked token) or 'elbo' (per modelled token)."},
    )
    noise_eps: float = field(default=DEFAULT_EPS, metadata={"help": "Noise levels are drawn from U(eps, 1)."})
    stratified_noise: bool = field(default=True, metadata={"help": STRATIFIED_NOISE_HELP})
    mask_token_id: int | None = field(
        default=None, metadata={"help": "Override the [MASK] id (default: the model config's mask_token_id)."}
    )

    def __post_init__(self):
        # values TrainingArguments accepts but no run can use (it would divide by zero or train backwards)
        if self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {self.gradient_accumulation_steps}")
        if self.per_device_train_batch_size < 1:
            raise ValueError(f"per_device_train_batch_size must be >= 1, got {self.per_device_train_batch_size}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be > 0 (or -1 to train for num_train_epochs), got {self.max_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if str(self.save_strategy) in ("steps", "SaveStrategy.STEPS") and not self.save_steps > 0:
            raise ValueError(f"save_steps must be > 0 with save_strategy='steps', got {self.save_steps}")
        super().__post_init__()
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {LOSS_NORMALIZATIONS}, got {self.loss_normalization!r}")
        if self.anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0, got {self.anneal_steps}")
        if not 0.0 <= self.noise_eps < 1.0:
            raise ValueError(f"noise_eps must be in [0, 1), got {self.noise_eps}")


class AtomicCheckpointsMixin:
    """For ``Trainer`` subclasses: write each checkpoint into a staging folder, then rename it into place, so a run
    killed mid-save never leaves a half-written ``checkpoint-N`` for resumption to pick up."""

    _checkpoint_staging: str | None = None

    def _get_output_dir(self, trial):
        return self._checkpoint_staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        staging = os.path.join(run_dir, ".staging")
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._checkpoint_staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()


class DiffusionTrainer(AtomicCheckpointsMixin, Trainer):
    """``Trainer`` whose loss is the masked-diffusion objective (METHOD.md section 2), or the block-diffusion one
    (section 9) when the model's ``config.attention_mode`` is ``"block"``; evaluation reports the matching ELBO."""

    args: DiffusionTrainingArguments

    def __init__(self, model=None, args: DiffusionTrainingArguments | None = None, **kwargs):
        if args is not None and not isinstance(args, DiffusionTrainingArguments):
            raise ValueError("DiffusionTrainer needs DiffusionTrainingArguments")
        super().__init__(model=model, args=args, **kwargs)
        config = self.model.config
        self.mask_token_id = self.args.mask_token_id if self.args.mask_token_id is not None else config.mask_token_id
        if self.mask_token_id is None:
            raise ValueError("no mask token id: set config.mask_token_id (convert the model first) or args.mask_token_id")
        self.shift = getattr(config, "shift", True)
        # block diffusion (config.attention_mode == "block") trains on [noisy ; clean] with a 4D mask: fail now, not
        # at the first step, when the model's settings cannot express it
        self.diffusion_block_size = block_diffusion_settings(config)
        # the loss is normalised per micro-batch, so the Trainer must average it over gradient accumulation
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._eval_generator: torch.Generator | None = None

    # --- the objective, in small overridable pieces -------------------------------------------------------
    def current_anneal_ratio(self) -> float:
        """Attention-annealing ratio for the optimizer step being taken (1.0 = bidirectional, no L x L mask)."""
        return annealing_ratio(self.state.global_step, self.args.anneal_steps)

    def maskable(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Positions the forward process may mask: real tokens other than position 0 and any ``given_mask``."""
        return maskable_positions(inputs.get("attention_mask"), inputs["input_ids"], inputs.get("given_mask"))

    def diffusion_loss(self, model, inputs, *, training: bool) -> DiffusionLossOutput:
        return diffusion_objective(
            model,
            inputs["input_ids"],
            self.maskable(inputs),
            mask_token_id=self.mask_token_id,
            attention_mask=inputs.get("attention_mask"),
            # evaluation reports the ELBO bound (nats per modelled token), whatever the training normalisation
            normalization=self.args.loss_normalization if training else "elbo",
            shift=self.shift,
            eps=self.args.noise_eps,
            stratified=self.args.stratified_noise,
            anneal_ratio=self.current_anneal_ratio() if training else None,
            generator=None if training else self._eval_generator,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        output = self.diffusion_loss(model, inputs, training=model.training)
        self._record(output, "train" if model.training else "eval")
        return (output.loss, output) if return_outputs else output.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            output = self.diffusion_loss(model, inputs, training=False)
        self._record(output, "eval")
        return output.loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        # a fixed noise stream, so evaluations at different steps (and runs) score the same corruptions
        self._eval_generator = torch.Generator(device=self.args.device).manual_seed(self.args.seed)
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._eval_generator = None

    # --- logging --------------------------------------------------------------------------------------------
    def _record(self, output: DiffusionLossOutput, mode: str) -> None:
        metrics = self._metrics[mode]
        metrics["loss_unweighted"].append(output.unweighted_loss.item())
        metrics["masked_fraction"].append((output.num_masked / output.num_modelled.clamp(min=1)).item())
        if mode == "train":
            metrics["anneal_ratio"].append(self.current_anneal_ratio())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)
