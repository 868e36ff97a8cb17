"""``diffusion-lm`` command line: one module per subcommand, each with ``add_arguments(parser)`` and ``run(args)``.

Errors a user can fix (bad values, missing paths, an unreachable Hub) print one or two lines and exit non-zero;
``--debug`` (before or after the command) or ``DIFFUSION_LM_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import sys

# subcommand -> (module under diffusion_lm.cli, one-line help). Modules are imported only when their command runs.
SUBCOMMANDS = {
    "adapt": ("adapt", "adapt an AR checkpoint into a masked-diffusion LM (continual pre-training)"),
    "generate": ("generate", "generate text with diffusion decoding"),
    "infill": ("generate", "fill a gap between a prefix and a suffix"),
    "sft": ("sft", "instruction-tune a diffusion LM with TRL's SFTTrainer (optionally LoRA)"),
    "chat": ("chat", "chat with an instruction-tuned diffusion LM"),
    "demo": ("demo", "serve the demo page: the canvas denoising step by step (needs the demo extra: gradio)"),
    "eval": ("eval", "evaluate a diffusion LM (and its AR base) on likelihood and zero-shot tasks"),
    "push": ("hub", "upload a checkpoint directory to the Hugging Face Hub"),
    "card": ("hub", "re-render a checkpoint directory's model card"),
    "import-reference": ("hub", "convert a released diffusion LM (DiffuGPT, DiffuLLaMA, LLaDA, Dream, "
                                "Fast-dLLM v2, SDAR) into diffusion-lm classes"),
}

# the arguments that name models or data: (attribute, how the message names it, what it may be)
# "model" / "dataset": a local path (checked here) or a Hub id; "dir" / "file": always a local path
REFERENCE_ARGUMENTS = {
    "adapt": [("base", "--base", "model"), ("dataset", "--dataset", "dataset"),
              ("eval_dataset", "--eval-dataset", "dataset")],
    "generate": [("model", "MODEL_DIR", "model")],
    "infill": [("model", "MODEL_DIR", "model")],
    "chat": [("model", "MODEL_DIR", "model")],
    "demo": [("model", "MODEL_DIR", "model"), ("ar_base", "--ar-base", "model")],
    "sft": [("model", "--model", "model"), ("dataset", "--dataset", "dataset"),
            ("eval_dataset", "--eval-dataset", "dataset")],
    "eval": [("model", "--model", "model"), ("ar_baseline", "--ar-baseline", "model"),
             ("data_dir", "--data-dir", "dir"), ("ppl_data", "--ppl-data", "file")],
    "push": [("model_dir", "MODEL_DIR", "dir")],
    "card": [("model_dir", "MODEL_DIR", "dir")],
    "import-reference": [("src", "SRC", "model")],
}

EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130
DEBUG_FLAG = "--debug"
DEBUG_ENV = "DIFFUSION_LM_DEBUG"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a two-line message instead of the whole usage block for a bad flag or value."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n  (see `{self.prog} --help`)\n")


def subcommand_parser(dataclass_types=None, **kwargs) -> argparse.ArgumentParser:
    """The parser of one subcommand. A command module whose ``CONFIG_CLASSES`` names dataclasses (adapt, sft) gets a
    ``transformers.HfArgumentParser`` over them: one ``--field_name`` / ``--field-name`` flag per field, the field's
    metadata as its help and argparse options. Other commands stay plain argparse (and do not import transformers)."""
    if not dataclass_types:
        return ArgumentParser(**kwargs)
    from transformers import HfArgumentParser

    class DataclassArgumentParser(HfArgumentParser):
        error = ArgumentParser.error

    kwargs.setdefault("formatter_class", argparse.HelpFormatter)
    return DataclassArgumentParser(dataclass_types, **kwargs)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="diffusion-lm",
        description="Adapt autoregressive LMs into masked-diffusion LMs; fine-tune, generate, evaluate and publish them.",
        epilog=f"Mistakes print a short message and exit 2 (1 when the Hub cannot be reached, 130 on Ctrl-C); "
               f"{DEBUG_FLAG} or {DEBUG_ENV}=1 shows the full traceback.",
    )
    debug_help = f"show the full traceback on errors (also {DEBUG_ENV}=1)"
    parser.add_argument(DEBUG_FLAG, action="store_true", help=debug_help)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=subcommand_parser)
    requested = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = None
        if name == requested:  # only the command being run imports its (heavier) module
            module = importlib.import_module(f"diffusion_lm.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    dataclass_types=getattr(module, "CONFIG_CLASSES", None))
        if DEBUG_FLAG not in sub._option_string_actions:  # TrainingArguments (sft) has a `debug` field of its own
            sub.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS, help=debug_help)
        if module is not None:
            module.add_arguments(sub, name)
            sub.set_defaults(_run=module.run)
    return parser


def explicit_flags_only(parser: argparse.ArgumentParser, dataclass_types) -> None:
    """Leave out of the parsed namespace every dataclass field that was not given on the command line, so that a
    command can tell an explicit flag (which overrides a ``--config`` file, and which ``adapt --resume`` checks
    against the recorded run) from a default. ``--help`` still shows each field's default."""
    names = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}
    for action in parser._actions:
        if action.dest in names and action.default is not argparse.SUPPRESS:
            if action.option_strings and not action.option_strings[0].startswith("--no"):
                default = action.default
                shown = "''" if default == "" else default
                action.help = f"{action.help or ''} (default: {shown})".lstrip()
            action.default = argparse.SUPPRESS
            action.required = False


