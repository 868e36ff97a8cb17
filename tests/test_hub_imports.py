"""Import of the Hub's diffusion LMs (LLaDA, Dream, Fast-dLLM v2, SDAR): tiny replicas written in each release's
published layout (original parameter names, original-style config.json with its model_type and auto_map, tokenizer
files) must import through ``import_reference`` and compute what the original computes.

The original forward is reimplemented here in plain torch from the releases' published math (RMSNorm in float32,
rotary embeddings over half-split dimensions, SwiGLU MLP, grouped-query attention with the release's attention
pattern), on the original tensor names: no diffusion-lm or transformers model code is involved on that side."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers

from diffusion_lm import DiffuLlamaForMaskedDiffusion, DiffuQwen2ForMaskedDiffusion
from diffusion_lm.modeling.modeling_diffuqwen3 import DiffuQwen3ForMaskedDiffusion
from diffusion_lm.cli import main
from diffusion_lm.modeling.shift import logits_per_position
from diffusion_lm.push import push_readiness_problems
from diffusion_lm.reference_import import import_reference

os.environ["HF_HUB_OFFLINE"] = "1"
VOCAB_SIZE = 64  # embedding rows of every replica
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 32, 2, 4, 2, 48
IDS = torch.tensor([[1, 7, 8, 9, 10, 11, 12, 13], [1, 20, 21, 22, 23, 24, 25, 26]])


# ---- tokenizer files ----

def word_tokenizer_files(directory, specials: dict[int, str], tokenizer_config: dict, size: int = VOCAB_SIZE) -> None:
    """tokenizer.json (word level, ``size`` ids: words w<i> and ``specials`` at their ids) and ``tokenizer_config``."""
    vocab = {f"w{i}": i for i in range(size) if i not in specials}
    vocab.update({token: i for i, token in specials.items()})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[3]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(list(specials.values()))
    backend.save(os.path.join(directory, "tokenizer.json"))
    added = {str(i): {"content": token, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False} for i, token in specials.items()}
    write_json(directory, "tokenizer_config.json", {"added_tokens_decoder": added, **tokenizer_config})


def qwen_bpe_tokenizer_files(directory, specials: dict[int, str], tokenizer_config: dict) -> None:
    """Qwen2's byte-level BPE files (vocab.json + merges.txt, no tokenizer.json), as Dream publishes them."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"]
    vocab = {token: i for i, token in enumerate(letters + ["ab", "cd", "Ġa"])}
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\na b\nc d\nĠ a\n")
    added = {str(i): {"content": token, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False} for i, token in specials.items()}
    write_json(directory, "tokenizer_config.json", {"added_tokens_decoder": added, **tokenizer_config})


def write_json(directory, name: str, value: dict) -> None:
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (norm weights near 1, everything else small), one tensor per published name."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        values = torch.randn(shape, generator=generator)
        tensors[name] = 1 + 0.1 * values if "norm" in name or "ln_f" in name else 0.2 * values
    return tensors


def save_weights(directory, tensors: dict[str, torch.Tensor], dtype=torch.float32) -> None:
    save_file({name: t.to(dtype).contiguous() for name, t in tensors.items()},
              os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})


# ---- the releases' layouts ----

LLADA_SPECIALS = {0: "<|startoftext|>", 2: "<|endoftext|>", 3: "<unk>", 60: "<|mdm_mask|>", 61: "<|eot_id|>"}


