"""DiffuLLaMA: a LLaMA decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``LlamaForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.models.llama.modeling_llama import LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel

from .configuration_diffullama import DiffuLlamaConfig
from .generation_diffusion import DiffusionGenerationConfig, DiffusionGenerationMixin
from .modeling_diffusion_compat import DiffusionAutoMapMixin, same_head_layout
from .modeling_diffusion_utils import (
    DiffusionLMHeadMixin,
    MaskedDiffusionLMOutput,
    layer_cache_kwarg,
    make_attention_bidirectional,
    prepare_decoder_inputs,
    reject_unused_kwargs,
    resolve_cache_argument,
)

# transformers 5.0 copies out of a local checkpoint directory only the modules that this file imports itself (not
# what those import): every module of the shipped code is named here (tests/test_remote_code.py checks the list)
from .attention_annealing import attention_pattern  # noqa: F401
from .configuration_diffusion import DIFFUSION_FIELDS  # noqa: F401
from .decoding_cache import KV_CACHE_MODES  # noqa: F401
from .noise_schedule import reverse_unmask_probability  # noqa: F401
from .self_verification import VERIFY_MODES  # noqa: F401
from .shift import logits_per_position  # noqa: F401
from .unmasking import ALGORITHMS  # noqa: F401


class DiffuLlamaModel(LlamaModel):
    """The LLaMA decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuLlamaConfig

    def __init__(self, config: DiffuLlamaConfig):
        super().__init__(config)
        make_attention_bidirectional(self)

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
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        reject_unused_kwargs(kwargs)
        cache = resolve_cache_argument(past_key_values, cache, use_cache)
        inputs_embeds, position_ids, layer_mask = prepare_decoder_inputs(
            self.config, self.embed_tokens, input_ids, inputs_embeds, attention_mask, position_ids, anneal_ratio, cache
        )
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        layers = self.layers[: self.config.num_hidden_layers]
        cache_kwarg = {layer_cache_kwarg(layers[0]): cache} if cache is not None else {}
        for decoder_layer in layers:
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=layer_mask,
                position_ids=position_ids,
                position_embeddings=position_embeddings,
                **cache_kwarg,
            )
        return MaskedDiffusionLMOutput(last_hidden_state=self.norm(hidden_states), cache=cache)


@same_head_layout(LlamaForCausalLM)  # tied weights and parallel plans of the AR head
class DiffuLlamaForMaskedDiffusion(
    DiffusionAutoMapMixin, DiffusionLMHeadMixin, LlamaPreTrainedModel, DiffusionGenerationMixin
):
    """DiffuLLaMA with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuLlamaConfig
    generation_config_class = DiffusionGenerationConfig

    def __init__(self, config: DiffuLlamaConfig):
        super().__init__(config)
        self.model = DiffuLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["DiffuLlamaModel", "DiffuLlamaForMaskedDiffusion"]