def given_fields(args: argparse.Namespace, dtype) -> dict:
    """The fields of ``dtype`` given on the command line (see ``explicit_flags_only``)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(dtype) if f.init and hasattr(args, f.name)}


class HubUnreachableError(ConnectionError):
    """A Hub id was given, it is not in the local cache, and huggingface.co does not answer."""


def check_references(args: argparse.Namespace, settings=None) -> list[tuple[str, str, str]]:
    """Check every local path argument (FileNotFoundError naming it, no Hub lookup) and expand ``~`` in place.
    Returns the (label, Hub id, category) of the arguments that are Hub ids.

    ``settings``: the command's resolved settings object, when a config file may have named them; its values are
    checked the same way, and only the Hub ids that no flag gave (those were returned for the flags) come back."""
    from ..embedded import is_embedded_name
    from ..paths import looks_local, require_local_path, resolve_model_reference

    source = args if settings is None else settings
    hub_ids = []
    for attribute, label, category in REFERENCE_ARGUMENTS.get(args.command, []):
        value = getattr(source, attribute, None)
        if value is None:
            continue
        if settings is not None and getattr(args, attribute, None) is None:
            label = f"{attribute!r} of the config file"
        if category == "model" and attribute in ("base", "ar_baseline") and is_embedded_name(value):
            continue  # the embedded base model: loaded from the installed package, never the Hub
        if category in ("dir", "file"):
            setattr(source, attribute, require_local_path(value, label, kind=category))
        elif not looks_local(value):
            if settings is None or getattr(args, attribute, None) is None:
                hub_ids.append((label, value, category))
        elif category == "model":
            gguf = attribute in ("base", "ar_baseline")  # AR bases may be GGUF files
            setattr(source, attribute, resolve_model_reference(value, label, gguf=gguf))
        else:
            setattr(source, attribute, require_local_path(value, label))
    return hub_ids


@contextlib.contextmanager
def hub_access(hub_ids: list[tuple[str, str, str]]):
    """When Hub ids are named but huggingface.co does not answer, run offline: cached models load, anything else
    fails at once instead of after half a minute of retries."""
    from ..paths import HUB_HOST, hub_offline, hub_offline_flag, hub_reachable, model_in_hub_cache

    if not hub_ids or hub_offline_flag() or hub_reachable():
        yield
        return
    for label, repo_id, category in hub_ids:
        if category == "model" and not model_in_hub_cache(repo_id):
            raise HubUnreachableError(
                f"{label} {repo_id!r} is not a local path nor in the Hub cache, and {HUB_HOST} cannot be reached; "
                "pass a local directory (or .gguf file), or retry online"
            )
    names = ", ".join(repr(hub_id) for _, hub_id, _ in hub_ids)
    print(f"diffusion-lm: {HUB_HOST} cannot be reached; loading {names} from the local cache", file=sys.stderr,
          flush=True)
    with hub_offline():
        yield


def _short(error: BaseException, max_lines: int = 2) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return "\n  ".join(lines[:max_lines])


def _is_hub_error(error: BaseException) -> bool:
    """Network and Hub failures (exit 1): the user's command was fine, the Hub or the connection was not."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(error, (ConnectionError, TimeoutError, HfHubHTTPError, LocalEntryNotFoundError,
                          OfflineModeIsEnabled)):
        return True
    module = type(error).__module__.split(".")[0]
    if module in ("httpx", "httpx2", "requests", "urllib3"):
        return True
    # transformers turns Hub failures into plain OSErrors that name the Hub
    return type(error) is OSError and ("huggingface.co" in str(error) or "model identifier" in str(error))


