"""lm-eval's command line with the ``diffusion_lm`` model registered.

lm-eval up to at least 0.4.13 has no plugin discovery for models, so ``lm_eval --model diffusion_lm`` only works
once this package's adapter is imported; this entry point does that first:

    python -m diffusion_lm.evaluation.lm_eval_cli run --model diffusion_lm --model_args pretrained=DIR --tasks piqa
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    import sys

    import torch

    from . import lm_eval_adapter  # noqa: F401  (registers "diffusion_lm")
    from lm_eval.__main__ import cli_evaluate

    argv = sys.argv[1:] if argv is None else list(argv)
    # lm-eval's own default device is cuda:0, which fails on a machine without CUDA; an explicit --device stays
    if "--model" in argv and not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv += ["--device", "cuda" if torch.cuda.is_available() else "cpu"]
    sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
