"""lm-eval's command line with the ``diffusion_lm`` model registered.

lm-eval up to at least 0.4.13 has no plugin discovery for models, so ``lm_eval --model diffusion_lm`` only works
once this package's adapter is imported; this entry point does that first:

    python -m diffusion_lm.evaluation.lm_eval_cli run --model diffusion_lm --model_args pretrained=DIR --tasks piqa

Failures end as ``diffusion-lm`` commands do: one or two lines and a non-zero exit (``--debug`` or
``DIFFUSION_LM_DEBUG=1``: the traceback). When huggingface.co cannot be reached, the run goes offline at once: task
data in the local cache loads, anything else fails in one line instead of after retries.
"""

from __future__ import annotations

import os
import sys

PROG = "diffusion-lm-harness"


def _option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _hub_message(error: BaseException) -> str | None:
    """The one line for a failure to reach the Hub (task data or a model not in the local cache)."""
    from ..cli import _is_hub_error
    from ..paths import HUB_HOST

    if not _is_hub_error(error):
        return None
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    import re

    named = re.search(r"(?:reach|find|load) '([^']+)'", text) or re.search(r"'([\w.\-]+/[\w.\-]+)'", text)
    what = f"{named.group(1)!r}" if named else "the task data"
    return (f"{what} is not in the local cache and {HUB_HOST} cannot be reached; run once online to cache the "
            "task data, or use local task files (--include_path)")


def main(argv: list[str] | None = None) -> int:
    """Run lm-eval's command line on ``argv`` (default: ``sys.argv``, and exit with its status); returns the exit
    status when ``argv`` is given."""
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..cli import DEBUG_ENV, DEBUG_FLAG, report_error

    debug = os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        code = _run(argv)
    except SystemExit as stop:  # argparse: usage printed already
        code = stop.code if isinstance(stop.code, int) else 2
    except BaseException as error:  # noqa: BLE001 - every failure ends as one message (or the traceback)
        if debug:
            raise
        message = None if isinstance(error, KeyboardInterrupt) else _hub_message(error)
        if message is not None:
            print(f"{PROG}: error: {message}", file=sys.stderr)
            code = 1
        else:
            code = report_error("", error, prefix=PROG)
    if from_console:
        sys.exit(code)
    return code


def _run(argv: list[str]) -> int:
    import contextlib

    import torch

    from ..checkpoint import resolve_device
    from ..paths import hub_offline, hub_offline_flag, hub_reachable
    from . import lm_eval_adapter  # noqa: F401  (registers "diffusion_lm")
    from lm_eval.__main__ import cli_evaluate

    # lm-eval's own default device is cuda:0, which fails on a machine without CUDA; an explicit --device is checked
    # (a device this machine lacks: one line naming it, before any model loads)
    device = _option(argv, "--device")
    if device is not None:
        resolve_device(device)
    elif "--model" in argv:
        argv += ["--device", "cuda" if torch.cuda.is_available() else "cpu"]
    offline = "--model" in argv and not hub_offline_flag() and not hub_reachable()
    previous = sys.argv
    sys.argv = [previous[0] if previous else PROG, *argv]
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            cli_evaluate()
    finally:
        sys.argv = previous
    return 0


if __name__ == "__main__":
    main()
