"""Every script under benchmarks/ and training/ imports, prints its ``--help`` and names only diffusion_lm names that
exist.

Scripts import the package inside ``main`` (so that ``--help`` is fast), which is how two benchmarks kept importing a
function removed in b2c56f3 without any test noticing: the imports are also read from the source, wherever they sit,
and each name is looked up.
"""

from __future__ import annotations

import ast
import glob
import importlib
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_DIRS = ("benchmarks", "training")
# modules that scripts import and that have no command line of their own
HELPER_MODULES = {"training/gsm8k/gsm8k_common.py"}


def python_files() -> list[str]:
    files = []
    for directory in SCRIPT_DIRS:
        files += glob.glob(os.path.join(ROOT, directory, "**", "*.py"), recursive=True)
    return sorted(os.path.relpath(path, ROOT) for path in files)


SCRIPTS = [path for path in python_files() if path not in HELPER_MODULES]


def test_every_python_file_is_a_script_or_a_listed_helper():
    assert HELPER_MODULES <= set(python_files())
    for path in SCRIPTS:
        source = open(os.path.join(ROOT, path), encoding="utf-8").read()
        assert 'if __name__ == "__main__":' in source, f"{path} has no command line: list it in HELPER_MODULES"


@pytest.fixture(scope="module")
def help_runs():
    """``python SCRIPT --help`` of every script, all started at once (each imports torch: seconds apiece)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    processes = {
        path: subprocess.Popen([sys.executable, path, "--help"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for path in SCRIPTS
    }
    return {path: (process.communicate(timeout=300), process.returncode) for path, process in processes.items()}


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS)
def test_script_prints_its_help(path, help_runs):
    (stdout, stderr), returncode = help_runs[path]
    assert returncode == 0, f"{path} --help failed:\n{stderr[-2000:]}"
    assert stdout.lstrip().startswith("usage:"), stdout[:500]
    assert os.path.basename(path) in stdout.splitlines()[0]


@pytest.mark.parametrize("path", python_files())
def test_script_imports(path, monkeypatch):
    """Importing runs the module's top level (its own imports, constants, argument classes), not ``main``."""
    monkeypatch.syspath_prepend(os.path.dirname(os.path.join(ROOT, path)))  # siblings, as when run as a script
    name = "script_under_test_" + path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)) or path in HELPER_MODULES


def diffusion_lm_imports(path: str) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from diffusion_lm... import name`` in the file, top level or inside a
    function."""
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "diffusion_lm":
                found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names
                      if alias.name.split(".")[0] == "diffusion_lm"]
    return found


@pytest.mark.parametrize("path", python_files())
def test_script_names_only_existing_diffusion_lm_names(path):
    missing = []
    for line, module_name, name in diffusion_lm_imports(path):
        module = importlib.import_module(module_name)
        if name is not None and not hasattr(module, name):
            try:  # a submodule, imported by name
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path}:{line}: {module_name}.{name}")
    assert not missing, "imports of names that do not exist:\n" + "\n".join(missing)


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    # the check itself: a removed name imported inside main() is found (what b2c56f3's breakage looked like)
    script = tmp_path / "script.py"
    script.write_text("def main():\n    from diffusion_lm.checkpoint import load_diffusion_checkpoint\n")
    assert diffusion_lm_imports(str(script)) == [(2, "diffusion_lm.checkpoint", "load_diffusion_checkpoint")]
    assert not hasattr(importlib.import_module("diffusion_lm.checkpoint"), "load_diffusion_checkpoint")
