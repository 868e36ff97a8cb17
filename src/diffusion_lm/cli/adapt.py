"""``diffusion-lm adapt``: with no arguments, the embedded offline default (SmolLM2-135M, self-sampled corpus).

The flags are the fields of ``diffusion_lm.adapt.AdaptSettings`` (parsed by ``transformers.HfArgumentParser``:
``--block_size`` or ``--block-size``). ``--config FILE.yaml`` reads the same fields from a YAML file, and
``--preset NAME`` is the config file ``hub_configs/NAME.yaml`` shipped with the package; flags override the file.
"""

from __future__ import annotations

import argparse
import json

from ..adapt import AdaptSettings

CONFIG_CLASSES = (AdaptSettings,)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    from . import explicit_flags_only
    from ..presets import available_presets

    explicit_flags_only(parser, CONFIG_CLASSES)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file of settings (keys: the field names of these flags, e.g. block_size); "
                             "flags given here override it")
    source.add_argument("--preset", metavar="NAME",
                        help=f"the config file of a shipped preset: {', '.join(available_presets())} "
                             "(src/diffusion_lm/hub_configs/NAME.yaml), or a YAML path")
    parser.add_argument("--no-sample", "--no_sample", action="store_true",
                        help="skip the generated sample at the end (same as --sample_prompt '')")


def settings_from_args(args: argparse.Namespace) -> AdaptSettings:
    """Defaults < config file (``--config`` / ``--preset``) < flags given, validated (see ``resolve_settings``)."""
    from . import given_fields
    from ..adapt import resolve_settings

    overrides = given_fields(args, AdaptSettings)
    if getattr(args, "no_sample", False):
        overrides["sample_prompt"] = ""
    return resolve_settings(getattr(args, "config", None) or getattr(args, "preset", None), overrides)


def run(args: argparse.Namespace) -> int:
    from . import check_references, hub_access
    from ..adapt_run import run_adaptation

    settings = settings_from_args(args)
    with hub_access(check_references(args, settings)):  # paths a config file named get the flags' early check
        summary = run_adaptation(settings)
    sample = summary.pop("sample", None)
    print(json.dumps(summary, indent=2, default=str))
    if sample is not None:
        print(f"\nSample from {settings.output_dir}:\n{sample}")
    return 0
