"""Continual pre-training of a diffusion LM through ``transformers.Trainer``.

``DiffusionTrainer`` only replaces what differs from causal-LM training: the loss (corrupt, predict masked tokens,
1/t weighting), the attention-annealing ratio per optimizer step, extra logged metrics, and atomic checkpoints.
Everything else (accelerate / DeepSpeed / FSDP, mixed precision, resume, logging) is the stock Trainer.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field, replace

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .modeling.attention_annealing import annealing_ratio
from .modeling.block_diffusion import num_blocks, per_token_noise_levels
from .modeling.corruption import maskable_positions, masked_positions
from .modeling.diffusion_loss import LOSS_NORMALIZATIONS, DiffusionLossOutput
from .modeling.noise_schedule import DEFAULT_EPS
from .modeling.shift import IGNORE_INDEX, predicted_only
from .distillation import ARTeacher
from .objective import ObjectiveSettings, block_diffusion_settings, diffusion_objective
from .training_noise import derived_seed, sample_keys, sample_noise
from .training_settings import check_block_curriculum, curriculum_block_size, parse_block_curriculum
from .paths import ordinary_permissions

logger = logging.get_logger(__name__)

CPU_MMAP_THRESHOLD = 1 << 20  # bytes; see DiffusionArguments.cpu_mmap_threshold


def set_cpu_mmap_threshold(threshold: int) -> bool:
    """glibc's ``mallopt(M_MMAP_THRESHOLD, threshold)`` for this process (also stops the threshold from growing);
    False where there is no glibc (macOS, musl) or it refuses."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # from malloc.h
    return bool(libc.mallopt(m_mmap_threshold, int(threshold)))


