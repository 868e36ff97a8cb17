"""DiffuQwen2: a Qwen2 decoder run as a masked-diffusion LM (bidirectional attention, AR shift kept).

Weight names are those of ``Qwen2ForCausalLM`` (``model.*``, ``lm_head.*``), so AR checkpoints load as they are.
"""

from __future__ import annotations

from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2ForCausalLM, Qwen2Model, Qwen2PreTrainedModel

from .configuration_diffuqwen2 import DiffuQwen2Config
from .generation_diffusion import DiffusionGenerationConfig, DiffusionGenerationMixin
from .modeling_diffullama import DiffuLlamaModel
from .modeling_diffusion_compat import DiffusionAutoMapMixin, same_head_layout
from .modeling_diffusion_utils import (
    DiffusionLMHeadMixin,
    make_attention_bidirectional,
)

# transformers 5.0 copies out of a local checkpoint directory only the modules that this file imports itself (not
# what those import): every module of the shipped code is named here (tests/test_remote_code.py checks the list)
from .attention_annealing import attention_pattern  # noqa: F401
from .configuration_diffullama import DiffuLlamaConfig  # noqa: F401
from .configuration_diffusion import DIFFUSION_FIELDS  # noqa: F401
from .decoding_cache import KV_CACHE_MODES  # noqa: F401
from .noise_schedule import reverse_unmask_probability  # noqa: F401
from .self_verification import VERIFY_MODES  # noqa: F401
from .shift import logits_per_position  # noqa: F401
from .unmasking import ALGORITHMS  # noqa: F401


class DiffuQwen2Model(Qwen2Model):
    """The Qwen2 decoder stack with the diffusion attention pattern (bidirectional, annealed or causal)."""

    config_class = DiffuQwen2Config

    def __init__(self, config: DiffuQwen2Config):
        super().__init__(config)
        make_attention_bidirectional(self)

    # Qwen2's decoder has LLaMA's module layout (embed_tokens, layers, rotary_emb, norm), so the diffusion forward
    # is the same code. Sliding-window layers, if configured, attend fully: diffusion attention is bidirectional.
    forward = DiffuLlamaModel.forward


@same_head_layout(Qwen2ForCausalLM)  # tied weights and parallel plans of the AR head
class DiffuQwen2ForMaskedDiffusion(
    DiffusionAutoMapMixin, DiffusionLMHeadMixin, Qwen2PreTrainedModel, DiffusionGenerationMixin
):
    """DiffuQwen2 with its LM head; ``generate`` runs diffusion decoding."""

    config_class = DiffuQwen2Config
    generation_config_class = DiffusionGenerationConfig

    def __init__(self, config: DiffuQwen2Config):
        super().__init__(config)
        self.model = DiffuQwen2Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()


__all__ = ["DiffuQwen2Model", "DiffuQwen2ForMaskedDiffusion"]
