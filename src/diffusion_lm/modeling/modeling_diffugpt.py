"""DiffuGPT: a GPT-2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``GPT2LMHeadModel`` (``transformer.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.gpt2.modeling_gpt2 import GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel

from .configuration_diffugpt import DiffuGPTConfig
from .generation_diffusion import DiffusionGenerationConfig, DiffusionGenerationMixin
from .modeling_diffusion_utils import (
    DiffusionAutoMapMixin,
    MaskedDiffusionLMOutput,
    attention_mask_for_layers,
    check_no_cache,
    make_attention_bidirectional,
    positions_from_padding,
)


class DiffuGPTModel(GPT2Model):
    """The GPT-2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuGPTConfig

    def __init__(self, config: DiffuGPTConfig):
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
            inputs_embeds = self.wte(input_ids)
        batch_size, seq_len = inputs_embeds.shape[:2]
        if seq_len > self.config.n_positions:
            raise ValueError(f"sequence length {seq_len} exceeds the model's {self.config.n_positions} positions")
        if position_ids is None:
            position_ids = positions_from_padding(attention_mask, batch_size, seq_len, inputs_embeds.device)
        layer_mask = attention_mask_for_layers(self.config, attention_mask, inputs_embeds, anneal_ratio)

        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))
        for block in self.h:
            hidden_states = block(hidden_states, None, layer_mask, position_ids=position_ids)
        return MaskedDiffusionLMOutput(last_hidden_state=self.ln_f(hidden_states))


class DiffuGPTForMaskedDiffusion(DiffusionAutoMapMixin, GPT2PreTrainedModel, DiffusionGenerationMixin):
    """DiffuGPT with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuGPTConfig
    generation_config_class = DiffusionGenerationConfig
    _tied_weights_keys = GPT2LMHeadModel._tied_weights_keys

    def __init__(self, config: DiffuGPTConfig):
        super().__init__(config)
        self.transformer = DiffuGPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
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
        hidden_states = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            anneal_ratio=anneal_ratio,
            **kwargs,
        ).last_hidden_state
        return MaskedDiffusionLMOutput(logits=self.lm_head(hidden_states), last_hidden_state=hidden_states)


__all__ = ["DiffuGPTModel", "DiffuGPTForMaskedDiffusion"]
