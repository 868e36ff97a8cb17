"""Progress on long work: bars on stderr in a terminal, nothing on stdout, nothing when stderr is not a terminal."""

from __future__ import annotations

import io
import re
import sys

import pytest
from tiny import tiny_ar_model, tiny_diffusion_model, tiny_tokenizer

from diffusion_lm.cli import main


class TerminalStream(io.StringIO):
    """A stderr that says it is a terminal (tqdm draws its bar only then)."""

    def isatty(self):
        return True


def counts(text: str, unit: str) -> list[tuple[int, int]]:
    """Every ``n/total`` a bar drew, in order."""
    return [(int(n), int(total)) for n, total in re.findall(r"(\d+)/(\d+) \[[^\]]*" + unit, text)]


@pytest.fixture(autouse=True)
def draw_every_update(monkeypatch):
    # tiny models are fast: tqdm would skip most redraws (it reads TQDM_* variables only at import)
    import tqdm.std

    original = tqdm.std.tqdm.__init__

    def eager(self, *args, **kwargs):
        kwargs.update(mininterval=0, miniters=1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", eager)


@pytest.fixture
def checkpoint(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_generate_and_chat_show_a_step_bar_in_a_terminal_only(checkpoint, monkeypatch, capsys):
    argv = ["generate", checkpoint, "--prompt", "the cat", "--max-new-tokens", "6", "--steps", "3"]
    assert main(argv) == 0
    piped = capsys.readouterr()
    assert "step/s" not in piped.err and "/3 [" not in piped.err  # not a terminal: no bar

    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv) == 0
    assert capsys.readouterr().out == piped.out  # the bar does not change the result or touch stdout
    steps = counts(terminal.getvalue(), "step")
    assert steps[-1] == (3, 3) and all(total == 3 for _, total in steps)

    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nstory\n"))
    assert main(["chat", checkpoint, "--max-new-tokens", "4", "--steps", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert counts(terminal.getvalue(), "step").count((2, 2)) == 2  # one bar per reply


def test_gsm8k_evaluation_advances_per_item_and_shows_the_denoising_step(monkeypatch):
    from diffusion_lm.evaluation.evaluators import DecodingSettings, DiffusionEvaluator, ScoringSettings
    from diffusion_lm.evaluation.runner import run_gsm8k
    from diffusion_lm.evaluation.tasks import MathExample

    model, tokenizer = tiny_diffusion_model("llama")
    evaluator = DiffusionEvaluator(model, tokenizer, ScoringSettings(batch_size=2), DecodingSettings(steps=4))
    examples = [MathExample(f"what is {a} plus {a} ?", f"#### {2 * a}", str(2 * a)) for a in (1, 2, 3)]
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = run_gsm8k(evaluator, examples, max_new_tokens=4, progress=True)
    assert result["num_examples"] == 3
    text = terminal.getvalue()
    items = counts(text, "item")
    assert items[0] == (0, 3) and (2, 3) in items and items[-1] == (3, 3)  # counted in questions, not batches
    assert "step 4/4" in text

    quiet = TerminalStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert run_gsm8k(evaluator, examples, max_new_tokens=4, progress=False)["outputs"] == result["outputs"]
    assert quiet.getvalue() == ""


def test_embedded_corpus_sampling_shows_a_token_bar(monkeypatch):
    from diffusion_lm.embedded import sample_embedded_corpus

    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    documents = sample_embedded_corpus(tiny_ar_model(), tiny_tokenizer(), num_documents=3, tokens_per_document=5,
                                       batch_size=2)
    assert len(documents) == 3
    drawn = counts(terminal.getvalue(), "tok")
    assert drawn[0] == (0, 10) and all(total == 10 for _, total in drawn) and len(drawn) > 2

    quiet = TerminalStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    again = sample_embedded_corpus(tiny_ar_model(), tiny_tokenizer(), num_documents=3, tokens_per_document=5,
                                   batch_size=2, progress=False)
    assert again == documents and quiet.getvalue() == ""  # the bar does not change the sampled corpus
