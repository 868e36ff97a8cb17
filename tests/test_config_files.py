"""``diffusion-lm adapt`` / ``diffusion-lm sft`` parse dataclasses: ``--config FILE.yaml`` holds the same field names as
the flags, flags override the file, presets are such files, and an unknown key is a short error naming it."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from diffusion_lm.cli import build_parser, main


def parse(argv: list[str]):
    return build_parser(argv).parse_args(argv)


# --- adapt ------------------------------------------------------------------------------------------------------------
ADAPT_VALUES = {"base": "some/base", "dataset": "some/corpus", "block_size": 64, "batch_size": 3, "max_steps": 7,
                "learning_rate": 3.0e-4, "weight_decay": 0.01, "attention_mode": "bidirectional", "shift": False,
                "bf16": True, "output_dir": "runs/from-config", "lr_scheduler_type": "constant",
                "sample_prompt": "Once"}


def adapt_settings(argv):
    from diffusion_lm.cli.adapt import settings_from_args

    return settings_from_args(parse(["adapt", *argv]))


def test_adapt_config_round_trip_and_flags_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(ADAPT_VALUES))
    settings = adapt_settings(["--config", str(config)])
    assert {name: getattr(settings, name) for name in ADAPT_VALUES} == ADAPT_VALUES
    # both flag spellings override the file; the rest still comes from it
    for flag in ("--block-size", "--block_size"):
        settings = adapt_settings(["--config", str(config), flag, "32", "--shift"])
        assert settings.block_size == 32 and settings.shift is True and settings.max_steps == 7
    # the settings written back out are a config file that gives the same settings
    again = tmp_path / "again.yaml"
    values = dataclasses.asdict(settings)
    values.pop("resume")
    again.write_text(yaml.safe_dump(values))
    assert adapt_settings(["--config", str(again)]) == settings


def test_adapt_config_without_output_dir_names_the_run_after_the_file(tmp_path):
    config = tmp_path / "my-run.yaml"
    config.write_text("max_steps: 3\nlearning_rate: 1e-4\n")  # YAML 1.1 reads 1e-4 as a string
    settings = adapt_settings(["--config", str(config)])
    assert settings.output_dir == "runs/diffusion-lm-my-run" and settings.learning_rate == 1e-4


def test_adapt_every_flag_is_a_field():
    from diffusion_lm.adapt import AdaptSettings

    parser = build_parser(["adapt"])
    adapt = parser._subparsers._group_actions[0].choices["adapt"]
    dests = {action.dest for action in adapt._actions if action.option_strings}
    fields = {f.name for f in dataclasses.fields(AdaptSettings)}
    assert dests - fields == {"help", "debug", "config", "preset", "no_sample"}
    assert fields <= dests


def test_adapt_unknown_config_key_is_a_short_error_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)
    config = tmp_path / "typo.yaml"
    config.write_text("max_steps: 3\nblock-size: 64\nlearnin_rate: 0.1\n")
    with pytest.raises(ValueError, match="'block-size', 'learnin_rate'"):
        adapt_settings(["--config", str(config)])
    assert main(["adapt", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "learnin_rate" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_adapt_config_and_preset_are_one_option(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("max_steps: 3\n")
    assert main(["adapt", "--config", str(config), "--preset", "gpt2"]) == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(__import__("diffusion_lm.presets", fromlist=["x"]).available_presets()))
def test_every_preset_is_a_config_file_of_adapt_fields(name):
    from diffusion_lm.adapt import AdaptSettings
    from diffusion_lm.presets import available_presets, load_preset

    values = load_preset(name)
    assert set(values) <= {f.name for f in dataclasses.fields(AdaptSettings)}
    by_preset = adapt_settings(["--preset", name])
    by_config = adapt_settings(["--config", available_presets()[name]])
    assert by_preset == by_config
    for key, value in values.items():
        assert getattr(by_preset, key) == value, key
    assert by_preset.output_dir == f"runs/diffusion-lm-{name}"


# --- sft --------------------------------------------------------------------------------------------------------------
SFT_VALUES = {"model": "some/model", "dataset": "data.json", "output_dir": "runs/sft-config", "lora": True,
              "lora_r": 4, "max_steps": 5, "per_device_train_batch_size": 2, "max_length": 64,
              "learning_rate": 3.0e-4, "eos_filler": "longest", "loss_normalization": "elbo"}


def sft_arguments(argv):
    from diffusion_lm.cli.sft import resolve_arguments

    return resolve_arguments(parse(["sft", *argv]))


def test_sft_config_round_trip_and_flags_override(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump(SFT_VALUES))
    script, trainer = sft_arguments(["--config", str(config)])
    parsed = {**dataclasses.asdict(script), **{name: getattr(trainer, name) for name in SFT_VALUES
                                                if hasattr(trainer, name)}}
    assert {name: parsed[name] for name in SFT_VALUES} == SFT_VALUES
    assert trainer.per_device_eval_batch_size == 2 and trainer.save_strategy == "no"
    for flags in (["--max-steps", "9", "--batch-size", "3"], ["--max_steps", "9", "--per_device_train_batch_size", "3"]):
        script, trainer = sft_arguments(["--config", str(config), *flags, "--lora_r", "8"])
        assert trainer.max_steps == 9 and trainer.per_device_train_batch_size == 3 and script.lora_r == 8
        assert trainer.learning_rate == 3.0e-4 and script.model == "some/model"


def test_sft_command_defaults_without_a_config():
    script, trainer = sft_arguments(["--model", "m", "--dataset", "d.json", "--output-dir", "o", "--lora"])
    assert trainer.learning_rate == 1e-4 and trainer.lr_scheduler_type == "cosine" and trainer.max_length == 512
    assert trainer.seed == 0 and trainer.save_strategy == "no" and script.lora_r == 16


def test_sft_unknown_config_key_is_a_short_error_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({**SFT_VALUES, "lora_rank": 4}))
    with pytest.raises(ValueError, match="'lora_rank'"):
        sft_arguments(["--config", str(config)])
    assert main(["sft", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "lora_rank" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize("command,key", [("adapt", "dataset"), ("adapt", "base"), ("sft", "model"), ("sft", "dataset")])
def test_a_missing_path_in_a_config_file_is_a_short_error_naming_its_key(command, key, tmp_path, capsys, monkeypatch):
    """Paths from a config file get the same early check as flags: one message naming the key, nothing loaded."""
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)
    missing = str(tmp_path / "nowhere" / "data.jsonl")
    values = {"max_steps": 1, "output_dir": str(tmp_path / "out")} if command == "adapt" else dict(SFT_VALUES)
    values[key] = missing
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(values))
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"'{key}' of the config file" in err and missing in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "out").exists()
