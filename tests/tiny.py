"""Tiny tokenizers and models built in-process for tests (offline, CPU, milliseconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

WORDS = (
    "the a an cat dog bird fish sat ran flew swam on in under over mat tree river sky and then it was happy sad "
    "big small red blue one two three four five six seven eight nine ten plus minus equals is what answer question "
    "hello world good morning night day sun moon star story end begin once upon time there lived king queen "
    "user assistant system : . , ? ! 0 1 2 3 4 5 6 7 8 9 #"
).split()
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} : {{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant : {% endif %}"
)


def tiny_tokenizer(with_mask: bool = False) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over ``WORDS`` (+ specials). With ``with_mask`` it already has ``<mask>``."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    if with_mask:
        tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return tokenizer


def tiny_ar_model(family: str = "llama", vocab_size: int | None = None, seed: int = 0, **overrides):
    """A randomly initialised tiny AR model of ``family`` (gpt2, llama, qwen2) matching ``tiny_tokenizer``."""
    torch.manual_seed(seed)
    vocab_size = vocab_size or len(SPECIAL) + len(WORDS)
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        config.update({"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
        config.update(overrides)
        return GPT2LMHeadModel(config).eval()
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    llama_like.update(overrides)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, **llama_like)).eval()
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common, **llama_like)).eval()
    raise ValueError(family)


def tiny_diffusion_model(family: str = "llama", seed: int = 0, **convert_kwargs):
    """(diffusion model, tokenizer): a tiny AR model converted with ``convert_ar_model`` (adds ``<|mdm_mask|>``)."""
    from diffusion_lm.conversion import convert_ar_model

    tokenizer = tiny_tokenizer()
    model, tokenizer = convert_ar_model(tiny_ar_model(family, seed=seed), tokenizer, **convert_kwargs)
    return model.eval(), tokenizer


def save_tiny_ar_checkpoint(directory: str, family: str = "llama", seed: int = 0) -> str:
    """Write a tiny AR checkpoint (model + tokenizer) like a Hub repo would hold; returns the directory."""
    os.makedirs(directory, exist_ok=True)
    tiny_ar_model(family, seed=seed).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def run_clean_process(script: str, args: list[str], cwd, python: str = sys.executable) -> tuple[dict, str]:
    """Run ``script`` in a fresh, isolated, offline, non-interactive interpreter in ``cwd`` (outside the repository)
    and return (the JSON object it printed after ``REPORT``, everything it printed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME", "TRANSFORMERS_VERBOSITY")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=os.path.join(cwd, "hf"), HF_MODULES_CACHE=os.path.join(cwd, "modules"))
    # -I: no PYTHONPATH, no user site, no current directory on sys.path; stdin closed, so a prompt could not block
    result = subprocess.run([python, "-I", "-c", script, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    printed = result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT")]
    assert result.returncode == 0 and lines, f"the clean process failed:\n{printed}"
    return json.loads(lines[-1][len("REPORT"):]), printed
