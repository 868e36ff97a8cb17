"""Instruction tuning (SFT) of a diffusion LM with TRL's ``SFTTrainer``, optionally with a PEFT ``LoraConfig``.

Only the loss differs from AR SFT (METHOD.md section 4). Everything TRL does stays: dataset formats (plain text,
prompt/completion, conversational ``messages`` / prompt-completion, the tokenizer's chat template), tokenisation,
truncation, PEFT wrapping, saving and pushing.

What is diffusion-specific, and why:

- ``maskable`` = completion tokens (TRL's ``labels != -100``, built from ``completion_mask`` / ``assistant_masks``)
  + the EOS + the padding after it; never prompt tokens, never position 0. The prompt is always given, as at
  inference.
- Padding. TRL's collator pads on the right with ``pad_token`` and ``attention_mask = 0`` there. Diffusion SFT must
  teach the model where the answer stops, so trailing padding is *target text*: it is replaced by the EOS id and the
  model sees every position (no attention mask, which also keeps fast attention kernels). The model thus learns
  "answer, EOS, EOS, ..." and diffusion decoding of a fixed-size canvas ends the answer at the first EOS (LLaDA's
  convention). Left padding is rejected: it would put the filler in front of the prompt.
- EOS filler length (``eos_filler``). A decoding canvas is usually longer than the training batches; a model that
  only ever saw sequences ending at the batch's longest answer invents text past that point. By default each
  training step extends the filler to a random length up to ``max_length``, so the stop is learned at every length
  a canvas can have (on the tiny test models this takes canvases twice the training length from 5/8 to 8/8 exact).
- Conversational ``messages`` rows are split into a conversational prompt/completion pair (everything before the
  last assistant message is given, the last assistant turn is the completion), unless ``assistant_only_loss=True``
  (TRL's assistant masks then decide) or ``messages_to_prompt_completion=False`` (whole conversation maskable).
- The loss is :func:`diffusion_lm.objective.diffusion_objective`, the one continual pre-training uses; no attention
  annealing (the model is already bidirectional).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments
from trl import SFTConfig, SFTTrainer

from .modeling.corruption import maskable_positions
from .modeling.diffusion_loss import DiffusionLossOutput
from .chat_generation import configure_chat_generation
from .models import DIFFUSION_MODEL_TYPES
from .objective import block_diffusion_settings
from .trainer import DiffusionArguments, DiffusionTrainerMixin
from .sft_data import sharegpt_dataset_to_messages, split_last_assistant_turn
from .training_noise import step_generator

EOS_FILLERS = ("random", "max_length", "longest")


@dataclass
class DiffusionSFTConfig(DiffusionArguments, SFTConfig):
    r"""
    [`~trl.SFTConfig`] plus the masked-diffusion fields.

    Parameters:
        loss_normalization (`str`, *optional*, defaults to `"masked_tokens"`):
            `"masked_tokens"` divides the 1/t-weighted loss by the number of masked tokens (DiffuGPT / DiffuLLaMA
            reference); `"elbo"` divides by the number of maskable tokens (unbiased ELBO estimate, paper Eq. 7).
            Either count is taken over the whole optimizer step (every micro-batch and process).
        noise_eps (`float`, *optional*, defaults to `1e-3`):
            Noise levels are drawn from U(noise_eps, 1).
        stratified_noise (`bool`, *optional*, defaults to `True`):
            Spread the noise levels of each optimizer step's global batch over equal strata of (noise_eps, 1)
            instead of independent draws (the same objective with less gradient variance).
        mask_token_id (`int`, *optional*):
            [MASK] id; defaults to the model config's `mask_token_id`, then the tokenizer's.
        messages_to_prompt_completion (`bool`, *optional*, defaults to `True`):
            Turn conversational `messages` rows into conversational prompt/completion pairs (the last assistant turn
            is the completion, everything before it is given). Ignored with `assistant_only_loss=True`.
        eos_filler (`str`, *optional*, defaults to `"random"`):
            How far the EOS filler after the answers reaches. A model learns to emit EOS only at positions (and
            sequence lengths) it was trained on, and a decoding canvas (prompt + `max_new_tokens`) can be longer than
            any training batch. `"random"`: each training step fills up to a length drawn uniformly between the
            batch's longest sequence and `max_length` (evaluation: the longest sequence); `"max_length"`: always up to
            `max_length` (LLaDA); `"longest"`: TRL's padding only (cheapest). The filler costs compute: keep
            `max_length` near the longest prompt + generation budget.
    """

    messages_to_prompt_completion: bool = field(
        default=True,
        metadata={"help": "Split `messages` rows into prompt (given) / last assistant turn (completion)."},
    )
    eos_filler: str = field(
        default="random",
        metadata={"help": "How far the EOS filler after each answer reaches: 'longest' (the batch's longest sequence), "
                          "'max_length', or 'random' (a length drawn each training step between the two)."},
    )

    def __post_init__(self):
        self.defer_checkpointing_to_fsdp()
        super().__post_init__()
        self.check_diffusion_arguments()
        # packed / padding-free rows would let documents attend to each other (bidirectional attention) and leave
        # no trailing padding to learn the stop from
        if self.packing or self.padding_free:
            raise ValueError(
                "diffusion SFT does not support packing or padding_free: set packing=False, padding_free=False"
            )
        if self.completion_only_loss is False:
            raise ValueError("diffusion SFT never noises the prompt: completion_only_loss=False is not supported")
        if self.loss_type != "nll":
            raise ValueError(
                f"loss_type {self.loss_type!r} has no diffusion counterpart; the loss is the diffusion ELBO"
            )
        if self.label_smoothing_factor:
            raise ValueError("label_smoothing_factor is not supported by the diffusion loss")
        if self.eos_filler not in EOS_FILLERS:
            raise ValueError(f"eos_filler must be one of {EOS_FILLERS}, got {self.eos_filler!r}")
        if self.eos_filler != "longest" and self.max_length is None:
            raise ValueError(f"eos_filler={self.eos_filler!r} needs max_length (or use eos_filler='longest')")


class DiffusionSFTTrainer(DiffusionTrainerMixin, SFTTrainer):
    """[`~trl.SFTTrainer`] whose loss is the masked-diffusion objective with the prompt always given.

    Same arguments as ``SFTTrainer`` (``peft_config=LoraConfig(...)`` included); ``args`` is a
    [`DiffusionSFTConfig`]. The behaviour lives in small overridable methods: :meth:`diffusion_inputs`
    (what is fed and what may be noised), :meth:`diffusion_loss`, :meth:`noise_generator`.
    """

    card_tags = ["trl", "sft", "diffusion-lm", "masked-diffusion"]
    _name = "Diffusion SFT"
    eval_loss_normalization = None  # evaluation reports the training normalisation (the ELBO is logged beside it)

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: DiffusionSFTConfig | TrainingArguments | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        compute_loss_func=None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else (model.config.name_or_path or "model")
            args = DiffusionSFTConfig(f"{os.path.basename(str(name).rstrip('/')) or 'model'}-diffusion-sft")
        elif not isinstance(args, DiffusionSFTConfig):
            if not isinstance(args, TrainingArguments):
                raise ValueError(f"args must be a DiffusionSFTConfig, got {type(args).__name__}")
            fields = args.to_dict()
            fields["hub_token"] = args.hub_token  # to_dict hides it
            args = DiffusionSFTConfig(**fields)
        if compute_loss_func is not None:
            raise ValueError("DiffusionSFTTrainer computes the diffusion loss itself; do not pass compute_loss_func")
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        train_dataset = self.prepare_conversations(train_dataset, args)
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self.prepare_conversations(v, args) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self.prepare_conversations(eval_dataset, args)
        super().__init__(
            model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        base = self.base_model()
        if base.config.model_type not in DIFFUSION_MODEL_TYPES:
            raise ValueError(
                f"{type(base).__name__} ({base.config.model_type!r}) is not a diffusion LM: convert / adapt it first"
            )
        self.mask_token_id = self.resolve_mask_token_id(base)
        positions = getattr(base.config, "max_position_embeddings", None) or getattr(base.config, "n_positions", None)
        if self.args.max_length is not None and positions is not None and self.args.max_length > positions:
            raise ValueError(f"max_length {self.args.max_length} exceeds the model's {positions} positions")
        self.shift = getattr(base.config, "shift", True)
        self.diffusion_block_size = block_diffusion_settings(base.config)
        if self.text_tokenizer().eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token: diffusion SFT trains the padding after answers as EOS")
        self.padding_fill_id = self.text_tokenizer().eos_token_id
        configure_chat_generation(base, self.text_tokenizer())
        if self.args.mask_token_id is not None:  # generation must use the [MASK] the model is trained with
            base.generation_config.mask_token_id = self.mask_token_id
        self.init_diffusion_state()
        self.model.add_model_tags(self.card_tags)  # the tags of cards written by TRL, PEFT and push_to_hub
        self.train_tokens_seen = 0  # tokens of every process, for the log's num_tokens and the training record
        self.dataset_names: list[str] = []  # recorded in the card; set by callers that know where the data came from

    def text_tokenizer(self) -> PreTrainedTokenizerBase:
        """The text tokenizer of ``processing_class`` (a processor carries one)."""
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    # --- data -------------------------------------------------------------------------------------------------
    @staticmethod
    def prepare_conversations(dataset, args: DiffusionSFTConfig):
        """ShareGPT ``conversations`` -> ``messages``; ``messages`` -> conversational prompt/completion (module doc)."""
        first = next(iter(dataset))
        if "input_ids" in first:  # already tokenized: TRL uses it as is
            return dataset
        if "conversations" in first:
            dataset = sharegpt_dataset_to_messages(dataset)
            first = next(iter(dataset))
        if "messages" in first and args.messages_to_prompt_completion and not args.assistant_only_loss:
            dataset = dataset.map(split_last_assistant_turn, remove_columns=["messages"])
        return dataset

    def base_model(self) -> PreTrainedModel:
        """The diffusion model under any accelerate / PEFT wrapping."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def resolve_mask_token_id(self, model: PreTrainedModel) -> int:
        for candidate in (self.args.mask_token_id, getattr(model.config, "mask_token_id", None),
                          getattr(self.text_tokenizer(), "mask_token_id", None)):
            if candidate is not None:
                if candidate >= model.get_input_embeddings().num_embeddings:
                    raise ValueError(f"mask_token_id {candidate} is outside the model's embedding matrix")
                return int(candidate)
        raise ValueError(
            "no [MASK] id: convert the model first (diffusion_lm.conversion) or set DiffusionSFTConfig.mask_token_id"
        )

    # --- the objective, in small overridable pieces -------------------------------------------------------
    def diffusion_inputs(
        self, inputs: dict[str, torch.Tensor], width: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(input_ids, maskable, attention_mask)`` handed to the objective for a collated batch.

        Trailing padding, extended as ``eos_filler`` says (to ``width`` when given: the optimizer step's length),
        becomes EOS filler that is maskable and visible; prompt tokens (``labels == -100`` before the padding) and
        position 0 are never maskable. The returned attention mask is ``None`` (all visible).
        """
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None and "position_ids" in inputs:
            raise ValueError("padding-free / packed batches are not supported by diffusion SFT")
        if attention_mask is None:
            padding = torch.zeros_like(input_ids, dtype=torch.bool)
        else:
            if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
                raise ValueError("left padding is not supported in diffusion SFT training: pad on the right")
            padding = ~attention_mask.bool()
        labels = inputs.get("labels")
        completion = labels != -100 if labels is not None else torch.ones_like(padding)
        extra = (width if width is not None else self.filler_length(input_ids.shape[1])) - input_ids.shape[1]
        if extra > 0:
            input_ids = torch.nn.functional.pad(input_ids, (0, extra), value=self.padding_fill_id)
            padding = torch.nn.functional.pad(padding, (0, extra), value=True)
            completion = torch.nn.functional.pad(completion, (0, extra), value=False)
        given = ~(completion | padding)
        maskable = maskable_positions(None, input_ids, given=given)
        input_ids = torch.where(padding, torch.full_like(input_ids, self.padding_fill_id), input_ids)
        return input_ids, maskable, None

    def filler_length(self, width: int, generator: torch.Generator | None = None) -> int:
        """Sequence length the EOS filler reaches for a batch whose longest sequence has ``width`` tokens."""
        mode, limit = self.args.eos_filler, self.args.max_length
        if mode == "longest" or limit is None or width >= limit:
            return width
        if mode == "max_length":
            return limit
        if not self.model.training:  # evaluation stays deterministic
            return width
        return int(torch.randint(width, limit + 1, (), generator=generator))

    def begin_step(self, batches: list[dict]) -> dict:
        """Every micro-batch of an optimizer step, on every process, is filled to one length: the step's longest
        sequence, extended as ``eos_filler`` says by a draw of (seed, step) - so no split of the step changes it."""
        longest = torch.tensor([max(batch["input_ids"].shape[1] for batch in batches)], device=self.args.device)
        longest = int(self.accelerator.gather(longest).max())
        return {"width": self.filler_length(longest, step_generator(self.args.seed, "filler", self.state.global_step))}

    def record_metrics(self, output: DiffusionLossOutput, inputs: dict[str, torch.Tensor], mode: str) -> None:
        super().record_metrics(output, inputs, mode)
        if mode == "train":
            self.train_tokens_seen += int(self.accelerator.gather(torch.tensor(
                inputs["input_ids"].numel(), device=inputs["input_ids"].device)).sum())
            self.diffusion_metrics[mode]["num_tokens"] = [self.train_tokens_seen]

    # --- saving: training record and card ---------------------------------------------------------------------
    def is_peft(self) -> bool:
        return hasattr(self.accelerator.unwrap_model(self.model), "peft_config")

    def training_record(self) -> dict[str, Any]:
        """What produced this checkpoint, as a ``training_record.TrainingInfo`` dict (rendered into the card)."""
        base = self.base_model()
        args = self.args
        extra = {"loss_normalization": args.loss_normalization, "noise_eps": args.noise_eps,
                 "max_length": args.max_length, "eos_filler": args.eos_filler,
                 "lr_scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))}
        if self.is_peft():
            peft_config = self.accelerator.unwrap_model(self.model).peft_config["default"]
            extra["lora"] = {"r": getattr(peft_config, "r", None), "alpha": getattr(peft_config, "lora_alpha", None),
                             "modules_to_save": sorted(getattr(peft_config, "modules_to_save", None) or [])}
        return {
            "stage": "sft",
            "base_model": base.config.name_or_path or None,
            "datasets": list(self.dataset_names),
            "steps": self.state.global_step,
            "tokens": self.train_tokens_seen,
            "anneal_steps": 0,
            "learning_rate": args.learning_rate,
            "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
            * args.world_size,
            "extra": extra,
        }

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """The Trainer's save (every checkpoint and the final model go through it), then the training record and card
        beside the model it wrote: a full model's config.json or an adapter's adapter_config.json. (An FSDP sharded
        save writes neither here: its checkpoint gets no card, as before.)"""
        output_dir = output_dir or self.args.output_dir
        super().save_model(output_dir, _internal_call=_internal_call)
        wrote_model = any(os.path.isfile(os.path.join(output_dir, name))
                          for name in ("config.json", "adapter_config.json"))
        if self.args.should_save and wrote_model:
            if self.is_peft():
                record_adapter_base(output_dir)
            self.write_card(output_dir)

    def write_card(self, output_dir: str) -> None:
        """Full checkpoints get diffusion_lm's card (with the record); adapters keep TRL's card plus the record."""
        from .model_card import write_card
        from .training_record import TrainingInfo

        info = TrainingInfo.from_dict(self.training_record())
        if self.is_peft() or not os.path.isfile(os.path.join(output_dir, "config.json")):
            info.save(output_dir)
        else:
            write_card(output_dir, info, tags=list(self.card_tags))

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL calls this before every checkpoint and push. Full models: the card is written once per save by
        :meth:`save_model`; here it is rendered again only when a new dataset name changes it."""
        new_dataset = bool(dataset_name) and dataset_name not in self.dataset_names
        if new_dataset:
            self.dataset_names.append(dataset_name)
        if self.is_peft():
            tags = [tags] if isinstance(tags, str) else list(tags or [])
            super().create_model_card(model_name=model_name, dataset_name=dataset_name,
                                      tags=tags + [tag for tag in self.card_tags if tag not in tags])
        elif (new_dataset and self.is_world_process_zero()
              and os.path.isfile(os.path.join(self.args.output_dir, "config.json"))):
            self.write_card(self.args.output_dir)


def record_adapter_base(adapter_dir: str) -> None:
    """Make a PEFT adapter name its base by absolute path when the base is a local directory.

    PEFT records the path the base was loaded from as given; a relative one (``runs/adapt``) only resolves from the
    directory training ran in. Hub ids are left as they are.
    """
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    if not os.path.isfile(config_path):
        return
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    base = config.get("base_model_name_or_path")
    if not base or os.path.isabs(base) or not os.path.isdir(base):
        return
    config["base_model_name_or_path"] = os.path.abspath(base)
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


# --- PEFT ---------------------------------------------------------------------------------------------------------
def lora_config_for(model: PreTrainedModel, r: int = 16, alpha: int | None = None, dropout: float = 0.05,
                    train_embeddings: bool = True):
    """The reference LoRA setting: every linear layer, alpha = 2r, embeddings (and LM head) trained in full.

    The embedding module names are read from the model (``embed_tokens`` for LLaMA / Qwen2, ``wte`` for GPT-2); with
    tied input / output embeddings PEFT keeps the two saved copies tied.
    """
    from peft import LoraConfig

    modules_to_save = None
    if train_embeddings:
        names = {id(module): name.split(".")[-1] for name, module in model.named_modules()}
        modules_to_save = [names[id(model.get_input_embeddings())]]
        output = model.get_output_embeddings()
        if output is not None and id(output) in names:
            modules_to_save.append(names[id(output)])
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2 * r,
        lora_dropout=dropout,
        target_modules="all-linear",
        modules_to_save=modules_to_save,
        ensure_weight_tying=tied and modules_to_save is not None,
        task_type="CAUSAL_LM",
    )


__all__ = ["DiffusionSFTConfig", "DiffusionSFTTrainer", "lora_config_for", "record_adapter_base"]
