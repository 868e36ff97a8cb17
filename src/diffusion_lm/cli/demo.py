"""``diffusion-lm demo``: the demo page (gradio) of a diffusion checkpoint, optionally with its AR base beside it.

    diffusion-lm demo MODEL_DIR [--ar-base DIR] [--host 127.0.0.1] [--port 7860]

Needs the ``demo`` extra (``pip install "diffusion-lm[demo]"``: gradio); nothing else in diffusion-lm imports gradio.
"""

from __future__ import annotations

import argparse
import importlib.util

from ..checkpoint import DTYPE_NAMES


def add_arguments(parser: argparse.ArgumentParser, name: str = "demo") -> None:
    add = parser.add_argument
    add("model", metavar="MODEL_DIR", help="diffusion checkpoint directory (or Hub id)")
    add("--ar-base", help="AR model (directory or Hub id) on the same tokenizer, e.g. the base the checkpoint was "
                          "adapted from: its own generate runs beside the diffusion model, with its tokens/s")
    add("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for every interface)")
    add("--port", type=int, default=7860, help="port to serve on (default 7860)")
    add("--frame-interval", type=float, default=0.0,
        help="at least this many seconds between the canvas frames shown (default 0: as they come)")
    add("--device", help="torch device (default: cuda if available, else cpu)")
    add("--dtype", default="auto", choices=DTYPE_NAMES)
    add("--trust-remote-code", action="store_true", help="allow the checkpoint's own code (not needed for ours)")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ValueError('the demo page needs gradio: pip install "diffusion-lm[demo]"')
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.frame_interval < 0:
        raise ValueError(f"--frame-interval must be >= 0, got {args.frame_interval}")
    from ..checkpoint import default_device, load_checkpoint
    from ..demo import build_demo

    device = args.device or default_device()
    model, tokenizer = load_checkpoint(args.model, dtype=args.dtype, device=device,
                                       trust_remote_code=args.trust_remote_code, what="MODEL_DIR")
    ar_model = None
    if args.ar_base is not None:
        from transformers import AutoModelForCausalLM

        from ..checkpoint import explain_checkpoint_errors

        with explain_checkpoint_errors(args.ar_base, "--ar-base"):
            ar_model = AutoModelForCausalLM.from_pretrained(args.ar_base, dtype=args.dtype,
                                                            trust_remote_code=args.trust_remote_code)
        ar_model.to(next(model.parameters()).device).eval()
    demo = build_demo(model, tokenizer, ar_model, frame_interval=args.frame_interval)
    demo.launch(server_name=args.host, server_port=args.port)
    return 0
