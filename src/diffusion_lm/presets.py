"""Adaptation presets: per-base-model settings files (``src/diffusion_lm/hub_configs/*.yaml``, package data, so they
ship in the wheel; ``hub_configs/`` at the repository root links there) that CLI flags override."""

from __future__ import annotations

import os

import yaml

from .paths import read_text

PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_configs")


def available_presets() -> dict[str, str]:
    """Preset name -> YAML path."""
    found: dict[str, str] = {}
    for file in sorted(os.listdir(PRESET_DIR)):
        name, ext = os.path.splitext(file)
        if ext in (".yaml", ".yml"):
            found[name] = os.path.join(PRESET_DIR, file)
    return found


def looks_like_config_path(name: str) -> bool:
    """A file path rather than a preset name: it has a path separator or a YAML ending."""
    return "/" in name or os.sep in name or name.lower().endswith((".yaml", ".yml")) or name.startswith("~")


def load_preset(name_or_path: str) -> dict:
    """A preset by name (case-insensitive) or YAML path; ValueError lists the known names. A name with a path
    separator or a ``.yaml`` / ``.yml`` ending is a file: FileNotFoundError naming it when it is not there."""
    name_or_path = os.path.expanduser(name_or_path)
    path = name_or_path if os.path.isfile(name_or_path) else None
    if path is None and looks_like_config_path(name_or_path):
        if os.path.isdir(name_or_path):
            raise IsADirectoryError(f"config file {name_or_path} is a directory, expected a YAML file")
        raise FileNotFoundError(f"config file {name_or_path} does not exist")
    if path is None:
        presets = {name.lower(): file for name, file in available_presets().items()}
        path = presets.get(name_or_path.lower())
    if path is None:
        raise ValueError(f"unknown preset {name_or_path!r}; available: {', '.join(sorted(available_presets()))}")
    values = parse_yaml(read_text(path, "config file"), path)
    if not isinstance(values, dict):
        raise ValueError(f"preset {path} must be a mapping of settings")
    return values


def parse_yaml(text: str, path: str):
    """The value of a YAML document; ValueError naming the file, line and column when it does not parse."""
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"config file {path} is not valid YAML{where}: {problem}") from None
