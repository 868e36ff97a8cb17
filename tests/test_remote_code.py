"""Checkpoints load as remote code on every transformers version pyproject declares, without prompting.

The round trip saves tiny checkpoints with the current code, then loads and generates with them in a fresh interpreter
where ``import diffusion_lm`` fails: once on the installed (newest) transformers, once on the lowest declared version,
installed into the venv ``.ci/transformers-lowest`` by the README's test command (``.ci/run``), whose own interpreter
runs that process, so nothing from the main environment (a newer ``kernels``, say) can reach transformers 5.0.
"""

from __future__ import annotations

import ast
import json
import os
import re
import runpy
import sys

import pytest
import torch
import transformers

from test_families import NEW_FAMILIES, tiny_family_diffusion_model
from tiny import run_clean_process, tiny_diffusion_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODELING_DIR = os.path.join(REPO, "src", "diffusion_lm", "modeling")
LOWEST_DIR = os.path.join(REPO, ".ci", "transformers-lowest")
LOWEST_PYTHON = os.path.join(LOWEST_DIR, "bin", "python")
FAMILIES = ("gpt2", "llama", "qwen2", *NEW_FAMILIES)
MODULES = {"gpt2": "diffugpt", "llama": "diffullama", "qwen2": "diffuqwen2", "qwen3": "diffuqwen3",
           "mistral": "diffumistral", "gemma3_text": "diffugemma3"}  # family -> its module suffix
PROMPT = "the cat sat on"
# what transformers prints when it asks, and when a tokenizer falls back to a bare configuration after a refusal
PROMPT_TEXT = "Do you wish to run the custom code"
MODEL_TYPE_WARNING = "to instantiate a model of type"


def readme_test_command() -> str:
    """The command of the README's "Tests" block (``.ci/run`` runs it verbatim)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("**Tests**", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, flags=re.DOTALL).group(1).strip()


def setup_commands() -> str:
    """What the test command runs: the README's command, or the script it names (``scripts/test.sh``)."""
    command = readme_test_command()
    script = os.path.join(REPO, command.split()[0])
    if os.path.isfile(script):
        with open(script, encoding="utf-8") as f:
            return f.read()
    return command.replace(" && ", "\n")


def declared_lowest_transformers() -> str:
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
        return re.search(r'"transformers>=([0-9.]+),', f.read()).group(1)


