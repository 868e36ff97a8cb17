"""One training step's diffusion objective, shared by continual pre-training (DiffusionTrainer) and SFT.

Full attention (the paper): draw t per sequence, corrupt the maskable tokens, run the model on the corrupted
sequence, score the masked positions. Block diffusion (``config.attention_mode == "block"``): draw t per block, run
the model once on ``[noisy ; clean]`` under the two-stream mask of ``modeling.block_diffusion``, score the masked
positions with the logits each is predicted from. ``diffusion_objective`` picks the one the model's configuration
asks for, so the trainers need not know which it is. Everything here is composed from the math modules in
``diffusion_lm.modeling``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .modeling.attention_annealing import allowed_to_additive, build_attention_mask
from .modeling.block_diffusion import (
    check_block_size,
    per_token_noise_levels,
    prediction_indices,
    sample_block_noise_levels,
    two_stream_attention_pattern,
    two_stream_position_ids,
)
from .modeling.corruption import mask_tokens
from .modeling.diffusion_loss import DiffusionLossOutput, diffusion_loss_from_cross_entropy
from .modeling.modeling_diffusion_compat import attention_implementation
from .modeling.noise_schedule import DEFAULT_EPS, sample_noise_levels
from .modeling.shift import IGNORE_INDEX, per_token, predicted_only, targets_at_logits


def unwrapped_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model under distributed / compile wrappers (``.module``, ``._orig_mod``); PEFT models pass through
    (they forward ``config`` and ``get_input_embeddings`` to the model they wrap)."""
    while not hasattr(model, "config"):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            break
        model = inner
    return model


def model_config(model: torch.nn.Module):
    """The configuration of ``model``, read through DDP / accelerate / PEFT wrappers (None for a bare module)."""
    return getattr(unwrapped_model(model), "config", None)


def block_diffusion_settings(config) -> int | None:
    """``diffusion_block_size`` when ``config`` asks for block diffusion, else None; ValueError naming the setting
    when the model cannot be trained that way (no block size, or an attention kernel that cannot take the mask)."""
    if getattr(config, "attention_mode", None) != "block":
        return None
    block_size = check_block_size(getattr(config, "diffusion_block_size", None))
    implementation = attention_implementation(config)
    if "flash" in implementation:
        raise ValueError(
            f"attention_mode='block' cannot be trained with attn_implementation={implementation!r}: flash-attention "
            "kernels take no attention pattern; use attn_implementation='sdpa' or 'eager'"
        )
    return block_size


def soft_targets_at_logits(soft_targets: tuple[torch.Tensor, torch.Tensor], shift: bool):
    """Token-aligned (B, L, K) teacher distributions (entry j: the distribution of token j) -> aligned with the
    logits that predict each token (entry i: token i + 1 with the shift)."""
    if not shift:
        return soft_targets
    return tuple(torch.cat([t[:, 1:], torch.zeros_like(t[:, :1])], dim=1) for t in soft_targets)


def check_right_padded(attention_mask: torch.Tensor | None) -> None:
    """ValueError for a left-padded batch: under the shift its first real token would be predicted from a padding
    position's logit, and position 0 (the one token never masked) would be padding."""
    if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
        raise ValueError("the batch is left-padded (attention_mask has 0 before 1): diffusion training needs right "
                         "padding, or the first token would be predicted from a padding logit; set "
                         "tokenizer.padding_side = 'right' (or use DiffusionDataCollator)")


