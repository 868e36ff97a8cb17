"""Pieces every diffusion model class shares: output type, attention-mask routing, bidirectional switch.

Only ``torch`` and ``transformers`` are imported here: this file travels with checkpoints as remote code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from transformers.cache_utils import Cache, DynamicCache
from transformers.utils import ModelOutput

from .attention_annealing import build_attention_mask, restrict_to_window
from .modeling_diffusion_compat import attention_implementation
from .shift import IGNORE_INDEX


@dataclass
class MaskedDiffusionLMOutput(ModelOutput):
    """Output of a diffusion LM forward pass. ``logits[:, i]`` predicts token i + 1 when ``config.shift``."""

    logits: torch.Tensor | None = None
    # with ``target_ids``: float32 cross-entropy of each scored position's logit (0 elsewhere), logits not kept
    token_losses: torch.Tensor | None = None
    # with ``soft_target_ids`` / ``soft_target_probs`` too: each scored position's cross-entropy against that
    # distribution, -sum_k p_k log q(id_k) (a teacher's top-k for distillation)
    token_soft_losses: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    # named as in transformers >= 5.24 (``past_key_values`` before); the property below serves the old name
    cache: Cache | None = None

    @property
    def past_key_values(self) -> Cache | None:
        return self.cache


def positions_from_padding(attention_mask: torch.Tensor | None, batch_size: int, seq_len: int, device) -> torch.Tensor:
    """Position ids that start at 0 on each sequence's first real token, so left padding does not shift them."""
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.arange(seq_len, device=device).unsqueeze(0).expand(batch_size, -1)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# --- transformers internals, gathered in one place ------------------------------------------------------------------
def layer_cache_kwarg(layer: torch.nn.Module) -> str:
    """Name under which a transformers decoder layer takes its KV cache: ``cache`` since transformers 5.24 (where
    ``past_key_values`` is a deprecated alias), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(layer).forward).parameters else "past_key_values"


def resolve_cache_argument(past_key_values, cache, use_cache: bool | None):
    """The KV cache a forward was given under either name (transformers 5.24 renamed ``past_key_values`` to
    ``cache``); a new ``DynamicCache`` when only ``use_cache=True`` asks for one; None otherwise."""
    if past_key_values is not None and cache is not None:
        raise ValueError("pass the KV cache once: `cache` or `past_key_values`, not both")
    cache = cache if cache is not None else past_key_values
    if cache is not None and not isinstance(cache, Cache):
        raise ValueError(f"cache must be a transformers Cache (e.g. DynamicCache), got {type(cache).__name__}")
    if cache is None and use_cache:
        cache = DynamicCache()
    return cache


# forward arguments transformers' wrappers (PEFT, pipelines) pass with their default values; any set value is refused
_NEUTRAL_KWARGS = {"output_attentions": (None, False), "output_hidden_states": (None, False),
                   "return_dict": (None, True), "labels": (None,), "logits_to_keep": (None, 0)}


def reject_unused_kwargs(kwargs: dict) -> None:
    """ValueError for forward arguments this model would otherwise ignore silently."""
    unused = sorted(name for name, value in kwargs.items()
                    if not (name in _NEUTRAL_KWARGS and any(value is v for v in _NEUTRAL_KWARGS[name])))
    if unused:
        hint = " (the diffusion loss is computed by DiffusionTrainer / diffusion_objective)" if "labels" in unused else ""
        raise ValueError(f"diffusion LM forward does not take {unused}{hint}")


def check_token_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """ValueError instead of an IndexError deep inside the embedding for ids outside the vocabulary."""
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        bad = input_ids[(input_ids < 0) | (input_ids >= vocab_size)][0].item()
        raise ValueError(f"input_ids: token id {bad} is outside the vocabulary (ids 0..{vocab_size - 1})")


def check_attention_mask(config, attention_mask: torch.Tensor | None, num_keys: int, num_new: int,
                         batch_size: int, anneal_ratio: float | None) -> bool:
    """ValueError for a mask the model cannot apply; True when it goes to the layers as given (a 4D pattern, or
    the padding mask of flash kernels).

    ``attention_mask`` is 2D over the keys (the cached keys, then the new positions, in sequence order) or a ready 4D
    pattern (any key layout). Flash-attention kernels take only a 2D padding mask; asking them for an annealed,
    causal or block pattern would silently drop it (the reference code's pitfall), so that is an error here.
    """
    num_cached = num_keys - num_new
    annealing = anneal_ratio is not None and anneal_ratio < 1.0
    if annealing and num_cached:
        raise ValueError("anneal_ratio is a training setting; it cannot be combined with a KV cache")
    implementation = attention_implementation(config)
    if attention_mask is not None and attention_mask.dim() == 4:
        if "flash" in implementation:
            raise ValueError(f"attention implementation {implementation!r} cannot take a 4D mask")
        return True
    if attention_mask is not None and tuple(attention_mask.shape) != (batch_size, num_keys):
        expected = f"({batch_size}, {num_keys})" + (f": {num_cached} cached + {num_new} new" if num_cached else "")
        raise ValueError(f"attention_mask must have shape {expected}, got {tuple(attention_mask.shape)}")
    if "flash" in implementation:
        if config.attention_mode != "bidirectional" or annealing:
            raise ValueError(
                f"attention implementation {implementation!r} cannot apply an annealed, causal or block "
                "attention pattern; use attn_implementation='sdpa' or 'eager'"
            )
        return True
    return False


def prepare_decoder_inputs(
    config,
    embed_tokens: torch.nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    anneal_ratio: float | None,
    cache: Cache | None = None,
    windows=(None,),
    key_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(inputs_embeds, position_ids, {sliding window or None: mask for the attention layers of that window}): what
    every decoder stack starts from.

    With a KV cache the new positions attend to the cached keys and to each other; their position ids default to
    those that follow the cached keys (from a 2D ``attention_mask`` over cached + new keys when given).
    Sliding windows (``windows``: those of the stack's layers) restrict the one pattern (``restrict_to_window``);
    over a KV cache that needs the keys' positions (``key_positions``, (B, keys)) unless the window cannot bind.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if inputs_embeds is None:
        check_token_ids(input_ids, config.vocab_size)
        inputs_embeds = embed_tokens(input_ids)
    batch_size, num_new = inputs_embeds.shape[:2]
    num_cached = cache.get_seq_length() if cache is not None else 0
    if position_ids is None:
        if attention_mask is not None and attention_mask.dim() == 4:
            if num_cached:
                raise ValueError("position_ids are needed with a 4D attention_mask and a KV cache")
            position_ids = positions_from_padding(None, batch_size, num_new, inputs_embeds.device)
        else:
            position_ids = positions_from_padding(attention_mask, batch_size, num_cached + num_new,
                                                  inputs_embeds.device)[:, num_cached:]
    num_keys = num_cached + num_new
    if check_attention_mask(config, attention_mask, num_keys, num_new, batch_size, anneal_ratio):
        if attention_mask is None or attention_mask.dim() != 4:  # flash kernels apply the layer's window themselves
            return inputs_embeds, position_ids, dict.fromkeys(windows, attention_mask)
        layer_mask = attention_mask
    else:
        positions = positions_from_padding(attention_mask, batch_size, num_keys, inputs_embeds.device)
        if key_positions is None:  # a 2D mask (or none): the cached keys precede the new ones, in order
            key_positions = positions
        layer_mask = build_attention_mask(
            attention_mask, batch_size, num_keys, inputs_embeds.dtype, inputs_embeds.device,
            mode=config.attention_mode, block_size=getattr(config, "diffusion_block_size", None),
            position_ids=position_ids, key_positions=positions, anneal_ratio=anneal_ratio,
        )
    if key_positions is None and not num_cached:  # without a cache the keys are the inputs themselves
        key_positions = position_ids
    # with a cache, the keys' positions are known only from ``key_positions`` (decoding caches hold their columns in
    # any order): a window that could bind needs them; one spanning the model's positions cannot bind
    longest = getattr(config, "max_position_embeddings", None)
    masks = {}
    span = None  # the farthest any query is from any key: a window at least this long cannot bind
    if key_positions is not None and any(window is not None for window in windows):
        span = int(max(key_positions.max() - position_ids.min(), position_ids.max() - key_positions.min()))
    for window in windows:
        if window is None or (span is not None and span < window) or (
                key_positions is None and longest is not None and window >= longest
                and int(position_ids.max()) < window):
            masks[window] = layer_mask
        elif key_positions is None:
            raise ValueError(f"sliding_window {window}: a forward over a KV cache of {num_cached} keys needs "
                             "key_positions (the positions of the cached and new keys) to apply the window")
        else:
            masks[window] = restrict_to_window(layer_mask, position_ids, key_positions, window, inputs_embeds.dtype)
    return inputs_embeds, position_ids, masks


# logits elements per LM-head chunk (32 MiB in float32): a chunk's rows follow from the vocabulary, 170 at 49k
# (SmolLM2), 256 at 32k (LLaMA-2); a few such tensors are alive at once in backward, far below the activations
LOSS_CHUNK_ELEMENTS = 2**23


def loss_chunk_rows(vocab_size: int) -> int:
    return max(1, LOSS_CHUNK_ELEMENTS // vocab_size)


def lm_head_vocab_size(lm_head: torch.nn.Module) -> int:
    """The number of logits ``lm_head`` gives per position: ``out_features``, not ``weight.shape``, since ZeRO-3
    leaves partitioned weights empty outside their gather."""
    return getattr(lm_head, "out_features", None) or lm_head.weight.shape[0]


def _chunk_cross_entropy(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(lm_head(hidden).float(), targets, reduction="none")


def _chunk_hard_and_soft_cross_entropy(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                                       soft_ids: torch.Tensor, soft_probs: torch.Tensor) -> torch.Tensor:
    """(2, rows): the cross-entropy against the targets and against the soft distributions, from one log-softmax."""
    log_q = torch.log_softmax(lm_head(hidden).float(), dim=-1)
    hard = -log_q.gather(1, targets[:, None]).squeeze(1)
    soft = -(soft_probs.float() * log_q.gather(1, soft_ids)).sum(dim=1)
    return torch.stack([hard, soft])


def cross_entropy_at_targets(
    hidden_states: torch.Tensor,
    lm_head: torch.nn.Module,
    target_ids: torch.Tensor,
    chunk_size: int | None = None,
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """(B, L) float32 cross-entropy of ``lm_head(hidden_states)`` against ``target_ids``, 0 where the target is
    ``IGNORE_INDEX``. With ``soft_targets`` = (ids, probs), each (B, L, K): a pair of such tensors, the second the
    cross-entropy against those distributions at the same positions (the same log-softmax serves both).

    The LM head runs only on the scored positions, ``chunk_size`` at a time (default: ``LOSS_CHUNK_ELEMENTS``
    logits per chunk); under autograd each chunk's logits are recomputed in backward instead of kept, so a
    (positions, vocabulary) tensor never exists: the memory of the loss is one chunk's logits, whatever the
    sequence length.
    """
    if target_ids.shape != hidden_states.shape[:2]:
        raise ValueError(f"target_ids must have shape {tuple(hidden_states.shape[:2])}, got {tuple(target_ids.shape)}")
    if chunk_size is None:
        chunk_size = loss_chunk_rows(lm_head_vocab_size(lm_head))
    if chunk_size < 1:
        raise ValueError(f"loss_chunk_size must be >= 1, got {chunk_size}")
    scored = target_ids != IGNORE_INDEX
    columns = [hidden_states[scored], target_ids[scored]]
    function = _chunk_cross_entropy
    if soft_targets is not None:
        soft_ids, soft_probs = soft_targets
        if soft_ids.shape[:2] != target_ids.shape or soft_probs.shape != soft_ids.shape:
            raise ValueError(f"soft_target_ids / soft_target_probs must have shape {tuple(target_ids.shape)} + (K,), "
                             f"got {tuple(soft_ids.shape)} and {tuple(soft_probs.shape)}")
        columns += [soft_ids[scored], soft_probs[scored]]
        function = _chunk_hard_and_soft_cross_entropy
    recompute = torch.is_grad_enabled() and columns[0].requires_grad
    pieces = []
    for start in range(0, columns[0].shape[0], chunk_size):
        chunk = (lm_head, *(column[start : start + chunk_size] for column in columns))
        pieces.append(torch.utils.checkpoint.checkpoint(function, *chunk, use_reentrant=False)
                      if recompute else function(*chunk))
    losses = torch.zeros(target_ids.shape, dtype=torch.float32, device=hidden_states.device)
    if not pieces:  # nothing scored: still touch the LM head, so data-parallel ranks reduce the same gradients
        losses = losses + 0.0 * lm_head(hidden_states[:, :1]).float().sum()
        return losses if soft_targets is None else (losses, losses.clone())
    if soft_targets is None:
        return losses.masked_scatter(scored, torch.cat(pieces))
    hard, soft = torch.cat(pieces, dim=1)
    return losses.masked_scatter(scored, hard), losses.masked_scatter(scored, soft)


class SoftCappedHead:
    """An LM head whose logits are soft-capped, cap * tanh(logits / cap) (Gemma's ``final_logit_softcapping``); called
    as the head itself, so the chunked loss caps exactly the logits it scores. Not a module: it owns no weights."""

    def __init__(self, lm_head: torch.nn.Module, cap: float):
        self.lm_head, self.cap, self.out_features = lm_head, cap, getattr(lm_head, "out_features", None)

    @property
    def weight(self) -> torch.Tensor:
        return self.lm_head.weight

    def __call__(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lm_head(hidden_states) / self.cap) * self.cap


class DiffusionLMHeadMixin:
    """The LM head on top of the decoder stack found at ``base_model_prefix`` (``model`` or ``transformer``)."""

    def logits_head(self):
        """What turns hidden states into logits: ``lm_head``, soft-capped where ``config.final_logit_softcapping``
        is set (Gemma)."""
        cap = getattr(self.config, "final_logit_softcapping", None)
        return self.lm_head if cap is None else SoftCappedHead(self.lm_head, cap)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        anneal_ratio: float | None = None,
        past_key_values: Cache | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        target_ids: torch.LongTensor | None = None,
        loss_chunk_size: int | None = None,
        soft_target_ids: torch.LongTensor | None = None,
        soft_target_probs: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedDiffusionLMOutput:
        """Logits for every position; ``logits[:, i]`` predicts token i + 1 when ``config.shift``.

        ``attention_mask`` (B, L) marks real tokens (padding is never attended), or is a ready 4D pattern;
        ``anneal_ratio`` in [0, 1) applies the annealed attention pattern of that ratio (training only).
        ``cache`` (or ``past_key_values``): a transformers ``Cache`` holding keys / values of earlier positions; the
        new positions' keys / values are appended to it (crop it to drop them). ``logits_to_keep`` as in
        transformers: ``k > 0`` computes the LM head on the last k positions only, a 1D tensor on those indices.
        ``target_ids`` (B, L): the token each position's logit is scored against (``-100``: not scored); the output
        then carries ``token_losses`` (float32 cross-entropy per position) instead of logits, the LM head run only
        where a target is scored, ``loss_chunk_size`` positions at a time (default: 32 MiB of float32 logits per
        chunk; training's memory is one chunk's logits). ``soft_target_ids`` / ``soft_target_probs`` (B, L, K), with
        ``target_ids``: a distribution per scored position (a teacher's top-k); the output adds ``token_soft_losses``.
        """
        if (soft_target_ids is None) != (soft_target_probs is None) or (soft_target_ids is not None
                                                                          and target_ids is None):
            raise ValueError("soft_target_ids and soft_target_probs go together, and need target_ids")
        outputs = getattr(self, self.base_model_prefix)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            anneal_ratio=anneal_ratio,
            past_key_values=past_key_values,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if target_ids is not None:
            soft = None if soft_target_ids is None else (soft_target_ids, soft_target_probs)
            losses = cross_entropy_at_targets(hidden_states, self.logits_head(), target_ids, loss_chunk_size, soft)
            hard, soft_losses = (losses, None) if soft is None else losses
            return MaskedDiffusionLMOutput(
                token_losses=hard,
                token_soft_losses=soft_losses,
                last_hidden_state=hidden_states,
                cache=outputs.cache,
            )
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) and logits_to_keep > 0 else (
            logits_to_keep if isinstance(logits_to_keep, torch.Tensor) else slice(None))
        return MaskedDiffusionLMOutput(
            logits=self.logits_head()(hidden_states[:, keep]),
            last_hidden_state=hidden_states,
            cache=outputs.cache,
        )
