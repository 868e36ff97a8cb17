"""``model.generate`` for masked-diffusion LMs: the transformers entry point of diffusion decoding.

``generate`` merges the call's settings into a ``DiffusionGenerationConfig`` (``generation_config_diffusion``), checks
the inputs (``generation_inputs``), and runs either the reverse process (``diffusion_decode``) or self-verified
decoding (``self_verification``). Arguments follow transformers: ``input_ids`` positional, everything else by name.
Only ``torch`` and ``transformers`` are imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList, StoppingCriteriaList
from transformers.utils import ModelOutput

from .denoising_step import StepPredictions
from .diffusion_decode import decode_in_aligned_groups, streamed_tokens
from .generation_config_diffusion import (
    CAUSAL_CONTEXT_DECODING_DEFAULTS,
    DIFFUSION_DECODING_FIELDS,
    FAST_BLOCK_DECODING_DEFAULTS,
    FAST_DECODING_DEFAULTS,
    SUPPORTED_FIELDS,
    DiffusionGenerationConfig,
    fast_decoding_defaults,
    refused_generation_fields,
)
from .generation_inputs import check_length, prepare_prompt, prompt_holes
from .modeling_diffusion_compat import attention_implementation
from .self_verification import verify_decode
from .unmasking import canonical_alg

@dataclass
class DiffusionGenerationOutput(ModelOutput):
    """Output of ``generate`` with ``return_dict_in_generate=True``.

    sequences (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
        Prompt and generated tokens; generated positions after the first generated EOS hold ``pad_token_id``.
    history (`tuple[torch.LongTensor]`, *optional*):
        With ``output_history=True``: the sequences after each step (``steps`` entries, before EOS padding).
    tokens_per_forward (`torch.FloatTensor` of shape `(batch_size,)`):
        Per sequence, generated tokens (up to and including its first EOS) per forward pass it took part in.
    forward_passes (`torch.LongTensor` of shape `(batch_size,)`):
        Per sequence, the forward passes run while it was still being decoded.
    accepted_per_verification (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
        With ``verify``: per sequence, the mean tokens a verification committed (accepted draft tokens plus the
        causal model's own next one, so >= 1; a draft that agrees for k tokens commits k + 1).
    verifications (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        With ``verify``: per sequence, the verification forward passes it took part in.
    """

    sequences: torch.LongTensor | None = None
    history: tuple[torch.LongTensor, ...] | None = None
    tokens_per_forward: torch.FloatTensor | None = None
    forward_passes: torch.LongTensor | None = None
    accepted_per_verification: torch.FloatTensor | None = None
    verifications: torch.LongTensor | None = None


# the kwargs generate takes besides generation-config fields
_RUNTIME_KWARGS = ("generator", "step_callback")


class DiffusionGenerationMixin(GenerationMixin):
    """``generate`` for masked-diffusion LMs. The model's ``forward(input_ids, attention_mask)`` must return
    ``logits`` and its config may set ``shift`` (default True) and ``mask_token_id``."""

    def adjust_generation_fn(self, *args, **kwargs):
        # transformers loads generation_config.json as a plain GenerationConfig; give the model ours back
        super().adjust_generation_fn(*args, **kwargs)
        if not isinstance(self.generation_config, DiffusionGenerationConfig):
            self.generation_config = DiffusionGenerationConfig.from_generation_config(
                self.generation_config, self.config
            )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        generation_config: GenerationConfig | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        streamer=None,
        **kwargs,
    ) -> torch.LongTensor | DiffusionGenerationOutput:
        r"""Diffusion decoding.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, length)`, *optional*):
                The prompt, left-padded for batches. Position 0 is never predicted (the shift): ``None`` or an empty
                prompt starts from BOS.
            generation_config ([`GenerationConfig`], *optional*):
                Base settings (default ``model.generation_config``); ``kwargs`` that name its fields override it.
            logits_processor (`LogitsProcessorList`, *optional*):
                transformers logits processors / warpers, applied to every proposal's logits before the token is
                chosen; a proposal's ``input_ids`` are its sequence's current canvas (masks included).
            stopping_criteria (`StoppingCriteriaList`, *optional*):
                Checked after every finished block on the sequences up to that block's end; a sequence they stop
                decodes no later block (its remaining positions become padding), as after an EOS.
            streamer (*optional*):
                transformers streamer: ``put(prompt)`` first, ``put_draft(tokens)`` after each step when it has that
                method (``TextDiffusionStreamer`` does), ``put(generated tokens)`` at the end, then ``end()``. With
                ``verify``: ``put(prompt)``, then ``put(tokens)`` with each verification's committed tokens, as an AR
                model streams (batch 1).
            attention_mask (`torch.Tensor` of shape `(batch_size, length)`, *optional*):
                1 for tokens, 0 for left padding (right padding is refused). No sequence sees another's.
            infill_mask (`torch.BoolTensor` of shape `(batch_size, length)`, *optional*):
                True at the prompt positions to generate (infilling); whatever token they hold is replaced. Without
                it, positions holding the mask token are the holes only when that token is a dedicated one
                (``config.mask_token_reused`` False); a reused mask id (811, 10541) in a prompt is text.
            generator (`torch.Generator`, *optional*):
                Random source for sampling and random unmasking (default: torch's global RNG).
            step_callback (`Callable[[int, torch.LongTensor, StepPredictions | None], Any]`, *optional*):
                Called after every step as ``step_callback(step, sequences, predictions)``: ``sequences`` is the
                state after the step, ``predictions`` the step's [`StepPredictions`] (None when the step committed
                nothing and ran no forward pass). Do not modify the tensors. With ``verify``: called after every
                verification with the prompt and the tokens committed so far (masks after them) and ``None``.
            kwargs:
                Fields of [`DiffusionGenerationConfig`] (``max_new_tokens``, ``steps``, ``alg``, ``temperature``,
                ``top_k``, ``top_p``, ``block_length``, ``kv_cache``, ``kv_cache_refresh``, ``threshold``,
                ``entropy_bound``, ``sub_block_length``, ``verify``, ``draft_length``, ``alg_temperature``, ``mask_token_id``, ``eos_token_id``, ``pad_token_id``, ``num_return_sequences``,
                ``return_dict_in_generate``, ``output_history``). Anything else raises a ValueError.

        Returns:
            `torch.LongTensor` of shape `(batch_size, length + max_new_tokens)`, or a [`DiffusionGenerationOutput`]
            with ``return_dict_in_generate=True``.
        """
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig, got {type(generation_config).__name__}; "
                            "pass everything but input_ids by name (attention_mask=...)")
        attention_mask = kwargs.pop("attention_mask", None)
        if "inputs" in kwargs:
            if input_ids is not None:
                raise ValueError("pass the prompt once: input_ids or inputs")
            input_ids = kwargs.pop("inputs")
        infill_mask = kwargs.pop("infill_mask", None)
        runtime = {name: kwargs.pop(name, None) for name in _RUNTIME_KWARGS}
        config = self._diffusion_generation_config(generation_config, kwargs)

        given_shape = None if input_ids is None else tuple(input_ids.shape)
        input_ids, attention_mask = prepare_prompt(self.config, self.device, input_ids, attention_mask, config)
        holes = prompt_holes(self.config, input_ids, attention_mask, infill_mask, given_shape, config.mask_token_id)
        prompt_length = input_ids.shape[1]
        max_new_tokens = config.max_new_tokens
        if "max_length" in kwargs and "max_new_tokens" not in kwargs:  # transformers' meaning: prompt included
            if config.max_length < prompt_length:
                raise ValueError(f"max_length ({config.max_length}) is shorter than the prompt ({prompt_length} "
                                 "tokens); max_length counts the prompt: use max_new_tokens for the new tokens only")
            max_new_tokens = config.max_length - prompt_length
        if config.num_return_sequences and config.num_return_sequences > 1:
            input_ids = input_ids.repeat_interleave(config.num_return_sequences, dim=0)
            attention_mask = attention_mask.repeat_interleave(config.num_return_sequences, dim=0)
            holes = holes.repeat_interleave(config.num_return_sequences, dim=0)
        check_length(self.config, prompt_length + max_new_tokens)

        if config.verify is not None:
            problem = self._verify_input_problem(holes, logits_processor, streamer, input_ids.shape[0])
            if problem is not None and ("verify" in kwargs or generation_config is not None):
                raise ValueError(problem)  # asked for by name: refused before any forward pass
            if problem is not None:  # the checkpoint's default verify gives way to diffusion decoding
                config.verify = None
                self._check_decoding_mode(config)
        if config.verify is not None:
            if streamer is not None:
                streamer.put(input_ids.cpu())
            result = verify_decode(self, input_ids, attention_mask, max_new_tokens, config, streamer=streamer,
                                   stopping_criteria=stopping_criteria, **runtime)
            if streamer is not None:
                streamer.end()
            if config.return_dict_in_generate:
                return DiffusionGenerationOutput(
                    sequences=result.sequences, history=result.history, tokens_per_forward=result.tokens_per_forward,
                    forward_passes=result.forward_passes,
                    accepted_per_verification=result.accepted_per_verification,
                    verifications=result.verifications,
                )
            return result.sequences

        result = decode_in_aligned_groups(
            self, input_ids, attention_mask, holes, max_new_tokens, config, streamer=streamer,
            logits_processor=logits_processor, stopping_criteria=stopping_criteria, **runtime,
        )
        if streamer is not None:
            streamer.put(streamed_tokens(result.sequences, result.generated, config.eos_token_ids()).cpu())
            streamer.end()
        if config.return_dict_in_generate:
            return DiffusionGenerationOutput(
                sequences=result.sequences,
                history=result.history if config.output_history else None,
                tokens_per_forward=result.tokens_per_forward,
                forward_passes=result.forward_passes,
            )
        return result.sequences

    # --- preparation -------------------------------------------------------------------------------------------
    def _diffusion_generation_config(self, generation_config, kwargs: dict) -> DiffusionGenerationConfig:
        """Base config (given, else the model's) as a DiffusionGenerationConfig, with ``kwargs`` applied.

        Like transformers, kwargs that are not generation fields are model kwargs; this model takes none, so they
        are rejected. Generation fields diffusion decoding does not implement are rejected unless left unset.
        """
        model_config = getattr(self, "generation_config", None)
        base = generation_config if generation_config is not None else model_config
        config = DiffusionGenerationConfig.from_generation_config(base, self.config)
        if generation_config is not None and model_config is not None:
            # as in transformers, a config passed in takes the model's special tokens where it sets none
            for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
                if getattr(config, name, None) is None:
                    setattr(config, name, getattr(model_config, name, None))
        unsupported = refused_generation_fields(config, kwargs)
        if unsupported:
            raise ValueError(f"diffusion decoding does not support {unsupported}; supported generation "
                             f"arguments: {sorted(SUPPORTED_FIELDS)}")
        unused = config.update(**kwargs)  # validates
        if unused:
            raise ValueError(
                f"The following `model_kwargs` are not used by the model: {sorted(unused)} (note: typos in the "
                f"generate arguments will also show up in this list)"
            )
        config.alg = canonical_alg(config.alg)
        if config.mask_token_id is None:
            raise ValueError("mask_token_id is not set: pass mask_token_id= or set model.config.mask_token_id")
        vocab_size = getattr(self.config, "vocab_size", None)
        if vocab_size is not None and config.mask_token_id >= vocab_size:
            raise ValueError(f"mask_token_id {config.mask_token_id} is outside the vocabulary (size {vocab_size})")
        if config.max_new_tokens is None:
            config.max_new_tokens = 64
        if config.verify is not None and "verify" not in kwargs and generation_config is None and (
                any(kwargs.get(name) is not None for name in DIFFUSION_DECODING_FIELDS)
                or self._verify_model_problem() is not None):
            config.verify = None  # the checkpoint's default verify gives way to the diffusion decoding asked for
        self._check_decoding_mode(config)
        return config

    def _check_decoding_mode(self, config: DiffusionGenerationConfig) -> None:
        """ValueError naming the setting when this model cannot serve the requested decoding."""
        block_model = getattr(self.config, "attention_mode", "bidirectional") == "block"
        if block_model:
            block = self.config.diffusion_block_size
            if config.block_length is not None and config.block_length != block:
                raise ValueError(f"block_length {config.block_length} differs from the model's diffusion_block_size "
                                 f"{block}: a block-diffusion model decodes its own blocks (leave block_length unset)")
            sub_blocks = config.sub_block_length is not None and config.sub_block_length < block
            if config.kv_cache == "dual" and not sub_blocks and config.verify is None:
                raise ValueError("kv_cache='dual' has nothing to reuse on a block-diffusion model (it sees nothing "
                                 "after the current block): use kv_cache='prefix', which is exact there, or "
                                 "sub_block_length < diffusion_block_size (the block's positions after the sub-block "
                                 "come from the cache)")
        elif config.sub_block_length is not None:
            raise ValueError("sub_block_length is for block-diffusion models (attention_mode='block'); a full-attention "
                             "model decodes in blocks of block_length")
        if config.kv_cache is not None and not self._takes_cache():
            raise ValueError(f"kv_cache={config.kv_cache!r}: {type(self).__name__}.forward takes no KV cache")
        if config.verify is not None and self._verify_model_problem() is not None:
            raise ValueError(self._verify_model_problem())

    def _takes_cache(self) -> bool:
        parameters = inspect.signature(self.forward).parameters
        return "cache" in parameters or "past_key_values" in parameters

    def _verify_model_problem(self) -> str | None:
        """Why this model cannot run ``verify='causal'`` (None: it can)."""
        if not getattr(self.config, "shift", True):
            return ("verify='causal' needs a model with the AR shift (config.shift=True): without it the causal mode "
                    "reads each token's prediction at the token itself, which it sees")
        if not self._takes_cache():
            return f"verify='causal': {type(self).__name__}.forward takes no KV cache"
        implementation = attention_implementation(self.config)
        if "flash" in implementation:
            return (f"verify='causal' needs attention patterns that attention implementation {implementation!r} "
                    "cannot take; use attn_implementation='sdpa' or 'eager'")
        return None

    @staticmethod
    def _verify_input_problem(holes, logits_processor, streamer, batch_size: int) -> str | None:
        """Why self-verified decoding cannot honour these inputs (None: it can)."""
        if bool(holes.any()):
            return "infill_mask: verify='causal' continues the prompt left to right; it cannot fill holes"
        if logits_processor:
            return ("logits_processor: verify='causal' cannot apply logits processors (they would change the causal "
                    "distribution the drafts are verified against); pass temperature / top_k / top_p")
        if streamer is not None and batch_size > 1:
            return "streamer: verify='causal' streams one sequence (batch size 1)"
        return None


__all__ = ["CAUSAL_CONTEXT_DECODING_DEFAULTS", "DIFFUSION_DECODING_FIELDS", "DiffusionGenerationConfig",
           "DiffusionGenerationMixin", "DiffusionGenerationOutput", "FAST_BLOCK_DECODING_DEFAULTS",
           "FAST_DECODING_DEFAULTS", "StepPredictions", "fast_decoding_defaults"]
