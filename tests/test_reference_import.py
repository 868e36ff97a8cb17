"""Import of the released DiffuGPT / DiffuLLaMA layouts: tiny checkpoints written exactly in those layouts must give
the same logits after import as the reference computation (the GPT-2 / LLaMA stack with full attention)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModel, AutoTokenizer, GPT2Model, LlamaForCausalLM, PreTrainedTokenizerFast

import diffusion_lm.reference_import as reference_import
from diffusion_lm import DiffuGPTForMaskedDiffusion, DiffuLlamaForMaskedDiffusion
from diffusion_lm.cli import main
from diffusion_lm.push import push_readiness_problems
from diffusion_lm.reference_import import import_reference
from tiny import save_tiny_ar_checkpoint, tiny_ar_model

os.environ["HF_HUB_OFFLINE"] = "1"
IDS = torch.tensor([[1, 7, 8, 9, 10, 11, 12, 13], [1, 20, 21, 22, 23, 24, 25, 26]])


def numbered_tokenizer(size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with ``size`` ids (reference mask ids such as 811 and 10541 exist) and no mask token."""
    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(size - len(specials))])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")


def write_diffugpt_reference(directory, tokenizer, lm_head: str = "tied", config_vocab_size: int | None = None):
    """A DiffuGPT release: GPT-2 config + tokenizer + one model.safetensors from the wrapper module. Returns its
    tensors (wrapper names)."""
    ar = tiny_ar_model("gpt2", vocab_size=len(tokenizer), tie_word_embeddings=lm_head != "untied")
    tensors = {}
    for name, tensor in ar.state_dict().items():
        if name == "transformer.wte.weight":
            tensors["embed_tokens.weight"] = tensor.clone()
        elif name.startswith("transformer."):
            tensors["denoise_model." + name[len("transformer."):]] = tensor.clone()
    if lm_head == "tied":
        tensors["lm_head.weight"] = tensors["embed_tokens.weight"].clone()
    elif lm_head == "untied":
        tensors["lm_head.weight"] = torch.randn_like(tensors["embed_tokens.weight"]) * 0.02
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    config = ar.config
    config.architectures = ["GPT2LMHeadModel"]
    if config_vocab_size is not None:  # diffugpt-m: the added mask row is not in the GPT-2 config
        config.vocab_size = config_vocab_size
    config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return tensors


