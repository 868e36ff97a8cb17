"""Where the shipped model code meets transformers beyond its public API, in one place.

- ``DiffusionAutoMapMixin``: ``save_pretrained`` writes the ``auto_map`` that makes a saved directory load as remote
  code. That is all the model does on save: the training record, the model card and uploads are the library's
  (``diffusion_lm.checkpoint.save_checkpoint``, ``diffusion_lm.push``), never shipped code.
- Every use of a transformers internal (a private attribute or method) by the shipped code is a function here, with
  what it relies on and since when; the other modules call these instead of reaching into transformers.

Only the standard library, ``torch`` and ``transformers`` are imported: this file travels with checkpoints as remote code.
"""

from __future__ import annotations


class DiffusionAutoMapMixin:
    """``save_pretrained`` adds an ``auto_map`` serving ``AutoModel`` and ``AutoModelForCausalLM`` (TRL / PEFT load
    through the latter) to ``config.json``; transformers copies this class's module and its relative imports next to
    it. An ``auto_map`` already in the config is kept (entries are only added)."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        own_class = next(c for c in type(self).__mro__ if not c.__module__.startswith("torch."))
        if own_class is not type(self):
            # FSDP2's fully_shard swaps the instance's class for a subclass it generates inside torch: the auto_map
            # and the code copied next to the weights must name the model's own class (the state dict comes from
            # the caller, gathered by accelerate)
            sharded_class, self.__class__ = type(self), own_class
            try:
                return self.save_pretrained(save_directory, *args, **kwargs)
            finally:
                self.__class__ = sharded_class
        module_name = type(self).__module__.split(".")[-1]
        entry = f"{module_name}.{type(self).__name__}"
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", entry)
        auto_map.setdefault("AutoModelForCausalLM", entry)
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


# --- transformers internals ------------------------------------------------------------------------------------
# Each function below relies on something transformers does not promise. When a release changes it, this is the
# only file to edit (the lowest supported release, 5.0.0, and the newest are both tested: tests/test_remote_code.py).

def attention_implementation(config) -> str:
    """The attention kernel a model runs with ("eager", "sdpa", "flash_attention_2", ...): the private
    ``config._attn_implementation`` that transformers' own models and masking utilities read (no public accessor in
    transformers 5). Needed because flash kernels can run the bidirectional mode but no pattern: which one a model
    runs depends on its configuration, so no class attribute can declare it."""
    return getattr(config, "_attn_implementation", None) or ""


def open_causal_buffer(module) -> None:
    """transformers 5.0's eager GPT-2 attention multiplies in a boolean causal buffer (``attn.bias``) whatever the
    attention mask says, and ``_init_weights`` resets it on every load; set to all-True, the attention mask alone
    decides. Newer releases have no such buffer (then this does nothing). Called from ``_init_weights``."""
    import torch

    causal_buffer = getattr(module, "bias", None)
    if isinstance(causal_buffer, torch.Tensor) and causal_buffer.dtype == torch.bool:
        causal_buffer.fill_(True)


def crop_dynamic_cache(cache, length: int) -> None:
    """Keep the first ``length`` positions of a ``DynamicCache``. ``DynamicCache.crop`` changed meaning across
    transformers 5 (an absolute length up to 5.2x, a negative count of positions to drop since), so the layers'
    ``keys`` / ``values`` tensors (public attributes of every 5.x layer object) are sliced here instead."""
    import torch

    for layer in getattr(cache, "layers", []):
        keys = getattr(layer, "keys", None)
        if not isinstance(keys, torch.Tensor) or keys.dim() < 3:
            continue
        layer.keys = keys[..., :length, :]
        layer.values = layer.values[..., :length, :]


def gather_dynamic_cache(cache, index) -> None:
    """Replace every layer's keys / values (B, H, C, D) by the columns ``index`` (B, W) names, per row."""
    for layer in getattr(cache, "layers", []):
        keys = getattr(layer, "keys", None)
        if keys is None or not hasattr(keys, "gather") or keys.dim() < 3:
            continue
        expanded = index[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[-1])
        layer.keys = keys.gather(2, expanded)
        layer.values = layer.values.gather(2, expanded)


__all__ = ["DiffusionAutoMapMixin", "attention_implementation", "crop_dynamic_cache", "gather_dynamic_cache",
           "open_causal_buffer"]