@dataclass(frozen=True)
class ObjectiveSettings:
    """What a run's diffusion objective is, fixed for the run (built once from its training arguments).

    ``mask_token_id``: the [MASK] id noised positions get. ``normalization``: ``"masked_tokens"`` (per masked
    token, the reference) or ``"elbo"`` (per modelled token). ``shift``: the AR shift (position i's logit predicts
    token i + 1). Noise levels t are drawn from U(``eps``, 1), one per ``stratified`` stratum when asked.
    ``distill_weight``: every scored prediction is trained against ``(1 - w) * one-hot(token) + w * teacher`` when
    the call brings ``soft_targets``. ``ar_weight`` (block models with causal context): the weight of the clean
    stream's next-token loss. ``block_size``: overrides the model's configured block size (a block-size curriculum).
    """

    mask_token_id: int
    normalization: str = "masked_tokens"
    shift: bool = True
    eps: float = DEFAULT_EPS
    stratified: bool = False
    distill_weight: float = 0.0
    ar_weight: float = 0.0
    block_size: int | None = None

    @classmethod
    def from_arguments(cls, args, *, mask_token_id: int, shift: bool = True,
                       block_size: int | None = None) -> ObjectiveSettings:
        """The training objective a ``DiffusionArguments`` (training arguments or SFT config) asks for."""
        return cls(mask_token_id=mask_token_id, normalization=args.loss_normalization, shift=shift,
                   eps=args.noise_eps, stratified=args.stratified_noise, distill_weight=args.distill_weight,
                   ar_weight=args.ar_loss_weight, block_size=block_size)

    def for_evaluation(self, normalization: str | None = None) -> ObjectiveSettings:
        """The model's own bound, as evaluation reports it: no teacher, no AR loss, the configured block size, and
        ``normalization`` when given."""
        return replace(self, normalization=normalization or self.normalization, distill_weight=0.0, ar_weight=0.0,
                       block_size=None)


@dataclass(frozen=True)
class BatchTerms:
    """What belongs to one batch rather than to the objective: its padding, its corruption (given or drawn) and what
    its loss is divided by. Documented at :func:`diffusion_objective`."""

    attention_mask: torch.Tensor | None = None
    noise_levels: torch.Tensor | None = None
    mask_draws: torch.Tensor | None = None
    generator: torch.Generator | None = None
    anneal_ratio: float | None = None
    anneal_seed: int | None = None
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None
    normalizer: torch.Tensor | float | None = None
    ar_normalizer: torch.Tensor | float | None = None


def diffusion_objective(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    settings: ObjectiveSettings,
    *,
    attention_mask: torch.Tensor | None = None,
    noise_levels: torch.Tensor | None = None,
    mask_draws: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    anneal_ratio: float | None = None,
    anneal_seed: int | None = None,
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
    normalizer: torch.Tensor | float | None = None,
    ar_normalizer: torch.Tensor | float | None = None,
) -> DiffusionLossOutput:
    """Masked-diffusion loss of ``model`` on clean ``input_ids`` (B, L) under ``settings``; ``maskable`` marks what
    may be noised. The keywords are this batch's: its padding, its corruption and what its loss is divided by.

    Without ``noise_levels`` each sequence draws t ~ U(eps, 1) (``settings.stratified``: one t from each of B equal
    strata instead, the same objective in expectation, lower variance). ``mask_draws`` (B, L): the uniforms that
    decide which positions are masked (see ``diffusion_lm.training_noise``); ``normalizer``: the count the loss is
    divided by instead of this batch's (e.g. the optimizer step's, over every micro-batch and process).
    ``generator`` drives every draw made here (noise, masks, the annealing pattern); ``anneal_seed`` makes the
    annealing links a hash of (seed, positions) instead (the same for every micro-batch of a step). The LM head runs
    only on the positions whose prediction is scored, in chunks (``target_ids`` of the model forward).

    Block models (``config.attention_mode == "block"``) get :func:`block_diffusion_objective`; ``noise_levels``
    is then one level per block, (B, number of blocks), instead of one per sequence (B,).

    Distillation: ``soft_targets`` = (ids, probs), each (B, L, K), the teacher's distribution of each token
    (``diffusion_lm.distillation.ARTeacher``), mixed in with ``settings.distill_weight``. ``ar_normalizer``: see
    :func:`block_diffusion_objective`.
    """
    batch = BatchTerms(attention_mask, noise_levels, mask_draws, generator, anneal_ratio, anneal_seed, soft_targets,
                       normalizer, ar_normalizer)
    config = model_config(model)
    configured = block_diffusion_settings(config)
    if configured is None:
        return full_attention_objective(model, input_ids, maskable, settings, batch)
    if settings.block_size is None:
        settings = replace(settings, block_size=configured)
    return block_diffusion_objective(model, input_ids, maskable, settings, batch,
                                     context_attention=getattr(config, "context_attention", "block"))


