"""DiffuMistral: a Mistral decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``MistralForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they
are. Mistral's ``sliding_window`` applies to every layer: symmetric in the bidirectional and block modes, Mistral's
own in causal mode (see ``configuration_diffumistral.py``).
"""

from __future__ import annotations

from transformers.models.mistral.modeling_mistral import MistralForCausalLM, MistralModel

from .configuration_diffumistral import DiffuMistralConfig
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


class DiffuMistralModel(DiffusionDecoderMixin, MistralModel, config_class=DiffuMistralConfig):
    """The Mistral decoder stack with the diffusion attention pattern (bidirectional, annealed, causal or block)."""

    def attention_windows(self):
        return [self.config.sliding_window] * len(self.decoder_layers())  # Mistral has no layer_types


class DiffuMistralForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, MistralForCausalLM,
                                     decoder_class=DiffuMistralModel):
    """DiffuMistral with its LM head; ``generate`` runs diffusion decoding."""


__all__ = ["DiffuMistralModel", "DiffuMistralForMaskedDiffusion"]
