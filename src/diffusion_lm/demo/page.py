"""The demo page in gradio: a prompt (or an infilling prefix, hole and suffix), the decoding settings, and the canvas
as ``model.generate`` denoises it, streamed step by step (``frames``), with a slider that replays any step and the
call's counters; with an AR base, the AR model's own ``generate`` beside it. The only module that imports gradio.
"""

from __future__ import annotations

import time

import gradio as gr
import torch

from .frames import (
    CHECKPOINT_DEFAULT,
    KV_CACHE_CHOICES,
    VERIFY_CHOICES,
    Decoding,
    Done,
    counters,
    decoding_kwargs,
    infill_decoding,
    prompt_decoding,
    render_canvas,
    stream_ar,
    stream_decoding,
)

LEGEND = ("Grey: the prompt · ░: still masked · yellow: committed at this step · green: committed earlier · "
          "blue bar: a block starts")


def build_demo(model, tokenizer, ar_model=None, *, frame_interval: float = 0.0,
               title: str = "diffusion-lm") -> gr.Blocks:
    """The page for ``model`` / ``tokenizer`` (a diffusion checkpoint, e.g. from ``load_checkpoint``); ``ar_model``:
    an AR model on the same tokenizer (its base) that generates beside it. ``frame_interval``: at least this many
    seconds between the frames shown, so that a fast model's steps can be followed (the counters time the call
    itself, in its own thread, never the page). Launch it with ``.launch()``."""
    device = next(model.parameters()).device
    warm_up(model, tokenizer, ar_model)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}: masked-diffusion decoding, step by step\n{LEGEND}")
        with gr.Tabs():
            with gr.Tab("Generate"):
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="dlm-prompt")
                max_new_tokens = gr.Slider(1, 256, value=32, step=1, label="New tokens", elem_id="dlm-new-tokens")
                generate_button = gr.Button("Generate", variant="primary", elem_id="dlm-generate")
            with gr.Tab("Infill"):
                prefix = gr.Textbox(label="Prefix", elem_id="dlm-prefix")
                hole = gr.Number(value=8, precision=0, label="Hole length (tokens)", elem_id="dlm-hole")
                suffix = gr.Textbox(label="Suffix", elem_id="dlm-suffix")
                infill_button = gr.Button("Fill the hole", variant="primary", elem_id="dlm-infill")
        with gr.Accordion("Decoding settings", open=True):
            with gr.Row():
                steps = gr.Number(value=0, precision=0, label="Steps (0: one per token)", elem_id="dlm-steps")
                threshold = gr.Number(value=0, label="Threshold (0: the checkpoint's)", elem_id="dlm-threshold")
                kv_cache = gr.Dropdown(list(KV_CACHE_CHOICES), value=CHECKPOINT_DEFAULT, label="KV cache",
                                       elem_id="dlm-kv-cache")
            with gr.Row():
                block_length = gr.Number(value=0, precision=0, label="Block length (0: the checkpoint's)",
                                         elem_id="dlm-block-length")
                verify = gr.Dropdown(list(VERIFY_CHOICES), value="none", label="Verification", elem_id="dlm-verify")
                temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0: greedy)")
                seed = gr.Number(value=0, precision=0, label="Seed")
        canvas = gr.HTML(elem_id="dlm-canvas")
        replay = gr.Slider(0, 1, value=0, step=1, label="Replay step (0: before decoding)", interactive=True,
                           elem_id="dlm-replay")
        stats = gr.Markdown(elem_id="dlm-counters")
        text = gr.Textbox(label="Generated text", interactive=False, elem_id="dlm-text")
        with gr.Row(visible=ar_model is not None):
            ar_text = gr.Textbox(label="AR base: its own generate on the same prompt", interactive=False,
                                 elem_id="dlm-ar-text")
            ar_stats = gr.Markdown(elem_id="dlm-ar-counters")
        state = gr.State(None)
        settings = [steps, threshold, kv_cache, block_length, verify, temperature, seed]
        outputs = [canvas, stats, replay, state, text, ar_text, ar_stats]

        def frames_of(decoding: Decoding, positions: int, settings_values):
            """The page's updates while ``decoding`` runs, then its final one (paced by ``frame_interval``)."""
            *decoding_settings, seed_value = settings_values
            kwargs = decoding_kwargs(positions, *decoding_settings)
            generator = torch.Generator(device=device).manual_seed(int(seed_value or 0))
            shown = 0.0
            for _ in stream_decoding(model, tokenizer, decoding, generator=generator, **kwargs):
                time.sleep(max(0.0, shown + frame_interval - time.perf_counter()))
                shown = time.perf_counter()
                yield {canvas: render_canvas(tokenizer, decoding, len(decoding.frames) - 1), stats: counters(decoding)}
            last = len(decoding.frames)
            yield {canvas: render_canvas(tokenizer, decoding, last - 1 if last else None), stats: counters(decoding),
                   replay: gr.Slider(0, max(1, last), value=last, step=1, interactive=True),
                   state: decoding, text: decoding.text}

        def refused(error: Exception):
            gr.Warning(str(error))
            return {stats: f"**Refused:** {error}", canvas: "", text: "", state: None,
                    replay: gr.Slider(0, 1, value=0, step=1, interactive=True)}

        def on_generate(prompt_text, new_tokens, *settings_values):
            try:
                decoding = prompt_decoding(model, tokenizer, prompt_text, new_tokens, settings_values[3])
                yield {ar_text: "", ar_stats: ""}
                yield from frames_of(decoding, int(new_tokens), settings_values)
            except (ValueError, TypeError) as error:  # bad input or a setting the model refuses: the page says so
                yield refused(error)
                return
            if ar_model is not None:
                try:
                    yield from ar_updates(prompt_text, int(new_tokens), settings_values[5], decoding)
                except (ValueError, TypeError) as error:  # e.g. more positions than the AR model has
                    gr.Warning(f"AR base: {error}")
                    yield {ar_stats: f"**AR base refused:** {error}"}

        def ar_updates(prompt_text: str, new_tokens: int, temperature_value, decoding: Decoding):
            for event in stream_ar(ar_model, tokenizer, prompt_text, new_tokens, float(temperature_value or 0.0)):
                if not isinstance(event, Done):
                    yield {ar_text: event}
                    continue
                ar_output, count = event.value
                speed = count / max(event.seconds, 1e-9)
                ratio = decoding.tokens_per_second / max(speed, 1e-9)
                yield {ar_text: ar_output, ar_stats: f"AR: {count} tokens · **{speed:.1f}** tokens/s · diffusion at "
                                                     f"**{ratio:.2f}x** the AR speed"}

        def on_infill(prefix_text, hole_length, suffix_text, *settings_values):
            try:
                decoding = infill_decoding(model, tokenizer, prefix_text, suffix_text, hole_length, settings_values[3])
                yield {ar_text: "", ar_stats: ""}
                yield from frames_of(decoding, int(hole_length), settings_values)
            except (ValueError, TypeError) as error:
                yield refused(error)

        def on_replay(step, decoding: Decoding | None):
            if decoding is None or not decoding.frames:
                return gr.skip()
            step = min(max(int(step), 0), len(decoding.frames))
            return render_canvas(tokenizer, decoding, step - 1 if step else None)

        # one decode at a time (both tabs share the model): tokens/s is never two calls sharing the device
        generate_button.click(on_generate, [prompt, max_new_tokens, *settings], outputs, concurrency_id="decode",
                              concurrency_limit=1)
        infill_button.click(on_infill, [prefix, hole, suffix, *settings], outputs, concurrency_id="decode",
                            concurrency_limit=1)
        replay.input(on_replay, [replay, state], canvas)
        replay.release(on_replay, [replay, state], canvas)
    return demo


def warm_up(model, tokenizer, ar_model=None) -> None:
    """One short decode of each model before the page serves, so the first run's tokens/s is not the warm-up's (a
    checkpoint whose own decoding settings are refused is left cold: the page shows the refusal on every run)."""
    try:
        for _ in stream_decoding(model, tokenizer, prompt_decoding(model, tokenizer, "a", 2, None), steps=2,
                                 verify=None):
            pass
    except ValueError:
        return
    if ar_model is not None:
        for _ in stream_ar(ar_model, tokenizer, "a", 2):
            pass


__all__ = ["build_demo", "warm_up"]