def full_attention_objective(model: torch.nn.Module, input_ids: torch.Tensor, maskable: torch.Tensor,
                             settings: ObjectiveSettings, batch: BatchTerms) -> DiffusionLossOutput:
    """The masked-diffusion loss of a full-attention (or annealed) model: :func:`diffusion_objective` without the
    dispatch."""
    shift, generator = settings.shift, batch.generator
    if settings.ar_weight:
        raise ValueError("ar_weight needs a block-diffusion model (attention_mode 'block'): full-attention diffusion "
                         "has no clean stream to put a next-token loss on")
    attention_mask, noise_levels, soft_targets = batch.attention_mask, batch.noise_levels, batch.soft_targets
    check_right_padded(attention_mask)
    maskable = predicted_only(maskable, shift)
    if noise_levels is None:
        noise_levels = sample_noise_levels(input_ids.shape[0], settings.eps, stratified=settings.stratified,
                                           device=input_ids.device, generator=generator)
    noisy_ids, is_masked = mask_tokens(input_ids, maskable, noise_levels, settings.mask_token_id, generator=generator,
                                       draws=batch.mask_draws)
    if batch.anneal_ratio is not None and batch.anneal_ratio < 1.0:
        # the annealed pattern is drawn here, from the caller's generator, and handed over as a 4D mask
        batch_size, seq_len = input_ids.shape
        dtype = unwrapped_model(model).get_input_embeddings().weight.dtype
        attention_mask = build_attention_mask(attention_mask, batch_size, seq_len, dtype, input_ids.device,
                                              anneal_ratio=batch.anneal_ratio, generator=generator,
                                              anneal_seed=batch.anneal_seed)
    soft = {} if soft_targets is None else dict(zip(("soft_target_ids", "soft_target_probs"),
                                                    soft_targets_at_logits(soft_targets, shift)))
    outputs = model(input_ids=noisy_ids, attention_mask=attention_mask,
                    target_ids=targets_at_logits(input_ids, is_masked, shift), **soft)
    soft_losses = None if soft_targets is None else per_token(outputs.token_soft_losses, shift)
    return diffusion_loss_from_cross_entropy(
        per_token(outputs.token_losses, shift), is_masked, noise_levels, maskable, normalization=settings.normalization,
        normalizer=batch.normalizer, soft_cross_entropy=soft_losses, soft_targets=soft_targets,
        distill_weight=settings.distill_weight)


