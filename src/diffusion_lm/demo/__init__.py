"""The demo page (``diffusion-lm demo``; ``pip install "diffusion-lm[demo]"``): a prompt, the decoding settings, and
the canvas denoising step by step. ``build_demo(model, tokenizer, ar_model=None)`` returns the ``gradio.Blocks``, so a
Hub Space's ``app.py`` is two lines. gradio is imported only when ``build_demo`` is used; ``frames`` needs none.
"""

from __future__ import annotations


def build_demo(model, tokenizer, ar_model=None, **kwargs):
    """The demo page as a ``gradio.Blocks`` (``diffusion_lm.demo.page.build_demo``)."""
    from .page import build_demo as build

    return build(model, tokenizer, ar_model, **kwargs)


__all__ = ["build_demo"]