def write_llada(directory, drop: tuple[str, ...] = (), dtype=torch.float32) -> dict[str, torch.Tensor]:
    """GSAI-ML/LLaDA-8B-*'s layout: OLMo-style config keys, model.transformer.* tensors, PreTrainedTokenizerFast."""
    os.makedirs(directory, exist_ok=True)
    head_dim = HIDDEN // HEADS
    shapes = {"model.transformer.wte.weight": (VOCAB_SIZE, HIDDEN)}
    for layer in range(LAYERS):
        block = f"model.transformer.blocks.{layer}"
        shapes.update({
            f"{block}.q_proj.weight": (HIDDEN, HIDDEN), f"{block}.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            f"{block}.v_proj.weight": (KV_HEADS * head_dim, HIDDEN), f"{block}.attn_out.weight": (HIDDEN, HIDDEN),
            f"{block}.ff_proj.weight": (INTERMEDIATE, HIDDEN), f"{block}.up_proj.weight": (INTERMEDIATE, HIDDEN),
            f"{block}.ff_out.weight": (HIDDEN, INTERMEDIATE), f"{block}.attn_norm.weight": (HIDDEN,),
            f"{block}.ff_norm.weight": (HIDDEN,),
        })
    shapes.update({"model.transformer.ln_f.weight": (HIDDEN,), "model.transformer.ff_out.weight": (VOCAB_SIZE, HIDDEN)})
    tensors = {name: t for name, t in random_tensors(shapes).items() if name not in drop}
    save_weights(directory, tensors, dtype)
    write_json(directory, "config.json", {
        "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM", "AutoModel": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": HIDDEN,
        "embedding_dropout": 0.0, "embedding_size": VOCAB_SIZE, "eos_token_id": 2, "flash_attention": False,
        "include_bias": False, "include_qkv_bias": False, "init_device": "meta", "init_fn": "mitchell",
        "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
        "mask_token_id": 60, "max_sequence_length": 64, "mlp_hidden_size": INTERMEDIATE, "mlp_ratio": 4,
        "model_type": "llada", "multi_query_attention": None, "n_heads": HEADS, "n_kv_heads": KV_HEADS,
        "n_layers": LAYERS, "pad_token_id": 2, "precision": "amp_bf16", "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05, "rope": True, "rope_full_precision": True, "rope_theta": 500000.0,
        "scale_logits": False, "transformers_version": "4.46.3", "use_cache": False, "vocab_size": VOCAB_SIZE,
        "weight_tying": False,
    })
    word_tokenizer_files(directory, LLADA_SPECIALS, {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "add_bos_token": False, "add_eos_token": False})
    return tensors


def qwen_shapes(qwen3: bool = False, tied: bool = False) -> dict[str, tuple[int, ...]]:
    """Qwen2ForCausalLM's tensor names and shapes (q/k/v biases, no o_proj bias), as Dream and Fast-dLLM v2 keep; with
    ``qwen3`` Qwen3ForCausalLM's, as SDAR keeps (no biases, a per-head RMSNorm of queries and keys)."""
    head_dim = HIDDEN // HEADS
    shapes = {"model.embed_tokens.weight": (VOCAB_SIZE, HIDDEN)}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        for name, rows in (("q_proj", HEADS * head_dim), ("k_proj", KV_HEADS * head_dim),
                           ("v_proj", KV_HEADS * head_dim)):
            shapes[f"{prefix}.self_attn.{name}.weight"] = (rows, HIDDEN)
            if not qwen3:
                shapes[f"{prefix}.self_attn.{name}.bias"] = (rows,)
        if qwen3:
            shapes[f"{prefix}.self_attn.q_norm.weight"] = shapes[f"{prefix}.self_attn.k_norm.weight"] = (head_dim,)
        shapes.update({
            f"{prefix}.self_attn.o_proj.weight": (HIDDEN, HEADS * head_dim),
            f"{prefix}.mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
            f"{prefix}.mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
            f"{prefix}.mlp.down_proj.weight": (HIDDEN, INTERMEDIATE), f"{prefix}.input_layernorm.weight": (HIDDEN,),
            f"{prefix}.post_attention_layernorm.weight": (HIDDEN,),
        })
    shapes["model.norm.weight"] = (HIDDEN,)
    if not tied:
        shapes["lm_head.weight"] = (VOCAB_SIZE, HIDDEN)
    return shapes


def qwen_config(**release_keys) -> dict:
    return {
        "attention_dropout": 0.0, "bos_token_id": 2, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": INTERMEDIATE, "max_position_embeddings": 128,
        "max_window_layers": LAYERS, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": None, "torch_dtype": "bfloat16", "transformers_version": "4.46.2", "use_cache": True,
        "use_sliding_window": False, "vocab_size": VOCAB_SIZE, **release_keys,
    }


# added after the 30 BPE entries, as Dream adds them after Qwen2's 151,643
DREAM_SPECIALS = {30: "<|endoftext|>", 31: "<|beginoftext|>", 32: "<|mask|>"}


