"""Adaptation presets: per-base-model settings files (``src/diffusion_lm/hub_configs/*.yaml``, package data, so they
ship in the wheel; ``hub_configs/`` at the repository root links there) that CLI flags override."""

from __future__ import annotations

import os

import yaml

PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_configs")


def available_presets() -> dict[str, str]:
    """Preset name -> YAML path."""
    found: dict[str, str] = {}
    for file in sorted(os.listdir(PRESET_DIR)):
        name, ext = os.path.splitext(file)
        if ext in (".yaml", ".yml"):
            found[name] = os.path.join(PRESET_DIR, file)
    return found


def load_preset(name_or_path: str) -> dict:
    """A preset by name (case-insensitive) or YAML path; ValueError lists the known names."""
    path = name_or_path if os.path.isfile(name_or_path) else None
    if path is None:
        presets = {name.lower(): file for name, file in available_presets().items()}
        path = presets.get(name_or_path.lower())
    if path is None:
        raise ValueError(f"unknown preset {name_or_path!r}; available: {', '.join(sorted(available_presets()))}")
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"preset {path} must be a mapping of settings")
    return values
