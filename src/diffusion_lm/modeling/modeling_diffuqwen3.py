"""DiffuQwen3: a Qwen3 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Qwen3ForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
The q / k RMSNorms live inside Qwen3's attention and need nothing from the stack; sliding-window layers, if configured
(``layer_types``), get the template's windowed pattern.
"""

from __future__ import annotations

from transformers.models.qwen3.modeling_qwen3 import Qwen3ForCausalLM, Qwen3Model

from .configuration_diffuqwen3 import DiffuQwen3Config
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


class DiffuQwen3Model(DiffusionDecoderMixin, Qwen3Model, config_class=DiffuQwen3Config):
    """The Qwen3 decoder stack with the diffusion attention pattern (bidirectional, annealed, causal or block)."""


class DiffuQwen3ForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, Qwen3ForCausalLM, decoder_class=DiffuQwen3Model):
    """DiffuQwen3 with its LM head; ``generate`` runs diffusion decoding."""


__all__ = ["DiffuQwen3Model", "DiffuQwen3ForMaskedDiffusion"]
