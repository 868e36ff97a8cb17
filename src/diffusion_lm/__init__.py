"""diffusion-lm: adapt autoregressive LMs into masked-diffusion LMs, native to the Hugging Face ecosystem.

Importing the package registers the diffusion model types with ``AutoConfig`` / ``AutoModel`` /
``AutoModelForCausalLM``. Training, SFT (TRL), checkpoint, card and push helpers are imported on first use.
"""

import importlib

from .models import register_auto_classes
from .modeling.configuration_diffugpt import DiffuGPTConfig
from .modeling.configuration_diffullama import DiffuLlamaConfig
from .modeling.configuration_diffugemma3 import DiffuGemma3Config
from .modeling.configuration_diffumistral import DiffuMistralConfig
from .modeling.configuration_diffuqwen2 import DiffuQwen2Config
from .modeling.configuration_diffuqwen3 import DiffuQwen3Config
from .modeling.generation_diffusion import (
    DiffusionGenerationConfig,
    DiffusionGenerationMixin,
    DiffusionGenerationOutput,
)
from .modeling.modeling_diffugpt import DiffuGPTForMaskedDiffusion, DiffuGPTModel
from .modeling.modeling_diffullama import DiffuLlamaForMaskedDiffusion, DiffuLlamaModel
from .modeling.modeling_diffugemma3 import DiffuGemma3ForMaskedDiffusion, DiffuGemma3Model
from .modeling.modeling_diffumistral import DiffuMistralForMaskedDiffusion, DiffuMistralModel
from .modeling.modeling_diffuqwen2 import DiffuQwen2ForMaskedDiffusion, DiffuQwen2Model
from .modeling.modeling_diffuqwen3 import DiffuQwen3ForMaskedDiffusion, DiffuQwen3Model

__version__ = "0.1.0"

register_auto_classes()

# public name -> submodule that defines it, imported when the name is first used
_LAZY_EXPORTS = {
    "DiffusionTrainer": "trainer",
    "DiffusionTrainingArguments": "trainer",
    "DiffusionSFTConfig": "sft",
    "DiffusionSFTTrainer": "sft",
    "convert_checkpoint": "conversion",
    "convert_ar_model": "conversion",
    "infill": "infilling",
    "decode_text": "infilling",
    "import_reference": "reference_import",
    "TrainingInfo": "training_record",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "push_checkpoint": "push",
    "record_eval_results": "model_card",
    "render_card": "model_card",
    "write_card": "model_card",
}


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(f".{_LAZY_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DiffuGPTConfig",
    "DiffuGPTForMaskedDiffusion",
    "DiffuGPTModel",
    "DiffuGemma3Config",
    "DiffuGemma3ForMaskedDiffusion",
    "DiffuGemma3Model",
    "DiffuLlamaConfig",
    "DiffuLlamaForMaskedDiffusion",
    "DiffuLlamaModel",
    "DiffuMistralConfig",
    "DiffuMistralForMaskedDiffusion",
    "DiffuMistralModel",
    "DiffuQwen2Config",
    "DiffuQwen2ForMaskedDiffusion",
    "DiffuQwen2Model",
    "DiffuQwen3Config",
    "DiffuQwen3ForMaskedDiffusion",
    "DiffuQwen3Model",
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "DiffusionGenerationOutput",
    *_LAZY_EXPORTS,
]
