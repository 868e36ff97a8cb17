"""KV cache for diffusion decoding: which positions a denoising step recomputes, and where the rest comes from.

Every step of ``generate`` runs the model on a *window* of the canvas (the current block, and what the mode adds)
and reads the keys / values of all other positions from a store that holds, per layer, the latest keys / values of
every canvas position. The store is handed to the model as a transformers ``DynamicCache``; the window's new keys /
values are written back after the forward pass.

- ``kv_cache=None``: no store; every step recomputes the whole canvas (exact).
- full-attention models (approximate, Fast-dLLM): ``"prefix"`` recomputes the block and everything after it;
  ``"dual"`` recomputes only the block and also reads the positions after it from the store. Refresh:
  ``"block"``: one whole-canvas pass at each block's first step (its logits serve that step);
  ``"incremental"``: no whole-canvas pass after the first step; the first step of each block widens the window back
  over the finished block, so its keys / values are recomputed once with its final tokens;
  ``"step"``: a whole-canvas pass before every step (as exact as no cache; it verifies the cached path).
- block-diffusion models (exact): earlier blocks never see later ones, so the store holds the final keys / values of
  every finished block; each step recomputes the current block (the first step also the block just finished).
  With sub-blocks (``sub_block_length``) and ``"dual"``, a step recomputes only the current sub-block and reads the
  rest of the block from the store (approximate inside the block, Fast-dLLM v2; ``"step"`` refresh makes it exact).
With the AR shift the prediction for the block's first position is read one position to its left, so the window
always starts there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache

from .attention_annealing import allowed_to_additive, attention_pattern
from .modeling_diffusion_compat import crop_dynamic_cache, gather_dynamic_cache

KV_CACHE_MODES = ("prefix", "dual")
KV_CACHE_REFRESH = ("block", "incremental", "step")
# a ColumnCache is compacted when it holds more than this many columns dead in some row, and they are more than
# this share of its columns
COMPACT_MIN_DEAD = 16
COMPACT_DEAD_SHARE = 0.5


@dataclass
class StepWindow:
    """One forward pass: positions ``[start, end)`` are recomputed; ``cached`` (index tensor, or None for "no cache
    object at all") are read from the store; ``fills_store`` marks a whole-canvas pass that rewrites every entry."""

    start: int
    end: int
    cached: torch.Tensor | None
    fills_store: bool = False


class CanvasKVStore:
    """Per layer, the latest keys and values (B, H, L, D) of every canvas position."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def cache_for(self, cached: torch.Tensor) -> DynamicCache:
        """A fresh DynamicCache holding the stored keys / values of the ``cached`` positions (in that order)."""
        cache = DynamicCache()
        if len(cached) == 0 or not self.keys:
            return cache
        contiguous = bool((cached[1:] - cached[:-1] == 1).all()) if len(cached) > 1 else True
        for layer, (keys, values) in enumerate(zip(self.keys, self.values)):
            if contiguous:  # a view: no copy before the cache's own concatenation
                first = int(cached[0])
                k, v = keys[:, :, first:first + len(cached)], values[:, :, first:first + len(cached)]
            else:
                k, v = keys.index_select(2, cached), values.index_select(2, cached)
            cache.update(k, v, layer)
        return cache

    def write_back(self, cache: DynamicCache, window: StepWindow, canvas_length: int) -> None:
        """Store the window's keys / values: the entries the forward pass appended after the cached ones."""
        width = window.end - window.start
        # transformers' DynamicCache keeps one layer object per decoder layer with `.keys` / `.values` tensors
        appended = [(layer.keys[:, :, -width:], layer.values[:, :, -width:]) for layer in cache.layers]
        if not self.keys:
            shape = lambda t: (*t.shape[:2], canvas_length, t.shape[3])  # noqa: E731
            self.keys = [k.new_zeros(shape(k)) for k, _ in appended]
            self.values = [v.new_zeros(shape(v)) for _, v in appended]
        for stored_k, stored_v, (k, v) in zip(self.keys, self.values, appended):
            stored_k[:, :, window.start:window.end] = k
            stored_v[:, :, window.start:window.end] = v


@dataclass
class WindowPlanner:
    """Decides each step's window for one ``generate`` call (see the module docstring)."""

    mode: str | None  # kv_cache
    refresh: str  # kv_cache_refresh
    exact_blocks: bool
    shift: bool
    length: int  # of the canvas
    device: torch.device | str
    stored: bool = False  # the store holds an entry for every position
    fresh_until: int = 0  # positions before this hold keys / values computed from their final tokens
    sub_fresh: int = 0  # sub-blocks: positions of the current block before this were recomputed last step

    def _range(self, start: int, end: int) -> torch.Tensor:
        return torch.arange(start, end, device=self.device)

    def windows(self, block_start: int, block_end: int, first_step: bool, settled_until: int) -> list[StepWindow]:
        """The forward passes of one step (one, or two with ``refresh="step"``) for the block whose positions to
        generate span ``[block_start, block_end)``. ``settled_until``: for exact block caches, the start of the
        block containing ``block_start`` (everything before it is final and never sees the block)."""
        read_from = block_start - 1 if self.shift else block_start  # the prediction for block_start sits there
        whole = StepWindow(0, self.length, None if self.mode is None else self._range(0, 0), fills_store=True)
        if self.mode is None:
            return [whole]
        if self.exact_blocks:
            start = min(self.fresh_until, read_from)
            self.fresh_until = max(self.fresh_until, settled_until)
            self.stored = True
            return [StepWindow(start, block_end, self._range(0, start))]
        passes = []
        refresh_now = (not self.stored or self.refresh == "step" or (self.refresh == "block" and first_step))
        if refresh_now:
            self.stored = True
            self.fresh_until = read_from
            if self.refresh != "step":  # the whole-canvas pass also serves this step's logits
                return [whole]
            passes.append(whole)
        start = min(self.fresh_until, read_from)
        self.fresh_until = read_from
        end = self.length if self.mode == "prefix" else block_end
        cached = torch.cat([self._range(0, start), self._range(end, self.length)])
        passes.append(StepWindow(start, end, cached))
        return passes

    def sub_block_windows(self, sub_start: int, sub_end: int, settled_until: int, block_end: int,
                          new_block: bool) -> list[StepWindow]:
        """Block-diffusion sub-blocks with the dual cache (Fast-dLLM v2): the forward passes of one step for the
        sub-block whose positions to generate span ``[sub_start, sub_end)`` inside the model's block
        ``[settled_until, block_end)``.

        A block's first step (and every step with ``refresh="step"``) runs the whole block (at a block's first step
        also the finished block before it, with its final tokens) and stores its keys / values; other steps recompute
        the sub-block (and once, at a sub-block's first step, the sub-block before it) and read the block's positions
        after the sub-block, and before it, from the store. Earlier blocks are exact, as in ``windows``."""
        read_from = sub_start - 1 if self.shift else sub_start
        passes = []
        if new_block or not self.stored or self.refresh == "step":
            start = min(self.fresh_until, read_from)
            if new_block:
                self.fresh_until = max(self.fresh_until, settled_until)
            self.stored = True
            self.sub_fresh = read_from
            passes.append(StepWindow(start, block_end, self._range(0, start)))
            if self.refresh != "step":  # the whole-block pass also serves this step's logits
                return passes
        start = min(self.sub_fresh, read_from)
        self.sub_fresh = read_from
        cached = torch.cat([self._range(0, start), self._range(sub_end, block_end)])
        passes.append(StepWindow(start, sub_end, cached))
        return passes



# --- self-verified decoding: KV caches in shared columns (see ``self_verification``) -------------------------------
class ColumnCache:
    """A ``DynamicCache`` whose columns carry, per row, a position and a validity flag (see the module docstring)."""

    def __init__(self, batch_size: int, device) -> None:
        self.cache = DynamicCache()
        self.valid = torch.zeros(batch_size, 0, dtype=torch.bool, device=device)
        self.positions = torch.zeros(batch_size, 0, dtype=torch.long, device=device)

    @property
    def width(self) -> int:
        return self.valid.shape[1]

    def forward(self, model, input_ids, positions, valid, mode: str, read_columns,
                causal_queries: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``model`` on new columns (``input_ids`` / ``positions`` / ``valid``: (B, W)) over the cache under the
        attention ``mode`` (``causal``, ``bidirectional`` or ``block``); their keys / values are appended. Returns
        the logits (B, len(read_columns), V) at the new columns ``read_columns``. ``causal_queries`` (B, W): columns
        that attend causally whatever ``mode`` says (committed text of a model with token-causal context)."""
        key_positions = torch.cat([self.positions, positions], dim=1)
        key_valid = torch.cat([self.valid, valid], dim=1)
        pattern = attention_pattern(mode, positions, key_positions, key_valid,
                                    block_size=getattr(model.config, "diffusion_block_size", None))
        if pattern is None:  # bidirectional over real keys only: attention_pattern gave "attend everything"
            pattern = torch.ones((1, 1, 1, key_valid.shape[1]), dtype=torch.bool, device=key_valid.device)
        if causal_queries is not None and bool(causal_queries.any()):
            causal = attention_pattern("causal", positions, key_positions, key_valid)
            pattern = torch.where(causal_queries[:, None, :, None], causal, pattern)
        layer_mask = allowed_to_additive(pattern, model.dtype)
        outputs = model(input_ids=input_ids, attention_mask=layer_mask, position_ids=positions, cache=self.cache,
                        key_positions=key_positions, logits_to_keep=read_columns)
        self.positions, self.valid = key_positions, key_valid
        return outputs.logits

    def crop(self, width: int) -> None:
        """Keep the first ``width`` columns."""
        if width < self.width:
            crop_dynamic_cache(self.cache, width)
            self.valid, self.positions = self.valid[:, :width], self.positions[:, :width]

    def trim(self) -> None:
        """Drop trailing columns dead in every row (batch 1 never holds a dead column for long); when most columns
        are dead (rows of a batch accept different counts), move each row's live columns to the right end and drop
        the columns dead in every row. Attention is decided by positions and validity, not by column order."""
        alive = self.valid.any(dim=0).nonzero()
        self.crop(int(alive[-1]) + 1 if len(alive) else 0)
        live = int(self.valid.sum(dim=1).max()) if self.width else 0
        dead = self.width - live
        if dead > COMPACT_MIN_DEAD and dead > COMPACT_DEAD_SHARE * self.width:
            order = torch.argsort(self.valid.long(), dim=1, stable=True)[:, self.width - live:]
            gather_dynamic_cache(self.cache, order)
            self.valid, self.positions = self.valid.gather(1, order), self.positions.gather(1, order)


__all__ = ["KV_CACHE_MODES", "KV_CACHE_REFRESH", "CanvasKVStore", "ColumnCache", "StepWindow", "WindowPlanner"]
