"""Saved files get the mode an ordinary write gives (0666 minus the umask): safetensors writes model.safetensors
through a private (0600) temporary file, which another user or a serving process could not read."""

from __future__ import annotations

import os
import random
import stat

import pytest
from tiny import WORDS, save_tiny_ar_checkpoint, tiny_diffusion_model


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(directory) -> dict[str, int]:
    return {os.path.relpath(os.path.join(folder, name), directory): stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
            for folder, _, names in os.walk(directory) for name in names}


def test_save_checkpoint_writes_every_file_with_the_umask_mode(tmp_path, umask):
    from diffusion_lm.checkpoint import save_checkpoint

    model, tokenizer = tiny_diffusion_model("llama")
    save_checkpoint(model, tokenizer, tmp_path / "model")
    found = modes(tmp_path / "model")
    assert "model.safetensors" in found and "config.json" in found and "tokenizer.json" in found
    assert found == {name: 0o666 & ~umask for name in found}


@pytest.mark.slow
def test_adapt_checkpoints_and_final_model_have_the_umask_mode(tmp_path, umask):
    from diffusion_lm.adapt import AdaptSettings
    from diffusion_lm.adapt_run import run_adaptation

    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(WORDS[:60]) for _ in range(30)) for _ in range(20)))
    out = tmp_path / "run"
    run_adaptation(AdaptSettings(base=save_tiny_ar_checkpoint(str(tmp_path / "ar")), dataset=str(corpus),
                                 output_dir=str(out), max_steps=2, save_steps=1, block_size=16, batch_size=2,
                                 sample_prompt=""))
    found = modes(out)
    for name in ("model.safetensors", "config.json", "README.md", "checkpoint-2/model.safetensors",
                 "checkpoint-2/optimizer.pt", "checkpoint-2/trainer_state.json"):
        assert found[name] == 0o666 & ~umask, (name, oct(found[name]))
    assert set(found.values()) == {0o666 & ~umask}, {k: oct(v) for k, v in found.items()}


def test_only_private_files_are_changed(tmp_path):
    """A file a user made private on purpose with another mode (0640, 0400) is left alone; 0600 means 'written
    through a temporary file' and gets the umask's mode."""
    from diffusion_lm.paths import current_umask, ordinary_permissions

    for name, mode in (("a", 0o600), ("b", 0o640), ("c", 0o400)):
        path = tmp_path / name
        path.write_text(name)
        os.chmod(path, mode)
    ordinary_permissions(tmp_path)
    expected = {"a": 0o666 & ~current_umask(), "b": 0o640, "c": 0o400}
    assert modes(tmp_path) == expected
