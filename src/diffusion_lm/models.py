"""Registry of the supported model families: AR model_type -> (diffusion config class, diffusion model class)."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .modeling.configuration_diffugpt import DiffuGPTConfig
from .modeling.configuration_diffullama import DiffuLlamaConfig
from .modeling.configuration_diffuqwen2 import DiffuQwen2Config
from .modeling.modeling_diffugpt import DiffuGPTForMaskedDiffusion
from .modeling.modeling_diffullama import DiffuLlamaForMaskedDiffusion
from .modeling.modeling_diffuqwen2 import DiffuQwen2ForMaskedDiffusion

# AR model_type -> diffusion classes. Families whose decoder matches LLaMA's module layout map to DiffuLLaMA.
FAMILIES = {
    "gpt2": (DiffuGPTConfig, DiffuGPTForMaskedDiffusion),
    "llama": (DiffuLlamaConfig, DiffuLlamaForMaskedDiffusion),
    "qwen2": (DiffuQwen2Config, DiffuQwen2ForMaskedDiffusion),
}
DIFFUSION_MODEL_TYPES = {config_class.model_type: ar_type for ar_type, (config_class, _) in FAMILIES.items()}


def diffusion_classes_for(model_type: str):
    """(config class, model class) for an AR or diffusion ``model_type``; ValueError names the supported ones."""
    ar_type = DIFFUSION_MODEL_TYPES.get(model_type, model_type)
    if ar_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        raise ValueError(f"model_type {model_type!r} is not supported: diffusion-lm adapts decoder-only LMs of the "
                         f"families {supported} (and their diffusion versions)")
    return FAMILIES[ar_type]


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel / AutoModelForCausalLM resolve our model types, and save code for remote use."""
    for config_class, model_class in FAMILIES.values():
        try:
            AutoConfig.register(config_class.model_type, config_class)
            AutoModel.register(config_class, model_class)
            AutoModelForCausalLM.register(config_class, model_class)
        except ValueError:  # already registered (module re-imported)
            pass
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
