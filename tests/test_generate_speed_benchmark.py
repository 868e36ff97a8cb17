"""benchmarks/generate_speed.py runs its smallest grid on a tiny block-diffusion model and a tiny full-attention
model saved as checkpoints (the warm-up and every row must suit both model types)."""

import importlib.util
import json
import os

import pytest
from tiny import save_tiny_ar_checkpoint, tiny_diffusion_model

BENCHMARK = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "generate_speed.py")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("generate_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["bidirectional", "block"])
def test_generate_speed_smallest_grid_runs_on_block_and_full_models(tmp_path, mode, capsys):
    model, tokenizer = tiny_diffusion_model("llama")
    if mode == "block":
        model.config.attention_mode = "block"
        model.config.diffusion_block_size = 8
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    save_tiny_ar_checkpoint(str(tmp_path / "ar"), "llama")
    output = tmp_path / "results.json"
    load_benchmark().main([
        "--model", str(tmp_path / "model"), "--ar-base", str(tmp_path / "ar"), "--grid", "smallest",
        "--prompt-length", "8", "--new-tokens", "8", "--block-length", "4", "--batch-sizes", "1", "2",
        "--quality-samples", "2", "--quality-extra", "dual,verify=4;dual,ent=1.0", "--output", str(output),
    ])
    results = json.loads(output.read_text())
    for batch in ("1", "2"):
        rows = {row[0].split(maxsplit=1)[1] if row[0].startswith(("none", "prefix", "dual")) else row[0]: row
                for row in results["speed"][batch]["rows"]}
        verify_rows = [row for name, row in rows.items() if "verify causal" in name]
        assert verify_rows and all(row[5] == "yes" for row in verify_rows)  # identical to the causal greedy decode
        assert all(row[6] >= 1 for row in verify_rows)  # accepted tokens per verification
        assert any("entropy bound" in name for name in rows)
        assert any("sub-block" in name for name in rows) == (mode == "block")
        assert rows["1 tok/step"][4] == 1.0  # the exact decode is its own reference
    printed = capsys.readouterr().out
    assert "identical to the causal greedy decode" in printed
    quality = {row[0]: row for row in results["quality"]["rows"]}  # name, perplexity, distinct-2, agreement, tpf
    cache = "prefix" if mode == "block" else "dual  "  # a block model's fast cache
    assert set(quality) >= {f"{cache} verify causal, draft 4", f"{cache} entropy bound 1.0"}
    assert all(row[1] > 0 for row in quality.values())
