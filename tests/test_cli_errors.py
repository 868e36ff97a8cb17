"""Bad inputs fail early and briefly: the CLI prints one to three lines naming the problem (no traceback, no network
for local paths, exit 2 for usage errors, 1 for an unreachable Hub); the Python API raises ValueError /
FileNotFoundError naming the field or path. The table mirrors docs/bad_inputs.md."""

from __future__ import annotations

import json
import os
import random
import socket
import time

import datasets  # noqa: F401 - imported here, its log handler writes to the real stderr, not to one test's capture
import pytest
import torch
from tiny import WORDS, save_tiny_ar_checkpoint, tiny_diffusion_model
from transformers import BertConfig, T5Config

from diffusion_lm.cli import main

FAST_S = 10.0


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("bad-inputs"))


def build_workspace(root) -> dict:
    """Paths of tiny checkpoints and good / bad files under ``root``, as a dict for formatting argv templates."""
    paths = {"root": str(root), "missing": str(root / "no-such-dir")}
    paths["ar"] = save_tiny_ar_checkpoint(str(root / "ar-llama"), "llama")
    paths["ar_gpt2"] = save_tiny_ar_checkpoint(str(root / "ar-gpt2"), "gpt2")
    model, tokenizer = tiny_diffusion_model("llama")
    paths["diff"] = str(root / "diffusion")
    model.save_pretrained(paths["diff"])
    tokenizer.save_pretrained(paths["diff"])
    for name, config in (("t5", T5Config(d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32, vocab_size=100)),
                         ("bert", BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, vocab_size=100))):
        paths[name] = str(root / name)
        config.save_pretrained(paths[name])
    os.makedirs(root / "runs")
    paths["empty_dir"] = str(root / "empty-dir")
    os.makedirs(paths["empty_dir"])
    rng = random.Random(0)
    files = {
        "corpus": "\n\n".join(" ".join(rng.choice(WORDS[:60]) for _ in range(30)) for _ in range(40)),
        "empty": "",
        "spaces": "   \n\n  \n",
        "short": "the cat sat on the mat",
        "alpaca": json.dumps([{"instruction": "say hello", "input": "", "output": "hello"}] * 4),
    }
    for name, text in files.items():
        paths[name] = str(root / (f"{name}.json" if name == "alpaca" else f"{name}.txt"))
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write(text)
    paths["binary"] = str(root / "binary.txt")
    with open(paths["binary"], "wb") as f:
        f.write(bytes(range(256)) * 8)
    paths["bad_json"] = str(root / "broken.jsonl")
    with open(paths["bad_json"], "w", encoding="utf-8") as f:
        f.write('{"text": "fine"}\n{"text": unquoted}\n')
    paths["adapter"] = str(root / "adapter")
    os.makedirs(paths["adapter"])
    with open(os.path.join(paths["adapter"], "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump({"peft_type": "LORA", "base_model_name_or_path": str(root / "moved-away-base"), "r": 4,
                   "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}, f)
    # an output directory holding a recorded run, for --resume contradictions
    from diffusion_lm.adapt import RUN_RECORD_NAME, AdaptSettings

    paths["recorded"] = str(root / "recorded-run")
    os.makedirs(paths["recorded"])
    recorded = AdaptSettings(base=paths["ar"], dataset=paths["corpus"], output_dir=paths["recorded"], block_size=16)
    with open(os.path.join(paths["recorded"], RUN_RECORD_NAME), "w", encoding="utf-8") as f:
        json.dump(recorded.run_record(), f)
    build_issue23_inputs(root, paths)
    return paths


def _copy_and_edit(paths, source: str, name: str, edit) -> None:
    import shutil

    paths[name] = os.path.join(paths["root"], name.replace("_", "-"))
    shutil.copytree(paths[source], paths[name])
    edit(paths[name])


def _truncate(path: str, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def _edit_json(path: str, **changes) -> None:
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    values.update(changes)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f)


LATIN1 = "the cat sat on the mat and then it was happy . caf\u00e9 \n".encode("latin-1")  # 0xe9: not UTF-8


def build_issue23_inputs(root, paths: dict) -> None:
    """Issue 23's inputs: damaged checkpoints, invalid config values, text that is not UTF-8, config paths, runs
    that collide, interrupted runs whose checkpoints are damaged."""
    j = os.path.join
    # damaged files of a diffusion checkpoint
    _copy_and_edit(paths, "diff", "weights_truncated", lambda d: _truncate(j(d, "model.safetensors")))
    _copy_and_edit(paths, "diff", "weights_empty", lambda d: _truncate(j(d, "model.safetensors"), 0))
    _copy_and_edit(paths, "diff", "config_truncated", lambda d: _truncate(j(d, "config.json"), 0.6))
    _copy_and_edit(paths, "diff", "tokenizer_truncated", lambda d: _truncate(j(d, "tokenizer.json"), 0.5))
    _copy_and_edit(paths, "diff", "config_bad_choice", lambda d: _edit_json(j(d, "config.json"),
                                                                             attention_mode="sideways"))
    _copy_and_edit(paths, "diff", "config_bad_type", lambda d: _edit_json(j(d, "config.json"), hidden_size="big"))
    _copy_and_edit(paths, "diff", "generation_bad_choice",
                   lambda d: _edit_json(j(d, "generation_config.json"), alg="fastest"))
    _copy_and_edit(paths, "ar", "ar_truncated", lambda d: _truncate(j(d, "model.safetensors"), 0.9))
    # text that is not UTF-8 (the offset of the bad byte is named)
    prefix = ("the cat sat on the mat . " * 40).encode()
    paths["latin1_offset"] = len(prefix) + LATIN1.index(b"\xe9")
    for name, data in (("corpus_latin1.txt", prefix + LATIN1),
                       ("alpaca_latin1.json", prefix.replace(b"the", b"   ") + b'[{"instruction": "caf\xe9"}]'),
                       ("alpaca_latin1.jsonl", b'{"instruction": "a", "input": "", "output": "b"}\n'
                                               b'{"instruction": "caf\xe9", "input": "", "output": "b"}\n'),
                       ("wiki_latin1.txt", prefix + LATIN1),
                       ("config_latin1.yaml", b"block_size: 16\n# caf\xe9\n"),
                       ("config_invalid.yaml", b"block_size: [16\n")):
        paths[name.replace(".", "_")] = j(paths["root"], name)
        with open(paths[name.replace(".", "_")], "wb") as f:
            f.write(data)
    for name, sol2 in (("eval_latin1", b"caf\xe9"), ("eval_good", b"ran")):
        paths[name] = j(paths["root"], name.replace("_", "-"))
        os.makedirs(paths[name])
        with open(j(paths[name], "piqa_valid.jsonl"), "wb") as f:
            f.write(b'{"goal": "the cat", "sol1": "sat", "sol2": "' + sol2 + b'", "label": 0}\n')
    # an output directory holding the checkpoints of an unfinished run (no final model)
    paths["unfinished"] = j(paths["root"], "unfinished-run")
    os.makedirs(j(paths["unfinished"], "checkpoint-2"))
    with open(j(paths["unfinished"], "checkpoint-2", "trainer_state.json"), "w", encoding="utf-8") as f:
        json.dump({"global_step": 2}, f)
    # a recorded run whose only checkpoint is damaged (as a full disk leaves it)
    import shutil

    paths["damaged_run"] = j(paths["root"], "damaged-run")
    shutil.copytree(paths["recorded"], paths["damaged_run"])
    checkpoint = j(paths["damaged_run"], "checkpoint-2")
    shutil.copytree(paths["diff"], checkpoint)
    with open(j(checkpoint, "trainer_state.json"), "w", encoding="utf-8") as f:
        json.dump({"global_step": 2, "max_steps": 2}, f)
    _truncate(j(checkpoint, "model.safetensors"))


@pytest.fixture
def no_network(ws, monkeypatch):
    """Every connection and DNS lookup fails (and is recorded), as on a machine without network. Runs in the
    workspace, where ``runs/`` exists (so ``runs/name`` is a local path, not a Hub id)."""
    monkeypatch.chdir(ws["root"])
    attempts = []

    def refuse_connect(self, address):
        attempts.append(address)
        raise OSError(101, "Network is unreachable (blocked by the test)")

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(-2, "Name or service not known (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)
    return attempts


def adapt(*flags):
    return ["adapt", "--base", "{ar}", "--dataset", "{corpus}", "--output-dir", "{root}/out", "--max-steps", "2",
            "--block-size", "16", "--batch-size", "2", "--no-sample", *flags]


def sft(*flags):
    return ["sft", "--model", "{diff}", "--dataset", "{alpaca}", "--output-dir", "{root}/sft-out", *flags]


# (id, argv template, expected exit status, text the message must contain, whether the Hub may be tried)
CASES = [
    # adapt: paths
    ("adapt-base-missing-absolute", adapt("--base", "{missing}/model"), 2, "no-such-dir/model", False),
    ("adapt-base-missing-relative", adapt("--base", "./no-such-model"), 2, "./no-such-model", False),
    ("adapt-base-missing-under-existing-dir", adapt("--base", "{root}/nothing-here"), 2, "nothing-here", False),
    ("adapt-base-missing-gguf", adapt("--base", "model.Q4.gguf"), 2, "model.Q4.gguf", False),
    ("adapt-base-is-a-file", adapt("--base", "{corpus}"), 2, "corpus.txt", False),
    ("adapt-base-dir-without-config", adapt("--base", "{empty_dir}"), 2, "config.json", False),
    ("adapt-base-hub-id-offline", adapt("--base", "someone/some-model"), 1, "someone/some-model", True),
    ("adapt-dataset-missing", adapt("--dataset", "{missing}/corpus.jsonl"), 2, "corpus.jsonl", False),
    ("adapt-dataset-glob-matches-nothing", adapt("--dataset", "{root}/*.parquet"), 2, "*.parquet", False),
    ("adapt-eval-dataset-missing", adapt("--eval-dataset", "held-out.jsonl"), 2, "held-out.jsonl", False),
    ("adapt-resume-checkpoint-missing", adapt("--resume", "{missing}/checkpoint-4"), 2, "checkpoint-4", False),
    ("adapt-resume-nothing-to-resume", ["adapt", "--output-dir", "{empty_dir}", "--resume"], 2, "nothing to resume",
     False),
    ("adapt-resume-contradicting-flag", ["adapt", "--output-dir", "{recorded}", "--resume", "--block-size", "32"], 2,
     "--block-size", False),
    ("adapt-resume-contradicting-dataset", ["adapt", "--output-dir", "{recorded}", "--resume", "--dataset",
                                            "{short}"], 2, "--dataset", False),
    # adapt: corpora
    ("adapt-corpus-empty", adapt("--dataset", "{empty}"), 2, "empty.txt", False),
    ("adapt-corpus-whitespace", adapt("--dataset", "{spaces}"), 2, "spaces.txt", False),
    ("adapt-corpus-binary", adapt("--dataset", "{binary}"), 2, "binary.txt", False),
    ("adapt-corpus-shorter-than-a-block", adapt("--dataset", "{short}"), 2, "short.txt", False),
    ("adapt-corpus-malformed-json", adapt("--dataset", "{bad_json}"), 2, "broken.jsonl", False),
    ("adapt-eval-corpus-shorter-than-a-block", adapt("--eval-dataset", "{short}"), 2, "--eval-dataset", False),
    # adapt: model checks before any data loads
    ("adapt-unsupported-t5", adapt("--base", "{t5}"), 2, "gpt2, llama, qwen2", False),
    ("adapt-unsupported-bert", adapt("--base", "{bert}"), 2, "'bert'", False),
    ("adapt-mask-is-eos", adapt("--reuse-mask-token-id", "2"), 2, "EOS", False),
    ("adapt-mask-is-pad", adapt("--reuse-mask-token-id", "0"), 2, "PAD", False),
    ("adapt-mask-is-bos", adapt("--reuse-mask-token-id", "1"), 2, "BOS", False),
    ("adapt-mask-outside-vocab", adapt("--reuse-mask-token-id", "5000"), 2, "5000", False),
    ("adapt-mask-negative", adapt("--reuse-mask-token-id", "-1"), 2, "--reuse-mask-token-id", False),
    ("adapt-block-size-above-positions-llama", adapt("--block-size", "4096"), 2, "block_size 4096", False),
    ("adapt-block-size-above-positions-gpt2", adapt("--base", "{ar_gpt2}", "--block-size", "144"), 2, "128 positions",
     False),
    # adapt: numbers
    ("adapt-grad-accum-zero", adapt("--gradient-accumulation-steps", "0"), 2, "--gradient-accumulation-steps", False),
    ("adapt-weight-decay-negative", adapt("--weight-decay", "-0.1"), 2, "--weight-decay", False),
    ("adapt-save-steps-zero", adapt("--save-steps", "0"), 2, "--save-steps", False),
    ("adapt-max-steps-zero", adapt("--max-steps", "0"), 2, "--max-steps", False),
    ("adapt-batch-size-zero", adapt("--batch-size", "0"), 2, "--batch-size", False),
    ("adapt-learning-rate-zero", adapt("--learning-rate", "0"), 2, "--learning-rate", False),
    ("adapt-learning-rate-negative", adapt("--learning-rate=-1e-4"), 2, "--learning-rate must be > 0", False),
    ("adapt-block-size-one", adapt("--block-size", "1"), 2, "--block-size", False),
    ("adapt-eval-steps-without-eval-data", adapt("--eval-steps", "5"), 2, "--eval-steps", False),
    ("adapt-not-an-integer", adapt("--max-steps", "ten"), 2, "--max-steps", False),
    ("adapt-unknown-choice", adapt("--loss-normalization", "mean"), 2, "--loss-normalization", False),
    ("adapt-unknown-preset", adapt("--preset", "gpt5"), 2, "gpt5", False),
    # generate / infill
    ("generate-model-missing", ["generate", "{missing}", "--prompt", "the"], 2, "no-such-dir", False),
    ("generate-model-relative-missing", ["generate", "runs/nothing-here-either"], 2, "runs/nothing-here-either", False),
    ("generate-ar-checkpoint", ["generate", "{ar}", "--max-new-tokens", "4"], 2, "not a diffusion LM", False),
    ("generate-model-is-a-file", ["generate", "{corpus}"], 2, "corpus.txt", False),
    ("generate-steps-zero", ["generate", "{diff}", "--steps", "0"], 2, "--steps", False),
    ("generate-top-p-above-one", ["generate", "{diff}", "--temperature", "1", "--top-p", "1.5"], 2, "--top-p", False),
    ("generate-negative-length", ["generate", "{diff}", "--max-new-tokens", "-1"], 2, "--max-new-tokens", False),
    ("generate-block-length-not-dividing", ["generate", "{diff}", "--max-new-tokens", "4", "--block-length", "3"], 2,
     "--block-length", False),
    ("infill-length-zero", ["infill", "{diff}", "--prefix", "a", "--suffix", "b", "--length", "0"], 2, "--length",
     False),
    ("infill-model-missing", ["infill", "./gone", "--prefix", "a", "--suffix", "b", "--length", "2"], 2, "./gone",
     False),
    # chat
    ("chat-model-missing", ["chat", "{missing}"], 2, "no-such-dir", False),
    ("chat-max-new-tokens-zero", ["chat", "{diff}", "--max-new-tokens", "0"], 2, "--max-new-tokens", False),
    ("chat-adapter-base-missing", ["chat", "{adapter}"], 2, "moved-away-base", False),
    ("chat-hub-id-offline", ["chat", "someone/some-chat-model"], 1, "someone/some-chat-model", True),
    # sft
    ("sft-model-missing", ["sft", "--model", "{missing}", "--dataset", "{alpaca}", "--output-dir", "{root}/o"], 2,
     "no-such-dir", False),
    ("sft-dataset-missing", sft("--dataset", "{missing}/data.json"), 2, "data.json", False),
    ("sft-dataset-relative-missing", sft("--dataset", "./data/alpaca"), 2, "./data/alpaca", False),
    ("sft-dataset-hub-id-offline", sft("--dataset", "data/alpaca"), 1, "data/alpaca", True),
    ("sft-ar-model", sft("--model", "{ar}"), 2, "not a diffusion LM", False),
    ("sft-batch-size-zero", sft("--batch-size", "0"), 2, "--batch-size", False),
    ("sft-merge-without-lora", sft("--merge"), 2, "--merge", False),
    # eval
    ("eval-model-missing", ["eval", "--model", "{missing}"], 2, "no-such-dir", False),
    ("eval-data-dir-missing", ["eval", "--model", "{diff}", "--data-dir", "{root}/eval-data"], 2, "eval-data", False),
    ("eval-unknown-task", ["eval", "--model", "{diff}", "--tasks", "mmlu"], 2, "mmlu", False),
    ("eval-mc-samples-zero", ["eval", "--model", "{diff}", "--mc-samples", "0"], 2, "--mc-samples", False),
    ("eval-ar-baseline-missing", ["eval", "--model", "{diff}", "--ar-baseline", "base.gguf"], 2, "base.gguf", False),
    ("eval-ppl-data-missing", ["eval", "--model", "{diff}", "--ppl-data", "{root}/wiki.txt"], 2, "wiki.txt", False),
    # card / push / import-reference
    ("card-dir-missing", ["card", "{missing}"], 2, "no-such-dir", False),
    ("card-target-is-a-file", ["card", "{corpus}"], 2, "corpus.txt", False),
    ("push-dir-missing", ["push", "{missing}", "me/model"], 2, "no-such-dir", False),
    ("push-invalid-repo-id", ["push", "{diff}", "not a repo id"], 2, "not a repo id", False),
    ("import-reference-src-missing", ["import-reference", "{missing}", "{root}/imported"], 2, "no-such-dir", False),
    ("import-reference-hub-id-offline", ["import-reference", "someone/diffugpt-x", "{root}/imported"], 1,
     "someone/diffugpt-x", True),
    # the dispatcher itself
    ("no-command", [], 2, "COMMAND", False),
    ("unknown-command", ["frobnicate"], 2, "frobnicate", False),
]

# issue 23: (id, argv template, exit status, text the message must contain, whether the Hub may be tried)
ISSUE_23_CASES = [
    # damaged files: the file and what is wrong with it, never "a bug in diffusion-lm"
    ("generate-weights-truncated", ["generate", "{weights_truncated}"], 2,
     "{weights_truncated}/model.safetensors is damaged: truncated", False),
    ("generate-weights-empty", ["generate", "{weights_empty}"], 2, "model.safetensors is damaged", False),
    ("generate-config-truncated", ["generate", "{config_truncated}"], 2,
     "{config_truncated}/config.json is damaged: not valid JSON", False),
    ("generate-tokenizer-truncated", ["generate", "{tokenizer_truncated}"], 2,
     "{tokenizer_truncated}/tokenizer.json is damaged", False),
    ("chat-weights-truncated", ["chat", "{weights_truncated}"], 2, "model.safetensors is damaged", False),
    ("eval-weights-truncated", ["eval", "--model", "{weights_truncated}", "--tasks", "piqa", "--data-dir",
                                "{eval_good}"], 2, "--model: {weights_truncated}/model.safetensors is damaged", False),
    ("sft-weights-truncated", sft("--model", "{weights_truncated}"), 2, "model.safetensors is damaged", False),
    ("adapt-base-weights-truncated", adapt("--base", "{ar_truncated}"), 2,
     "{ar_truncated}/model.safetensors is damaged", False),
    # a config field with an invalid value: the field, the file and the allowed values
    ("generate-config-invalid-choice", ["generate", "{config_bad_choice}"], 2,
     "attention_mode must be one of ('bidirectional', 'causal', 'block'), got 'sideways'", False),
    ("generate-config-invalid-type", ["generate", "{config_bad_type}"], 2,
     "{config_bad_type}/config.json has an invalid value for 'hidden_size'", False),
    ("generate-generation-config-invalid-choice", ["generate", "{generation_bad_choice}"], 2,
     "{generation_bad_choice}/generation_config.json has an invalid setting: alg must be one of", False),
    # the machine: the device and what to use instead
    ("generate-device-cuda-without-cuda", ["generate", "{diff}", "--device", "cuda"], 2,
     "--device cuda: CUDA is not available on this machine", False),
    ("generate-device-unknown", ["generate", "{diff}", "--device", "gpu9"], 2, "--device 'gpu9' is not a torch device",
     False),
    ("chat-device-cuda-index", ["chat", "{diff}", "--device", "cuda:1"], 2, "use --device cpu", False),
    ("eval-device-cuda-without-cuda", ["eval", "--model", "{diff}", "--device", "cuda"], 2, "--device cuda", False),
    # collisions between runs
    ("adapt-into-a-finished-model", adapt("--output-dir", "{diff}"), 2,
     "{diff} already holds a finished model (model.safetensors); pass --resume to continue that run, or "
     "--overwrite-output-dir", False),
    ("adapt-into-an-unfinished-run", adapt("--output-dir", "{unfinished}"), 2,
     "checkpoints of an unfinished run (checkpoint-2); pass --resume", False),
    ("sft-into-a-finished-model", sft("--output-dir", "{diff}"), 2,
     "{diff} already holds a finished model (model.safetensors); pass --overwrite-output-dir", False),
    # interrupted runs
    ("adapt-resume-no-intact-checkpoint", ["adapt", "--output-dir", "{damaged_run}", "--resume"], 2,
     "no intact checkpoint in {damaged_run} (checkpoint-2: model.safetensors is damaged", False),
    ("adapt-resume-named-checkpoint-damaged", ["adapt", "--output-dir", "{damaged_run}", "--resume",
                                               "{damaged_run}/checkpoint-2"], 2,
     "{damaged_run}/checkpoint-2 is damaged: model.safetensors", False),
    ("eval-resume-without-output", ["eval", "--model", "{diff}", "--resume"], 2, "--resume needs --output", False),
    # config files
    ("adapt-config-missing", ["adapt", "--config", "{root}/configs/run.yaml"], 2,
     "config file {root}/configs/run.yaml does not exist", False),
    ("adapt-config-missing-relative", ["adapt", "--config", "my-run.yaml"], 2, "config file my-run.yaml does not exist",
     False),
    ("adapt-config-is-a-directory", ["adapt", "--config", "{root}/runs/"], 2, "is a directory", False),
    ("adapt-config-invalid-yaml", ["adapt", "--config", "{config_invalid_yaml}"], 2,
     "config file {config_invalid_yaml} is not valid YAML (line 2", False),
    ("sft-config-missing", ["sft", "--config", "{root}/configs/sft.yaml"], 2, "configs/sft.yaml does not exist", False),
    # text that is not UTF-8: the file and the byte offset
    ("adapt-corpus-not-utf8", adapt("--dataset", "{corpus_latin1_txt}"), 2,
     "corpus file {corpus_latin1_txt} is not UTF-8 text (invalid byte 0xe9 at byte offset {latin1_offset})", False),
    ("sft-data-not-utf8-json", sft("--dataset", "{alpaca_latin1_json}"), 2,
     "dataset file {alpaca_latin1_json} is not UTF-8 text (invalid byte 0xe9 at byte offset", False),
    ("sft-data-not-utf8-jsonl", sft("--dataset", "{alpaca_latin1_jsonl}"), 2,
     "dataset file {alpaca_latin1_jsonl} is not UTF-8 text (invalid byte 0xe9 at byte offset 69)", False),
    ("eval-data-not-utf8", ["eval", "--model", "{diff}", "--tasks", "piqa", "--data-dir", "{eval_latin1}"], 2,
     "{eval_latin1}/piqa_valid.jsonl is not UTF-8 text (invalid byte 0xe9 at byte offset", False),
    ("eval-ppl-data-not-utf8", ["eval", "--model", "{diff}", "--tasks", "piqa", "--data-dir", "{eval_good}",
                                "--ppl-data", "{wiki_latin1_txt}"], 2,
     "--ppl-data file {wiki_latin1_txt} is not UTF-8 text (invalid byte 0xe9 at byte offset {latin1_offset})", False),
    ("adapt-config-not-utf8", ["adapt", "--config", "{config_latin1_yaml}"], 2,
     "config file {config_latin1_yaml} is not UTF-8 text (invalid byte 0xe9 at byte offset 20)", False),
]


@pytest.mark.parametrize("argv,status,needle,may_use_hub", [c[1:] for c in CASES + ISSUE_23_CASES],
                         ids=[c[0] for c in CASES + ISSUE_23_CASES])
def test_bad_input_fails_early_with_a_short_message(ws, no_network, capsys, monkeypatch, argv, status, needle,
                                                    may_use_hub):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, as most CI is
    argv = [arg.format(**ws) for arg in argv]
    started = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    message = [line for line in err.strip().splitlines() if line.strip() and not _progress_line(line)]
    assert code == status, err
    assert needle.format(**ws) in err, err
    assert "Traceback" not in out + err
    assert 1 <= len(message) <= 3, err
    assert message[0].startswith("diffusion-lm"), err
    assert "bug" not in err.lower(), err  # a user's input or machine, never reported as the library's fault
    assert elapsed < FAST_S
    if not may_use_hub:
        assert no_network == [], f"tried the network for a local input: {no_network}"


def _progress_line(line: str) -> bool:
    # tqdm bars (loading weights, reading files) are not part of the error message
    return "it/s]" in line or "examples/s]" in line or "%|" in line


def test_debug_flag_and_environment_show_the_traceback(ws, no_network, monkeypatch):
    argv = adapt("--base", "{missing}/model")
    for position in (0, 1):  # `diffusion-lm --debug adapt ...` and `diffusion-lm adapt --debug ...`
        with pytest.raises(FileNotFoundError, match="no-such-dir/model"):
            main([arg.format(**ws) for arg in argv[:position] + ["--debug"] + argv[position:]])
    monkeypatch.setenv("DIFFUSION_LM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main([arg.format(**ws) for arg in argv])


def test_ctrl_c_and_unexpected_errors(ws, monkeypatch, capsys):
    import diffusion_lm.checkpoint as checkpoint

    monkeypatch.delenv("DIFFUSION_LM_DEBUG", raising=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "load_checkpoint", interrupted)
    assert main(["generate", ws["diff"]]) == 130
    assert "interrupted" in capsys.readouterr().err

    def bug(*args, **kwargs):
        raise RuntimeError("an internal invariant broke\nsecond line of detail")

    monkeypatch.setattr(checkpoint, "load_checkpoint", bug)
    assert main(["generate", ws["diff"]]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: an internal invariant broke" in err and "--debug" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


# --- Python API: the same mistakes raise ValueError / FileNotFoundError naming the field or path --------------------
def _api_cases(ws):
    from diffusion_lm.adapt import AdaptSettings, resolve_settings
    from diffusion_lm.adapt_run import run_adaptation
    from diffusion_lm.checkpoint import latest_intact_checkpoint, load_checkpoint, resolve_device
    from diffusion_lm.cli.chat import load_chat_model
    from diffusion_lm.presets import load_preset
    from diffusion_lm.conversion import convert_checkpoint
    from diffusion_lm.data import load_text_dataset
    from diffusion_lm.model_card import write_card
    from diffusion_lm.sft_data import load_sft_dataset
    from diffusion_lm.trainer import DiffusionTrainingArguments

    def settings(**overrides):
        values = dict(base=ws["ar"], dataset=ws["corpus"], output_dir=os.path.join(ws["root"], "api-out"),
                      max_steps=2, block_size=16, batch_size=2, sample_prompt="")
        return AdaptSettings(**{**values, **overrides})

    def training_args(**overrides):
        return lambda: DiffusionTrainingArguments(output_dir=os.path.join(ws["root"], "args"), report_to="none",
                                                  use_cpu=True, **overrides)

    return [
        ("convert-missing-dir", lambda: convert_checkpoint(ws["missing"]), FileNotFoundError, "no-such-dir"),
        ("convert-missing-gguf", lambda: convert_checkpoint("weights.gguf"), FileNotFoundError, "weights.gguf"),
        ("convert-t5", lambda: convert_checkpoint(ws["t5"]), ValueError, "'t5'"),
        ("convert-mask-is-eos", lambda: convert_checkpoint(ws["ar"], reuse_mask_token_id=2), ValueError, "EOS"),
        ("convert-mask-outside-vocab", lambda: convert_checkpoint(ws["ar"], reuse_mask_token_id=10 ** 6), ValueError,
         "1000000"),
        ("load-text-missing", lambda: load_text_dataset("corpora/none.txt"), FileNotFoundError, "corpora/none.txt"),
        ("load-text-empty", lambda: load_text_dataset(ws["empty"]), ValueError, "empty.txt"),
        ("load-text-binary", lambda: load_text_dataset(ws["binary"]), ValueError, "binary.txt"),
        ("load-text-malformed", lambda: load_text_dataset(ws["bad_json"]), ValueError, "broken.jsonl"),
        ("settings-grad-accum", lambda: settings(gradient_accumulation_steps=0).validate(), ValueError,
         "gradient-accumulation-steps"),
        ("settings-weight-decay", lambda: settings(weight_decay=-1.0).validate(), ValueError, "weight-decay"),
        ("settings-save-steps", lambda: settings(save_steps=0).validate(), ValueError, "save-steps"),
        ("run-short-corpus", lambda: run_adaptation(settings(dataset=ws["short"])), ValueError, "short.txt"),
        ("run-block-above-positions", lambda: run_adaptation(settings(block_size=512)), ValueError, "512"),
        ("run-mask-is-pad", lambda: run_adaptation(settings(reuse_mask_token_id=0, mask_token=None)), ValueError,
         "PAD"),
        ("resume-contradiction", lambda: resolve_settings(None, {"output_dir": ws["recorded"], "resume": "latest",
                                                                 "learning_rate": 0.5}),
         ValueError, "--learning-rate"),
        ("args-grad-accum", training_args(gradient_accumulation_steps=0), ValueError, "gradient_accumulation_steps"),
        ("args-weight-decay", training_args(weight_decay=-0.5), ValueError, "weight_decay"),
        ("args-save-steps", training_args(save_steps=0), ValueError, "save_steps"),
        ("args-learning-rate", training_args(learning_rate=0.0), ValueError, "learning_rate"),
        ("args-max-steps", training_args(max_steps=0), ValueError, "max_steps"),
        ("generate-load-missing", lambda: load_checkpoint(ws["missing"]), FileNotFoundError, "no-such-dir"),
        ("chat-load-missing", lambda: load_chat_model("./nowhere"), FileNotFoundError, "./nowhere"),
        ("eval-load-missing", lambda: load_checkpoint(ws["empty_dir"]), FileNotFoundError, "config.json"),
        ("sft-dataset-missing", lambda: load_sft_dataset("./data/none"), FileNotFoundError, "./data/none"),
        ("card-missing-dir", lambda: write_card(ws["missing"]), FileNotFoundError, "no-such-dir"),
        # issue 23
        ("load-weights-truncated", lambda: load_checkpoint(ws["weights_truncated"]), ValueError,
         "model.safetensors is damaged: truncated"),
        ("load-config-invalid-choice", lambda: load_checkpoint(ws["config_bad_choice"]), ValueError,
         "got 'sideways'"),
        ("load-device-cuda", lambda: load_checkpoint(ws["diff"], device="cuda"), ValueError,
         "CUDA is not available"),
        ("device-unknown", lambda: resolve_device("gpu9"), ValueError, "'gpu9' is not a torch device"),
        ("preset-path-missing", lambda: load_preset("configs/none.yaml"), FileNotFoundError,
         "config file configs/none.yaml does not exist"),
        ("text-not-utf8", lambda: load_text_dataset(ws["corpus_latin1_txt"]), ValueError,
         f"byte offset {ws['latin1_offset']}"),
        ("sft-data-not-utf8", lambda: load_sft_dataset(ws["alpaca_latin1_jsonl"]), ValueError,
         "alpaca_latin1.jsonl is not UTF-8 text (invalid byte 0xe9 at byte offset 69)"),
        ("run-into-finished-model", lambda: run_adaptation(settings(output_dir=ws["diff"])), ValueError,
         "--overwrite-output-dir"),
        ("resume-no-intact-checkpoint", lambda: latest_intact_checkpoint(ws["damaged_run"]), ValueError,
         "no intact checkpoint"),
    ]


API_CASE_IDS = [
    "convert-missing-dir", "convert-missing-gguf", "convert-t5", "convert-mask-is-eos", "convert-mask-outside-vocab",
    "load-text-missing", "load-text-empty", "load-text-binary", "load-text-malformed", "settings-grad-accum",
    "settings-weight-decay", "settings-save-steps", "run-short-corpus", "run-block-above-positions", "run-mask-is-pad",
    "resume-contradiction", "args-grad-accum", "args-weight-decay", "args-save-steps", "args-learning-rate",
    "args-max-steps", "generate-load-missing", "chat-load-missing", "eval-load-missing", "sft-dataset-missing",
    "card-missing-dir", "load-weights-truncated", "load-config-invalid-choice", "load-device-cuda", "device-unknown",
    "preset-path-missing", "text-not-utf8", "sft-data-not-utf8", "run-into-finished-model",
    "resume-no-intact-checkpoint",
]


@pytest.mark.parametrize("case_id", API_CASE_IDS)
def test_python_api_names_the_problem(ws, no_network, monkeypatch, case_id):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = {case[0]: case[1:] for case in _api_cases(ws)}
    assert set(cases) == set(API_CASE_IDS)
    call, error_type, needle = cases[case_id]
    started = time.perf_counter()
    with pytest.raises(error_type) as raised:
        call()
    assert needle in str(raised.value)
    assert time.perf_counter() - started < FAST_S
    assert no_network == []


def test_local_path_classification():
    from diffusion_lm.paths import looks_local

    for name in ("./x", "/abs/x", "~/x", "x.gguf", "corpus/*.jsonl", "a/b/c", "data.json", "bad name!"):
        assert looks_local(name), name
    for name in ("gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B", "diffusionfamily/diffugpt-s"):
        assert not looks_local(name), name


# --- generate-side checks (model.generate, Python API) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def diffusion():
    model, tokenizer = tiny_diffusion_model("llama")
    return model, tokenizer


def test_generate_refuses_token_ids_outside_the_vocabulary(diffusion):
    model, _ = diffusion
    ids = torch.tensor([[5, 6, model.config.vocab_size + 3]])
    with pytest.raises(ValueError, match="vocab"):
        model.generate(ids, max_new_tokens=2, steps=2)


def test_generate_refuses_max_length_shorter_than_the_prompt(diffusion):
    model, _ = diffusion
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with pytest.raises(ValueError, match="max_length"):
        model.generate(ids, max_length=3, steps=2)


def test_generate_right_padding_is_refused_or_matches_single_rows(diffusion):
    model, tokenizer = diffusion
    pad = tokenizer.pad_token_id
    rows = [[5, 6, 7, 8], [9, 10]]
    ids = torch.tensor([rows[0], rows[1] + [pad, pad]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    try:
        batched = model.generate(ids, attention_mask=attention_mask, max_new_tokens=3, steps=3)
    except ValueError as error:
        assert "pad" in str(error).lower()
        return
    for row, prompt in enumerate(rows):
        single = model.generate(torch.tensor([prompt]), max_new_tokens=3, steps=3)
        generated = [t for t in batched[row].tolist()[len(prompt):] if t != pad][:3]
        assert generated == single[0].tolist()[len(prompt):], row


def test_harness_offline_failure_is_one_line(ws, no_network, tmp_path, capsys, monkeypatch):
    """diffusion-lm-harness with task data on the Hub and no network: one line naming the dataset, exit 1, at once."""
    from lm_eval import tasks as lm_eval_tasks

    from diffusion_lm.evaluation import lm_eval_cli

    class LocalTasksOnly(lm_eval_tasks.TaskManager):  # the built-in catalogue takes 10+ s to index; none is used
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval_tasks, "TaskManager", LocalTasksOnly)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "hub_choice.yaml").write_text(
        "task: hub_choice\ndataset_path: someone/tiny-choice-data\noutput_type: multiple_choice\n"
        "test_split: test\ndoc_to_text: '{{q}}'\ndoc_to_target: 0\ndoc_to_choice: ['a', 'b']\n"
        "metric_list:\n  - metric: acc\n")
    started = time.perf_counter()
    code = lm_eval_cli.main(["run", "--model", "diffusion_lm", "--model_args", f"pretrained={ws['diff']}",
                             "--tasks", "hub_choice", "--include_path", str(tasks)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert code == 1, err
    assert len(errors) == 1 and errors[0].startswith("diffusion-lm-harness: error: 'someone/tiny-choice-data'"), err
    assert "huggingface.co cannot be reached" in errors[0] and "Traceback" not in err and "bug" not in err
    assert time.perf_counter() - started < 60  # no retry back-off


def test_harness_device_this_machine_lacks(ws, capsys, monkeypatch):
    from diffusion_lm.evaluation import lm_eval_cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = lm_eval_cli.main(["run", "--model", "diffusion_lm", "--model_args", f"pretrained={ws['diff']}",
                             "--tasks", "piqa", "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("diffusion-lm-harness: error: --device cuda: CUDA is not available on this machine")
    assert err[0].endswith("use --device cpu, or leave --device out to run on cpu")