def release(version: str) -> tuple[int, int, int]:
    numbers = [int(n) for n in re.findall(r"\d+", version)[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


ROUND_TRIP_SCRIPT = r"""
import json, sys


class BlockDiffusionLM:
    # the checkpoint must load from its own files: diffusion_lm (installed editable here) is not importable
    def find_spec(self, name, path=None, target=None):
        if name == "diffusion_lm" or name.startswith("diffusion_lm."):
            raise ImportError(f"{name} is blocked in this process")
        return None


sys.meta_path.insert(0, BlockDiffusionLM())
directories, prompt = json.loads(sys.argv[1]), sys.argv[2]

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

report = {"transformers": transformers.__version__, "transformers_file": transformers.__file__, "models": {},
          "prefix": sys.prefix}
for name, directory in directories.items():
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
        model.set_attn_implementation("eager")  # every attention path attends both ways (5.0's eager GPT-2 did not)
        eager_logits = model(ids).logits
        model.set_attn_implementation("sdpa")
    output = model.generate(ids, max_new_tokens=4, steps=4, alg="confidence", temperature=0.0)
    sequences = output.sequences if hasattr(output, "sequences") else output
    try:  # the configuration validates its diffusion fields on this version too
        type(model.config)(vocab_size=10, mask_token_id=10)
        invalid_config = "accepted"
    except Exception as error:  # ValueError; newer transformers wrap it in StrictDataclassClassValidationError
        invalid_config = str(error)
    report["models"][name] = {
        "model_module": type(model).__module__,
        "config_module": type(model.config).__module__,
        "mask_token_id": model.config.mask_token_id,
        "attention_mode": model.config.attention_mode,
        "mask_token": tokenizer.mask_token,
        "prompt_ids": ids[0].tolist(),
        "logits": logits[0].tolist(),
        "eager_logits": eager_logits[0].tolist(),
        "sequence": sequences[0].tolist(),
        "invalid_config": invalid_config,
    }
try:
    import diffusion_lm  # noqa: F401
    report["diffusion_lm_importable"] = True
except ImportError:
    report["diffusion_lm_importable"] = False
print("REPORT" + json.dumps(report))
"""


def diffusion_model(family: str):
    """(tiny diffusion model, tokenizer) of ``family`` (the families added on the template: tests/test_families.py)."""
    return tiny_family_diffusion_model(family) if family in NEW_FAMILIES else tiny_diffusion_model(family)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """family -> (directory, expected greedy sequence, expected logits), saved with the current code."""
    root = tmp_path_factory.mktemp("remote_code")
    saved = {}
    for family in FAMILIES:
        model, tokenizer = diffusion_model(family)
        directory = str(root / family)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0]
        sequence = model.generate(ids, max_new_tokens=4, steps=4, alg="confidence", temperature=0.0)
        sequence = sequence.sequences if hasattr(sequence, "sequences") else sequence
        saved[family] = (directory, sequence[0].tolist(), logits)
    return saved


def run_round_trip(checkpoints, tmp_path, python: str = sys.executable) -> tuple[dict, str]:
    """(report, everything the process printed) of the round trip in a fresh, isolated, non-interactive process."""
    directories = {family: directory for family, (directory, _, _) in checkpoints.items()}
    return run_clean_process(ROUND_TRIP_SCRIPT, [json.dumps(directories), PROMPT], str(tmp_path), python=python)


def lowest_python() -> str:
    """The interpreter of the lowest-version venv; skips (naming the command that creates it) when it is absent."""
    if not os.path.isfile(LOWEST_PYTHON):
        create = " && ".join(line.strip() for line in setup_commands().splitlines()
                             if "transformers-lowest" in line and not line.lstrip().startswith("#"))
        pytest.skip(f".ci/transformers-lowest does not exist; the README's test command (.ci/run) creates it: {create}")
    return LOWEST_PYTHON


def check_round_trip(report: dict, printed: str, checkpoints) -> None:
    assert PROMPT_TEXT not in printed, printed
    assert MODEL_TYPE_WARNING not in printed, printed
    assert report["diffusion_lm_importable"] is False
    for family, (_, expected_sequence, expected_logits) in checkpoints.items():
        loaded = report["models"][family]
        assert loaded["model_module"].startswith("transformers_modules."), loaded["model_module"]
        assert loaded["config_module"].startswith("transformers_modules."), loaded["config_module"]
        assert loaded["mask_token"] == "<|mdm_mask|>" and loaded["attention_mode"] == "bidirectional"
        sequence = loaded["sequence"]
        assert sequence[: len(loaded["prompt_ids"])] == loaded["prompt_ids"]
        assert len(sequence) == len(loaded["prompt_ids"]) + 4 and loaded["mask_token_id"] not in sequence
        # the shipped code computes what the library computes
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected_logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.tensor(loaded["eager_logits"]), expected_logits, rtol=1e-4, atol=1e-4)
        assert sequence == expected_sequence, family
        assert "mask_token_id 10 is outside the vocabulary" in loaded["invalid_config"]


def test_round_trip_on_installed_transformers(checkpoints, tmp_path):
    report, printed = run_round_trip(checkpoints, tmp_path)
    assert report["transformers"] == transformers.__version__
    check_round_trip(report, printed, checkpoints)


def test_round_trip_on_lowest_declared_transformers(checkpoints, tmp_path):
    report, printed = run_round_trip(checkpoints, tmp_path, python=lowest_python())
    assert report["transformers_file"].startswith(LOWEST_DIR), report["transformers_file"]
    assert os.path.realpath(report["prefix"]) == os.path.realpath(LOWEST_DIR)  # its own venv, not the main one
    assert release(report["transformers"]) == release(declared_lowest_transformers())
    check_round_trip(report, printed, checkpoints)


