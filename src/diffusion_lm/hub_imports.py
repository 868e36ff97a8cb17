"""The diffusion LMs published on the Hub with their own remote code, as layouts ``import_reference`` maps onto ours.

Each release is a known architecture under another name: LLaDA is a LLaMA stack with OLMo-style parameter names and
config keys; Dream and Fast-dLLM v2 are Qwen2 stacks under ``Qwen2ForCausalLM``'s own parameter names; SDAR is a Qwen3
stack. What differs between them is the diffusion side (mask id, shift, attention pattern, block size) and their
published decoding settings, which this module records (``docs/imports.md`` has the table and the sources).

Only the release's files are read (``config.json``, tokenizer files, weights): its remote code is never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# config.json entries that describe the release's code or its diffusion settings, not the architecture
RELEASE_ONLY_CONFIG_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path",
                            "mask_token_id", "bd_size", "block_length", "block_size")


@dataclass(frozen=True)
class HubRelease:
    """A published diffusion LM layout: what it maps to here and how its authors decode it."""

    name: str  # as its authors write it
    repos: tuple[str, ...]  # the Hub repositories published in this layout
    family: str  # our AR family (``models.FAMILIES``) whose stack computes the same forward
    mask_token: str  # the mask token's text in the release's tokenizer
    mask_token_id: int  # the id the release was trained with (its config's ``mask_token_id`` wins when present)
    shift: bool  # True: the logit at i - 1 predicts token i (the AR alignment); False: the logit at i does
    block_size_key: str | None = None  # config.json key of a block-diffusion release's block size
    default_block_size: int | None = None  # the published block size when its config does not say
    decoding: dict = field(default_factory=dict)  # its published decoding, as ``DiffusionGenerationConfig`` fields

    @property
    def attention_mode(self) -> str:
        return "block" if self.default_block_size is not None else "bidirectional"

    def block_size(self, config: dict) -> int | None:
        if self.block_size_key is None:
            return None
        return int(config.get(self.block_size_key) or self.default_block_size)


# published model_type (lower case) -> release
HUB_RELEASES = {
    "llada": HubRelease(
        name="LLaDA", repos=("GSAI-ML/LLaDA-8B-Base", "GSAI-ML/LLaDA-8B-Instruct", "GSAI-ML/LLaDA-1.5"),
        family="llama", mask_token="<|mdm_mask|>", mask_token_id=126336, shift=False,
        # generate.py of ML-GSAI/LLaDA: 128 tokens in 128 steps, semi-autoregressive blocks of 32, greedy,
        # low-confidence remasking
        decoding={"max_new_tokens": 128, "steps": 128, "block_length": 32, "alg": "confidence", "temperature": 0.0},
    ),
    "dream": HubRelease(
        name="Dream", repos=("Dream-org/Dream-v0-Base-7B", "Dream-org/Dream-v0-Instruct-7B"),
        family="qwen2", mask_token="<|mask|>", mask_token_id=151666, shift=True,
        # the README's diffusion_generate call: 512 tokens in 512 steps, entropy order, temperature 0.2, top-p 0.95
        decoding={"max_new_tokens": 512, "steps": 512, "alg": "entropy", "temperature": 0.2, "top_p": 0.95},
    ),
    "fast_dllm_qwen": HubRelease(
        name="Fast-dLLM v2", repos=("Efficient-Large-Model/Fast_dLLM_v2_7B", "Efficient-Large-Model/Fast_dLLM_v2_1.5B"),
        family="qwen2", mask_token="|<MASK>|", mask_token_id=151665, shift=True,
        block_size_key="bd_size", default_block_size=32,
        # its generate(): blocks of 32 decoded in sub-blocks of 8, greedy, every proposal above the threshold (0.9
        # in the paper's runs) plus the most confident one per step, committed blocks in the KV cache
        decoding={"threshold": 0.9, "sub_block_length": 8, "kv_cache": "prefix", "steps": None,
                  "block_length": None, "alg": "confidence", "temperature": 0.0},
    ),
    "sdar": HubRelease(
        name="SDAR", repos=("JetLM/SDAR-1.7B-Chat", "JetLM/SDAR-4B-Chat", "JetLM/SDAR-8B-Chat"),
        family="qwen3", mask_token="<|MASK|>", mask_token_id=151669, shift=False,
        block_size_key="block_size", default_block_size=4,
        # JetAstra/SDAR's generate.py as its README runs it: blocks of 4 in 4 steps, low_confidence_dynamic
        # remasking (every proposal above 0.9, at least the schedule's count), sampling at temperature 1.0
        decoding={"threshold": 0.9, "kv_cache": "prefix", "steps": None, "block_length": None, "alg": "confidence",
                  "temperature": 1.0},
    ),
}
SUPPORTED_MODEL_TYPES = {"gpt2": "DiffuGPT wrapper", "llama": "DiffuLLaMA", "llada": "LLaDA", "Dream": "Dream",
                         "Fast_dLLM_Qwen": "Fast-dLLM v2", "sdar": "SDAR"}


def hub_release(model_type) -> HubRelease | None:
    return HUB_RELEASES.get(str(model_type).lower())


def architecture_fields(release: HubRelease, config: dict) -> dict:
    """Keyword arguments of the family's configuration (architecture only) from the release's ``config.json``."""
    if release.name == "LLaDA":
        return llada_fields(config)
    # rope_scaling null is the old spelling of default rotary embeddings (transformers 5 warns on it)
    return {key: value for key, value in config.items()
            if key not in RELEASE_ONLY_CONFIG_KEYS and not (key == "rope_scaling" and value is None)}


def diffusion_fields(release: HubRelease, config: dict) -> dict:
    """The diffusion fields of our configuration for the release (mask id aside)."""
    block_size = release.block_size(config)
    return {"shift": release.shift, "attention_mode": release.attention_mode, "diffusion_block_size": block_size,
            "context_attention": "block", "mask_token_reused": False}  # a dedicated mask token in every release


# ---- LLaDA: OLMo-style names for a LLaMA block ----

# LLaDA options whose other values compute something a LLaMA stack does not (their published values)
LLADA_REQUIRED_OPTIONS = {
    "block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "layer_norm_with_affine": True,
    "alibi": False, "rope": True, "attention_layer_norm": False, "input_emb_norm": False, "scale_logits": False,
    "block_group_size": 1, "include_bias": False, "include_qkv_bias": False,
}
LLADA_BLOCK_PARAMETERS = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj", "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj", "ff_out": "mlp.down_proj",
    "attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm",
}
LLADA_TOP_PARAMETERS = {
    "model.transformer.wte.weight": "model.embed_tokens.weight",
    "model.transformer.ln_f.weight": "model.norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",
}
_LLADA_BLOCK_NAME = re.compile(r"model\.transformer\.blocks\.(\d+)\.(\w+)\.weight")


def llada_fields(config: dict) -> dict:
    """LlamaConfig fields of a LLaDA ``config.json``; ValueError naming an option a LLaMA stack cannot compute."""
    unsupported = [f"{key}={config[key]!r}" for key, expected in LLADA_REQUIRED_OPTIONS.items()
                   if config.get(key) not in (None, expected)]
    if config.get("clip_qkv") is not None:
        unsupported.append(f"clip_qkv={config['clip_qkv']!r}")
    if unsupported:
        raise ValueError(f"LLaDA config options without a LLaMA equivalent: {', '.join(unsupported)}")
    heads = config["n_heads"]
    kv_heads = 1 if config.get("multi_query_attention") else config.get("n_kv_heads") or heads
    return dict(
        vocab_size=config.get("embedding_size") or config["vocab_size"],
        hidden_size=config["d_model"],
        intermediate_size=config.get("mlp_hidden_size") or config.get("mlp_ratio", 4) * config["d_model"],
        num_hidden_layers=config["n_layers"],
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=config["d_model"] // heads,
        hidden_act="silu",
        max_position_embeddings=config.get("max_sequence_length", 4096),
        rms_norm_eps=config.get("rms_norm_eps", 1e-5),
        rope_theta=config.get("rope_theta", 10000.0),
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=bool(config.get("weight_tying", False)),
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
        pad_token_id=config.get("pad_token_id"),
    )


def llada_expected_weights(config: dict) -> list[str]:
    """The tensor names a LLaDA checkpoint of ``config`` holds (the LM head only when not tied)."""
    names = ["model.transformer.wte.weight"]
    names += [f"model.transformer.blocks.{layer}.{name}.weight"
              for layer in range(config["n_layers"]) for name in LLADA_BLOCK_PARAMETERS]
    names.append("model.transformer.ln_f.weight")
    if not config.get("weight_tying", False):
        names.append("model.transformer.ff_out.weight")
    return names


def llada_weight_name(name: str) -> str:
    """LLaDA parameter name -> LlamaForCausalLM name (an unknown name is returned as it is, to be reported)."""
    if name in LLADA_TOP_PARAMETERS:
        return LLADA_TOP_PARAMETERS[name]
    match = _LLADA_BLOCK_NAME.fullmatch(name)
    if match and match[2] in LLADA_BLOCK_PARAMETERS:
        return f"model.layers.{match[1]}.{LLADA_BLOCK_PARAMETERS[match[2]]}.weight"
    return name


def release_weights(release: HubRelease, config: dict, weights: dict, directory: str) -> dict:
    """The release's tensors under our parameter names; ValueError naming the first missing ones."""
    if release.name != "LLaDA":
        return weights
    missing = [name for name in llada_expected_weights(config) if name not in weights]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ValueError(f"{directory} is a LLaDA checkpoint with missing tensors: {shown}")
    return {llada_weight_name(name): tensor for name, tensor in weights.items()}


def release_notes(release: HubRelease, src: str) -> str:
    """The card's note: where the weights came from and the release's published decoding."""
    decoding = ", ".join(f"{key}={value!r}" for key, value in release.decoding.items())
    return (f"Imported from the {release.name} release {src}: weights unchanged, mapped onto diffusion-lm's "
            f"{release.family} classes (shift={release.shift}, attention_mode={release.attention_mode!r}). "
            f"Generation defaults are the release's published decoding settings: {decoding}.")
