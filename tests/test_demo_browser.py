"""The demo page in a real browser: headless Chromium from the operating system's packages (``apt-get install
chromium``; never a browser that Playwright downloads), driven by Playwright, against ``build_demo`` served in-process
on a tiny random model. It types a prompt, presses Generate, sees the canvas change step by step before the final
text, replays step 1, fills a hole, and reads a refused setting's message while the page keeps working; the
screenshot it takes is the README's docs/demo.png when ``DIFFUSION_LM_UPDATE_SCREENSHOT=1`` (otherwise it goes to
the test's temporary folder, so a test run leaves the repository unchanged).
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

gradio = pytest.importorskip("gradio", reason="the demo extra is not installed (pip install '.[demo]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next(filter(None, (shutil.which(name) for name in BROWSER_NAMES)), None)
if CHROMIUM is None:
    pytest.skip("no Chromium from the OS packages on PATH (apt-get install chromium)", allow_module_level=True)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: gradio reports nothing anywhere
SCREENSHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "demo.png")
TIMEOUT_MS = 30_000
FRAME_INTERVAL = 0.1  # seconds between the frames the page shows: the browser sees every step
# every distinct canvas the page showed (MutationObserver on the canvas component), read back by the test
RECORD_CANVASES = """() => {
    window.dlmCanvases = [];
    const target = document.querySelector('#dlm-canvas');
    const record = () => {
        const canvas = target.querySelector('.dlm-canvas');
        const text = canvas ? canvas.innerText : '';
        if (text && window.dlmCanvases[window.dlmCanvases.length - 1] !== text) window.dlmCanvases.push(text);
    };
    new MutationObserver(record).observe(target, {subtree: true, childList: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page():
    """The demo of a tiny LLaMA diffusion model with its AR base beside it, open in headless Chromium."""
    from tiny import tiny_ar_model, tiny_diffusion_model

    from diffusion_lm.demo import build_demo

    model, tokenizer = tiny_diffusion_model("llama")
    demo = build_demo(model, tokenizer, tiny_ar_model("llama"), frame_interval=FRAME_INTERVAL)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(f"http://127.0.0.1:{port}/")
            tab.wait_for_selector("#dlm-generate")
            yield tab
            browser.close()
    finally:
        demo.close()


def canvas_step(page) -> str:
    return page.locator("#dlm-canvas .dlm-canvas").get_attribute("data-step")


def set_number(page, elem_id: str, value) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_generate_streams_the_canvas_then_replays_step_one(page, tmp_path):
    page.wait_for_selector("#dlm-canvas", state="attached")  # the page renders its components after the button
    page.evaluate(RECORD_CANVASES)
    page.locator("#dlm-prompt textarea").fill("once upon a time")
    set_number(page, "dlm-new-tokens", 8)
    set_number(page, "dlm-block-length", 4)
    page.locator("#dlm-generate").click()
    page.wait_for_function("() => document.querySelector('#dlm-text textarea').value.length > 0")
    final = page.locator("#dlm-text textarea").input_value()
    canvases = page.evaluate("() => window.dlmCanvases")
    assert len(canvases) >= 3, canvases  # at least two distinct states, then the last
    assert "░" in canvases[0] and "░" not in canvases[-1]
    assert canvas_step(page) == "8"
    assert "forward passes" in page.locator("#dlm-counters").inner_text()
    assert page.locator("#dlm-canvas .dlm-new").count() >= 1  # this step's token highlighted
    assert page.locator("#dlm-canvas span[style*='border-left']").count() == 2  # two blocks of 4

    page.wait_for_function("() => document.querySelector('#dlm-ar-counters').innerText.includes('tokens/s')")
    assert "AR speed" in page.locator("#dlm-ar-counters").inner_text()

    set_number(page, "dlm-replay", 1)
    page.wait_for_function("() => document.querySelector('#dlm-canvas .dlm-canvas').dataset.step === '1'")
    assert page.locator("#dlm-canvas .dlm-mask").count() == 7  # step 1 committed one of the 8 positions
    assert page.locator("#dlm-text textarea").input_value() == final
    set_number(page, "dlm-replay", 3)
    page.wait_for_function("() => document.querySelector('#dlm-canvas .dlm-canvas').dataset.step === '3'")
    screenshot = SCREENSHOT if os.environ.get("DIFFUSION_LM_UPDATE_SCREENSHOT") == "1" else tmp_path / "demo.png"
    page.screenshot(path=screenshot, full_page=True)
    assert os.path.getsize(screenshot) > 10_000

    page.locator("#dlm-prompt textarea").fill("")  # no prompt: the page says so (and keeps serving: next test)
    page.locator("#dlm-generate").click()
    page.get_by_text("the prompt is empty").first.wait_for()


def test_infill_and_a_refused_setting(page):
    page.get_by_role("tab", name="Infill").click()
    page.locator("#dlm-prefix textarea").fill("the cat")
    set_number(page, "dlm-hole", 3)
    page.locator("#dlm-suffix textarea").fill("on the mat")
    set_number(page, "dlm-block-length", 0)
    page.locator("#dlm-infill").click()
    page.wait_for_function("() => document.querySelector('#dlm-canvas .dlm-canvas')?.dataset.step === '3'")
    filled = page.locator("#dlm-text textarea")
    page.wait_for_function("() => document.querySelector('#dlm-text textarea').value.startsWith('the cat')")
    assert filled.input_value().endswith("on the mat")

    # verification continues a prompt left to right: generate refuses holes with it, and the page says so
    choose(page, "dlm-verify", "causal")
    page.locator("#dlm-infill").click()
    page.get_by_text("cannot fill holes").first.wait_for()
    # a hole longer than the model's positions: generate's own message
    choose(page, "dlm-verify", "none")
    set_number(page, "dlm-hole", 500)
    page.locator("#dlm-infill").click()
    page.get_by_text("more than the model's 128").first.wait_for()

    # the server still serves: the next fill runs
    set_number(page, "dlm-hole", 2)
    page.locator("#dlm-infill").click()
    page.wait_for_function("() => document.querySelector('#dlm-canvas .dlm-canvas')?.dataset.step === '2'")
