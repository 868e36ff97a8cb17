"""Diffusion decoding behind ``model.generate`` (METHOD.md section 3).

Every position to generate starts as [MASK]; prompt tokens (and, for infilling, the text after a hole) are frozen.
Each denoising step runs one forward pass with full attention, reads the prediction for position j at logit j - 1
(the AR shift), proposes a token for the masked positions and commits some of them (see ``unmasking``); committed
tokens never change again. The last step commits whatever is still masked.

``DiffusionGenerationConfig`` is a ``GenerationConfig``: it is saved as ``generation_config.json`` and ``generate``
kwargs override it as in transformers. Only ``torch`` and ``transformers`` are imported: this file travels with
checkpoints as remote code.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList, StoppingCriteriaList
from transformers.utils import ModelOutput

from .decoding_cache import KV_CACHE_MODES, KV_CACHE_REFRESH, CanvasKVStore, WindowPlanner
from .self_verification import VERIFY_MODES, verify_decode
from .modeling_diffusion_compat import generation_defaults
from .modeling_diffusion_utils import positions_from_padding
from .attention_annealing import allowed_to_additive, attention_pattern
from .unmasking import (
    ALG_ALIASES,
    ALGORITHMS,
    canonical_alg,
    entropy_bound_commit,
    proposal_entropy,
    proposal_scores,
    propose_tokens,
    random_unmask_probability,
    select_positions,
    tokens_per_step,
)

# generation-config fields diffusion decoding reads; any other field passed to `generate` must be left unset
_SUPPORTED_FIELDS = frozenset({
    "max_new_tokens", "max_length", "steps", "alg", "alg_temperature", "temperature", "top_k", "top_p", "do_sample",
    "block_length", "mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "num_return_sequences",
    "return_dict_in_generate", "output_history", "kv_cache", "kv_cache_refresh", "threshold", "entropy_bound",
    "sub_block_length", "verify", "draft_length",
})
_NULLABLE_DIFFUSION_FIELDS = frozenset({"steps", "block_length", "kv_cache", "threshold", "entropy_bound",
                                        "sub_block_length", "verify", "draft_length"})

# What `diffusion-lm adapt` writes into a new checkpoint's generation_config.json: the fastest setting at equal
# quality in benchmarks/generate_speed.py on SmolLM2-135M adapted on enwiki (README, "Fast decoding").
FAST_DECODING_DEFAULTS = {"kv_cache": "dual", "kv_cache_refresh": "incremental", "threshold": 0.9,
                          "block_length": 32, "steps": None}
# block-diffusion models decode their own blocks with an exact prefix cache
FAST_BLOCK_DECODING_DEFAULTS = {"kv_cache": "prefix", "threshold": 0.9, "block_length": None, "steps": None}
# causal-context block models decode with verify="causal" (their causal greedy decode, drafted by the diffusion mode
# and verified in one forward per round): on SmolLM2-135M adapted with 153,600 tokens (docs/fast_decoding.md) it runs
# at 0.73x the AR base against 0.58x for the threshold rule, with generative perplexity 2.54 against 2.56. Calls that
# ask for diffusion decoding (steps, alg, threshold, holes, ...) set it aside; they then commit left to right (plus
# whatever passes the threshold): the first position of a block is the causal mode's own prediction and each next one
# reads a clean prefix, not a gap (generative perplexity 2.91 against 6.27 in confidence order, the AR base's 2.53)
CAUSAL_CONTEXT_DECODING_DEFAULTS = {**FAST_BLOCK_DECODING_DEFAULTS, "alg": "left_to_right", "verify": "causal"}


# generation fields that only diffusion decoding reads: naming one in a call sets a checkpoint's default verify aside
DIFFUSION_DECODING_FIELDS = ("steps", "alg", "alg_temperature", "threshold", "entropy_bound", "block_length",
                             "sub_block_length", "kv_cache", "kv_cache_refresh")


def fast_decoding_defaults(model_config) -> dict:
    """The generation-config fields a newly adapted checkpoint of this configuration ships with."""
    if getattr(model_config, "attention_mode", None) == "block":
        if getattr(model_config, "context_attention", "block") == "causal":
            return dict(CAUSAL_CONTEXT_DECODING_DEFAULTS)
        return dict(FAST_BLOCK_DECODING_DEFAULTS)
    return dict(FAST_DECODING_DEFAULTS)


# fields that have no meaning without a KV cache / AR loop but are harmless to pass (pipelines pass some of them)
_IGNORED_FIELDS = frozenset({"use_cache", "cache_implementation", "cache_config", "max_cache_len", "disable_compile",
                             "compile_config", "transformers_version"})


class DiffusionGenerationConfig(GenerationConfig):
    r"""
    Generation settings of diffusion decoding. Every ``GenerationConfig`` field exists; those read are:

    max_new_tokens (`int`, defaults to 64):
        Masked positions appended after the prompt. 0 only fills the mask tokens already in ``input_ids``
        (infilling).
    steps (`int`, defaults to 64):
        Denoising steps (forward passes at most). Fewer steps than masks commit several tokens per step; more steps
        than masks leave some steps with nothing to commit (they cost no forward pass). ``None``: one step per mask.
    alg (`str`, defaults to `"confidence"`):
        Which masked positions a step commits: ``"random"``, ``"confidence"``, ``"margin"``, ``"entropy"`` or
        ``"left_to_right"`` (Dream / LLaDA names ``origin``, ``maskgit_plus``, ``low_confidence``, ``topk_margin``
        are accepted too).
    alg_temperature (`float`, defaults to 0.0):
        0 commits the best-scored positions; > 0 draws them with probabilities softmax(score / alg_temperature).
    temperature (`float`, *optional*):
        Unset or 0 is greedy; > 0 samples the proposed tokens (with ``top_k`` / ``top_p`` when set).
        ``do_sample=False`` forces greedy; ``do_sample=True`` with temperature unset samples at temperature 1.
    top_k (`int`, *optional*), top_p (`float`, *optional*):
        Filters of the proposal distribution. Under greedy decoding the chosen token (the argmax) is unchanged, but
        the confidence / margin / entropy that orders the commits (and meets ``threshold``) is read from the
        renormalised, filtered distribution, as in Dream.
    block_length (`int`, *optional*):
        Semi-autoregressive decoding: the masked positions, left to right, form blocks of this many tokens; block b
        is finished before block b + 1 starts, and the steps are split evenly across blocks.
    mask_token_id (`int`, *optional*):
        The [MASK] id (defaults to ``model.config.mask_token_id``). In ``input_ids`` it marks the holes to fill.
    eos_token_id (`int` or `list[int]`, *optional*), pad_token_id (`int`, *optional*):
        Every generated position after the first generated EOS becomes ``pad_token_id`` in the result.
    output_history (`bool`, defaults to False):
        With ``return_dict_in_generate=True``, also return the sequences after every step.
    kv_cache (`str`, *optional*):
        ``None`` recomputes the whole sequence at every step (exact). ``"prefix"`` reuses the keys / values of
        everything before the current block across the block's steps; ``"dual"`` also those after it (only the
        block is recomputed). Approximate for full-attention models (Fast-dLLM), exact for block-diffusion models
        (``attention_mode="block"``, which see nothing after the current block: use ``"prefix"``). Needs blocks
        (``block_length``) to pay off. See ``decoding_cache``.
    kv_cache_refresh (`str`, defaults to `"incremental"`):
        When a full-attention model's cache is recomputed: ``"incremental"`` (only the block just finished, once),
        ``"block"`` (the whole sequence at each block's first step, as Fast-dLLM) or ``"step"`` (the whole sequence
        before every step: as exact as no cache, for verification).
    threshold (`float`, *optional*):
        Confidence-threshold parallel decoding: besides the schedule's count, a step commits every masked position
        of the current block whose proposal has probability >= threshold, so ``steps`` is an upper bound and a
        block may finish in fewer forward passes. ``None`` or 1.0: the plain schedule.
    entropy_bound (`float`, *optional*):
        Entropy-bound parallel decoding (DiffusionGemma's rule), beside ``threshold``: besides the schedule's count, a
        step commits, in confidence order, the largest set of the block's masked positions whose proposal entropies
        (nats) sum to at most this bound (at least the most confident one). ``None``: off.
    sub_block_length (`int`, *optional*):
        Block-diffusion models only (Fast-dLLM v2): each block is decoded in sub-blocks of this many positions, left to
        right. With ``kv_cache="dual"`` a step recomputes only the sub-block and reads the block's positions after it
        from the cache (approximate: inside a block attention is bidirectional); ``kv_cache_refresh="step"``
        recomputes the whole block before every step (as exact as no cache, for verification).
    verify (`str`, *optional*):
        ``"causal"``: self-verified decoding (see ``self_verification``). Diffusion drafts ``draft_length`` tokens in
        one forward pass, the model's own causal mode checks them in one more; greedy output equals the model's causal
        greedy decode token for token, sampled output follows the causal model's distribution (speculative
        sampling). Block models with token-causal context (``context_attention="causal"``) verify a draft and draft
        the next one in the same forward pass (``fused_verify_decode``). ``steps``, ``alg``, ``threshold``,
        ``entropy_bound`` and ``block_length`` do not apply. ``None``: off. When ``verify`` is a checkpoint's
        *default* (its generation_config.json), a call that names a diffusion-decoding setting (``steps``, ``alg``,
        ``threshold``, ``entropy_bound``, ``block_length``, ``sub_block_length``, ``kv_cache``, ...), fills holes
        (``infill_mask``), passes ``logits_processor`` or streams a batch decodes by diffusion instead, as does a
        model that cannot verify (flash attention, no KV cache, no shift); ``verify=None`` always does.
    draft_length (`int`, *optional*):
        Draft tokens per verification with ``verify``. Default: a block model's ``diffusion_block_size`` (a draft
        never crosses the end of the model's current block), else ``block_length``, else 8.
    """

    def __init__(
        self,
        *,
        max_new_tokens: int | None = 64,
        steps: int | None = 64,
        alg: str = "confidence",
        alg_temperature: float | None = 0.0,
        block_length: int | None = None,
        mask_token_id: int | None = None,
        output_history: bool = False,
        kv_cache: str | None = None,
        kv_cache_refresh: str = "incremental",
        threshold: float | None = None,
        entropy_bound: float | None = None,
        sub_block_length: int | None = None,
        verify: str | None = None,
        draft_length: int | None = None,
        **kwargs,
    ):
        # set before GenerationConfig.__init__, which ends by calling validate()
        self.steps = steps
        self.alg = alg
        self.alg_temperature = alg_temperature if alg_temperature is not None else 0.0
        self.block_length = block_length
        self.mask_token_id = mask_token_id
        self.output_history = output_history
        self.kv_cache = kv_cache
        self.kv_cache_refresh = kv_cache_refresh
        self.threshold = threshold
        self.entropy_bound = entropy_bound
        self.sub_block_length = sub_block_length
        self.verify = verify
        self.draft_length = draft_length
        # None means "unset" in transformers 5; an unset length takes the diffusion default
        kwargs["max_new_tokens"] = max_new_tokens if max_new_tokens is not None else 64
        super().__init__(**kwargs)

    @classmethod
    def from_generation_config(cls, config: GenerationConfig | None, model_config=None) -> "DiffusionGenerationConfig":
        """A ``DiffusionGenerationConfig`` from any generation config (a copy, never the object itself).

        A model reloaded by transformers may hold a plain ``GenerationConfig`` whose extra attributes are the
        diffusion fields of ``generation_config.json``; those are kept, unset fields take the defaults. Ids missing
        from the generation config are taken from the model config.
        """
        if isinstance(config, cls):
            result = copy.deepcopy(config)
        else:
            values = config.to_dict() if config is not None else {}
            # unset fields take the defaults; a diffusion field saved as null keeps its meaning (steps=None: one
            # step per masked token, threshold / kv_cache / block_length None: off)
            values = {k: v for k, v in values.items() if v is not None or k in _NULLABLE_DIFFUSION_FIELDS}
            values.pop("_from_model_config", None)  # would make GenerationConfig drop the diffusion fields
            result = cls(**values)
        if model_config is not None:
            for name in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
                if getattr(result, name, None) is None and getattr(model_config, name, None) is not None:
                    setattr(result, name, getattr(model_config, name))
        return result

    @classmethod
    def from_model_config(cls, model_config) -> "DiffusionGenerationConfig":
        """Defaults with the model config's token ids (transformers calls this when a model is constructed; its own
        version compares against a plain ``GenerationConfig``, which lacks the diffusion fields)."""
        return cls.from_generation_config(None, model_config)

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None):
        """ValueError naming the field for a value diffusion decoding cannot use. (GenerationConfig's own checks are
        about AR decoding, and reject ``max_new_tokens=0``, which infilling needs.)"""

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        if isinstance(self.alg, str):
            canonical_alg(self.alg)
        else:
            raise ValueError(f"alg must be one of {ALGORITHMS + tuple(ALG_ALIASES)}; got {self.alg!r}")
        if self.steps is not None and (not is_int(self.steps) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1 (or None: one step per masked token), got {self.steps!r}")
        if self.max_new_tokens is not None and (not is_int(self.max_new_tokens) or self.max_new_tokens < 0):
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 1):
            raise ValueError(f"max_length must be an integer >= 1, got {self.max_length!r}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 0):
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not self.alg_temperature >= 0:
            raise ValueError(f"alg_temperature must be >= 0, got {self.alg_temperature!r}")
        if self.block_length is not None and (not is_int(self.block_length) or self.block_length < 1):
            raise ValueError(f"block_length must be an integer >= 1, got {self.block_length!r}")
        if self.num_return_sequences is not None and (
            not is_int(self.num_return_sequences) or self.num_return_sequences < 1
        ):
            raise ValueError(f"num_return_sequences must be an integer >= 1, got {self.num_return_sequences!r}")
        for name in ("mask_token_id", "pad_token_id", "bos_token_id"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 0):
                raise ValueError(f"{name} must be a token id (integer >= 0), got {value!r}")
        if self.kv_cache not in (None, *KV_CACHE_MODES):
            raise ValueError(f"kv_cache must be None, 'prefix' or 'dual', got {self.kv_cache!r}")
        if self.kv_cache_refresh not in KV_CACHE_REFRESH:
            raise ValueError(f"kv_cache_refresh must be one of {KV_CACHE_REFRESH}, got {self.kv_cache_refresh!r}")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float))
                                           or not 0 < self.threshold <= 1):
            raise ValueError(f"threshold must be a number in (0, 1] (or None), got {self.threshold!r}")
        if self.entropy_bound is not None and (isinstance(self.entropy_bound, bool)
                                               or not isinstance(self.entropy_bound, (int, float))
                                               or not self.entropy_bound > 0):
            raise ValueError(f"entropy_bound must be a number > 0 (nats; or None), got {self.entropy_bound!r}")
        if self.sub_block_length is not None and (not is_int(self.sub_block_length) or self.sub_block_length < 1):
            raise ValueError(f"sub_block_length must be an integer >= 1 (or None), got {self.sub_block_length!r}")
        if self.verify is not None and self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be None or one of {VERIFY_MODES}, got {self.verify!r}")
        if self.draft_length is not None and (not is_int(self.draft_length) or self.draft_length < 1):
            raise ValueError(f"draft_length must be an integer >= 1 (or None), got {self.draft_length!r}")

    def sampling_temperature(self) -> float:
        """The temperature proposals are drawn at; 0 means greedy."""
        if self.do_sample is False or self.temperature == 0:
            return 0.0
        if self.temperature is None:
            return 1.0 if self.do_sample else 0.0
        return float(self.temperature)

    def to_diff_dict(self) -> dict[str, Any]:
        # a sampling temperature is saved with do_sample=True, so that transformers, loading the file as a plain
        # GenerationConfig, does not warn that temperature is set while do_sample is not
        values = super().to_diff_dict()
        if self.do_sample is None and self.temperature:
            values["do_sample"] = True
        return values

    def eos_token_ids(self) -> list[int]:
        eos = self.eos_token_id
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


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


@dataclass
class StepPredictions:
    """What ``step_callback`` receives for a step that ran the model: ``logits[:, i]`` (shift undone) is the
    prediction for canvas position ``positions[i]`` - the current block's masked positions, the only ones for which
    the LM head ran."""

    positions: torch.LongTensor
    logits: torch.Tensor


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
        attention_mask = kwargs.pop("attention_mask", None)
        if isinstance(generation_config, torch.Tensor):  # generate(ids, mask): the order of earlier releases
            if attention_mask is not None:
                raise ValueError("attention_mask passed twice (positionally and by name)")
            attention_mask, generation_config = generation_config, None
        if "inputs" in kwargs:
            if input_ids is not None:
                raise ValueError("pass the prompt once: input_ids or inputs")
            input_ids = kwargs.pop("inputs")
        infill_mask = kwargs.pop("infill_mask", None)
        runtime = {name: kwargs.pop(name, None) for name in _RUNTIME_KWARGS}
        config = self._diffusion_generation_config(generation_config, kwargs)

        given_shape = None if input_ids is None else tuple(input_ids.shape)
        input_ids, attention_mask = self._prepare_prompt(input_ids, attention_mask, config)
        holes = self._prompt_holes(input_ids, attention_mask, infill_mask, given_shape, config.mask_token_id)
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
        self._check_length(prompt_length + max_new_tokens)

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

        result = self._decode_in_aligned_groups(
            input_ids, attention_mask, holes, max_new_tokens, config, streamer=streamer,
            logits_processor=logits_processor, stopping_criteria=stopping_criteria, **runtime,
        )
        if streamer is not None:
            streamer.put(_streamed_tokens(result.sequences, result.generated, config.eos_token_ids()).cpu())
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
        unsupported = [
            name for name, value in kwargs.items()
            if hasattr(config, name) and name not in _SUPPORTED_FIELDS and name not in _IGNORED_FIELDS
            and value is not None and value != generation_defaults().get(name, object())
        ]
        if unsupported:
            raise ValueError(f"diffusion decoding does not support {sorted(unsupported)}; supported generation "
                             f"arguments: {sorted(_SUPPORTED_FIELDS)}")
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
        implementation = getattr(self.config, "_attn_implementation", None) or ""
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

    def _prepare_prompt(self, input_ids, attention_mask, config: DiffusionGenerationConfig):
        """(input_ids, attention_mask) on the model's device, 2D, with a BOS column where the prompt is empty."""
        device = self.device
        if input_ids is None:
            input_ids = torch.empty(1, 0, dtype=torch.long, device=device)
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a (batch_size, length) tensor of token ids")
        if input_ids.dtype not in (torch.long, torch.int, torch.int32, torch.int16):
            raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
        input_ids = input_ids.to(device=device, dtype=torch.long)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        # a 0 after a 1 means right padding: the first new token would be read from a padding logit
        if bool((attention_mask[:, 1:] < attention_mask[:, :-1]).any()):
            raise ValueError("attention_mask: right padding is not supported; pad prompts on the left "
                             "(tokenizer.padding_side = 'left')")
        vocab_size = getattr(self.config, "vocab_size", None)
        if vocab_size is not None and input_ids.numel():
            real = input_ids[attention_mask.bool()]
            if real.numel() and (int(real.min()) < 0 or int(real.max()) >= vocab_size):
                bad = int(real[(real < 0) | (real >= vocab_size)][0])
                raise ValueError(f"input_ids: token id {bad} is outside the vocabulary (ids 0..{vocab_size - 1})")
        if input_ids.shape[1] == 0:
            # position 0 is given, never predicted: an empty prompt starts from BOS
            bos = config.bos_token_id
            if bos is None:
                raise ValueError("the prompt is empty and bos_token_id is not set: pass a prompt or bos_token_id=")
            input_ids = torch.full((input_ids.shape[0], 1), bos, dtype=torch.long, device=device)
            attention_mask = torch.ones_like(input_ids)
        return input_ids, attention_mask

    def _prompt_holes(self, input_ids, attention_mask, infill_mask, given_shape, mask_id: int) -> torch.Tensor:
        """(B, L) bool: the prompt positions to generate. From ``infill_mask`` when given; else the positions holding
        a dedicated mask token. A reused mask id is an ordinary token, so identity cannot tell a hole from text."""
        if infill_mask is not None:
            if not isinstance(infill_mask, torch.Tensor) or tuple(infill_mask.shape) != given_shape:
                raise ValueError(f"infill_mask must be a tensor of the shape of input_ids {given_shape}, got "
                                 f"{tuple(infill_mask.shape) if isinstance(infill_mask, torch.Tensor) else infill_mask!r}")
            if infill_mask.dtype != torch.bool:
                raise ValueError(f"infill_mask must be a bool tensor (True = position to generate), got "
                                 f"{infill_mask.dtype}")
            holes = infill_mask.to(input_ids.device)
            if holes.shape[1] < input_ids.shape[1]:  # an empty prompt became [BOS], which is given
                holes = torch.zeros_like(input_ids, dtype=torch.bool)
            if bool((holes & ~attention_mask.bool()).any()):
                raise ValueError("infill_mask marks a padding position (attention_mask 0) to generate")
            return holes
        if getattr(self.config, "mask_token_reused", False):
            return torch.zeros_like(input_ids, dtype=torch.bool)
        return attention_mask.bool() & (input_ids == mask_id)

    def _check_length(self, length: int) -> None:
        limit = getattr(self.config, "max_position_embeddings", None) or getattr(self.config, "n_positions", None)
        if limit is not None and length > limit:
            raise ValueError(
                f"max_new_tokens: prompt + new tokens = {length} positions, more than the model's {limit}"
            )

    # --- the reverse process -----------------------------------------------------------------------------------
    def _decode_in_aligned_groups(self, input_ids, attention_mask, holes, max_new_tokens, config,
                                  **runtime) -> "_DecodeResult":
        """A block-diffusion model's blocks start at multiples of its block size counted from each sequence's first
        token; rows whose left padding differs modulo the block size are decoded as separate batches."""
        block = getattr(self.config, "diffusion_block_size", None)
        if getattr(self.config, "attention_mode", None) != "block" or input_ids.shape[0] == 1:
            return self._diffusion_decode(input_ids, attention_mask, holes, max_new_tokens, config, **runtime)
        phase = (attention_mask.shape[1] - attention_mask.sum(dim=1)) % block
        groups = [torch.nonzero(phase == value).flatten() for value in phase.unique()]
        if len(groups) == 1:
            return self._diffusion_decode(input_ids, attention_mask, holes, max_new_tokens, config, **runtime)
        if config.output_history or runtime.get("streamer") is not None:
            raise ValueError("output_history / streamer need prompts whose lengths agree modulo the model's "
                             "diffusion_block_size (their blocks are decoded as separate batches)")
        parts = [(rows, self._diffusion_decode(input_ids[rows], attention_mask[rows], holes[rows], max_new_tokens,
                                               config, **runtime)) for rows in groups]
        first = parts[0][1]
        sequences = torch.empty((input_ids.shape[0], first.sequences.shape[1]), dtype=torch.long,
                                device=input_ids.device)
        generated = torch.empty_like(sequences, dtype=torch.bool)
        tokens_per_forward = torch.empty(input_ids.shape[0], device=input_ids.device)
        forward_passes = torch.empty(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        for rows, part in parts:
            sequences[rows], generated[rows] = part.sequences, part.generated
            tokens_per_forward[rows], forward_passes[rows] = part.tokens_per_forward, part.forward_passes
        return _DecodeResult(sequences, generated, None, tokens_per_forward, forward_passes)

    def _diffusion_decode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        holes: torch.Tensor,
        max_new_tokens: int,
        config: DiffusionGenerationConfig,
        generator: torch.Generator | None = None,
        streamer=None,
        step_callback: Callable | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
    ) -> "_DecodeResult":
        batch_size, device = input_ids.shape[0], input_ids.device
        mask_id = config.mask_token_id
        new = torch.full((batch_size, max_new_tokens), mask_id, dtype=torch.long, device=device)
        x = torch.cat([torch.where(holes, mask_id, input_ids), new], dim=1)
        length = x.shape[1]
        attention_mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)
        attended = attention_mask.bool()
        # positions to generate: the prompt's holes and the appended positions. From here on, which positions are
        # still masked is bookkeeping, never read back from token identity (a reused mask id is also text).
        generated = torch.cat([holes, torch.ones_like(new, dtype=torch.bool)], dim=1)
        self._check_first_tokens(generated, attended)
        padded = not bool(attended.all())
        model_attention_mask = attention_mask if padded else None
        positions = positions_from_padding(attention_mask, batch_size, length, device)
        key_is_token = attended if padded else None

        shift = getattr(self.config, "shift", True)
        attention_mode = getattr(self.config, "attention_mode", "bidirectional")
        exact_blocks = attention_mode == "block"
        num_generated = generated.sum(dim=1)
        if exact_blocks:
            blocks, spans = self._aligned_block_layout(generated, attention_mask, self.config.diffusion_block_size)
            if config.sub_block_length is not None and config.sub_block_length < self.config.diffusion_block_size:
                blocks, spans = _sub_block_layout(blocks, spans, config.sub_block_length)
        else:
            blocks = self._block_layout(generated, num_generated, config)
            spans = [(None, None)] * len(blocks)
        steps = config.steps if config.steps is not None else max(1, int(num_generated.max()))
        steps_per_block = _split_steps(steps, len(blocks))
        planner = WindowPlanner(config.kv_cache, config.kv_cache_refresh, exact_blocks, shift, length, device)
        store = CanvasKVStore()

        if streamer is not None:  # inputs are valid: the streamer sees the prompt first, as in transformers
            streamer.put(input_ids.cpu())
        temperature = config.sampling_temperature()
        threshold = config.threshold if config.threshold is not None and config.threshold < 1.0 else None
        entropy_bound = config.entropy_bound
        parallel_rule = threshold is not None or entropy_bound is not None  # commits beyond the schedule
        sub_block_cache = exact_blocks and config.kv_cache == "dual"  # spans then carry the diffusion block's
        previous_settled = None
        eos_ids = config.eos_token_ids()
        eos_tensor = torch.tensor(eos_ids, device=device) if eos_ids else None
        fill_id = _pad_id(config)
        masked = generated.clone()
        active = torch.ones(batch_size, dtype=torch.bool, device=device)  # rows still decoding
        forward_passes = torch.zeros(batch_size, dtype=torch.long, device=device)
        history: list[torch.Tensor] = []
        step = 0
        for in_block, block_steps, (settled, span_end) in zip(blocks, steps_per_block, spans):
            in_block = in_block & active[:, None]
            columns = in_block.any(dim=0).nonzero().flatten()
            if len(columns) == 0:
                continue
            block_start, block_end = int(columns[0]), int(columns[-1]) + 1
            counts = tokens_per_step(in_block.sum(dim=1), block_steps)  # (block_steps, B)
            first_step = True
            for j in range(block_steps):
                eligible = masked & in_block
                last = j == block_steps - 1
                if config.alg == "random":
                    # each masked position independently, with the reverse-step probability of the linear schedule
                    p = random_unmask_probability(block_steps - j - 1, block_steps)
                    draw = torch.rand(x.shape, device=device, generator=generator)
                    commit = eligible if last else eligible & (draw < p)
                    to_propose = eligible if parallel_rule else commit
                    count = None
                else:
                    count = eligible.sum(dim=1) if last else torch.minimum(counts[j], eligible.sum(dim=1))
                    commit = None
                    to_propose = eligible & (count > 0)[:, None]

                predictions = None
                if bool(to_propose.any()):  # a step that commits nothing costs no forward pass
                    if sub_block_cache:
                        windows = planner.sub_block_windows(block_start, block_end, settled, span_end,
                                                            settled != previous_settled)
                        previous_settled = settled
                    else:
                        windows = planner.windows(block_start, span_end if span_end is not None else block_end,
                                                  first_step, settled if settled is not None else 0)
                    first_step = False
                    wanted = to_propose.any(dim=0).nonzero().flatten()  # columns whose prediction is read
                    # a causal-context block model: everything before the block being denoised is context and
                    # attends token-causally, as the clean stream it was trained on
                    causal_before = positions[:, settled] if exact_blocks and getattr(
                        self.config, "context_attention", "block") == "causal" else None
                    for window in windows:
                        logits = self._window_logits(x, model_attention_mask, positions, key_is_token, window, store,
                                                     wanted, shift, attention_mode, causal_before)
                        forward_passes += active.long()
                    predictions = StepPredictions(positions=wanted, logits=logits)
                    column_index = torch.full((length,), -1, dtype=torch.long, device=device)
                    column_index[wanted] = torch.arange(len(wanted), device=device)
                    rows, cols = to_propose.nonzero(as_tuple=True)
                    step_logits = logits[rows, column_index[cols]].float()
                    step_logits[:, mask_id] = float("-inf")  # never propose [MASK] itself
                    if logits_processor:
                        step_logits = logits_processor(x[rows], step_logits)
                    tokens, probs = propose_tokens(step_logits, temperature, config.top_k, config.top_p, generator)
                    confidence = probs.gather(-1, tokens[:, None]).squeeze(-1)
                    if commit is None:
                        scores = torch.full(x.shape, float("-inf"), device=device)
                        if config.alg == "left_to_right":
                            scores[to_propose] = -positions[to_propose].float()
                        elif config.alg == "confidence":
                            scores[to_propose] = confidence
                        else:
                            scores[to_propose] = proposal_scores(config.alg, probs, tokens)
                        commit = select_positions(scores, to_propose, count, config.alg_temperature, generator)
                    if threshold is not None:
                        confident = torch.zeros_like(to_propose)
                        confident[rows, cols] = confidence >= threshold
                        commit = commit | confident
                    if entropy_bound is not None:
                        confidence_map = torch.zeros(x.shape, device=device)
                        entropy_map = torch.zeros(x.shape, device=device)
                        confidence_map[rows, cols] = confidence
                        entropy_map[rows, cols] = proposal_entropy(probs)
                        commit = commit | entropy_bound_commit(confidence_map, entropy_map, to_propose, entropy_bound)
                    proposed = x.clone()
                    proposed[rows, cols] = tokens
                    x = torch.where(commit, proposed, x)
                    masked &= ~commit

                if config.output_history:
                    history.append(x.clone())
                if step_callback is not None:
                    step_callback(step, x, predictions)
                if streamer is not None and hasattr(streamer, "put_draft"):
                    streamer.put_draft(_streamed_tokens(x, generated, []).cpu())
                step += 1
                if not bool((masked & in_block).any()) and parallel_rule:
                    break  # the threshold finished the block early: its remaining steps would commit nothing

            # early stop: a row whose EOS is committed (or that a stopping criterion ends) decodes no later block
            finished = torch.zeros_like(active)
            if eos_tensor is not None:
                finished |= (generated & ~masked & torch.isin(x, eos_tensor)).any(dim=1)
            if stopping_criteria:
                finished |= stopping_criteria(x[:, :block_end], None).to(device)
            newly_done = finished & active
            if bool(newly_done.any()):
                rest = masked & newly_done[:, None]
                x = x.masked_fill(rest, fill_id if fill_id is not None else mask_id)
                masked &= ~rest
                active &= ~newly_done
            if not bool(active.any()):
                break

        sequences = _pad_after_eos(x, generated, eos_ids, fill_id)
        return _DecodeResult(sequences, generated, tuple(history) if config.output_history else None,
                             _tokens_per_forward(sequences, generated, eos_ids, forward_passes), forward_passes)

    def _window_logits(self, x, model_attention_mask, positions, key_is_token, window, store: CanvasKVStore,
                       wanted: torch.Tensor, shift: bool, attention_mode: str,
                       causal_before: torch.Tensor | None = None) -> torch.Tensor:
        """(B, len(wanted), V): predictions for canvas positions ``wanted`` from one forward pass over the window,
        with the LM head run only on the rows read (one to the left of each wanted position under the shift).
        ``causal_before`` (B,): positions before it attend token-causally (a causal-context block model)."""
        rows = wanted - 1 if shift else wanted
        block_size = getattr(self.config, "diffusion_block_size", None)
        if window.cached is None:  # no cache: the whole canvas, as the model sees it without any decoding machinery
            if causal_before is None:
                outputs = self(input_ids=x, attention_mask=model_attention_mask, logits_to_keep=rows)
            else:
                pattern = attention_pattern(attention_mode, positions, positions, key_is_token, block_size=block_size,
                                            causal_before=causal_before)
                outputs = self(input_ids=x, attention_mask=allowed_to_additive(pattern, self.dtype),
                               position_ids=positions, logits_to_keep=rows)
            return outputs.logits if hasattr(outputs, "logits") else outputs[0]
        cache = store.cache_for(window.cached)
        query_positions = positions[:, window.start:window.end]
        key_positions = torch.cat([positions[:, window.cached], query_positions], dim=1)
        key_mask = None
        if key_is_token is not None:
            key_mask = torch.cat([key_is_token[:, window.cached], key_is_token[:, window.start:window.end]], dim=1)
        pattern = attention_pattern(attention_mode, query_positions, key_positions, key_mask, block_size=block_size,
                                    causal_before=causal_before)
        layer_mask = None if pattern is None else allowed_to_additive(pattern, self.dtype)
        outputs = self(input_ids=x[:, window.start:window.end], attention_mask=layer_mask,
                       position_ids=query_positions, cache=cache, logits_to_keep=rows - window.start)
        store.write_back(cache, window, x.shape[1])
        return outputs.logits

    def _check_first_tokens(self, generated: torch.Tensor, attended: torch.Tensor) -> None:
        """With the shift nothing predicts a sequence's first token, so it must be given."""
        if not getattr(self.config, "shift", True):
            return
        has_token = attended.any(dim=1)
        first = attended.long().argmax(dim=1)
        first_is_masked = generated.gather(1, first[:, None]).squeeze(1) & has_token
        if bool(first_is_masked.any()):
            row = int(first_is_masked.nonzero()[0, 0])
            raise ValueError(
                f"input_ids: sequence {row} starts with a position to generate, but the first position is never "
                "predicted (the shift: position j is read from logit j - 1); start it with BOS or a prompt token"
            )

    @staticmethod
    def _block_layout(generated: torch.Tensor, num_generated: torch.Tensor, config) -> list[torch.Tensor]:
        """(B, L) bool per block. Without block_length: one block of every position to generate."""
        if config.block_length is None:
            return [generated]
        lengths = num_generated.unique()
        if len(lengths) != 1:
            raise ValueError(
                f"block_length needs the same number of positions to generate in every sequence, got {lengths.tolist()}"
            )
        length = int(lengths[0])
        if length == 0:  # nothing to generate
            return [generated]
        # the k-th position to generate in a row (left to right) belongs to block k // block_length; a last block
        # may be shorter
        order = generated.long().cumsum(dim=1) - 1
        block_of = torch.where(generated, order // config.block_length, -1)
        return [block_of == b for b in range(-(-length // config.block_length))]

    @staticmethod
    def _aligned_block_layout(generated: torch.Tensor, attention_mask: torch.Tensor, block_size: int):
        """A block-diffusion model's blocks: positions p // block_size (p counted from each row's first token; the
        rows share their padding modulo block_size). Returns the (B, L) bool per block holding positions to generate,
        and each such block's (start, end) columns."""
        length = generated.shape[1]
        padding = int(attention_mask.shape[1] - attention_mask[0].sum())
        column_block = torch.div(torch.arange(length, device=generated.device) - padding + block_size * length,
                                 block_size, rounding_mode="floor")
        blocks, spans = [], []
        for block in column_block[generated.any(dim=0)].unique().tolist():
            columns = (column_block == block).nonzero().flatten()
            blocks.append(generated & (column_block == block)[None, :])
            spans.append((int(columns[0]), int(columns[-1]) + 1))
        return blocks, spans


@dataclass
class _DecodeResult:
    sequences: torch.Tensor
    generated: torch.Tensor
    history: tuple[torch.Tensor, ...] | None
    tokens_per_forward: torch.Tensor | None = None
    forward_passes: torch.Tensor | None = None


def _tokens_per_forward(sequences, generated, eos_ids, forward_passes) -> torch.Tensor:
    """Generated tokens up to and including the first EOS, per forward pass, per row."""
    if eos_ids:
        is_eos = generated & torch.isin(sequences, torch.tensor(eos_ids, device=sequences.device))
        after_first_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
        counted = generated & ~after_first_eos
    else:
        counted = generated
    return counted.sum(dim=1).float() / forward_passes.clamp(min=1).float()


def _sub_block_layout(blocks, spans, sub_block_length: int):
    """A block-diffusion model's blocks cut into sub-blocks of ``sub_block_length`` positions counted from each
    block's start (Fast-dLLM v2); every sub-block keeps its block's (start, end) span."""
    sub_blocks, sub_spans = [], []
    for in_block, (start, end) in zip(blocks, spans):
        columns = torch.arange(in_block.shape[1], device=in_block.device)
        for sub_start in range(start, end, sub_block_length):
            piece = in_block & ((columns >= sub_start) & (columns < sub_start + sub_block_length))[None, :]
            if bool(piece.any()):
                sub_blocks.append(piece)
                sub_spans.append((start, end))
    return sub_blocks, sub_spans


def _split_steps(steps: int, num_blocks: int) -> list[int]:
    """Steps per block: as even as possible, the remainder to the first blocks."""
    if steps < num_blocks:
        raise ValueError(f"steps ({steps}) must be at least the number of blocks ({num_blocks}): every block needs "
                         "a step; pass more steps or a larger block_length")
    return [steps // num_blocks + (b < steps % num_blocks) for b in range(num_blocks)]


def _pad_id(config: DiffusionGenerationConfig) -> int | None:
    if config.pad_token_id is not None:
        return config.pad_token_id
    eos = config.eos_token_ids()
    return eos[0] if eos else None


def _pad_after_eos(x: torch.Tensor, generated: torch.Tensor, eos_ids: list[int], pad_id: int | None) -> torch.Tensor:
    """Generated positions after the first generated EOS of each row hold ``pad_id``; given tokens are kept."""
    if not eos_ids or pad_id is None:
        return x
    is_eos = generated & torch.isin(x, torch.tensor(eos_ids, device=x.device))
    after_first_eos = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return x.masked_fill(after_first_eos & generated, pad_id)


def _streamed_tokens(x: torch.Tensor, generated: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """(B, n) generated tokens, left to right; with ``eos_ids``, cut after the first EOS (streamers take batch 1)."""
    rows = [row[mask] for row, mask in zip(x, generated)]
    if eos_ids and len(rows) == 1:
        row = rows[0]
        hits = torch.isin(row, torch.tensor(eos_ids, device=row.device)).nonzero()
        rows = [row[: int(hits[0, 0]) + 1] if len(hits) else row]
    width = max(len(r) for r in rows)
    if any(len(r) != width for r in rows):  # holes of different sizes: stream the first row only
        return rows[0][None]
    return torch.stack(rows)


__all__ = ["DiffusionGenerationConfig", "DiffusionGenerationMixin", "DiffusionGenerationOutput", "StepPredictions",
           "fast_decoding_defaults"]
