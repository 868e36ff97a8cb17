"""The decoding flags of generate, infill, chat and eval: one definition (cli/decoding_flags.py), one default each."""

from __future__ import annotations

import inspect

import pytest

from diffusion_lm import DiffusionGenerationConfig
from diffusion_lm.cli import build_parser
from diffusion_lm.cli.decoding_flags import DECODING_FLAGS, generation_kwargs
from diffusion_lm.evaluation import DecodingSettings, DiffusionEvaluator

from tiny import tiny_diffusion_model

COMMANDS = {
    "generate": ["generate", "model-dir"],
    "infill": ["infill", "model-dir", "--prefix", "a", "--suffix", "b", "--length", "4"],
    "chat": ["chat", "model-dir"],
    "eval": ["eval", "--model", "model-dir"],
}
FLAG_VALUES = {"steps": "8", "alg": "margin", "temperature": "0.5", "top_k": "3", "top_p": "0.9",
               "alg_temperature": "0.1", "block_length": "4", "kv_cache": "prefix", "threshold": "0.8",
               "entropy_bound": "0.5", "sub_block_length": "2", "verify": "causal", "draft_length": "4"}


def parse(argv):
    return build_parser(argv).parse_args(argv)


def decoding_values(args) -> dict:
    return {spec.field: getattr(args, spec.field) for spec in DECODING_FLAGS}


def test_every_flag_sets_a_field_of_the_generation_config():
    fields = set(inspect.signature(DiffusionGenerationConfig.__init__).parameters) | set(DiffusionGenerationConfig()
                                                                                         .to_dict())
    assert {spec.field for spec in DECODING_FLAGS} <= fields
    assert set(FLAG_VALUES) == {spec.field for spec in DECODING_FLAGS}
    # each flag's example value is one the config accepts
    values = {spec.field: spec.type(FLAG_VALUES[spec.field]) for spec in DECODING_FLAGS}
    DiffusionGenerationConfig(**values).validate()


def test_every_command_has_every_decoding_flag_with_the_same_defaults():
    defaults = {name: decoding_values(parse(argv)) for name, argv in COMMANDS.items()}
    assert defaults["generate"] == {"steps": None, "alg": "confidence", "temperature": 0.0, "top_k": None,
                                    "top_p": None, "alg_temperature": 0.0, "block_length": None, "kv_cache": None,
                                    "threshold": None, "entropy_bound": None, "sub_block_length": None,
                                    "verify": None, "draft_length": None}
    for name in COMMANDS:
        assert defaults[name] == defaults["generate"], name
    # eval's --kv-cache used to default to "none" (exact); like generate and chat it now leaves the checkpoint's
    assert parse(COMMANDS["eval"]).kv_cache is None


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_reads_every_decoding_flag(name):
    argv = list(COMMANDS[name])
    for spec in DECODING_FLAGS:
        argv += [spec.flag, FLAG_VALUES[spec.field]]
    values = decoding_values(parse(argv))
    assert values == {spec.field: spec.type(FLAG_VALUES[spec.field]) for spec in DECODING_FLAGS}


def test_generation_kwargs_pass_the_sampling_fields_and_only_the_fast_fields_given():
    args = parse(COMMANDS["generate"])
    assert generation_kwargs(args, steps=64) == {"steps": 64, "alg": "confidence", "temperature": 0.0,
                                                 "top_k": None, "top_p": None, "alg_temperature": 0.0,
                                                 "block_length": None}
    args = parse([*COMMANDS["chat"], "--kv-cache", "none", "--threshold", "0.5", "--verify", "causal"])
    kwargs = generation_kwargs(args, steps=8)
    assert kwargs["kv_cache"] is None and kwargs["threshold"] == 0.5 and kwargs["verify"] == "causal"
    assert "entropy_bound" not in kwargs and "draft_length" not in kwargs


def test_eval_decodes_as_generate_does_with_the_checkpoints_fast_decoding_defaults():
    from diffusion_lm.cli.eval import decoding_fields

    checkpoint = DiffusionGenerationConfig(kv_cache="dual", threshold=0.9, block_length=32, verify="causal",
                                           draft_length=4, entropy_bound=0.3)
    fields = decoding_fields(parse(COMMANDS["eval"]), checkpoint)
    # the fast-decoding fields the flags leave out come from the checkpoint; the sampling fields are the flags' (as
    # in generate: block_length None); a default verify is set aside by the explicit step count, as in generate
    assert fields == {"steps": None, "alg": "confidence", "temperature": 0.0, "top_k": None, "top_p": None,
                      "alg_temperature": 0.0, "block_length": None, "kv_cache": "dual", "threshold": 0.9,
                      "entropy_bound": 0.3, "sub_block_length": None}
    exact = decoding_fields(parse([*COMMANDS["eval"], "--kv-cache", "none", "--threshold", "1"]), checkpoint)
    assert exact["kv_cache"] is None and exact["threshold"] == 1.0
    DecodingSettings(**fields)  # every field is a DecodingSettings field


# the cache adapt ships in generation_config.json (README "Fast decoding"), with threshold 0.9
@pytest.mark.parametrize("attention_mode, kv_cache", [("bidirectional", "dual"), ("block", "prefix")])
def test_evaluator_decodes_batches_with_holes_under_a_checkpoints_fast_defaults(attention_mode, kv_cache):
    model, tokenizer = tiny_diffusion_model(seed=3)
    if attention_mode == "block":
        model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    decoding = DecodingSettings(kv_cache=kv_cache, threshold=0.9)
    fast = DiffusionEvaluator(model, tokenizer, decoding=decoding)
    items = [([1, 10, 11, 12][: 2 + i % 3], 2 + i % 2, [20, 21][: i % 3]) for i in range(5)]
    filled = fast.fill_many(items, list(range(5)), batch_size=4)
    assert [len(ids) for ids in filled] == [n for _, n, _ in items]
    assert all(model.config.mask_token_id not in ids for ids in filled)
    prompts = [[1, 10], [1, 12, 13, 14], [1]]
    continued = fast.continue_many(prompts, 4, [0, 1, 2], batch_size=3)
    assert [len(ids) for ids in continued] == [4, 4, 4]
