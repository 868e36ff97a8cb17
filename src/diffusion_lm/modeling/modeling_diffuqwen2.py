"""DiffuQwen2: a Qwen2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Qwen2ForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
Sliding-window layers, where ``use_sliding_window`` is set (off in every Qwen2.5 release), apply the window
symmetrically in the diffusion modes (docs/families.md).
"""

from __future__ import annotations

from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM, Qwen2Model

from .configuration_diffuqwen2 import DiffuQwen2Config
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


class DiffuQwen2Model(DiffusionDecoderMixin, Qwen2Model, config_class=DiffuQwen2Config):
    """The Qwen2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""


class DiffuQwen2ForMaskedDiffusion(DiffusionForMaskedDiffusionMixin, Qwen2ForCausalLM, decoder_class=DiffuQwen2Model):
    """DiffuQwen2 with its LM head; ``generate`` runs diffusion decoding."""


__all__ = ["DiffuQwen2Model", "DiffuQwen2ForMaskedDiffusion"]
