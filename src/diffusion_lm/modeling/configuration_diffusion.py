"""The masked-diffusion fields every diffusion configuration carries, their validation, and the transformers check.

Imports only the standard library and transformers: configuration files import only this and transformers'
configuration classes, so a checkpoint's configuration loads without torch or any modeling code.
"""

from __future__ import annotations

import dataclasses
import re

import transformers

# The oldest transformers release this code is tested on (CI runs the remote-code round trip on it and on the newest).
MIN_TRANSFORMERS_VERSION = (5, 0, 0)


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as "5.0.0", "5.1.0.dev0" or "4.57.1+local"."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


# Checked on import: this module is the first of a checkpoint's code that transformers loads, and without this an
# older transformers fails later with an error that does not say what to install.
if _release(transformers.__version__) < MIN_TRANSFORMERS_VERSION:
    raise ImportError(
        f"diffusion-lm checkpoints need transformers >= {'.'.join(map(str, MIN_TRANSFORMERS_VERSION))}, "
        f"found {transformers.__version__}: pip install -U 'transformers>=5'"
    )

from transformers.configuration_utils import PretrainedConfig  # noqa: E402  (after the version check)

# Newer transformers 5.x releases declare configurations as strict dataclasses (fields are annotated class
# attributes, validated by ``validate_architecture``); earlier 5.x releases take fields as ``__init__`` arguments.
DATACLASS_CONFIGS = dataclasses.is_dataclass(PretrainedConfig)

# "bidirectional": full attention (an adapted model); "causal": exactly the AR base; "block": bidirectional inside
# each block of ``diffusion_block_size`` positions (counted from position 0), causal across blocks.
ATTENTION_MODES = ("bidirectional", "causal", "block")
# how a block model's context (the prompt and committed blocks) attends: "block" (block-causal, BD3-LM) or "causal"
# (token-causal: the context stream is the AR model itself, so the causal mode, an AR loss on it and a causal
# verifier share its keys / values)
CONTEXT_ATTENTIONS = ("block", "causal")

# name -> default
DIFFUSION_FIELDS = {"mask_token_id": None, "mask_token_reused": False, "shift": True,
                    "attention_mode": "bidirectional", "diffusion_block_size": None,
                    "context_attention": "block"}

DIFFUSION_FIELDS_DOC = r"""
    mask_token_id (`int`, *optional*):
        Id of the [MASK] token (a dedicated added token, or a reused id such as 811 / 10541 of the reference models).
    mask_token_reused (`bool`, defaults to `False`):
        The mask id is an ordinary vocabulary token. Then that id inside a prompt is text: `generate` fills only the
        positions its `infill_mask` names, never positions found by token identity.
    shift (`bool`, defaults to `True`):
        Keep the AR alignment: the logit at position i predicts token i + 1.
    attention_mode (`str`, defaults to `"bidirectional"`):
        `"bidirectional"` once adapted; `"causal"` runs the converted model exactly as its AR base; `"block"`
        (block diffusion) attends bidirectionally inside each block of `diffusion_block_size` positions and causally
        across blocks.
    diffusion_block_size (`int`, *optional*):
        Block length of `attention_mode="block"` (required there, unused otherwise).
    context_attention (`str`, defaults to `"block"`):
        With `attention_mode="block"`: how the context (prompt and committed blocks) attends during training and
        decoding. `"block"`: bidirectionally inside its blocks (BD3-LM); `"causal"`: token-causally, exactly as the AR
        base, so the context stream is the model's causal mode (trained by an AR loss, usable as a verifier). The
        block being denoised attends its own block bidirectionally either way.
"""


def validate_diffusion_fields(config) -> None:
    """ValueError naming the field for a diffusion setting the model cannot run with."""
    if config.attention_mode not in ATTENTION_MODES:
        raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {config.attention_mode!r}")
    if config.mask_token_id is not None and not 0 <= config.mask_token_id < config.vocab_size:
        raise ValueError(f"mask_token_id {config.mask_token_id} is outside the vocabulary (size {config.vocab_size})")
    block = getattr(config, "diffusion_block_size", None)
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
        raise ValueError(f"diffusion_block_size must be an integer >= 1, got {block!r}")
    context = getattr(config, "context_attention", "block")
    if context not in CONTEXT_ATTENTIONS:
        raise ValueError(f"context_attention must be one of {CONTEXT_ATTENTIONS}, got {context!r}")
    if config.attention_mode == "block" and block is None:
        raise ValueError("attention_mode='block' needs diffusion_block_size (the number of positions per block)")


# name -> annotation of the fields above, declared on every diffusion configuration class by ``diffusion_config``
DIFFUSION_FIELD_TYPES = {"mask_token_id": int | None, "mask_token_reused": bool, "shift": bool, "attention_mode": str,
                         "diffusion_block_size": int | None, "context_attention": str}


def diffusion_config(config_class):
    """Class decorator: make ``config_class`` (an AR configuration subclass whose body names its ``model_type``) a
    diffusion configuration: the ``DIFFUSION_FIELDS`` declared with their defaults, validated on construction, in the
    installed transformers' style (a strict dataclass where configurations are dataclasses, ``__init__`` keywords
    before). A family's configuration file is then only::

        @diffusion_config
        class DiffuLlamaConfig(LlamaConfig):
            model_type = "diffullama"
    """
    base = config_class.__mro__[1]
    doc = f"``{base.__name__}`` plus the masked-diffusion fields:\n{DIFFUSION_FIELDS_DOC}"
    if DATACLASS_CONFIGS:
        from transformers.configuration_utils import strict

        # Dataclass configurations collect their fields when the class is created (``__init_subclass__``), so the
        # class is created again from its body's attributes plus the diffusion fields, as if declared there (the body
        # holds class attributes only: a method using ``super()`` would point at the discarded first class).
        declared = {name: value for name, value in config_class.__dict__.items() if not name.startswith("__")}
        annotations = {**config_class.__dict__.get("__annotations__", {}), **DIFFUSION_FIELD_TYPES}

        def validate_architecture(self):
            super(diffusion_class, self).validate_architecture()
            validate_diffusion_fields(self)

        namespace = {**DIFFUSION_FIELDS, **declared, "__annotations__": annotations, "__doc__": doc,
                     "__module__": config_class.__module__, "__qualname__": config_class.__qualname__,
                     "validate_architecture": validate_architecture}
        diffusion_class = type(config_class.__name__, (base,), namespace)
        return strict(diffusion_class)  # validate_architecture runs on init

    def __init__(self, **kwargs):
        # set before the parent's __init__ so that its own checks see a complete configuration
        for name, default in DIFFUSION_FIELDS.items():
            setattr(self, name, kwargs.pop(name, default))
        super(config_class, self).__init__(**kwargs)
        validate_diffusion_fields(self)

    for name, default in DIFFUSION_FIELDS.items():
        setattr(config_class, name, default)
    config_class.__doc__ = doc
    config_class.__init__ = __init__
    return config_class


__all__ = ["ATTENTION_MODES", "CONTEXT_ATTENTIONS", "DATACLASS_CONFIGS", "DIFFUSION_FIELDS", "DIFFUSION_FIELDS_DOC",
           "DIFFUSION_FIELD_TYPES", "MIN_TRANSFORMERS_VERSION", "diffusion_config", "validate_diffusion_fields"]
