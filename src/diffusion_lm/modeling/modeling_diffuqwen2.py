"""DiffuQwen2: a Qwen2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Qwen2ForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM, Qwen2Model, Qwen2PreTrainedModel

from .configuration_diffuqwen2 import DiffuQwen2Config
from .generation_diffusion import DiffusionGenerationConfig, DiffusionGenerationMixin
from .modeling_diffullama import DiffuLlamaModel
from .modeling_diffusion_utils import (
    DiffusionAutoMapMixin,
    MaskedDiffusionLMOutput,
    make_attention_bidirectional,
)


class DiffuQwen2Model(Qwen2Model):
    """The Qwen2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuQwen2Config

    def __init__(self, config: DiffuQwen2Config):
        super().__init__(config)
        make_attention_bidirectional(self)

    # Qwen2's decoder has LLaMA's module layout (embed_tokens, layers, rotary_emb, norm), so the diffusion forward
    # is the same code. Sliding-window layers, if configured, attend fully: diffusion attention is bidirectional.
    forward = DiffuLlamaModel.forward


class DiffuQwen2ForMaskedDiffusion(DiffusionAutoMapMixin, Qwen2PreTrainedModel, DiffusionGenerationMixin):
    """DiffuQwen2 with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuQwen2Config
    generation_config_class = DiffusionGenerationConfig
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
