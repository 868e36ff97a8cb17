"""The GSM8K recipe in training/gsm8k: reference format, scoring, and an end-to-end run on a tiny checkpoint."""

import json
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from tiny import tiny_diffusion_model

RECIPE = os.path.join(os.path.dirname(__file__), "..", "training", "gsm8k")
sys.path.insert(0, os.path.abspath(RECIPE))

import gsm8k_common as common  # noqa: E402

ANSWER = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
          "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def test_reference_format_keeps_calculations_and_answer():
    assert common.reference_target(ANSWER) == "<<48/2=24>> <<48+24=72>> #### 72"
    assert common.reference_target(ANSWER, "full") == ANSWER
    assert common.reference_target("no calculator here\n#### 1,000") == "#### 1000"
    with pytest.raises(ValueError, match="####"):
        common.reference_target("no answer")
    with pytest.raises(ValueError, match="style"):
        common.reference_target(ANSWER, "short")


def test_exact_match_reads_the_text_after_the_last_marker():
    assert common.exact_match("<<1+1=2>> #### 72", ANSWER)
    assert common.exact_match("#### 5 #### 72", ANSWER)
    assert common.exact_match("#### 1,000", "#### 1000")
    assert not common.exact_match("the answer is 72", ANSWER)
    assert not common.exact_match("#### 7", ANSWER)


def test_sft_rows_plain_and_chat():
    record = {"question": "How many?", "answer": ANSWER}
    plain = common.sft_rows([record])[0]
    assert plain == {"prompt": "Question: How many?\nAnswer:", "completion": " <<48/2=24>> <<48+24=72>> #### 72"}
    chat = common.sft_rows([record], chat=True)[0]
    assert chat["prompt"] == [{"role": "user", "content": "How many?"}]
    assert chat["completion"][0]["content"].endswith("#### 72")


def test_loads_the_shared_files(shared_data):
    folder = os.path.join(shared_data, "eval", "gsm8k")
    assert len(common.load_gsm8k(folder, "test")) == 1319
    rows = common.sft_rows(common.load_gsm8k(folder, "train")[:50])
    assert all(row["completion"].split("####")[-1].strip() for row in rows)
    with pytest.raises(ValueError, match="split"):
        common.load_gsm8k(folder, "validation")


@pytest.mark.slow
def test_recipe_trains_and_scores_a_tiny_checkpoint(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gsm8k_train", os.path.join(RECIPE, "train.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    base = str(tmp_path / "base")
    model, tokenizer = tiny_diffusion_model("llama")
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = tmp_path / "gsm8k"
    data.mkdir()
    rows = [{"question": "what is one plus one ?", "answer": "<<1+1=2>>2 #### 2"},
            {"question": "what is two plus two ?", "answer": "<<2+2=4>>4 #### 4"}]
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = str(tmp_path / "out")
    assert train.main(["--model", base, "--output-dir", out, "--data", str(data), "--max-steps", "2",
                       "--batch-size", "2", "--eval-limit", "2", "--max-new-tokens", "4", "--format", "plain",
                       "--max-length", "32"]) == 0
    results = json.load(open(os.path.join(out, "gsm8k_results.json")))
    assert results["train"]["steps"] == 2 and results["train_examples"] == 2
    for part in ("before", "after"):
        outputs = results[part]["samples"]
        assert results[part]["num_examples"] == len(outputs) == 2
        # the metrics are those of the recorded answers: none of the untrained model's holds "####" (0 of 2)
        assert results[part]["exact_match"] == sum(map(common.exact_match, outputs, [r["answer"] for r in rows])) / 2
        assert results[part]["answered"] == sum("####" in output for output in outputs) / 2 == 0.0
    # the answers are the saved model's greedy decode
    from diffusion_lm.checkpoint import load_checkpoint

    trained, trained_tokenizer = load_checkpoint(out)
    assert common.score(trained, trained_tokenizer, rows, chat=False, max_new_tokens=4)["outputs"] == \
        results["after"]["samples"]
    # the held-out bound of this seed's tiny model (CPU, deterministic noise draws), a little lower after 2 steps
    assert results["before"]["heldout_elbo"] == pytest.approx(3.01504, abs=1e-4)
    assert results["after"]["heldout_elbo"] == pytest.approx(3.01351, abs=1e-4)
