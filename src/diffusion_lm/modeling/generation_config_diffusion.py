"""``DiffusionGenerationConfig``: the settings of diffusion decoding, saved as ``generation_config.json``.

As transformers' ``DiffusionGemmaGenerationConfig``: the fields diffusion decoding reads are declared here, an
unknown keyword is refused, and the ``GenerationConfig`` fields it does not implement are accepted only at their
neutral value (``AR_NEUTRAL_VALUES``), so a call that asks for beam search or a repetition penalty fails instead of
being ignored. Only ``torch`` and ``transformers`` are imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import GenerationConfig

from .decoding_cache import KV_CACHE_MODES, KV_CACHE_REFRESH
from .self_verification import VERIFY_MODES
from .unmasking import ALG_ALIASES, ALGORITHMS, canonical_alg

# generation-config fields diffusion decoding reads; any other field passed to `generate` must be left unset
SUPPORTED_FIELDS = frozenset({
    "max_new_tokens", "max_length", "steps", "alg", "alg_temperature", "temperature", "top_k", "top_p", "do_sample",
    "block_length", "mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "num_return_sequences",
    "return_dict_in_generate", "output_history", "kv_cache", "kv_cache_refresh", "threshold", "entropy_bound",
    "sub_block_length", "verify", "draft_length",
})
NULLABLE_DIFFUSION_FIELDS = frozenset({"steps", "block_length", "kv_cache", "threshold", "entropy_bound",
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
IGNORED_FIELDS = frozenset({"use_cache", "cache_implementation", "cache_config", "max_cache_len", "disable_compile",
                             "compile_config", "transformers_version"})


# AR-only ``GenerationConfig`` fields at the value that asks for nothing (transformers' own defaults for them): a
# generate argument equal to it is not a request, any other value is refused
AR_NEUTRAL_VALUES = {
    "min_length": 0, "early_stopping": False, "num_beams": 1, "num_beam_groups": 1, "diversity_penalty": 0.0,
    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "output_scores": False, "remove_invalid_values": False,
    "num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.4,
    "assistant_lookbehind": 10, "target_lookbehind": 10,
}
# the fields DiffusionGenerationConfig adds to GenerationConfig's (max_new_tokens is GenerationConfig's, our default)
OWN_FIELDS = ("steps", "alg", "alg_temperature", "block_length", "mask_token_id", "output_history", "kv_cache",
              "kv_cache_refresh", "threshold", "entropy_bound", "sub_block_length", "verify", "draft_length")
# keys a saved generation_config.json may hold besides the fields
_METADATA_KEYS = frozenset({"_commit_hash", "_from_model_config", "transformers_version"})
_GENERATION_CONFIG_FIELDS: frozenset[str] | None = None


def _generation_config_fields() -> frozenset[str]:
    """Every field a plain ``GenerationConfig`` of the installed transformers has (its public ``to_dict``)."""
    global _GENERATION_CONFIG_FIELDS
    if _GENERATION_CONFIG_FIELDS is None:
        _GENERATION_CONFIG_FIELDS = frozenset(GenerationConfig().to_dict())
    return _GENERATION_CONFIG_FIELDS


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
        unknown = set(kwargs) - _generation_config_fields() - _METADATA_KEYS
        if unknown:
            raise ValueError(f"DiffusionGenerationConfig has no field {sorted(unknown)}")
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
            values = {k: v for k, v in values.items() if v is not None or k in NULLABLE_DIFFUSION_FIELDS}
            values.pop("_from_model_config", None)  # would make GenerationConfig drop the diffusion fields
            # a loaded file may carry entries of another generator: kept out (a new config refuses them)
            known = _generation_config_fields() | _METADATA_KEYS | set(OWN_FIELDS)
            values = {k: v for k, v in values.items() if k in known}
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


def refused_generation_fields(config: DiffusionGenerationConfig, kwargs: dict) -> list[str]:
    """The ``GenerationConfig`` fields among ``kwargs`` that diffusion decoding does not implement and that ask for
    something (set, and not at their neutral value)."""
    return sorted(
        name for name, value in kwargs.items()
        if hasattr(config, name) and name not in SUPPORTED_FIELDS and name not in IGNORED_FIELDS
        and value is not None and value != AR_NEUTRAL_VALUES.get(name, object())
    )


__all__ = ["AR_NEUTRAL_VALUES", "CAUSAL_CONTEXT_DECODING_DEFAULTS", "DIFFUSION_DECODING_FIELDS",
           "DiffusionGenerationConfig", "FAST_BLOCK_DECODING_DEFAULTS", "FAST_DECODING_DEFAULTS", "IGNORED_FIELDS",
           "OWN_FIELDS", "SUPPORTED_FIELDS", "fast_decoding_defaults", "refused_generation_fields"]
