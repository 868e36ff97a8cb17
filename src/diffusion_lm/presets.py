"""Adaptation presets (``hub_configs/*.yaml``): per-base-model settings that CLI flags override."""

from __future__ import annotations

import os

import yaml

PRESET_DIRS = (
    os.path.join(os.path.dirname(__file__), "hub_configs"),  # bundled in a wheel
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "hub_configs")),  # source checkout
)


def available_presets() -> dict[str, str]:
    """Preset name -> YAML path."""
    found: dict[str, str] = {}
    for folder in PRESET_DIRS:
        if os.path.isdir(folder):
            for file in sorted(os.listdir(folder)):
                name, ext = os.path.splitext(file)
                if ext in (".yaml", ".yml"):
                    found.setdefault(name, os.path.join(folder, file))
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
