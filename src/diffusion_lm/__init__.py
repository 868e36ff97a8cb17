"""diffusion-lm: adapt autoregressive LMs into masked-diffusion LMs, native to the Hugging Face ecosystem."""

from .models import register_auto_classes
from .modeling.configuration_diffugpt import DiffuGPTConfig
from .modeling.configuration_diffullama import DiffuLlamaConfig
from .modeling.configuration_diffuqwen2 import DiffuQwen2Config
from .modeling.modeling_diffugpt import DiffuGPTForMaskedDiffusion, DiffuGPTModel
from .modeling.modeling_diffullama import DiffuLlamaForMaskedDiffusion, DiffuLlamaModel
from .modeling.modeling_diffuqwen2 import DiffuQwen2ForMaskedDiffusion, DiffuQwen2Model

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "DiffuGPTConfig",
    "DiffuGPTForMaskedDiffusion",
    "DiffuGPTModel",
    "DiffuLlamaConfig",
    "DiffuLlamaForMaskedDiffusion",
    "DiffuLlamaModel",
    "DiffuQwen2Config",
    "DiffuQwen2ForMaskedDiffusion",
    "DiffuQwen2Model",
]

from .sft import DiffusionSFTConfig, DiffusionSFTTrainer  # noqa: E402
from .trainer import DiffusionTrainer, DiffusionTrainingArguments  # noqa: E402
from .hub import TrainingInfo, push_checkpoint, record_eval_results, render_card, save_for_hub, write_card  # noqa: E402
from .reference_import import import_reference  # noqa: E402
from .modeling.generation_diffusion import (  # noqa: E402
    DiffusionGenerationConfig,
    DiffusionGenerationMixin,
    DiffusionGenerationOutput,
)
from .infilling import infill  # noqa: E402