@dataclass
class DiffusionArguments:
    """The masked-diffusion fields ``DiffusionTrainingArguments`` and ``DiffusionSFTConfig`` share."""

    loss_normalization: str = field(
        default="masked_tokens",
        metadata={"help": "'masked_tokens' (reference: per masked token) or 'elbo' (per modelled token); either count "
                          "is taken over the whole optimizer step (every micro-batch and process)."},
    )
    noise_eps: float = field(default=DEFAULT_EPS, metadata={"help": "Noise levels are drawn from U(eps, 1)."})
    stratified_noise: bool = field(
        default=True,
        metadata={"help": "Spread the noise levels of each optimizer step's global batch over equal strata of "
                          "(eps, 1) (block diffusion: every block column) instead of independent draws: the same "
                          "objective, 0.43x the gradient variance on SmolLM2-135M (benchmarks/gradient_variance.py)."},
    )
    mask_token_id: int | None = field(
        default=None, metadata={"help": "Override the [MASK] id (default: the model config's mask_token_id)."}
    )
    distill_weight: float = field(
        default=0.0,
        metadata={"help": "Distillation from the frozen AR base (0 = off): every scored prediction is trained against "
                          "(1 - w) * the token + w * the teacher's next-token distribution (its top distill_top_k, "
                          "from the clean context). The teacher is the model as it is before the first step: with "
                          "LoRA the base with the adapter disabled, otherwise a frozen copy."},
    )
    distill_top_k: int = field(default=64, metadata={"help": "Teacher tokens kept per position (renormalised)."})
    ar_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Block models with context_attention 'causal': weight of the next-token (AR) loss on the "
                          "clean stream, which keeps the model's causal mode sharp at no extra forward (TiDAR). "
                          "0 = off."},
    )
    block_curriculum: str | None = field(
        default=None,
        metadata={"help": "Block models: block sizes and the optimizer steps where each starts, 'SIZE:STEP,...' "
                          "(e.g. '1:0,4:100,16:300'; block size 1 is the AR model). Starts at step 0 and ends at the "
                          "model's diffusion_block_size; every size divides the packed length."},
    )
    cpu_mmap_threshold: int = field(
        default=CPU_MMAP_THRESHOLD,
        metadata={"help": "Training on CPU (Linux): allocations from this many bytes up get their own memory map, "
                          "returned when freed. glibc's default threshold grows as buffers are freed and then keeps "
                          "them in a fragmented heap: diffusion-lm sft on SmolLM2-135M peaks at 2.4 GB RSS with "
                          "1 MiB instead of 7.1 GB, at ~1.4x the step time. 0 keeps glibc's default."},
    )

    def defer_checkpointing_to_fsdp(self) -> None:
        """Under an accelerate FSDP config with activation checkpointing (training/accelerate/fsdp2.yaml), FSDP wraps
        the decoder layers itself and transformers refuses the training argument beside it: a preset's
        ``gradient_checkpointing: true`` gives way (call before ``TrainingArguments.__post_init__``)."""
        fsdp_checkpoints = (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
                            and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true")
        if fsdp_checkpoints and (self.gradient_checkpointing or getattr(self, "activation_checkpointing", False)):
            logger.info("FSDP's activation checkpointing replaces gradient_checkpointing=True")
            self.gradient_checkpointing = False
            if hasattr(self, "activation_checkpointing"):
                self.activation_checkpointing = False

    def check_diffusion_arguments(self) -> None:
        """ValueError naming the field for a diffusion setting no run can use."""
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {LOSS_NORMALIZATIONS}, got {self.loss_normalization!r}")
        if not 0.0 <= self.noise_eps < 1.0:
            raise ValueError(f"noise_eps must be in [0, 1), got {self.noise_eps}")
        if self.mask_token_id is not None and self.mask_token_id < 0:
            raise ValueError(f"mask_token_id must be >= 0, got {self.mask_token_id}")
        if self.cpu_mmap_threshold < 0:
            raise ValueError(f"cpu_mmap_threshold must be >= 0 bytes, got {self.cpu_mmap_threshold}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if isinstance(self.distill_top_k, bool) or not isinstance(self.distill_top_k, int) or self.distill_top_k < 1:
            raise ValueError(f"distill_top_k must be an integer >= 1, got {self.distill_top_k!r}")
        if not self.ar_loss_weight >= 0.0:
            raise ValueError(f"ar_loss_weight must be >= 0, got {self.ar_loss_weight}")
        if self.block_curriculum is not None:
            parse_block_curriculum(self.block_curriculum)


@dataclass
class DiffusionTrainingArguments(DiffusionArguments, TrainingArguments):
    """``TrainingArguments`` plus the masked-diffusion knobs."""

    anneal_steps: int = field(
        default=0,
        metadata={"help": "Optimizer steps over which attention anneals from causal to bidirectional (0 = off)."},
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
        self.defer_checkpointing_to_fsdp()
        super().__post_init__()
        self.check_diffusion_arguments()
        if self.anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0, got {self.anneal_steps}")


def delete_old_checkpoints(run_dir: str, limit: int | None, keep: tuple[str | None, ...] = ()) -> None:
    """``save_total_limit``: delete the oldest ``checkpoint-N`` folders (by step) beyond ``limit``, never the one of
    the highest step nor those in ``keep`` (the checkpoint just written, which resumption reads, and the best model
    when ``load_best_model_at_end``)."""
    steps = sorted(int(name.rsplit("-", 1)[1]) for name in os.listdir(run_dir)
                   if re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-\d+", name) and os.path.isdir(os.path.join(run_dir, name)))
    folders = [os.path.abspath(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")) for step in steps]
    if not limit or limit <= 0 or len(folders) <= limit:
        return
    protected = {folders[-1]} | {os.path.abspath(folder) for folder in keep if folder}
    removable = [folder for folder in folders if folder not in protected]
    for folder in removable[:len(folders) - max(limit, len(protected))]:
        shutil.rmtree(folder)


class AtomicCheckpointsMixin:
    """For ``Trainer`` subclasses: write each checkpoint into a staging folder, then rename it into place, so a run
    killed mid-save never leaves a half-written ``checkpoint-N`` for resumption to pick up."""

    _checkpoint_staging: str | None = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save:  # safetensors writes through a private (0600) temporary file
            ordinary_permissions(output_dir or self.args.output_dir)

    # The two private Trainer names in src/: no public hook chooses where a checkpoint is written (TrainerCallback
    # .on_save runs after the files are in place), so the atomic save wraps _save_checkpoint and points
    # _get_output_dir at the staging folder for its duration; save_model (public) cannot, as the optimizer, scheduler
    # and RNG state are written outside it.
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
        final = os.path.join(run_dir, name)
        # _save_checkpoint names the best model under the staging folder, on every process (each one loads it at the
        # end): point it at the folder the checkpoint is renamed to
        best = self.state.best_model_checkpoint
        best_was_staged = best is not None and os.path.dirname(os.path.abspath(best)) == os.path.abspath(staging)
        if best_was_staged:
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
        if self.args.should_save:
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            if best_was_staged:
                self.state.save_to_json(os.path.join(final, "trainer_state.json"))
            ordinary_permissions(final)
            shutil.rmtree(staging, ignore_errors=True)
            delete_old_checkpoints(run_dir, self.args.save_total_limit, (final, self.state.best_model_checkpoint))
        self.accelerator.wait_for_everyone()


class DiffusionTrainerMixin(AtomicCheckpointsMixin):
    """What ``DiffusionTrainer`` and ``DiffusionSFTTrainer`` share, on top of a ``Trainer``:

    - the corruption of each optimizer step is decided before its first micro-batch runs, a function of (seed,
      sample, epoch) and of the sample's slot in the step's global batch (``diffusion_lm.training_noise``), and the
      loss is divided by the step's masked (or modelled) token count over every micro-batch and process, so the step
      does not depend on how its batch is split (transformers' ``num_items_in_batch`` mechanism);
    - the attention-annealing draw is a function of (seed, optimizer step);
    - metrics (1/t-weighted and unweighted loss, ELBO, masked fraction) summed across processes;
    - a fixed noise stream for evaluation, so evaluations at different steps and runs score the same corruptions;
    - atomic checkpoints.

    A subclass sets ``mask_token_id``, ``shift`` and ``diffusion_block_size`` and provides :meth:`diffusion_inputs`.
    """

    # the loss is normalised over the optimizer step: the Trainer must not divide it by the accumulation steps again
    loss_is_scaled_for_ga = True
    # evaluation's normalisation (None: the training one)
    eval_loss_normalization: str | None = "elbo"
    mask_token_id: int
    shift: bool = True
    diffusion_block_size: int | None = None

    def init_diffusion_state(self) -> None:
        """Call at the end of ``__init__``."""
        self.model_accepts_loss_kwargs = True  # transformers < 5.24 reads this instead of loss_is_scaled_for_ga
        # our own store (TRL's SFTTrainer keeps a private one its compute_loss fills; ours replaces that loss)
        self.diffusion_metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._eval_generator: torch.Generator | None = None
        self._step_modelled: torch.Tensor | None = None
        config = self.model.config
        self.objective_settings = ObjectiveSettings.from_arguments(
            self.args, mask_token_id=self.mask_token_id, shift=self.shift, block_size=self.diffusion_block_size)
        # evaluation reports the model's own bound at its configured block size
        self.evaluation_settings = self.objective_settings.for_evaluation(self.eval_loss_normalization)
        if self.args.block_curriculum is not None:
            check_block_curriculum(self.args.block_curriculum, self.diffusion_block_size)
        if self.args.ar_loss_weight and getattr(config, "context_attention", "block") != "causal":
            raise ValueError("ar_loss_weight needs a block model with context_attention 'causal' (adapt "
                             "--context-attention causal): under block-causal context the clean stream sees the "
                             "tokens it would predict")
        # the teacher is the model as it is now, before the first step: the AR base (or, for SFT, the adapted model)
        self.teacher = ARTeacher.of(self.model, self.args.distill_top_k) if self.args.distill_weight > 0 else None
        if self.args.device.type == "cpu" and self.args.cpu_mmap_threshold > 0:
            if set_cpu_mmap_threshold(self.args.cpu_mmap_threshold):
                logger.info(f"CPU training: allocations >= {self.args.cpu_mmap_threshold} bytes are memory-mapped")

    # --- hooks ------------------------------------------------------------------------------------------------
    def diffusion_inputs(self, inputs: dict[str, torch.Tensor]):
        """``(input_ids, maskable, attention_mask)`` the objective corrupts and scores for a collated batch."""
        raise NotImplementedError

    def sample_keys(self, inputs: dict[str, torch.Tensor]) -> list[str]:
        """What identifies each row's sample: its real tokens (and which of them are labelled, when labels exist)."""
        labels = inputs.get("labels")
        return sample_keys(inputs["input_ids"], inputs.get("attention_mask"),
                           None if labels is None else labels != IGNORE_INDEX)

    def current_anneal_ratio(self) -> float | None:
        """Attention-annealing ratio of the optimizer step being taken (None or 1.0: no annealing)."""
        return None

    def begin_step(self, batches: list[dict]) -> dict:
        """Called with this process's micro-batches of an optimizer step before any of them runs; returns keyword
        arguments for :meth:`diffusion_inputs` during the step (settings every micro-batch of the step shares)."""
        return {}

    # --- one optimizer step -----------------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """The step's micro-batches, each given its corruption; returns the step's global token count, by which
        every micro-batch's loss is divided."""
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        if not batches:
            return batches, None
        if self.args.block_curriculum is not None:  # this step's block size decides its noise: set it first
            self.diffusion_block_size = curriculum_block_size(self.args.block_curriculum, self.state.global_step)
        step_kwargs = self.begin_step(batches)
        # slot of each row in the step's global batch: micro-batch-major, then process, then row - the order in
        # which accelerate hands consecutive batches of one sampler to the processes
        sizes = torch.zeros(num_batches, dtype=torch.long, device=device)
        sizes[: len(batches)] = torch.tensor([len(batch["input_ids"]) for batch in batches])
        all_sizes = self.accelerator.gather(sizes[None]).view(-1, num_batches).cpu()  # (processes, micro-batches)
        process = self.accelerator.process_index
        num_slots = int(all_sizes.sum())
        epoch = math.floor((self.state.epoch or 0.0) + 1e-9)
        count = torch.zeros((), dtype=torch.long)
        modelled_count = torch.zeros((), dtype=torch.long)
        for index, batch in enumerate(batches):
            input_ids, maskable, attention_mask = self.diffusion_inputs(batch, **step_kwargs)
            first = int(all_sizes[:, :index].sum() + all_sizes[:process, index].sum())
            blocks = None if self.diffusion_block_size is None else num_blocks(input_ids.shape[1],
                                                                              self.diffusion_block_size)
            noise = sample_noise(
                self.sample_keys(batch), input_ids.shape[1], seed=self.args.seed, epoch=epoch,
                eps=self.args.noise_eps, num_blocks=blocks,
                slots=list(range(first, first + len(input_ids))) if self.args.stratified_noise else None,
                num_slots=num_slots, step_seed=(self.args.seed, "strata", self.state.global_step),
            )
            modelled = predicted_only(maskable.cpu(), self.shift)
            modelled_count += modelled.sum()
            if self.args.loss_normalization == "elbo":
                count += modelled.sum()
            else:
                levels = noise.noise_levels[:, None] if blocks is None else per_token_noise_levels(
                    noise.noise_levels, input_ids.shape[1], self.diffusion_block_size)
                count += (masked_positions(modelled, levels, noise.mask_draws)).sum()
            batch["diffusion"] = {"input_ids": input_ids, "maskable": maskable, "attention_mask": attention_mask,
                                  "noise_levels": noise.noise_levels, "mask_draws": noise.mask_draws}
        counts = self.accelerator.gather(torch.stack([count, modelled_count]).to(device)[None]).sum(0)
        self._step_modelled = counts[1]  # the AR loss's divisor for this step
        return batches, counts[0]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        training = model.training
        prepared = inputs.get("diffusion")
        if prepared is None:  # evaluation, or a batch that did not come through get_batch_samples
            input_ids, maskable, attention_mask = self.diffusion_inputs(inputs)
            prepared = {"input_ids": input_ids, "maskable": maskable, "attention_mask": attention_mask}
        step_wide = training and num_items_in_batch is not None and "mask_draws" in prepared
        anneal_ratio = self.current_anneal_ratio() if training else None
        device = prepared["input_ids"].device
        if not training:
            if self._eval_generator is None or self._eval_generator.device != torch.device(device):
                self._eval_generator = torch.Generator(device=device).manual_seed(self.args.seed)
            generator = self._eval_generator
        else:
            generator = None  # the global RNG (seeded by the Trainer), for batches without planned noise
        training_terms = {}
        if training:
            # training adds the teacher and the AR loss, at this step's block size (a curriculum changes it)
            settings = self.objective_settings
            if self.diffusion_block_size != settings.block_size:
                settings = replace(settings, block_size=self.diffusion_block_size)
            if self.teacher is not None:
                training_terms["soft_targets"] = self.teacher.next_token_distributions(prepared["input_ids"],
                                                                                       prepared["attention_mask"])
            if step_wide and self.args.ar_loss_weight and self._step_modelled is not None:
                training_terms["ar_normalizer"] = self._step_modelled.clamp(min=1) / self.accelerator.num_processes
        else:
            settings = self.evaluation_settings
        output = diffusion_objective(
            model,
            prepared["input_ids"],
            prepared["maskable"],
            settings,
            attention_mask=prepared["attention_mask"],
            noise_levels=prepared.get("noise_levels"),
            mask_draws=prepared.get("mask_draws"),
            generator=generator,
            anneal_ratio=anneal_ratio,
            # the annealing links of an optimizer step: a function of (seed, step) and the two positions
            anneal_seed=derived_seed(self.args.seed, "anneal", self.state.global_step) if step_wide else None,
            # each process's loss is its share of the step's sum; data parallelism averages over processes
            normalizer=num_items_in_batch.clamp(min=1) / self.accelerator.num_processes if step_wide else None,
            **training_terms,
        )
        self.record_metrics(output, inputs, "train" if training else "eval")
        return (output.loss, output) if return_outputs else output.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # no logits: the predictions of one random corruption are not token predictions to score
        inputs = {name: value.to(self.args.device) if isinstance(value, torch.Tensor) else value
                  for name, value in inputs.items()}
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        self._eval_generator = None  # restart the fixed noise stream: every evaluation scores the same corruptions
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._eval_generator = None

    # --- logging --------------------------------------------------------------------------------------------
    def record_metrics(self, output: DiffusionLossOutput, inputs: dict[str, torch.Tensor], mode: str) -> None:
        """Per-batch metrics, summed over processes (averaged over batches by :meth:`log`)."""
        gather = self.accelerator.gather_for_metrics if mode == "eval" else self.accelerator.gather
        stats = torch.stack([output.weighted_sum.detach().float(), output.unweighted_sum.detach().float(),
                             output.num_masked.float(), output.num_modelled.float()])
        weighted, unweighted, masked, modelled = gather(stats[None]).sum(0).tolist()
        metrics = self.diffusion_metrics[mode]
        metrics["loss_weighted"].append(weighted / max(masked, 1.0))
        metrics["loss_unweighted"].append(unweighted / max(masked, 1.0))
        metrics["elbo"].append(weighted / max(modelled, 1.0))
        metrics["masked_fraction"].append(masked / max(modelled, 1.0))
        ratio = self.current_anneal_ratio()
        if mode == "train" and ratio is not None:
            metrics["anneal_ratio"].append(ratio)
        if output.distill_kl_sum is not None:  # KL(teacher || model) per masked position
            metrics["distill_kl"].append(float(gather(output.distill_kl_sum.detach().float()[None]).sum()) /
                                         max(masked, 1.0))
        if output.ar_sum is not None:  # next-token cross-entropy of the clean stream (the causal mode)
            ar = gather(torch.stack([output.ar_sum.detach().float(), output.ar_count.float()])[None]).sum(0)
            metrics["ar_loss"].append(float(ar[0]) / max(float(ar[1]), 1.0))
        if mode == "train" and self.args.block_curriculum is not None:
            metrics["diffusion_block_size"].append(self.diffusion_block_size)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self.diffusion_metrics[mode].items():
            if values:
                logs[prefix + name] = sum(values) / len(values)
        self.diffusion_metrics[mode].clear()
        super().log(logs, start_time)


class DiffusionTrainer(DiffusionTrainerMixin, Trainer):
    """``Trainer`` whose loss is the masked-diffusion objective (METHOD.md section 2), or the block-diffusion one
    (section 9) when the model's ``config.attention_mode`` is ``"block"``; evaluation reports the matching ELBO.
    Batches are right-padded ``input_ids`` with an ``attention_mask`` (``DiffusionDataCollator``)."""

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
        self.init_diffusion_state()

    def current_anneal_ratio(self) -> float:
        """Attention-annealing ratio for the optimizer step being taken (1.0 = bidirectional, no L x L mask)."""
        return annealing_ratio(self.state.global_step, self.args.anneal_steps)

    def diffusion_inputs(self, inputs: dict[str, torch.Tensor]):
        """The batch as it is, maskable everywhere but padding and position 0."""
        input_ids, attention_mask = inputs["input_ids"], inputs.get("attention_mask")
        return input_ids, maskable_positions(attention_mask, input_ids), attention_mask
