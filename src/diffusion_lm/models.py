"""Registry of the supported model families: AR model_type -> (diffusion config class, diffusion model class)."""

from __future__ import annotations

import json
import os

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .modeling.configuration_diffugemma3 import DiffuGemma3Config
from .modeling.configuration_diffugpt import DiffuGPTConfig
from .modeling.configuration_diffullama import DiffuLlamaConfig
from .modeling.configuration_diffumistral import DiffuMistralConfig
from .modeling.configuration_diffuqwen2 import DiffuQwen2Config
from .modeling.configuration_diffuqwen3 import DiffuQwen3Config
from .modeling.modeling_diffugemma3 import DiffuGemma3ForMaskedDiffusion
from .modeling.modeling_diffugpt import DiffuGPTForMaskedDiffusion
from .modeling.modeling_diffullama import DiffuLlamaForMaskedDiffusion
from .modeling.modeling_diffumistral import DiffuMistralForMaskedDiffusion
from .modeling.modeling_diffuqwen2 import DiffuQwen2ForMaskedDiffusion
from .modeling.modeling_diffuqwen3 import DiffuQwen3ForMaskedDiffusion

# AR model_type -> diffusion classes (a family: its configuration and modeling files under modeling/, declared
# from the template in modeling/modeling_diffusion.py, and an entry here)
FAMILIES = {
    "gpt2": (DiffuGPTConfig, DiffuGPTForMaskedDiffusion),
    "llama": (DiffuLlamaConfig, DiffuLlamaForMaskedDiffusion),
    "qwen2": (DiffuQwen2Config, DiffuQwen2ForMaskedDiffusion),
    "qwen3": (DiffuQwen3Config, DiffuQwen3ForMaskedDiffusion),
    "mistral": (DiffuMistralConfig, DiffuMistralForMaskedDiffusion),
    "gemma3_text": (DiffuGemma3Config, DiffuGemma3ForMaskedDiffusion),  # Gemma 3's text model (Gemma3ForCausalLM)
}
DIFFUSION_MODEL_TYPES = {config_class.model_type: ar_type for ar_type, (config_class, _) in FAMILIES.items()}
# diffusion model_type -> the family's name in cards and messages
FAMILY_NAMES = {"diffugpt": "GPT-2", "diffullama": "LLaMA", "diffuqwen2": "Qwen2", "diffuqwen3": "Qwen3",
                "diffumistral": "Mistral", "diffugemma3": "Gemma 3"}


def resolve_mask_token_id(model, explicit: int | None = None) -> int:
    """The [MASK] id to decode or score with: ``explicit``, else the model's generation config's, else its config's;
    ValueError when none is set."""
    for candidate in (explicit, getattr(getattr(model, "generation_config", None), "mask_token_id", None),
                      getattr(model.config, "mask_token_id", None)):
        if candidate is not None:
            return int(candidate)
    raise ValueError("mask_token_id: the model has no mask token configured (model.config.mask_token_id)")


def is_diffusion_config(config: dict) -> bool:
    """Whether a ``config.json`` (as a dict) describes a diffusion LM: one of our model types, or another model
    type that names a mask token id (a diffusion checkpoint that brings its own code)."""
    return config.get("model_type") in DIFFUSION_MODEL_TYPES or config.get("mask_token_id") is not None


def require_diffusion_checkpoint_dir(model_dir) -> dict:
    """The ``config.json`` of ``model_dir`` (a local directory of one of our model types); FileNotFoundError /
    ValueError naming the problem otherwise. What a card or record may only describe."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"checkpoint directory not found: {model_dir}")
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"{model_dir} has no config.json; is it a diffusion-lm checkpoint directory?")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        model_type = config.get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{config_path} is not a JSON object: {error}") from None
    if model_type not in FAMILY_NAMES:
        raise ValueError(
            f"{model_dir} is not a diffusion checkpoint (model_type {model_type!r}, expected one of "
            f"{', '.join(FAMILY_NAMES)}): adapt it first (`diffusion-lm adapt`)"
        )
    return config


def diffusion_classes_for(model_type: str):
    """(config class, model class) for an AR or diffusion ``model_type``; ValueError names the supported ones."""
    ar_type = DIFFUSION_MODEL_TYPES.get(model_type, model_type)
    if ar_type not in FAMILIES:
        supported = ", ".join(FAMILIES)  # in the order they were added
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