def block_diffusion_objective(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    settings: ObjectiveSettings,
    batch: BatchTerms,
    context_attention: str = "block",
) -> DiffusionLossOutput:
    """Block-diffusion loss (METHOD.md section 9) in one forward pass over ``[noisy ; clean]``.

    Each block k of ``settings.block_size`` positions draws its own t ~ U(eps, 1) (or takes ``noise_levels[:, k]``);
    its maskable tokens are masked with probability t and weighted 1/t. ``anneal_ratio`` < 1 makes each noisy block
    attend to itself causally OR Bernoulli(ratio) (annealing from causal to block attention). With the "elbo"
    normalisation the loss is the block-diffusion bound on the NLL per predicted token. ``attention_mask`` (B, L)
    may mark right padding only: blocks are counted from position 0. ``batch`` (padding, corruption, divisors)
    and the distillation weight as in :func:`diffusion_objective`.

    ``context_attention="causal"`` makes the clean stream token-causal: its logit at i is the model's own AR
    prediction of token i + 1. ``settings.ar_weight`` > 0 then adds ``ar_weight`` x the mean next-token
    cross-entropy of the clean stream over the modelled tokens (divided by ``ar_normalizer`` when given: the step's
    count) - the AR loss of TiDAR, at no extra forward (those logits are computed anyway for the blocks' first
    tokens).
    """
    shift, block_size, ar_weight = settings.shift, settings.block_size, settings.ar_weight
    attention_mask, noise_levels, soft_targets, generator = (batch.attention_mask, batch.noise_levels,
                                                             batch.soft_targets, batch.generator)
    if ar_weight and context_attention != "causal":
        raise ValueError("ar_weight needs context_attention='causal': under block-causal context attention the clean "
                         "stream sees the tokens it would predict")
    if ar_weight and not shift:
        raise ValueError("ar_weight needs the AR shift (shift=True): the clean stream's logit at i predicts i + 1")
    batch_size, seq_len = input_ids.shape
    check_block_size(block_size)
    if attention_mask is not None:
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch_size, seq_len):
            raise ValueError(f"attention_mask must have shape ({batch_size}, {seq_len}) for block diffusion training, "
                             f"got {tuple(attention_mask.shape)}")
    check_right_padded(attention_mask)  # blocks are counted from position 0
    maskable = predicted_only(maskable, shift)
    device = input_ids.device
    if noise_levels is None:
        noise_levels = sample_block_noise_levels(batch_size, seq_len, block_size, settings.eps,
                                                 stratified=settings.stratified, device=device, generator=generator)
    token_levels = per_token_noise_levels(noise_levels, seq_len, block_size)
    noisy_ids, is_masked = mask_tokens(input_ids, maskable, token_levels, settings.mask_token_id,
                                       generator=generator, draws=batch.mask_draws)

    key_is_token = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
    pattern = two_stream_attention_pattern(batch_size, seq_len, block_size, key_is_token,
                                           anneal_ratio=batch.anneal_ratio, device=device, generator=generator,
                                           anneal_seed=batch.anneal_seed, context_attention=context_attention)
    dtype = unwrapped_model(model).get_input_embeddings().weight.dtype
    # entry i of ``keep`` is the index (of 2L) whose logit predicts token i + 1 (with the shift) or token i: the LM
    # head runs only there, and only where that token is masked
    keep = prediction_indices(seq_len, block_size, shift=shift, device=device)
    predicted = slice(1, None) if shift else slice(None)
    target_ids = torch.full((batch_size, 2 * seq_len), IGNORE_INDEX, dtype=input_ids.dtype, device=device)
    target_ids[:, keep] = targets_at_logits(input_ids[:, predicted], is_masked[:, predicted], shift=False)
    # the clean stream's logit at i predicts token i + 1 (the AR loss); at a block's last position it is also the
    # prediction of the next block's first token, scored against the same target
    clean = slice(seq_len, 2 * seq_len - 1)
    if ar_weight:
        target_ids[:, clean] = targets_at_logits(input_ids, maskable, shift=True)[:, :-1]
    soft = {}
    if soft_targets is not None:
        soft_ids, soft_probs = (torch.zeros((batch_size, 2 * seq_len, t.shape[-1]), dtype=t.dtype, device=device)
                                for t in soft_targets)
        for placed, teacher in ((soft_ids, soft_targets[0]), (soft_probs, soft_targets[1])):
            placed[:, keep] = teacher[:, predicted]
            placed[:, clean] = teacher[:, 1:]
        soft = {"soft_target_ids": soft_ids, "soft_target_probs": soft_probs}
    outputs = model(
        input_ids=torch.cat([noisy_ids, input_ids], dim=1),
        attention_mask=allowed_to_additive(pattern, dtype).expand(batch_size, -1, -1, -1),
        position_ids=two_stream_position_ids(batch_size, seq_len, device),
        target_ids=target_ids,
        **soft,
    )

    def per_token_of(losses, indices):  # (B, L): the loss of each token's prediction, read at ``indices``
        if losses is None:
            return None
        values = torch.zeros_like(token_levels, dtype=torch.float32)
        values[:, predicted] = losses[:, indices]
        return values

    clean_indices = torch.arange(seq_len, 2 * seq_len - 1, device=device)
    output = diffusion_loss_from_cross_entropy(
        per_token_of(outputs.token_losses, keep), is_masked, token_levels, maskable,
        normalization=settings.normalization, normalizer=batch.normalizer,
        soft_cross_entropy=per_token_of(outputs.token_soft_losses, keep), soft_targets=soft_targets,
        distill_weight=settings.distill_weight)
    if ar_weight:
        output = output.with_ar_loss(per_token_of(outputs.token_losses, clean_indices),
                                     per_token_of(outputs.token_soft_losses, clean_indices), settings.distill_weight,
                                     maskable, ar_weight, batch.ar_normalizer)
    return output


__all__ = ["BatchTerms", "ObjectiveSettings", "block_diffusion_objective", "block_diffusion_settings",
           "diffusion_objective", "full_attention_objective", "model_config", "unwrapped_model"]
