"""The template every model family is built from: one decoder forward and one head class.

A family is a configuration file (``@diffusion_config`` over the AR configuration) and a modeling file declaring two
classes over transformers' own: the decoder stack, with the diffusion forward mixed in before the AR ``XModel``, and
the head, mixed in before the AR ``XForCausalLM`` (whose weight names, tied weights and parallel plans it keeps):

    class DiffuMistralModel(DiffusionDecoderMixin, MistralModel, config_class=DiffuMistralConfig):
        ...

    class DiffuMistralForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, MistralForCausalLM,
                                         decoder_class=DiffuMistralModel):
        ...

(the head's ``config_class`` is its decoder's).

The decoder forward fits every stack laid out as transformers' LLaMA (``embed_tokens``, ``layers``, ``rotary_emb``,
``norm``); a family laid out otherwise overrides the small hooks (GPT-2 does; Gemma 3 gives its local and global
layers their own rotary embeddings). Sliding-window layers (``attention_windows``: from ``config.layer_types`` by
default) get the one attention pattern restricted to their window (``attention_annealing.restrict_to_window``).

Only ``torch`` and ``transformers`` are imported here: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from .generation_config_diffusion import DiffusionGenerationConfig
from .generation_diffusion import DiffusionGenerationMixin
from .modeling_diffusion_compat import DiffusionAutoMapMixin
from .modeling_diffusion_utils import (
    DiffusionLMHeadMixin,
    MaskedDiffusionLMOutput,
    layer_cache_kwarg,
    prepare_decoder_inputs,
    reject_unused_kwargs,
    resolve_cache_argument,
)


class DiffusionDecoderMixin:
    """The decoder stack's forward with the diffusion attention pattern (bidirectional, annealed, causal or block).

    Every layer gets the pattern as its ``attention_mask`` and ``is_causal=False``, so no kernel adds a causal mask of
    its own (SDPA and flash attention take the flag from the call before the module's ``is_causal``).
    """

    def __init_subclass__(cls, config_class=None, **kwargs):
        if config_class is not None:  # set before PreTrainedModel reads it
            cls.config_class = config_class
        super().__init_subclass__(**kwargs)

    def position_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor):
        """(hidden states entering the first layer, extra keyword arguments of every layer): rotary embeddings."""
        return inputs_embeds, {"position_embeddings": self.rotary_emb(inputs_embeds, position_ids=position_ids)}

    def layer_inputs(self, index: int, layer_kwargs: dict) -> dict:
        """The keyword arguments of layer ``index`` from what ``position_inputs`` returned (the same for every layer
        by default)."""
        return layer_kwargs

    def attention_windows(self) -> list:
        """Per decoder layer, its sliding window (None: full attention): ``config.sliding_window`` on the layers
        ``config.layer_types`` marks ``"sliding_attention"`` (as transformers' Qwen2 / Qwen3 / Gemma 3 layers)."""
        window, types = getattr(self.config, "sliding_window", None), getattr(self.config, "layer_types", None) or []
        windows = [window if kind == "sliding_attention" else None for kind in types]
        return windows or [None] * len(self.decoder_layers())

    def decoder_layers(self):
        return self.layers[: self.config.num_hidden_layers]

    def final_norm(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden_states)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        anneal_ratio: float | None = None,
        past_key_values: Cache | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        key_positions: torch.LongTensor | None = None,
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        reject_unused_kwargs(kwargs)
        cache = resolve_cache_argument(past_key_values, cache, use_cache)
        windows = self.attention_windows()
        inputs_embeds, position_ids, masks = prepare_decoder_inputs(
            self.config, self.get_input_embeddings(), input_ids, inputs_embeds, attention_mask, position_ids,
            anneal_ratio, cache, windows=set(windows), key_positions=key_positions,
        )
        hidden_states, layer_kwargs = self.position_inputs(inputs_embeds, position_ids)
        layers = self.decoder_layers()
        cache_kwargs = {} if cache is None else {layer_cache_kwarg(layers[0]): cache}
        for index, layer in enumerate(layers):
            hidden_states = layer(hidden_states, attention_mask=masks[windows[index]], position_ids=position_ids,
                                  is_causal=False, **self.layer_inputs(index, layer_kwargs), **cache_kwargs)
            if isinstance(hidden_states, tuple):  # decoder layers of some releases return (hidden_states, ...)
                hidden_states = hidden_states[0]
        return MaskedDiffusionLMOutput(last_hidden_state=self.final_norm(hidden_states), cache=cache)


class DiffusionForMaskedDiffusionMixin(DiffusionAutoMapMixin, DiffusionLMHeadMixin, DiffusionGenerationMixin):
    """The head class: mixed in before the family's AR head class (``LlamaForCausalLM``, ...), whose weight names,
    tied weights and parallel plans it keeps; builds ``decoder_class`` instead of the AR decoder, and its ``forward``
    and ``generate`` are the diffusion ones."""

    decoder_class: type[PreTrainedModel]
    generation_config_class = DiffusionGenerationConfig

    def __init_subclass__(cls, decoder_class=None, **kwargs):
        if decoder_class is not None:  # set before PreTrainedModel reads config_class
            cls.decoder_class, cls.config_class = decoder_class, decoder_class.config_class
        super().__init_subclass__(**kwargs)

    def __init__(self, config):
        # PreTrainedModel's own initialisation: the AR head's __init__ would build the AR decoder first
        PreTrainedModel.__init__(self, config)
        setattr(self, self.base_model_prefix, self.decoder_class(config))
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["DiffusionDecoderMixin", "DiffusionForMaskedDiffusionMixin"]
