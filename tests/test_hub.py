"""Hub round trip: push-ready checkpoints, model cards, loading without diffusion_lm, and what a push uploads."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from huggingface_hub import ModelCard

from diffusion_lm.checkpoint import save_checkpoint
from diffusion_lm.model_card import GENERATED_CARD_MARKER, card_template_path, record_eval_results, render_card, write_card
from diffusion_lm.push import commit_operations, push_checkpoint, push_readiness_problems
from diffusion_lm.training_record import TRAINING_RECORD_NAME, TrainingInfo
from tiny import run_clean_process, tiny_ar_model, tiny_diffusion_model, tiny_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"
REPO_ID = "someone/tiny-diffugpt"
ADAPT_RECORD = {  # the flat record the adapt trainer writes
    "stage": "adapt",
    "base_model": "openai-community/gpt2",
    "datasets": ["HuggingFaceFW/fineweb-edu", "local/corpus.txt"],
    "license": "mit",
    "steps": 1200,
    "tokens": 4_915_200,
    "block_size": 1024,
    "anneal_steps": 100,
    "learning_rate": 3e-4,
    "global_batch_size": 4,
    "loss_normalization": "masked_tokens",
    "final_train_loss": 3.25,
    "shift": True,
    "eval_results": [
        {"task_type": "text-generation", "dataset_type": "lambada", "dataset_name": "LAMBADA",
         "metric_type": "accuracy", "metric_value": 0.25},
    ],
}


class FakeHubApi:
    """Records what a push asks the Hub for; create_commit writes the operations into a local folder."""

    def __init__(self, remote_dir):
        self.remote_dir = remote_dir
        self.calls = []

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, private))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_branch(self, repo_id, branch, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", repo_id, branch))

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, create_pr=False, **kwargs):
        self.calls.append(("create_commit", repo_id, revision, commit_message))
        self.operations = list(operations)
        materialize(self.operations, self.remote_dir)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, revision, commit_message))
        shutil.copytree(folder_path, self.remote_dir, dirs_exist_ok=True)


def materialize(operations, directory):
    """Write commit operations into ``directory`` with huggingface_hub's own accessor (``as_file``)."""
    for operation in operations:
        path = os.path.join(directory, operation.path_in_repo)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with operation.as_file() as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Push-ready tiny GPT-2 and LLaMA checkpoints written by save_checkpoint, and a push of the GPT-2 one."""
    root = tmp_path_factory.mktemp("hub")
    dirs = {}
    for family in ("gpt2", "llama"):
        model, tokenizer = tiny_diffusion_model(family)
        dirs[family] = save_checkpoint(model, tokenizer, root / f"tiny-{family}", ADAPT_RECORD)
    # a Trainer leaves these behind; they must not be uploaded
    os.makedirs(root / "tiny-gpt2" / "checkpoint-10")
    (root / "tiny-gpt2" / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    (root / "tiny-gpt2" / "optimizer.pt").write_bytes(b"x")
    api = FakeHubApi(str(root / "remote"))
    push_checkpoint(dirs["gpt2"], REPO_ID, api=api)
    dirs["pushed"], dirs["api"] = str(root / "remote"), api
    return dirs


CLEAN_SCRIPT = """
import json, sys, traceback
# the environment of a Hub user: none of diffusion-lm's own packages (None in sys.modules makes imports fail)
for name in ("diffusion_lm", "datasets", "trl", "peft", "accelerate"):
    sys.modules[name] = None
import torch
from transformers import AutoModel, AutoTokenizer

report = {}

def part(name, fn):
    try:
        report[name] = fn() or "ok"
    except Exception:
        report[name] = "FAILED\\n" + traceback.format_exc()

