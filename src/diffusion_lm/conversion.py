"""Turn an AR checkpoint (Hub id, local directory or GGUF file) into a diffusion LM of the same family.

Same weights, same architecture; one extra token, [MASK], either added (new embedding row = mean of the existing
rows plus small noise) or reused from the vocabulary (DiffuGPT-S used 10541, DiffuLLaMA 811).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .models import diffusion_classes_for

DEFAULT_MASK_TOKEN = "<|mdm_mask|>"
# config entries that describe the AR checkpoint's code rather than the architecture
# (a GGUF source also leaves quantization_config: the converted weights are dequantised, so it must not follow)
_AR_ONLY_CONFIG_KEYS = (
    "model_type", "architectures", "auto_map", "transformers_version", "_name_or_path", "quantization_config"
)


@dataclass
class ARSource:
    """Where an AR checkpoint lives: ``path`` is a Hub id or directory; ``gguf_file`` a file inside it, if GGUF."""

    path: str
    gguf_file: str | None = None

    @classmethod
    def parse(cls, base: str, gguf_file: str | None = None) -> "ARSource":
        """Accept ``repo_or_dir``, ``repo_or_dir`` + ``gguf_file``, or a path ending in ``.gguf``.

        A local path that does not exist raises FileNotFoundError naming it (no Hub lookup); so does a local
        directory without ``config.json`` (or without ``gguf_file``).
        """
        from .embedded import is_embedded_name, require_embedded_gguf
        from .paths import looks_local, require_local_path

        if gguf_file is None and is_embedded_name(base):  # the embedded SmolLM2-135M-Instruct GGUF
            base = require_embedded_gguf()
        if gguf_file is None and base.endswith(".gguf"):
            path = require_local_path(base, "GGUF file", kind="file")
            return cls(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
        if looks_local(base):
            base = require_local_path(base, "base model", kind="dir")
            needed = gguf_file or "config.json"
            if not os.path.isfile(os.path.join(base, needed)):
                raise FileNotFoundError(f"base model: {base} has no {needed}; is it a checkpoint directory?")
        return cls(base, gguf_file)

    def load_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def load_ar_model(
    source: ARSource, dtype: torch.dtype | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The AR model and its tokenizer, exactly as transformers loads them (GGUF is dequantised to float32)."""
    from .checkpoint import explain_checkpoint_errors

    with explain_checkpoint_errors(source.path, "base model"):  # a damaged file is named, not a library error
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=True, **source.load_kwargs())
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype or "auto", trust_remote_code=True,
                                                     **source.load_kwargs())
    return model, tokenizer


def max_positions(config) -> int | None:
    """Longest sequence the AR config supports (GPT-2's n_positions, LLaMA / Qwen2's max_position_embeddings)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_block_size(config, block_size: int) -> None:
    """ValueError when ``block_size`` exceeds what the AR model's positions cover."""
    limit = max_positions(config)
    if limit is not None and block_size > limit:
        raise ValueError(f"block_size {block_size} exceeds the model's {limit} positions "
                         f"({config.model_type} max_position_embeddings); use --block-size {limit} or less")


def load_ar_config(source: ARSource):
    """The AR config, with the family checked (ValueError listing the supported families) before any weights load."""
    from .checkpoint import explain_checkpoint_errors

    with explain_checkpoint_errors(source.path, "base model"):
        config = AutoConfig.from_pretrained(source.path, trust_remote_code=True, **source.load_kwargs())
    diffusion_classes_for(config.model_type)
    return config


def diffusion_config_from_ar(ar_config, mask_token_id: int | None, **diffusion_fields):
    """The diffusion config of the AR config's family, carrying every architecture field of the AR config."""
    config_class, _ = diffusion_classes_for(ar_config.model_type)
    fields = {k: v for k, v in ar_config.to_dict().items() if k not in _AR_ONLY_CONFIG_KEYS}
    fields.update(diffusion_fields)
    return config_class(**fields, mask_token_id=mask_token_id)


def check_reusable_token_id(tokenizer: PreTrainedTokenizerBase, token_id: int) -> None:
    """ValueError unless ``token_id`` is a vocabulary id without another role (EOS, PAD, BOS, UNK)."""
    if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < len(tokenizer):
        raise ValueError(f"reuse_mask_token_id {token_id!r} is outside the tokenizer's {len(tokenizer)} ids")
    # a token with a role would be masked away during training and could never be generated as itself
    roles = {"EOS": tokenizer.eos_token_id, "PAD": tokenizer.pad_token_id, "BOS": tokenizer.bos_token_id,
             "UNK": tokenizer.unk_token_id}
    taken = [role for role, role_id in roles.items() if role_id == token_id]
    if taken:
        raise ValueError(f"reuse_mask_token_id {token_id} is the tokenizer's {taken[0]} token; reuse an ordinary "
                         "token id, or add a new mask token (--mask-token) instead")


