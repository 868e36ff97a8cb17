"""DiffuGPT: a GPT-2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``GPT2LMHeadModel`` (``transformer.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.models.gpt2.modeling_gpt2 import GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel

from .configuration_diffugpt import DiffuGPTConfig
from .generation_diffusion import DiffusionGenerationConfig, DiffusionGenerationMixin
from .modeling_diffusion_compat import DiffusionAutoMapMixin, open_causal_buffer, same_head_layout
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


class DiffuGPTModel(GPT2Model):
    """The GPT-2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuGPTConfig

    def __init__(self, config: DiffuGPTConfig):
        super().__init__(config)
        make_attention_bidirectional(self)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        open_causal_buffer(module)  # transformers 5.0's GPT-2 causal buffer (see modeling_diffusion_compat)

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
            self.config, self.wte, input_ids, inputs_embeds, attention_mask, position_ids, anneal_ratio, cache
        )
        if int(position_ids.max()) >= self.config.n_positions:  # learned positions: fail before the lookup does
            raise ValueError(
                f"sequence length {int(position_ids.max()) + 1} exceeds the model's {self.config.n_positions} positions"
            )
        hidden_states = self.drop(inputs_embeds + self.wpe(position_ids))
        cache_kwarg = {layer_cache_kwarg(self.h[0]): cache} if cache is not None else {}
        for block in self.h:
            hidden_states = block(hidden_states, attention_mask=layer_mask, position_ids=position_ids, **cache_kwarg)
            if isinstance(hidden_states, tuple):  # GPT2Block of transformers 5.0 returns (hidden_states, ...)
                hidden_states = hidden_states[0]
        return MaskedDiffusionLMOutput(last_hidden_state=self.ln_f(hidden_states), cache=cache)


@same_head_layout(GPT2LMHeadModel)  # tied weights and parallel plans of the AR head
class DiffuGPTForMaskedDiffusion(
    DiffusionAutoMapMixin, DiffusionLMHeadMixin, GPT2PreTrainedModel, DiffusionGenerationMixin
):
    """DiffuGPT with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuGPTConfig
    generation_config_class = DiffusionGenerationConfig

    def __init__(self, config: DiffuGPTConfig):
        super().__init__(config)
        self.transformer = DiffuGPTModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["DiffuGPTModel", "DiffuGPTForMaskedDiffusion"]
