"""What a built wheel holds: the adaptation presets and the model card template ship with the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    """The file names inside a wheel built offline from a copy of the sources (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    shutil.copytree(os.path.join(REPO, "src"), source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = [name for name in os.listdir(out) if name.endswith(".whl")]
    with zipfile.ZipFile(out / wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_wheel_ships_the_presets(wheel_names):
    presets = sorted(name for name in os.listdir(os.path.join(REPO, "hub_configs")) if name.endswith(".yaml"))
    assert presets and all(f"diffusion_lm/hub_configs/{name}" in wheel_names for name in presets)


@pytest.mark.slow
def test_wheel_ships_the_card_template_and_the_model_code(wheel_names):
    assert "diffusion_lm/templates/diffusion_lm_card.md" in wheel_names
    assert "diffusion_lm/modeling/modeling_diffusion_compat.py" in wheel_names


def test_presets_resolve_inside_the_package():
    from diffusion_lm import presets

    found = presets.available_presets()
    assert {"gpt2", "gpt2-medium", "Llama-2-7b", "SmolLM2-135M"} <= set(found)
    assert all(path.startswith(presets.PRESET_DIR) for path in found.values())
    assert os.path.realpath(os.path.join(REPO, "hub_configs")) == os.path.realpath(presets.PRESET_DIR)
