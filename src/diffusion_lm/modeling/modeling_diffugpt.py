"""DiffuGPT: a GPT-2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``GPT2LMHeadModel`` (``transformer.*``, ``lm_head.*``), so AR checkpoints load as they are.
GPT-2's stack is laid out otherwise than LLaMA's (learned positions, ``h``, ``ln_f``): it overrides the decoder hooks.
"""

from __future__ import annotations

import torch
from transformers.models.gpt2.modeling_gpt2 import GPT2LMHeadModel, GPT2Model

from .configuration_diffugpt import DiffuGPTConfig
from .modeling_diffusion import DiffusionDecoderMixin, DiffusionForMaskedDiffusionMixin
from .modeling_diffusion_compat import open_causal_buffer

# transformers 5.0 copies out of a local checkpoint directory only the modules that this file imports itself (not
# what those import): every module of the shipped code is named here (tests/test_remote_code.py checks the list)
from .attention_annealing import attention_pattern  # noqa: F401
from .configuration_diffusion import DIFFUSION_FIELDS  # noqa: F401
from .decoding_cache import KV_CACHE_MODES  # noqa: F401
from .denoising_step import StepPredictions  # noqa: F401
from .diffusion_decode import diffusion_decode  # noqa: F401
from .generation_config_diffusion import DiffusionGenerationConfig  # noqa: F401
from .generation_diffusion import DiffusionGenerationMixin  # noqa: F401
from .generation_inputs import prepare_prompt  # noqa: F401
from .modeling_diffusion_compat import DiffusionAutoMapMixin  # noqa: F401
from .modeling_diffusion_utils import MaskedDiffusionLMOutput  # noqa: F401
from .noise_schedule import reverse_unmask_probability  # noqa: F401
from .self_verification import VERIFY_MODES  # noqa: F401
from .shift import logits_per_position  # noqa: F401
from .unmasking import ALGORITHMS  # noqa: F401


class DiffuGPTModel(DiffusionDecoderMixin, GPT2Model, config_class=DiffuGPTConfig):
    """The GPT-2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        open_causal_buffer(module)  # transformers 5.0's GPT-2 causal buffer (see modeling_diffusion_compat)

    def position_inputs(self, inputs_embeds, position_ids):
        if int(position_ids.max()) >= self.config.n_positions:  # learned positions: fail before the lookup does
            raise ValueError(
                f"sequence length {int(position_ids.max()) + 1} exceeds the model's {self.config.n_positions} positions"
            )
        return self.drop(inputs_embeds + self.wpe(position_ids)), {}

    def decoder_layers(self):
        return self.h

    def final_norm(self, hidden_states):
        return self.ln_f(hidden_states)


class DiffuGPTForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, GPT2LMHeadModel, decoder_class=DiffuGPTModel):
    """DiffuGPT with its LM head; ``generate`` runs diffusion decoding."""


__all__ = ["DiffuGPTModel", "DiffuGPTForMaskedDiffusion"]