def _is_connection_error(error: BaseException) -> bool:
    name = type(error).__name__
    return isinstance(error, (ConnectionError, TimeoutError)) or name.endswith(("ConnectError", "TimeoutException",
                                                                               "NetworkError", "ConnectionError"))


def _is_usage_error(error: BaseException) -> bool:
    if isinstance(error, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return True
    module = type(error).__module__.split(".")[0]
    return module in ("datasets", "yaml") and isinstance(error, Exception)


def _damaged_file_message(error: BaseException) -> str | None:
    """What a damaged or invalid file's exception says, for those no loader translated (they name no file)."""
    name = type(error).__name__
    if name == "SafetensorError":
        return f"a .safetensors weights file is damaged ({_short(error, 1)}); re-download it or save it again"
    if name.startswith("StrictDataclass") and name.endswith("ValidationError"):
        cause = error.__cause__ or error
        return f"a config file holds an invalid value: {_short(cause, 1)}"
    if name == "UnpicklingError" or "PytorchStreamReader" in str(error):
        return f"a torch file (.bin / .pt) is damaged ({_short(error, 1)}); re-download it or save it again"
    return None


def report_error(command: str, error: BaseException, prefix: str | None = None) -> int:
    """Print the one- or two-line message for ``error`` and return the exit status (``prefix``: the program name
    that starts each message, default ``diffusion-lm COMMAND``)."""
    prefix = prefix or (f"diffusion-lm {command}" if command else "diffusion-lm")
    if isinstance(error, KeyboardInterrupt):
        print(f"\n{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if _is_hub_error(error):
        if isinstance(error, HubUnreachableError):
            print(f"{prefix}: error: {_short(error)}", file=sys.stderr)
            return EXIT_FAILURE
        message = _short(error)
        if _is_connection_error(error):
            message = f"cannot reach the Hub ({_short(error, 1)})"
        print(f"{prefix}: error: {message}", file=sys.stderr)
        print("  (check the Hub id, your connection and login, or pass a local path)", file=sys.stderr)
        return EXIT_FAILURE
    if _is_usage_error(error):
        print(f"{prefix}: error: {_short(error)}", file=sys.stderr)
        return EXIT_USAGE
    damaged = _damaged_file_message(error)
    if damaged:  # a file's fault that no loader named: still the file's, not ours
        print(f"{prefix}: error: {damaged}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, OSError):  # disk full, permissions, ...
        print(f"{prefix}: error: {_short(error)}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{prefix}: error: unexpected {type(error).__name__}: {_short(error, 1)}", file=sys.stderr)
    print(f"  (this looks like a bug in diffusion-lm; rerun with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes") or DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]  # accepted before or after the command
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as stop:  # argparse already printed usage and the problem (or the help)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    vars(args).pop("debug", None)  # already read from argv; commands see only their own arguments
    try:
        with hub_access(check_references(args)):
            return args._run(args) or 0
    except BaseException as error:  # noqa: BLE001 - every failure ends here, as one message or a traceback
        if debug or isinstance(error, SystemExit):
            raise
        return report_error(args.command, error)


if __name__ == "__main__":
    sys.exit(main())