def load_and_generate(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    prompt = tokenizer("the cat sat on", return_tensors="pt").input_ids
    torch.manual_seed(0)
    output = model.generate(prompt, max_new_tokens=4, steps=4)
    sequences = output.sequences if hasattr(output, "sequences") else output
    assert sequences.shape == (1, prompt.shape[1] + 4), sequences.shape
    assert torch.equal(sequences[0, : prompt.shape[1]], prompt[0]), "the prompt changed"
    assert (sequences != model.config.mask_token_id).all(), "masks left"
    return {"class": type(model).__name__, "mask_token": tokenizer.mask_token}

for name, directory in json.loads(sys.argv[1]).items():
    part(name, lambda directory=directory: load_and_generate(directory))
part("snippet", lambda: exec(sys.argv[2], {"__name__": "__snippet__"}))
report["diffusion_lm_importable"] = any(k.startswith("diffusion_lm") and v is not None for k, v in sys.modules.items())
print("REPORT" + json.dumps(report))
"""


def usage_snippet(card_text: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)
    assert len(blocks) == 1, "the card should hold exactly one python block"
    return blocks[0]


@pytest.fixture(scope="module")
def clean_run(checkpoints, tmp_path_factory):
    """One fresh interpreter without diffusion_lm, cwd outside the repository: loads, generates, runs the snippet."""
    work = tmp_path_factory.mktemp("clean")
    snippet = usage_snippet(render_card(checkpoints["gpt2"], repo_id=REPO_ID).content)
    snippet = snippet.replace(f'"{REPO_ID}"', json.dumps(checkpoints["gpt2"]))
    directories = {name: checkpoints[name] for name in ("gpt2", "llama", "pushed")}
    return run_clean_process(CLEAN_SCRIPT, [json.dumps(directories), snippet], str(work))[0]


# --- checkpoint directories ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_saved_directory_is_push_ready(checkpoints, family):
    directory = checkpoints[family]
    assert push_readiness_problems(directory) == []
    names = set(os.listdir(directory))
    module = {"gpt2": "diffugpt", "llama": "diffullama"}[family]
    code = {f"configuration_{module}.py", f"modeling_{module}.py", "modeling_diffusion_utils.py",
            "generation_diffusion.py", "attention_annealing.py"}
    assert code <= names
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json", "README.md",
            TRAINING_RECORD_NAME} <= names
    config = json.load(open(os.path.join(directory, "config.json")))
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}


def test_readiness_names_what_is_missing(checkpoints, tmp_path):
    broken = shutil.copytree(checkpoints["llama"], tmp_path / "broken")
    os.remove(broken / "attention_annealing.py")
    os.remove(broken / "README.md")
    os.remove(broken / "generation_config.json")
    problems = "\n".join(push_readiness_problems(broken))
    assert "attention_annealing.py is missing" in problems
    assert "README.md" in problems and "generation_config.json" in problems
    with pytest.raises(ValueError, match="not ready to push"):
        push_checkpoint(broken, REPO_ID, api=FakeHubApi(str(tmp_path / "remote")))


def test_readiness_flags_code_that_needs_diffusion_lm(checkpoints, tmp_path):
    leaky = shutil.copytree(checkpoints["gpt2"], tmp_path / "leaky")
    with open(leaky / "modeling_diffugpt.py", "a") as f:
        f.write("\nimport diffusion_lm.objective\n")
    assert any("diffusion_lm" in problem for problem in push_readiness_problems(leaky))


def test_save_checkpoint_rejects_bad_input(tmp_path):
    model, tokenizer = tiny_diffusion_model("gpt2")
    with pytest.raises(ValueError, match="mask token id"):
        save_checkpoint(model, tiny_tokenizer(), tmp_path / "a")
    with pytest.raises(ValueError, match="diffusion-lm model"):
        save_checkpoint(tiny_ar_model("gpt2"), tokenizer, tmp_path / "b")
    with pytest.raises(ValueError, match="stage"):
        save_checkpoint(model, tokenizer, tmp_path / "c", {"stage": "pretrain"})


# --- loading where diffusion_lm is not installed --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "llama", "pushed"])
def test_loads_and_generates_without_diffusion_lm(clean_run, name):
    assert clean_run["diffusion_lm_importable"] is False
    result = clean_run[name]
    assert isinstance(result, dict), result
    assert result["class"].endswith("ForMaskedDiffusion") and result["mask_token"] == "<|mdm_mask|>"


@pytest.mark.slow
def test_card_usage_snippet_runs_without_diffusion_lm(clean_run):
    assert clean_run["snippet"] == "ok", clean_run["snippet"]


# --- the card -------------------------------------------------------------------------------------------------
def test_card_metadata_parses(checkpoints):
    card = ModelCard.load(os.path.join(checkpoints["gpt2"], "README.md"))
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert {"diffusion-lm", "masked-diffusion", "diffugpt"} <= set(data.tags)
    assert data.base_model == "openai-community/gpt2"
    assert data.datasets == ["HuggingFaceFW/fineweb-edu", "local/corpus.txt"]
    assert data.license == "mit"
    (result,) = data.eval_results
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("lambada", "accuracy", 0.25)


def test_card_states_the_adaptation(checkpoints):
    text = open(os.path.join(checkpoints["llama"], "README.md")).read()
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+?) \|$", text, flags=re.MULTILINE))
    assert rows["Training steps"] == "1,200"
    assert rows["Training tokens"].startswith("4.9M")
    assert rows["Block size"] == "1,024 tokens"
    assert rows["Attention-mask annealing"].startswith("100 steps")
    assert rows["Shift"].startswith("yes")
    assert rows["Mask token"] == r"`<\|mdm_mask\|>` (id 90), added to the vocabulary"
    assert "openai-community/gpt2" in rows["Base model"]
    assert rows["Loss normalization"] == "masked_tokens"
    assert "| LAMBADA | accuracy | 0.25 |" in text
    assert "trust_remote_code=True" in text and "max_new_tokens=0" in text


def test_card_without_record_or_license(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    model.save_pretrained(tmp_path)  # no tokenizer yet: a Trainer saves it after the model
    card = render_card(tmp_path)
    assert card.data.license == "other" and "No license was recorded" in card.content
    assert "| Mask token | id 90 |" in card.content
    assert card.data.base_model is None


def test_template_ships_with_the_package():
    path = card_template_path()
    assert os.path.isfile(path) and "{{ card_data }}" in open(path).read()
    # model_cards/ in the repository is a link to the packaged template, not a second copy that could drift
    repo_entry = os.path.join(os.path.dirname(__file__), "..", "model_cards", "diffusion_lm_card.md")
    assert os.path.realpath(repo_entry) == os.path.realpath(path)


def test_training_info_round_trip_and_validation(tmp_path):
    info = TrainingInfo.from_dict(ADAPT_RECORD)
    assert info.extra == {"loss_normalization": "masked_tokens", "final_train_loss": 3.25, "shift": True}
    os.makedirs(tmp_path / "ckpt")
    info.save(tmp_path / "ckpt")
    saved = json.load(open(tmp_path / "ckpt" / TRAINING_RECORD_NAME))
    assert saved["diffusion_lm_version"] and saved["loss_normalization"] == "masked_tokens"
    assert TrainingInfo.load(tmp_path / "ckpt") == info
    for bad, message in [
        ({"steps": -1}, "steps"),
        ({"tokens": "many"}, "tokens"),
        ({"eval_results": [{"metric_value": 1}]}, "lacks"),
        ({"eval_results": [{**ADAPT_RECORD["eval_results"][0], "source_name": "x"}]}, "source_url"),
        ({"schema_version": 2}, "schema_version"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainingInfo.from_dict(bad)


def test_record_eval_results_rerenders_the_card(checkpoints, tmp_path):
    directory = shutil.copytree(checkpoints["llama"], tmp_path / "evaluated")
    result = {"task_type": "multiple-choice", "dataset_type": "piqa", "dataset_name": "PIQA",
              "metric_type": "accuracy", "metric_value": 0.5}
    record_eval_results(directory, [result, {**ADAPT_RECORD["eval_results"][0], "metric_value": 0.3}])
    card = ModelCard.load(directory / "README.md")
    values = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    assert values == {"lambada": 0.3, "piqa": 0.5}


# --- one writer per artifact: model.save_pretrained writes the model, save_checkpoint the rest -------------------
def test_model_save_pretrained_writes_the_model_and_its_auto_map_only(tmp_path):
    model, _ = tiny_diffusion_model("gpt2")
    model.save_pretrained(tmp_path / "a")
    names = set(os.listdir(tmp_path / "a"))
    assert {"config.json", "model.safetensors", "modeling_diffugpt.py", "modeling_diffusion_compat.py"} <= names
    assert "README.md" not in names and TRAINING_RECORD_NAME not in names
    auto_map = json.load(open(tmp_path / "a" / "config.json"))["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForCausalLM"] == "modeling_diffugpt.DiffuGPTForMaskedDiffusion"

    (tmp_path / "a" / "README.md").write_text("hand-written card\n")  # a save never touches a card
    model.save_pretrained(tmp_path / "a")
    assert (tmp_path / "a" / "README.md").read_text() == "hand-written card\n"


def test_save_checkpoint_writes_record_and_card_once(tmp_path, monkeypatch):
    import diffusion_lm.model_card

    writes = []
    real_render, real_save = diffusion_lm.model_card.render_card, TrainingInfo.save
    monkeypatch.setattr(diffusion_lm.model_card, "render_card", lambda *a, **k: writes.append("card") or real_render(*a, **k))
    monkeypatch.setattr(TrainingInfo, "save", lambda self, d: writes.append("record") or real_save(self, d))
    model, tokenizer = tiny_diffusion_model("gpt2")
    directory = save_checkpoint(model, tokenizer, tmp_path / "once", {"stage": "convert"}, tags=["demo"])
    assert sorted(writes) == ["card", "record"]
    card = ModelCard.load(os.path.join(directory, "README.md"))
    assert "demo" in card.data.tags and "not been trained" in card.content
    assert TrainingInfo.load(directory).stage == "convert"


def test_a_loaded_checkpoint_saves_again_with_its_record(checkpoints, tmp_path):
    """The load / save round trip: the record travels explicitly (``TrainingInfo.load``), the card is rendered anew."""
    from diffusion_lm.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoints["llama"])
    directory = save_checkpoint(model, tokenizer, tmp_path / "again", TrainingInfo.load(checkpoints["llama"]))
    assert "| Training steps | 1,200 |" in open(os.path.join(directory, "README.md")).read()
    assert push_readiness_problems(directory) == []


# --- push ---------------------------------------------------------------------------------------------------
def test_push_uploads_the_checkpoint_with_a_card_for_the_repo(checkpoints):
    api = checkpoints["api"]
    assert api.calls[0] == ("create_repo", REPO_ID, None)
    assert api.calls[-1][:3] == ("create_commit", REPO_ID, None)
    uploaded = {op.path_in_repo for op in api.operations}
    local = set(os.listdir(checkpoints["gpt2"])) - {"optimizer.pt", "checkpoint-10"}
    assert uploaded == local
    card = ModelCard.load(os.path.join(checkpoints["pushed"], "README.md"))
    assert f'model_id = "{REPO_ID}"' in card.content


def test_push_keeps_a_hand_written_card_and_validates_the_repo_id(checkpoints, tmp_path):
    directory = shutil.copytree(checkpoints["llama"], tmp_path / "own-card")
    write_card(directory)
    card = ModelCard.load(directory / "README.md")
    card.text = "My own words."
    card.save(directory / "README.md")
    (readme,) = [op for op in commit_operations(directory, REPO_ID) if op.path_in_repo == "README.md"]
    assert readme.path_or_fileobj == str(directory / "README.md")
    with pytest.raises(ValueError, match="invalid repo id"):
        push_checkpoint(directory, "not a repo id!", api=FakeHubApi(str(tmp_path / "r")))


def test_cli_push_and_card(checkpoints, tmp_path, monkeypatch):
    import diffusion_lm.push
    from diffusion_lm.cli import main

    directory = shutil.copytree(checkpoints["gpt2"], tmp_path / "cli")
    os.remove(directory / "README.md")
    assert main(["card", str(directory), "--repo-id", "me/cli-model"]) == 0
    assert 'model_id = "me/cli-model"' in (directory / "README.md").read_text()

    api = FakeHubApi(str(tmp_path / "remote"))
    monkeypatch.setattr(diffusion_lm.push, "HfApi", lambda token=None: api)
    assert main(["push", str(directory), "me/cli-model", "--private", "--revision", "dev"]) == 0
    assert api.calls[0] == ("create_repo", "me/cli-model", True)
    assert ("create_branch", "me/cli-model", "dev") in api.calls
    assert api.calls[-1][2] == "dev"


def cli_failure(argv, capsys) -> str:
    """The message of a refused command: one short stderr text with a non-zero exit, or the ValueError a bare
    ``main`` raises (the top-level handler turns it into the former)."""
    from diffusion_lm.cli import main

    try:
        code = main(argv)
    except ValueError as error:
        return str(error)
    except SystemExit as error:
        code = error.code
    assert code not in (0, None)
    return capsys.readouterr().err


@pytest.mark.parametrize("case", ["empty", "ar", "bert", "not-json"])
def test_cli_card_refuses_a_directory_that_is_not_a_diffusion_checkpoint(tmp_path, case, capsys):
    directory = tmp_path / case
    directory.mkdir()
    config = {"ar": {"model_type": "llama"}, "bert": {"model_type": "bert"}}.get(case)
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    elif case == "not-json":
        (directory / "config.json").write_text("[1, 2")
    message = cli_failure(["card", str(directory)], capsys)
    expected = {"empty": "no config.json", "not-json": "not a JSON object"}.get(case, "not a diffusion checkpoint")
    assert expected in message and len(message.strip().splitlines()) <= 2
    assert not (directory / "README.md").exists()  # no false card written
    with pytest.raises(ValueError, match=expected):
        write_card(directory)


# --- what a push uploads: links, checkpoints, pickles -------------------------------------------------------
PUSHED_FILES = ["README.md", "attention_annealing.py", "config.json", "configuration_diffugpt.py",
                "configuration_diffusion.py", "diffusion_lm_training.json", "generation_config.json"]


@pytest.fixture
def cluttered_checkpoint(checkpoints, tmp_path):
    """A copy of the GPT-2 checkpoint with what a run directory collects besides the model."""
    directory = shutil.copytree(checkpoints["gpt2"], tmp_path / "model")
    (directory / "checkpoint-5").mkdir()
    (directory / "checkpoint-5" / "model.safetensors").write_bytes(b"x")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json",
                 "pytorch_model.bin", "state.pkl", ".hidden"):
        (directory / name).write_bytes(b"x")
    (directory / "adapter").mkdir()  # the LoRA adapter `sft --lora --merge` keeps next to the merged model
    (directory / "adapter" / "adapter_config.json").write_text("{}")
    (directory / "notes").mkdir()
    (directory / "notes" / "eval.txt").write_text("kept")
    os.symlink(directory / "notes" / "eval.txt", directory / "eval-link.txt")  # a link inside: uploaded
    return directory


def expected_upload(directory) -> list[str]:
    model_files = sorted(name for name in os.listdir(directory) if os.path.isfile(directory / name))
    model_files = [name for name in model_files if not name.startswith(".") and not name.endswith(
        (".pt", ".pth", ".bin", ".pkl")) and name != "trainer_state.json"]
    return sorted(model_files + ["notes/eval.txt"])


def test_push_uploads_exactly_the_model_files(cluttered_checkpoint, tmp_path):
    api = FakeHubApi(str(tmp_path / "remote"))
    push_checkpoint(cluttered_checkpoint, REPO_ID, api=api)
    uploaded = sorted(op.path_in_repo for op in api.operations)
    assert uploaded == expected_upload(cluttered_checkpoint)
    assert set(PUSHED_FILES) <= set(uploaded) and "model.safetensors" in uploaded and "eval-link.txt" in uploaded
    assert not any(p.startswith(("checkpoint-", "adapter/")) or p.endswith((".pt", ".pth", ".bin", ".pkl"))
                   for p in uploaded)
    assert (tmp_path / "remote" / "eval-link.txt").read_text() == "kept"


@pytest.mark.parametrize("link", ["file", "weights", "folder", "dangling"])
def test_push_refuses_links_out_of_the_directory(cluttered_checkpoint, tmp_path, link, monkeypatch, capsys):
    import diffusion_lm.push

    secret = tmp_path / "outside" / "token.txt"
    secret.parent.mkdir()
    secret.write_text("hf_secret")
    directory = cluttered_checkpoint
    if link == "file":
        os.symlink(secret, directory / "notes" / "token.txt")
    elif link == "weights":  # the weights themselves live elsewhere: skipping them would push a broken model
        weights = directory / "model.safetensors"
        shutil.move(weights, tmp_path / "outside" / "model.safetensors")
        os.symlink(tmp_path / "outside" / "model.safetensors", weights)
    elif link == "folder":
        os.symlink(secret.parent, directory / "outside-folder")
    else:
        os.symlink(tmp_path / "missing.txt", directory / "dangling.txt")
    api = FakeHubApi(str(tmp_path / "remote"))
    with pytest.raises(ValueError, match="symbolic links point outside"):
        push_checkpoint(directory, REPO_ID, api=api)
    assert api.calls == []  # refused before any request

    monkeypatch.setattr(diffusion_lm.push, "HfApi", lambda token=None: api)
    message = cli_failure(["push", str(directory), REPO_ID], capsys)
    assert "symbolic links point outside" in message and api.calls == []



def test_card_of_a_block_diffusion_checkpoint_describes_block_attention_and_its_decoding(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    from diffusion_lm.modeling.generation_diffusion import fast_decoding_defaults

    model.generation_config.update(**fast_decoding_defaults(model.config))  # as `diffusion-lm adapt` ships them
    directory = save_checkpoint(model, tokenizer, tmp_path / "tiny-block", ADAPT_RECORD)
    text = open(os.path.join(directory, "README.md")).read()
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+?) \|$", text, flags=re.MULTILINE))
    assert rows["Attention"] == "block diffusion: bidirectional inside blocks of 4 positions, causal across them"
    assert rows["Attention-mask annealing"] == "100 steps (causal OR random links, then block attention)"
    assert "prefix" in rows["Default decoding"] and "threshold 0.9" in rows["Default decoding"]
    assert "inside blocks of 4 positions and causal across them" in text and "BD3-LM" in text
    assert "attention is bidirectional." not in text
    assert "verify" not in rows["Default decoding"]  # block context: no self-verified default


def test_card_of_a_causal_context_checkpoint_names_its_self_verified_default(tmp_path):
    from diffusion_lm.modeling.generation_diffusion import fast_decoding_defaults

    model, tokenizer = tiny_diffusion_model("llama")
    model.config.attention_mode, model.config.diffusion_block_size = "block", 4
    model.config.context_attention = "causal"
    model.generation_config.update(**fast_decoding_defaults(model.config))
    directory = save_checkpoint(model, tokenizer, tmp_path / "tiny-causal-context", ADAPT_RECORD)
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+?) \|$", open(os.path.join(directory, "README.md")).read(),
                           flags=re.MULTILINE))
    assert rows["Default decoding"].startswith('`verify="causal"`')
    assert "`left_to_right` unmasking" in rows["Default decoding"] and "threshold 0.9" in rows["Default decoding"]