def set_mask_token(
    tokenizer: PreTrainedTokenizerBase,
    mask_token: str | None = DEFAULT_MASK_TOKEN,
    reuse_token_id: int | None = None,
) -> int:
    """Give the tokenizer its [MASK]: reuse an existing id, or add ``mask_token`` as a special token. Returns the id."""
    if reuse_token_id is not None:
        check_reusable_token_id(tokenizer, reuse_token_id)
        token = tokenizer.convert_ids_to_tokens(reuse_token_id)
        tokenizer.mask_token = token
        # several ids can decode to the same string; the reused id is what counts
        if tokenizer.mask_token_id != reuse_token_id:
            raise ValueError(f"token {token!r} of id {reuse_token_id} does not map back to that id")
        return reuse_token_id
    if not mask_token:
        raise ValueError("pass mask_token (a new token to add) or reuse_token_id (an existing id)")
    tokenizer.add_special_tokens({"mask_token": mask_token})
    return tokenizer.mask_token_id


@torch.no_grad()
def initialise_new_token_rows(model: PreTrainedModel, token_id: int, noise_scale: float = 0.01, seed: int = 0) -> None:
    """Embedding row(s) of ``token_id`` = mean of the other rows + Gaussian noise (``noise_scale`` x per-dim std).

    The output embedding is set the same way when it is not tied to the input embedding.
    """
    generator = torch.Generator().manual_seed(seed)
    input_embeddings = model.get_input_embeddings().weight
    output_layer = model.get_output_embeddings()
    matrices = [input_embeddings]
    if output_layer is not None and output_layer.weight.data_ptr() != input_embeddings.data_ptr():
        matrices.append(output_layer.weight)
    for weight in matrices:
        others = torch.cat([weight[:token_id], weight[token_id + 1 :]]).float()
        noise = torch.randn(weight.shape[1], generator=generator) * others.std(dim=0) * noise_scale
        weight[token_id] = (others.mean(dim=0) + noise).to(weight.dtype)


def convert_ar_model(
    ar_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask_token: str | None = DEFAULT_MASK_TOKEN,
    reuse_mask_token_id: int | None = None,
    shift: bool = True,
    attention_mode: str = "bidirectional",
    noise_scale: float = 0.01,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Diffusion model with the AR model's weights, and the tokenizer that carries its mask token."""
    mask_token_id = set_mask_token(tokenizer, mask_token, reuse_mask_token_id)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ar_config = ar_model.config
    # the mask id may lie past the AR vocabulary until the embeddings are resized, so it is set afterwards
    config = diffusion_config_from_ar(ar_config, None, shift=shift, attention_mode=attention_mode,
                                      mask_token_reused=reuse_mask_token_id is not None)
    config.pad_token_id = tokenizer.pad_token_id
    _, model_class = diffusion_classes_for(ar_config.model_type)
    model = model_class(config).to(ar_model.dtype)
    missing, unexpected = model.load_state_dict(ar_model.state_dict(), strict=False)
    # a head tied to the input embeddings may be absent from the AR state
    head = model.get_output_embeddings()
    tied = {f"{name}.weight" for name, module in model.named_modules() if module is head and config.tie_word_embeddings}
    if unexpected or set(missing) - tied:
        raise ValueError(f"AR weights do not match the diffusion model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if mask_token_id >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(mask_token_id + 1, mean_resizing=False)
    if reuse_mask_token_id is None:
        initialise_new_token_rows(model, mask_token_id, noise_scale=noise_scale, seed=seed)
    model.config.mask_token_id = mask_token_id
    model.config.vocab_size = model.get_input_embeddings().num_embeddings
    configure_generation(model, tokenizer)
    return model, tokenizer


def configure_generation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Diffusion decoding defaults for ``model.generate`` (mask / eos / pad ids from the tokenizer)."""
    from .modeling.generation_diffusion import DiffusionGenerationConfig

    model.generation_config = DiffusionGenerationConfig(
        mask_token_id=model.config.mask_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def convert_checkpoint(
    base: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    **convert_kwargs,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an AR checkpoint (Hub id, directory or .gguf path) and convert it (see ``convert_ar_model``)."""
    source = ARSource.parse(base, gguf_file)
    load_ar_config(source)  # fail early on an unsupported family, before loading weights
    ar_model, tokenizer = load_ar_model(source, dtype=dtype)
    model, tokenizer = convert_ar_model(ar_model, tokenizer, **convert_kwargs)
    model.config.name_or_path = base
    return model, tokenizer