def test_ci_prepares_the_declared_lowest_transformers():
    """pyproject's lower bound, the version the shipped code checks for and the one CI installs are the same."""
    from diffusion_lm.modeling.configuration_diffusion import MIN_TRANSFORMERS_VERSION

    lowest = declared_lowest_transformers()
    assert release(lowest) == MIN_TRANSFORMERS_VERSION
    command, setup = readme_test_command(), setup_commands()
    assert "python -m venv .ci/transformers-lowest\n" in setup
    assert ".ci/transformers-lowest/bin/pip install -q --no-deps -r .ci/transformers-lowest.txt" in setup
    with open(os.path.join(REPO, ".ci", "transformers-lowest.txt"), encoding="utf-8") as f:
        pins = [line.split("#")[0].strip() for line in f]
    pins = [pin for pin in pins if pin]
    assert f"transformers=={lowest}" in pins
    assert all(re.fullmatch(r"[\w.-]+==[\w.+-]+", pin) for pin in pins), pins  # every dependency pinned exactly
    assert re.search(r"python -m pytest -q( \"\$@\")?$", setup.rstrip())
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        assert f.read().rstrip().splitlines()[-1] == command


def test_older_transformers_is_refused_with_the_required_version(monkeypatch):
    """On transformers 4.x the shipped configuration module fails at once, naming the version to install."""
    # the module object an ``import transformers`` gives now (transformers may replace its lazy module in sys.modules)
    monkeypatch.setattr(sys.modules["transformers"], "__version__", "4.57.1")
    with pytest.raises(ImportError, match=r"diffusion-lm checkpoints need transformers >= 5\.0\.0, found 4\.57\.1"):
        runpy.run_path(os.path.join(MODELING_DIR, "configuration_diffusion.py"))


def relative_imports(module: str) -> set[str]:
    """Modules a shipped file imports relatively (``from .x import y``), as transformers finds them."""
    with open(os.path.join(MODELING_DIR, f"{module}.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


@pytest.mark.parametrize("entry", [f"{kind}_{module}" for kind in ("modeling", "configuration")
                                   for module in MODULES.values()])
def test_auto_map_modules_import_all_they_need_directly(entry):
    """transformers 5.0 copies out of a local checkpoint only the files an auto_map module imports itself; a file
    needed further down would be missing from its modules cache (FileNotFoundError at load)."""
    needed, todo = set(), [entry]
    while todo:
        for module in relative_imports(todo.pop()) - needed:
            needed.add(module)
            todo.append(module)
    missing = needed - relative_imports(entry)
    assert not missing, f"{entry}.py must import {sorted(missing)} directly (see the comment above its imports)"


# calls that build a model, tokenizer or configuration from a path and may have to run a checkpoint's code
AUTO_CALL = re.compile(r"\bAuto\w+\.from_pretrained\(")


def documented_python_blocks():
    """(file, code) of every python block in the README, docs, cards, recipes and card templates."""
    paths = [os.path.join(REPO, "README.md")]
    for sub in ("docs", "model_cards", "training", os.path.join("src", "diffusion_lm", "templates")):
        for folder, _, names in os.walk(os.path.join(REPO, sub)):
            paths += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".md")]
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for block in re.findall(r"```python\n(.*?)```", f.read(), flags=re.DOTALL):
                yield os.path.relpath(path, REPO), block


