"""The demo page's frames (``diffusion_lm.demo.frames``, no gradio): they are ``generate``'s own steps, equal to the
same call's ``output_history`` step for step; the canvas drawing; the page's settings; the command without gradio.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from tiny import tiny_ar_model, tiny_diffusion_model

from diffusion_lm.cli import main
from diffusion_lm.demo.frames import (
    Done,
    counters,
    decoding_kwargs,
    infill_decoding,
    prompt_decoding,
    render_canvas,
    run_in_thread,
    stream_ar,
    stream_decoding,
)


@pytest.fixture(scope="module")
def tiny():
    return tiny_diffusion_model("llama")


def decode(model, tokenizer, decoding, positions, generator=None, **settings):
    """Every frame of the page's settings ``settings`` (``decoding_kwargs``), as the page receives them."""
    return list(stream_decoding(model, tokenizer, decoding, generator=generator,
                                **decoding_kwargs(positions, **settings)))


@pytest.mark.parametrize("settings", [
    {},
    {"block_length": 4, "threshold": 0.05, "kv_cache": "prefix"},
    {"steps": 3, "temperature": 1.0},
    {"verify": "causal"},
], ids=["one-per-token", "blocks-threshold-cache", "sampled", "verify"])
def test_frames_are_the_history_of_the_same_generate_call(tiny, settings):
    model, tokenizer = tiny
    decoding = prompt_decoding(model, tokenizer, "once upon a time", 8, settings.get("block_length"))
    frames = decode(model, tokenizer, decoding, 8, generator=torch.Generator().manual_seed(0), **settings)
    assert frames == decoding.frames and len(frames) >= 2
    assert [frame.tokens for frame in frames] == decoding.history  # step for step
    assert [frame.step for frame in frames] == list(range(len(frames)))
    assert decoding.forward_passes >= 1 and decoding.tokens_per_second > 0 and decoding.text
    assert "forward passes" in counters(decoding)


def test_frames_are_yielded_while_generate_runs(tiny, monkeypatch):
    """The first frame reaches the consumer while the call is still running (it waits for the consumer here)."""
    import threading

    model, tokenizer = tiny
    first_frame_seen = threading.Event()
    steps_done_when_seen = []
    generate = model.generate

    def waiting_generate(*args, step_callback, **kwargs):
        def callback(step, sequences, logits):
            step_callback(step, sequences, logits)
            if step == 0:  # the decode goes on only once the consumer holds the first frame
                assert first_frame_seen.wait(timeout=30)
            steps_done_when_seen.append(step)
        return generate(*args, step_callback=callback, **kwargs)

    monkeypatch.setattr(model, "generate", waiting_generate)
    decoding = prompt_decoding(model, tokenizer, "the cat", 4, None)
    frames = stream_decoding(model, tokenizer, decoding, **decoding_kwargs(4))
    assert next(frames).step == 0 and steps_done_when_seen == []
    first_frame_seen.set()
    rest = list(frames)
    assert len(rest) == 3 and decoding.seconds > 0 and steps_done_when_seen == [0, 1, 2, 3]


def test_a_closed_page_request_stops_its_decode_and_joins_the_thread(tiny):
    """The consumer going away (gradio cancels the generator) ends the decode at its next step: no orphan thread."""
    import threading

    model, tokenizer = tiny
    decoding = prompt_decoding(model, tokenizer, "the cat", 32, None)
    frames = stream_decoding(model, tokenizer, decoding, **decoding_kwargs(32))
    next(frames)
    frames.close()
    assert not any(thread.name == "diffusion-lm-demo" and thread.is_alive() for thread in threading.enumerate())
    assert len(decoding.frames) == 1 and decoding.seconds == 0.0  # never finished


def test_infill_frames_fill_only_the_hole(tiny):
    model, tokenizer = tiny
    decoding = infill_decoding(model, tokenizer, "the cat", "on the mat", 3, None)
    frames = decode(model, tokenizer, decoding, 3)
    assert [frame.tokens for frame in frames] == decoding.history and len(frames) == 3
    given = [i for i, hole in enumerate(decoding.generated) if not hole]
    assert all(frame.tokens[i] == decoding.initial[i] for frame in frames for i in given)
    assert decoding.text.startswith("the cat") and decoding.text.endswith("on the mat")


