"""DiffuQwen2: a Qwen2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Qwen2ForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM, Qwen2Model, Qwen2PreTrainedModel

from .configuration_diffuqwen2 import DiffuQwen2Config
from .generation_diffusion import DiffusionGenerationMixin
from .modeling_diffusion_utils import (
    DiffusionAutoMapMixin,
    MaskedDiffusionLMOutput,
    attention_mask_for_layers,
    check_no_cache,
    make_attention_bidirectional,
    positions_from_padding,
)


class DiffuQwen2Model(Qwen2Model):
    """The Qwen2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuQwen2Config

    def __init__(self, config: DiffuQwen2Config):
        super().__init__(config)
        make_attention_bidirectional(self)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        anneal_ratio: float | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        check_no_cache(past_key_values, use_cache)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch_size, seq_len = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = positions_from_padding(attention_mask, batch_size, seq_len, inputs_embeds.device)
        layer_mask = attention_mask_for_layers(self.config, attention_mask, inputs_embeds, anneal_ratio)

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=layer_mask,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
            )
        return MaskedDiffusionLMOutput(last_hidden_state=self.norm(hidden_states))


class DiffuQwen2ForMaskedDiffusion(DiffusionAutoMapMixin, Qwen2PreTrainedModel, DiffusionGenerationMixin):
    """DiffuQwen2 with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuQwen2Config
    _tied_weights_keys = Qwen2ForCausalLM._tied_weights_keys
    _tp_plan = Qwen2ForCausalLM._tp_plan
    _pp_plan = Qwen2ForCausalLM._pp_plan

    def __init__(self, config: DiffuQwen2Config):
        super().__init__(config)
        self.model = DiffuQwen2Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        anneal_ratio: float | None = None,
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        """``anneal_ratio`` in [0, 1) applies the annealed attention pattern of that ratio (training only)."""
        hidden_states = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            anneal_ratio=anneal_ratio,
            **kwargs,
        ).last_hidden_state
        return MaskedDiffusionLMOutput(logits=self.lm_head(hidden_states), last_hidden_state=hidden_states)


__all__ = ["DiffuQwen2Model", "DiffuQwen2ForMaskedDiffusion"]