def write_dream(directory) -> dict[str, torch.Tensor]:
    """Dream-org/Dream-v0-*-7B's layout: Qwen2 tensors, model_type "Dream" with its own code, DreamTokenizer files."""
    os.makedirs(directory, exist_ok=True)
    tensors = random_tensors(qwen_shapes(), seed=1)
    save_weights(directory, tensors)
    write_json(directory, "config.json", qwen_config(
        architectures=["DreamModel"], model_type="Dream", mask_token_id=32, bos_token_id=30, eos_token_id=30,
        pad_token_id=30, tie_word_embeddings=False,
        auto_map={"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}))
    qwen_bpe_tokenizer_files(directory, DREAM_SPECIALS, {
        "tokenizer_class": "DreamTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "mask_token": "<|mask|>"})
    return tensors


FAST_DLLM_SPECIALS = {2: "<|endoftext|>", 3: "<unk>", 50: "<|im_start|>", 51: "<|im_end|>", 52: "|<MASK>|"}
FAST_DLLM_BLOCK = 4  # the replica's bd_size (the release's is 32): two blocks in IDS


def write_fast_dllm_v2(directory) -> dict[str, torch.Tensor]:
    """Efficient-Large-Model/Fast_dLLM_v2_7B's layout: Qwen2 tensors, model_type "Fast_dLLM_Qwen" with bd_size and
    no mask id in its config (its code defaults to the token |<MASK>|)."""
    os.makedirs(directory, exist_ok=True)
    tensors = random_tensors(qwen_shapes(), seed=2)
    save_weights(directory, tensors)
    write_json(directory, "config.json", qwen_config(
        architectures=["Fast_dLLM_QwenForCausalLM"], model_type="Fast_dLLM_Qwen", bd_size=FAST_DLLM_BLOCK,
        eos_token_id=51, tie_word_embeddings=False,
        auto_map={"AutoConfig": "configuration.Fast_dLLM_QwenConfig",
                  "AutoModelForCausalLM": "modeling.Fast_dLLM_QwenForCausalLM"}))
    word_tokenizer_files(directory, FAST_DLLM_SPECIALS, {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    return tensors


SDAR_SPECIALS = {2: "<|endoftext|>", 3: "<unk>", 50: "<|im_start|>", 51: "<|im_end|>", 53: "<|MASK|>"}
SDAR_BLOCK = 4  # SDAR-*-Chat's block size


def write_sdar(directory) -> dict[str, torch.Tensor]:
    """JetLM/SDAR-1.7B-Chat's layout: Qwen3 tensors with tied embeddings, model_type "sdar" with its own code, the
    mask token <|MASK|> added to the tokenizer (no mask id in the config)."""
    os.makedirs(directory, exist_ok=True)
    tensors = random_tensors(qwen_shapes(qwen3=True, tied=True), seed=3)
    save_weights(directory, tensors)
    config = qwen_config(
        architectures=["SDARForCausalLM"], model_type="sdar", attention_bias=False, head_dim=HIDDEN // HEADS,
        eos_token_id=51, tie_word_embeddings=True,
        auto_map={"AutoConfig": "configuration_sdar.SDARConfig", "AutoModel": "modeling_sdar.SDARModel",
                  "AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM"})
    write_json(directory, "config.json", config)
    word_tokenizer_files(directory, SDAR_SPECIALS, {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    return tensors


# ---- the original forward, from the published math ----

def rms_norm(x, weight, eps):
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotate(x, theta):
    """Rotary embedding of (B, H, L, D) at positions 0..L-1: frequencies theta^(-2i/D), halves rotated."""
    dim, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    angles = torch.arange(length, dtype=torch.float)[:, None] * inv_freq[None]
    angles = torch.cat([angles, angles], dim=-1)
    first, second = x[..., : dim // 2], x[..., dim // 2 :]
    return x * angles.cos() + torch.cat([-second, first], dim=-1) * angles.sin()


def original_forward(ids, weights: dict, names: dict, allowed: torch.Tensor, eps: float, theta: float):
    """Pre-norm decoder: x + attn(norm(x)), then x + down(silu(gate(n)) * up(n)), final norm, LM head.

    ``names``: the release's tensor name of each part (``{layer}`` filled in); ``allowed[q, k]``: may query q see
    key k (the release's attention pattern)."""
    head_dim = HIDDEN // HEADS

    def tensor(part, layer=None):
        return weights.get(names[part].format(layer=layer)) if part in names else None

    def linear(x, part, layer):
        bias = weights.get(names[part].format(layer=layer).replace(".weight", ".bias"))
        return torch.nn.functional.linear(x, tensor(part, layer), bias)

    x = tensor("embed")[ids]
    batch, length = ids.shape
    for layer in range(LAYERS):
        normed = rms_norm(x, tensor("attn_norm", layer), eps)
        q = linear(normed, "q", layer).view(batch, length, HEADS, head_dim)
        k = linear(normed, "k", layer).view(batch, length, KV_HEADS, head_dim)
        if "q_norm" in names:  # Qwen3: each head's query and key RMS-normalised before the rotary embedding
            q, k = rms_norm(q, tensor("q_norm", layer), eps), rms_norm(k, tensor("k_norm", layer), eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = linear(normed, "v", layer).view(batch, length, KV_HEADS, head_dim).transpose(1, 2)
        q, k = rotate(q, theta), rotate(k, theta)
        k, v = (t.repeat_interleave(HEADS // KV_HEADS, dim=1) for t in (k, v))
        scores = (q @ k.transpose(-1, -2)) / head_dim**0.5
        attended = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
        x = x + linear(attended.transpose(1, 2).reshape(batch, length, HIDDEN), "o", layer)
        normed = rms_norm(x, tensor("mlp_norm", layer), eps)
        hidden = torch.nn.functional.silu(linear(normed, "gate", layer)) * linear(normed, "up", layer)
        x = x + linear(hidden, "down", layer)
    return rms_norm(x, tensor("final_norm"), eps) @ tensor("head").T


LLADA_NAMES = {
    "embed": "model.transformer.wte.weight", "final_norm": "model.transformer.ln_f.weight",
    "head": "model.transformer.ff_out.weight",
    **{part: f"model.transformer.blocks.{{layer}}.{name}.weight" for part, name in (
        ("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "attn_out"), ("gate", "ff_proj"), ("up", "up_proj"),
        ("down", "ff_out"), ("attn_norm", "attn_norm"), ("mlp_norm", "ff_norm"))},
}
QWEN2_NAMES = {
    "embed": "model.embed_tokens.weight", "final_norm": "model.norm.weight", "head": "lm_head.weight",
    **{part: f"model.layers.{{layer}}.{name}.weight" for part, name in (
        ("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"), ("o", "self_attn.o_proj"),
        ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"), ("down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"), ("mlp_norm", "post_attention_layernorm"))},
}
SDAR_NAMES = {**QWEN2_NAMES, "head": "model.embed_tokens.weight",  # tied
              "q_norm": "model.layers.{layer}.self_attn.q_norm.weight",
              "k_norm": "model.layers.{layer}.self_attn.k_norm.weight"}
FULL = torch.ones(IDS.shape[1], IDS.shape[1], dtype=torch.bool)
# Fast-dLLM v2's and SDAR's inference mask: query block >= key block (blocks counted from position 0); both replicas
# use blocks of 4
BLOCK_CAUSAL = (torch.arange(IDS.shape[1])[:, None] // FAST_DLLM_BLOCK) >= (torch.arange(IDS.shape[1])[None] //
                                                                            FAST_DLLM_BLOCK)


def imported_logits(directory, ids):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    with torch.no_grad():
        return model(ids).logits


def original_predictions(logits, shift: bool):
    """Row j predicts token j, by the release's own decoding code: LLaDA and SDAR read logits[:, j]; Dream and
    Fast-dLLM v2 read logits[:, j - 1] (``torch.cat([logits[:, :1], logits[:, :-1]], dim=1)`` in their generate)."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1) if shift else logits


RELEASES = {
    # name: (writer, model class, published names, attention pattern, rms eps, rope theta, shift, mask id)
    "llada": (write_llada, DiffuLlamaForMaskedDiffusion, LLADA_NAMES, FULL, 1e-5, 500000.0, False, 60),
    "dream": (write_dream, DiffuQwen2ForMaskedDiffusion, QWEN2_NAMES, FULL, 1e-6, 1000000.0, True, 32),
    "fast_dllm_v2": (write_fast_dllm_v2, DiffuQwen2ForMaskedDiffusion, QWEN2_NAMES, BLOCK_CAUSAL, 1e-6, 1000000.0,
                     True, 52),
    "sdar": (write_sdar, DiffuQwen3ForMaskedDiffusion, SDAR_NAMES, BLOCK_CAUSAL, 1e-6, 1000000.0, False, 53),
}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_release_imports_and_computes_the_original_forward(tmp_path, release):
    writer, model_class, names, allowed, eps, theta, shift, mask_id = RELEASES[release]
    tensors = writer(tmp_path / "release")

    model, tokenizer = import_reference(str(tmp_path / "release"), str(tmp_path / "out"))
    assert isinstance(model, model_class)
    assert model.config.mask_token_id == mask_id == tokenizer.mask_token_id
    assert model.config.shift == shift and not model.config.mask_token_reused
    assert push_readiness_problems(tmp_path / "out") == []
    saved_tokenizer = json.load(open(tmp_path / "out" / "tokenizer_config.json"))
    assert "auto_map" not in saved_tokenizer  # the release's tokenizer code is neither needed nor named

    with torch.no_grad():
        reference = original_forward(IDS, tensors, names, allowed, eps, theta)
    ours = imported_logits(tmp_path / "out", IDS)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    # the shift: our per-position predictions are the ones the release's decoding reads
    torch.testing.assert_close(logits_per_position(ours, model.config.shift), original_predictions(reference, shift),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_imported_release_trains(tmp_path, release):
    """The training objective of our trainers runs on the imported model with its own mask id, shift and blocks."""
    from diffusion_lm.objective import ObjectiveSettings, diffusion_objective

    RELEASES[release][0](tmp_path / "release")
    model, _ = import_reference(str(tmp_path / "release"))
    model.train()
    settings = ObjectiveSettings(mask_token_id=model.config.mask_token_id, shift=model.config.shift)
    maskable = torch.ones_like(IDS, dtype=torch.bool)
    maskable[:, 0] = False
    output = diffusion_objective(model, IDS, maskable, settings, generator=torch.Generator().manual_seed(0))
    output.loss.backward()
    assert torch.isfinite(output.loss) and model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_llada_mapping_and_decoding(tmp_path):
    write_llada(tmp_path / "release", dtype=torch.bfloat16)
    model, tokenizer = import_reference(str(tmp_path / "release"), str(tmp_path / "out"))
    assert model.dtype == torch.bfloat16  # the stored dtype is kept
    assert model.config.attention_mode == "bidirectional" and not model.config.tie_word_embeddings
    assert (model.config.num_key_value_heads, model.config.intermediate_size) == (KV_HEADS, INTERMEDIATE)
    settings = json.load(open(tmp_path / "out" / "generation_config.json"))
    assert (settings["steps"], settings["block_length"], settings["alg"]) == (128, 32, "confidence")
    assert "LLaDA" in (tmp_path / "out" / "README.md").read_text()

    model = model.float()
    prompt = IDS[:1, :4]
    output = model.generate(prompt, max_new_tokens=8, steps=8, block_length=4, kv_cache="prefix", threshold=0.9)
    assert output.shape == (1, 12) and torch.equal(output[:, :4], prompt)
    assert not (output == tokenizer.mask_token_id).any()


def test_dream_decodes_with_its_published_settings(tmp_path):
    write_dream(tmp_path / "release")
    model, tokenizer = import_reference(str(tmp_path / "release"))
    assert tokenizer.eos_token == "<|endoftext|>" and type(tokenizer).__name__ == "Qwen2Tokenizer"
    settings = model.generation_config
    assert (settings.alg, settings.temperature, settings.top_p, settings.steps) == ("entropy", 0.2, 0.95, 512)
    output = model.generate(IDS[:, :4], max_new_tokens=8, steps=8, kv_cache="dual", threshold=0.9, temperature=0.0)
    assert output.shape == (2, 12) and not (output == tokenizer.mask_token_id).any()


def test_fast_dllm_v2_is_a_block_model_with_sub_blocks(tmp_path):
    write_fast_dllm_v2(tmp_path / "release")
    assert main(["import-reference", str(tmp_path / "release"), str(tmp_path / "out")]) == 0
    config = json.load(open(tmp_path / "out" / "config.json"))
    assert config["model_type"] == "diffuqwen2" and "bd_size" not in config
    assert (config["attention_mode"], config["diffusion_block_size"], config["context_attention"]) == (
        "block", FAST_DLLM_BLOCK, "block")
    assert config["shift"] and config["mask_token_id"] == 52
    settings = json.load(open(tmp_path / "out" / "generation_config.json"))
    assert (settings["threshold"], settings["sub_block_length"], settings["kv_cache"]) == (0.9, 8, "prefix")

    from diffusion_lm.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(str(tmp_path / "out"))
    prompt = IDS[:1, :5]  # ends inside a block: the first generated block is the prompt's own
    decoded = {cache: model.generate(prompt, max_new_tokens=7, sub_block_length=2, kv_cache=cache, threshold=0.9)
               for cache in (None, "prefix")}
    assert decoded[None].shape == (1, 12) and not (decoded[None] == 52).any()
    # block-causal attention: committed blocks never see later ones, so the prefix cache is exact
    assert torch.equal(decoded[None], decoded["prefix"])


def test_sdar_is_a_block_model_without_shift(tmp_path):
    write_sdar(tmp_path / "release")
    model, tokenizer = import_reference(str(tmp_path / "release"))
    config = model.config
    assert (config.attention_mode, config.diffusion_block_size, config.shift) == ("block", SDAR_BLOCK, False)
    assert config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert (model.generation_config.threshold, model.generation_config.temperature) == (0.9, 1.0)
    prompt = IDS[:1, :5]
    decoded = {cache: model.generate(prompt, max_new_tokens=7, kv_cache=cache, threshold=0.9, temperature=0.0)
               for cache in (None, "prefix")}
    assert decoded[None].shape == (1, 12) and not (decoded[None] == 53).any()
    assert torch.equal(decoded[None], decoded["prefix"])


def test_mask_token_missing_from_the_tokenizer_files_is_added_at_its_id(tmp_path):
    """A release whose config names the mask id right after its tokenizer's last id, while its tokenizer files do not
    hold the mask token (the base model's tokenizer shipped unchanged)."""
    directory = tmp_path / "release"
    write_fast_dllm_v2(directory)
    config = json.load(open(directory / "config.json"))
    write_json(directory, "config.json", {**config, "mask_token_id": 60})  # embedding rows: 64
    without_mask = {i: token for i, token in FAST_DLLM_SPECIALS.items() if token != "|<MASK>|"}
    word_tokenizer_files(directory, without_mask, {"tokenizer_class": "PreTrainedTokenizerFast",
                                                   "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, size=60)
    model, tokenizer = import_reference(str(directory))
    assert model.config.mask_token_id == 60 == tokenizer.mask_token_id == len(tokenizer) - 1
    assert tokenizer.mask_token == "|<MASK>|"


def test_bad_hub_sources_name_what_is_missing(tmp_path):
    write_llada(tmp_path / "llada", drop=("model.transformer.blocks.1.up_proj.weight",
                                          "model.transformer.ln_f.weight"))
    with pytest.raises(ValueError, match=r"missing tensors: model\.transformer\.blocks\.1\.up_proj\.weight, "
                                         r"model\.transformer\.ln_f\.weight$"):
        import_reference(str(tmp_path / "llada"))

    write_llada(tmp_path / "alibi")
    config = json.load(open(tmp_path / "alibi" / "config.json"))
    write_json(tmp_path / "alibi", "config.json", {**config, "alibi": True, "rope": False})
    with pytest.raises(ValueError, match="without a LLaMA equivalent: alibi=True, rope=False"):
        import_reference(str(tmp_path / "alibi"))

    write_dream(tmp_path / "unknown")
    config = json.load(open(tmp_path / "unknown" / "config.json"))
    write_json(tmp_path / "unknown", "config.json", {**config, "model_type": "mdm_unknown"})
    with pytest.raises(ValueError, match="model_type 'mdm_unknown'; the importable model types are .*llada.*Dream.*"
                                         "Fast_dLLM_Qwen.*sdar") as error:
        import_reference(str(tmp_path / "unknown"))
    assert "\n" not in str(error.value)