def diffugpt_reference_logits(directory, tensors, ids):
    """The wrapper's computation: GPT2Model on embed_tokens with full (non-causal) attention, then lm_head."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory, trust_remote_code=True)
    config.vocab_size = tensors["embed_tokens.weight"].shape[0]
    stack = GPT2Model(config).eval()
    weights = {"wte.weight": tensors["embed_tokens.weight"]}
    weights.update({k[len("denoise_model."):]: v for k, v in tensors.items() if k.startswith("denoise_model.")})
    stack.load_state_dict(weights, strict=True)
    head = tensors.get("lm_head.weight", tensors["embed_tokens.weight"])
    return full_attention(stack, ids) @ head.T


def full_attention(stack, ids):
    """Run a decoder stack with an all-zeros additive 4D mask: every position attends to every position."""
    full = torch.zeros(ids.shape[0], 1, ids.shape[1], ids.shape[1])
    with torch.no_grad():
        hidden = stack(input_ids=ids, attention_mask=full).last_hidden_state
        changed = ids.clone()
        changed[:, -1] = 3
        assert not torch.allclose(stack(input_ids=changed, attention_mask=full).last_hidden_state[:, 0], hidden[:, 0])
    return hidden


def imported_logits(directory, ids):
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture
def hub_ids(monkeypatch):
    """Serve Hub ids from local directories: {repo_id: directory}; records the snapshot_download calls."""
    served, calls = {}, []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return served[repo_id]

    monkeypatch.setattr(reference_import, "snapshot_download", fake_snapshot_download)
    return served, calls


def test_diffugpt_s_from_the_hub(tmp_path, hub_ids):
    served, calls = hub_ids
    tokenizer = numbered_tokenizer(10_600)  # no mask token in the files, like diffugpt-s
    tensors = write_diffugpt_reference(tmp_path / "release", tokenizer, lm_head="absent")
    (tmp_path / "release" / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\nDiffuGPT-S\n")
    served["diffusionfamily/diffugpt-s"] = str(tmp_path / "release")

    model, _ = import_reference("diffusionfamily/diffugpt-s", str(tmp_path / "out"))
    assert calls[0][0] == "diffusionfamily/diffugpt-s" and "*.safetensors" in calls[0][1]["allow_patterns"]
    assert isinstance(model, DiffuGPTForMaskedDiffusion) and model.config.mask_token_id == 10541
    assert model.config.mask_token_reused  # an ordinary GPT-2 token: text where it occurs in a prompt
    out = tmp_path / "out"
    assert push_readiness_problems(out) == []
    assert AutoTokenizer.from_pretrained(out, trust_remote_code=True).mask_token_id == 10541  # a reused id survives the round trip
    assert json.load(open(out / "generation_config.json"))["mask_token_id"] == 10541
    # rtol=atol=0: the imported model computes exactly what the reference stack computes
    torch.testing.assert_close(imported_logits(out, IDS), diffugpt_reference_logits(out, tensors, IDS),
                               rtol=0, atol=0)

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "diffusionfamily/diffugpt-s"
    assert card.data.license == "apache-2.0" and card.data.language == ["en"]  # taken from the release's card
    assert {r.dataset_type for r in card.data.eval_results} >= {"EleutherAI/lambada_openai", "Rowan/hellaswag",
                                                                "baber/piqa"}
    assert "openai-community/gpt2" in card.content and "not re-run here" in card.content

    # a measured result uses the same dataset vocabulary: it sits beside the paper's row, and a re-run replaces it
    from diffusion_lm.evaluation.model_card import update_model_card

    for accuracy in (0.25, 0.5):
        update_model_card(str(out), {"piqa": {"acc": accuracy, "num_examples": 4}}, {"seed": 0})
    piqa = [r for r in ModelCard.load(out / "README.md").data.eval_results if r.dataset_type == "baber/piqa"]
    assert sorted(r.metric_value for r in piqa) == [50.0, 57.7]  # the paper's 57.7 kept, the measured 25.0 replaced


@pytest.mark.parametrize("lm_head", ["absent", "tied", "untied"])
def test_diffugpt_m_layout_with_added_mask_token(tmp_path, lm_head):
    tokenizer = numbered_tokenizer(120)
    tokenizer.add_tokens(["[¨M¨]"])  # diffugpt-m: an added token after the GPT-2 vocabulary, not a mask token
    tensors = write_diffugpt_reference(tmp_path / "release", tokenizer, lm_head=lm_head, config_vocab_size=120)

    model, tokenizer = import_reference(str(tmp_path / "release"), str(tmp_path / "out"))
    assert model.config.mask_token_id == 120 == tokenizer.mask_token_id
    assert not model.config.mask_token_reused  # a dedicated token: in a prompt it marks a hole
    assert model.config.vocab_size == 121
    assert model.config.tie_word_embeddings == (lm_head != "untied")
    assert push_readiness_problems(tmp_path / "out") == []
    reference = diffugpt_reference_logits(tmp_path / "release", tensors, IDS)
    torch.testing.assert_close(imported_logits(tmp_path / "out", IDS), reference, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_diffullama_layout(tmp_path, dtype):
    release = tmp_path / "release"
    tokenizer = numbered_tokenizer(900)
    ar = tiny_ar_model("llama", vocab_size=len(tokenizer)).to(dtype)
    ar.save_pretrained(release)  # a plain LlamaForCausalLM checkpoint
    tokenizer.save_pretrained(release)

    model, _ = import_reference(str(release), str(tmp_path / "out"))
    assert isinstance(model, DiffuLlamaForMaskedDiffusion) and model.config.mask_token_id == 811
    assert model.config.mask_token_reused
    assert model.dtype == dtype  # stored dtype kept
    assert push_readiness_problems(tmp_path / "out") == []
    original = LlamaForCausalLM.from_pretrained(release).eval()
    with torch.no_grad():
        reference = original.lm_head(full_attention(original.model, IDS))
    torch.testing.assert_close(imported_logits(tmp_path / "out", IDS), reference, rtol=0, atol=0)


def test_cli_import_reference_with_mask_override(tmp_path):
    tokenizer = numbered_tokenizer(64)
    write_diffugpt_reference(tmp_path / "release", tokenizer)
    assert main(["import-reference", str(tmp_path / "release"), str(tmp_path / "out"), "--mask-token-id", "5"]) == 0
    config = json.load(open(tmp_path / "out" / "config.json"))
    assert config["model_type"] == "diffugpt" and config["mask_token_id"] == 5
    assert "imported from" in (tmp_path / "out" / "README.md").read_text()


def test_bad_sources_fail_early(tmp_path):
    with pytest.raises(ValueError, match="neither a local directory nor a Hub repo id"):
        import_reference("not a repo id!")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="got the file"):
        import_reference(str(tmp_path / "file.txt"))

    plain_gpt2 = save_tiny_ar_checkpoint(str(tmp_path / "gpt2"), family="gpt2")
    with pytest.raises(ValueError, match="without the DiffuGPT wrapper keys"):
        import_reference(plain_gpt2)
    qwen = save_tiny_ar_checkpoint(str(tmp_path / "qwen"), family="qwen2")
    with pytest.raises(ValueError, match="model_type 'qwen2'"):
        import_reference(qwen)
    os.makedirs(tmp_path / "lora")
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="LoRA adapter"):
        import_reference(str(tmp_path / "lora"))

    write_diffugpt_reference(tmp_path / "small", numbered_tokenizer(64))
    with pytest.raises(ValueError, match="10541"):  # the diffugpt-s default does not fit this vocabulary
        import_reference(str(tmp_path / "small"))
    os.remove(tmp_path / "small" / "tokenizer.json")
    os.remove(tmp_path / "small" / "tokenizer_config.json")
    with pytest.raises(ValueError, match="no tokenizer files"):
        import_reference(str(tmp_path / "small"))
