"""DiffuGemma3: a Gemma 3 text decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Gemma3ForCausalLM`` (``model.*``, ``lm_head.*`` tied to the embeddings), so AR
checkpoints load as they are. What differs from the LLaMA layout: the embedding scales by sqrt(hidden_size) (inside
Gemma's own embedding module, so the template's lookup scales too), local and global layers take their own rotary
embeddings (the hooks below), local layers attend within ``sliding_window`` (the template's ``attention_windows``
from ``layer_types``), and ``final_logit_softcapping`` caps the logits (the head's ``logits_head``).
"""

from __future__ import annotations

from transformers.models.gemma3.modeling_gemma3 import Gemma3ForCausalLM, Gemma3TextModel

from .configuration_diffugemma3 import DiffuGemma3Config
from .modeling_diffusion import DiffusionDecoderMixin, DiffusionForMaskedDiffusionMixin

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


class DiffuGemma3Model(DiffusionDecoderMixin, Gemma3TextModel, config_class=DiffuGemma3Config):
    """The Gemma 3 decoder stack with the diffusion attention pattern (bidirectional, annealed, causal or block)."""

    def position_inputs(self, inputs_embeds, position_ids):
        # one rotary embedding per layer type (local: rope_local_base_freq, global: rope_theta and its scaling)
        kinds = set(self.config.layer_types)
        return inputs_embeds, {kind: self.rotary_emb(inputs_embeds, position_ids, kind) for kind in kinds}

    def layer_inputs(self, index, layer_kwargs):
        return {"position_embeddings": layer_kwargs[self.config.layer_types[index]]}


class DiffuGemma3ForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, Gemma3ForCausalLM,
                                    decoder_class=DiffuGemma3Model):
    """DiffuGemma3 with its LM head (soft-capped logits where configured); ``generate`` runs diffusion decoding."""


__all__ = ["DiffuGemma3Model", "DiffuGemma3ForMaskedDiffusion"]