def auto_calls_without_trust(code: str, require_true: bool = True) -> list[str]:
    """Auto*.from_pretrained calls in ``code`` that do not pass trust_remote_code=True (with ``require_true=False``:
    that leave it unset, the only value with which transformers prompts)."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"
                and isinstance(node.func.value, ast.Name) and node.func.value.id.startswith("Auto")):
            trust = {k.arg: k.value for k in node.keywords}.get("trust_remote_code")
            passes_true = isinstance(trust, ast.Constant) and trust.value is True
            if not passes_true and (require_true or trust is None):
                found.append(ast.unparse(node))
    return found


def test_documented_snippets_pass_trust_remote_code():
    """Without it, transformers asks "Do you wish to run the custom code? [y/N]" (AutoTokenizer reads config.json,
    whose auto_map names our code) and, refused or without a terminal, warns about a bare configuration."""
    blocks = list(documented_python_blocks())
    assert any(AUTO_CALL.search(code) for _, code in blocks)
    offending = [f"{path}: {call}" for path, code in blocks for call in auto_calls_without_trust(code)]
    assert not offending, "\n".join(offending)


def test_library_code_sets_trust_remote_code():
    """Every Auto call of the library decides trust_remote_code (True, or a caller's explicit choice such as
    ``generate --trust-remote-code``): left unset, a checkpoint with an auto_map makes transformers prompt."""
    offending = []
    for root, _, names in os.walk(os.path.join(REPO, "src", "diffusion_lm")):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    calls = auto_calls_without_trust(f.read(), require_true=False)
                offending += [f"{os.path.relpath(path, REPO)}: {call}" for call in calls]
    assert not offending, "\n".join(offending)


CONFIG_WITHOUT_TORCH_SCRIPT = r"""
import json, sys
for name in ("torch", "diffusion_lm"):
    sys.modules[name] = None  # `import torch` raises ImportError; importlib.util.find_spec("torch") is None
from transformers import AutoConfig

report = {}
for name, directory in json.loads(sys.argv[1]).items():
    config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
    report[name] = [type(config).__module__, config.mask_token_id]
report["torch_loaded"] = sorted(k for k, v in sys.modules.items() if k.split(".")[0] == "torch" and v is not None)
print("REPORT" + json.dumps(report))
"""


@pytest.mark.parametrize("version", ["installed", "lowest"])
def test_configuration_loads_with_torch_unimportable(checkpoints, tmp_path, version):
    """As transformers' own configuration files: a checkpoint's configuration needs neither torch nor modeling code."""
    python = lowest_python() if version == "lowest" else sys.executable
    directories = {family: directory for family, (directory, _, _) in checkpoints.items()}
    report, _ = run_clean_process(CONFIG_WITHOUT_TORCH_SCRIPT, [json.dumps(directories)], str(tmp_path), python=python)
    assert report.pop("torch_loaded") == []
    for family, (module, mask_token_id) in report.items():
        assert module.startswith("transformers_modules.") and module.endswith(f"configuration_{MODULES[family]}")
        assert mask_token_id == diffusion_model(family)[0].config.mask_token_id


def test_nothing_under_modeling_imports_diffusion_lm():
    for name in sorted(os.listdir(MODELING_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(MODELING_DIR, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
            assert not {m for m in imported if m.split(".")[0] == "diffusion_lm"}, name
            assert {m.split(".")[0] for m in imported} <= {"torch", "transformers", *sys.stdlib_module_names}, name


def readme_shipped_files() -> tuple[set[str], list[str]]:
    """(the files every checkpoint ships, the per-family pattern) as the README's architecture section lists them."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        paragraph = f.read().split("**Shipped with every checkpoint**", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"`([\w<>]+\.py)`", paragraph)
    return {n for n in names if "<" not in n}, sorted(n for n in names if "<" in n)


def test_readme_lists_the_shipped_files(checkpoints):
    common, per_family = readme_shipped_files()
    assert per_family == ["configuration_<family>.py", "modeling_<family>.py"]
    shipped = {family: {n for n in os.listdir(directory) if n.endswith(".py")}
               for family, (directory, _, _) in checkpoints.items()}
    assert set.intersection(*shipped.values()) == common
    for family, names in shipped.items():
        assert names == common | {f"configuration_{MODULES[family]}.py", f"modeling_{MODULES[family]}.py"}, family