def test_the_canvas_draws_masks_this_steps_tokens_and_block_starts(tiny):
    model, tokenizer = tiny
    decoding = prompt_decoding(model, tokenizer, "the cat", 8, 4)
    decode(model, tokenizer, decoding, 8, block_length=4)
    first = render_canvas(tokenizer, decoding, 0)
    assert first.count('class="dlm-mask"') == 7 and first.count('class="dlm-new"') == 1
    assert first.count("border-left") == 2  # blocks of 4: two starts
    last = render_canvas(tokenizer, decoding, len(decoding.frames) - 1)
    assert "dlm-mask" not in last and last.count('class="dlm-new"') == 1 and last.count('class="dlm-done"') == 7
    assert render_canvas(tokenizer, decoding, None).count('class="dlm-mask"') == 8  # before any step


def test_a_block_diffusion_models_canvas_is_cut_at_its_own_blocks():
    model, tokenizer = tiny_diffusion_model("llama")
    model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    decoding = prompt_decoding(model, tokenizer, "once upon a", 9, None)  # 3 prompt tokens: blocks start at 4, 8
    assert decoding.block_ids[3:] == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    frames = decode(model, tokenizer, decoding, 9)
    assert [frame.tokens for frame in frames] == decoding.history
    assert render_canvas(tokenizer, decoding, 0).count("border-left") == 3
    with pytest.raises(ValueError, match="differs from the model's diffusion_block_size"):
        decode(model, tokenizer, prompt_decoding(model, tokenizer, "the", 8, 8), 8, block_length=8)


@pytest.mark.parametrize("call,message", [
    (lambda m, t: prompt_decoding(m, t, "  ", 4, None), "prompt is empty"),
    (lambda m, t: infill_decoding(m, t, "a", "b", 0, None), "hole length must be >= 1"),
    (lambda m, t: decoding_kwargs(4, threshold=1.5), "threshold must be in"),
    (lambda m, t: decoding_kwargs(4, steps=-2), "steps must be >= 1"),
])
def test_bad_input_is_a_value_error_with_a_message(tiny, call, message):
    with pytest.raises(ValueError, match=message):
        call(*tiny)


def test_a_setting_the_model_refuses_raises_generates_own_error_in_the_consumer(tiny):
    model, tokenizer = tiny
    decoding = infill_decoding(model, tokenizer, "the cat", "on the mat", 200, None)  # longer than 128 positions
    with pytest.raises(ValueError, match="more than the model's 128"):
        decode(model, tokenizer, decoding, 200)
    decoding = infill_decoding(model, tokenizer, "the cat", "on the mat", 2, None)
    with pytest.raises(ValueError, match="cannot fill holes"):
        decode(model, tokenizer, decoding, 2, verify="causal")


def test_the_ar_base_streams_its_text_then_its_count():
    _, tokenizer = tiny_diffusion_model("llama")
    events = list(stream_ar(tiny_ar_model("llama"), tokenizer, "once upon a time", 5))
    done = events[-1]
    assert isinstance(done, Done) and done.value[1] == 5 and done.seconds > 0
    texts = events[:-1]
    assert len(texts) == 5 and texts[-1] == done.value[0]


def test_run_in_thread_raises_the_works_error_in_the_consumer():
    def work(emit):
        emit(1)
        raise RuntimeError("boom")

    events = run_in_thread(work)
    with pytest.raises(RuntimeError, match="boom"):
        list(events)


def test_the_library_and_the_other_commands_do_not_import_gradio():
    code = ("import sys, diffusion_lm, diffusion_lm.demo, diffusion_lm.demo.frames, diffusion_lm.cli.generate, "
            "diffusion_lm.cli.demo; assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_command_without_gradio_says_how_to_install_it(tiny, tmp_path, monkeypatch, capsys):
    import importlib.util

    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a))
    capsys.readouterr()  # the save's progress bars
    assert main(["demo", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == 'diffusion-lm demo: error: the demo page needs gradio: pip install "diffusion-lm[demo]"'
