"""``diffusion-lm`` command line: one module per subcommand, each with ``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under diffusion_lm.cli, one-line help). Modules are imported only when their command runs.
SUBCOMMANDS = {
    "adapt": ("adapt", "adapt an AR checkpoint into a masked-diffusion LM (continual pre-training)"),
    "generate": ("generate", "generate text with diffusion decoding"),
    "infill": ("generate", "fill a gap between a prefix and a suffix"),
    "sft": ("sft", "instruction-tune a diffusion LM with TRL's SFTTrainer (optionally LoRA)"),
    "chat": ("chat", "chat with an instruction-tuned diffusion LM"),
    "eval": ("eval", "evaluate a diffusion LM (and its AR base) on likelihood and zero-shot tasks"),
    "push": ("hub", "upload a checkpoint directory to the Hugging Face Hub"),
    "card": ("hub", "re-render a checkpoint directory's model card"),
    "import-reference": ("hub", "convert a released DiffuGPT / DiffuLLaMA checkpoint into diffusion-lm classes"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusion-lm", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requested = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == requested:  # only the command being run imports its (heavier) module
            module = importlib.import_module(f"diffusion_lm.cli.{module_name}")
            module.add_arguments(sub, name)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
