"""The frozen AR base as a teacher: its next-token distribution joins the diffusion loss (``distill_weight``).

Adaptation starts from the AR model, so the teacher is that model run causally: with a LoRA adapter it is the model
itself with the adapter disabled (no second copy of the weights); otherwise a frozen copy taken before the first
step. It reads the clean context (every token before the one predicted) and hands over its top-k distribution of
each token, renormalised: ``(ids, probs)``, each (B, L, K), entry j the distribution of token j (entry 0 is empty:
nothing predicts the first token). The student is trained against ``(1 - w) * one-hot + w * teacher`` at each
scored position (``diffusion_loss.diffusion_loss_from_cross_entropy``): the forward KL(teacher || student),
mode-covering, as in classic distillation; the teacher never receives a gradient.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from .modeling.attention_annealing import build_attention_mask
from .modeling.modeling_diffusion_utils import lm_head_vocab_size, loss_chunk_rows
from .objective import unwrapped_model

DEFAULT_DISTILL_TOP_K = 64


def is_peft_model(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class ARTeacher:
    """Next-token top-k distributions of the frozen AR model (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, top_k: int = DEFAULT_DISTILL_TOP_K, *, share_weights: bool = False):
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"distill_top_k must be an integer >= 1, got {top_k!r}")
        self.top_k = top_k
        self.share_weights = share_weights
        self.model = model

    @classmethod
    def of(cls, model: torch.nn.Module, top_k: int = DEFAULT_DISTILL_TOP_K) -> "ARTeacher":
        """The teacher of ``model`` as it is now (before training): the adapter-disabled model itself for a PEFT
        model, else a frozen copy."""
        model = unwrapped_model(model)
        if is_peft_model(model):
            return cls(model, top_k, share_weights=True)
        frozen = copy.deepcopy(model).eval()
        frozen.requires_grad_(False)
        return cls(frozen, top_k)

    def _context(self):
        return self.model.disable_adapter() if self.share_weights else contextlib.nullcontext()

    @torch.no_grad()
    def next_token_distributions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(ids, probs), each (B, L, K): entry j is the teacher's top-k distribution of token j given tokens < j."""
        batch_size, seq_len = input_ids.shape
        base = unwrapped_model(self.model)
        # the logits the model itself reads (soft-capped where the family caps them, Gemma)
        head = base.logits_head() if hasattr(base, "logits_head") else base.get_output_embeddings()
        was_training = self.model.training
        self.model.eval()  # no dropout in the teacher, also when it shares the student's modules
        try:
            with self._context():
                dtype = base.get_input_embeddings().weight.dtype
                mask = build_attention_mask(attention_mask, batch_size, seq_len, dtype, input_ids.device, mode="causal")
                hidden = self.model(input_ids=input_ids, attention_mask=mask,
                                    logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
                hidden = hidden.last_hidden_state[:, :-1].reshape(-1, hidden.last_hidden_state.shape[-1])
                vocab_size = lm_head_vocab_size(head)
                k = min(self.top_k, vocab_size)
                ids = torch.zeros((hidden.shape[0], k), dtype=torch.long, device=input_ids.device)
                probs = torch.zeros((hidden.shape[0], k), dtype=torch.float32, device=input_ids.device)
                rows = loss_chunk_rows(vocab_size)
                for start in range(0, hidden.shape[0], rows):
                    top = torch.softmax(head(hidden[start:start + rows]).float(), dim=-1).topk(k, dim=-1)
                    ids[start:start + rows] = top.indices
                    probs[start:start + rows] = top.values / top.values.sum(dim=-1, keepdim=True)
        finally:
            self.model.train(was_training)
        pad = lambda t: torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)  # noqa: E731  (token 0: no prediction)
        return pad(ids.view(batch_size, seq_len - 1, k)), pad(probs.view(batch_size, seq_len - 1, k))


__all__ = ["ARTeacher", "DEFAULT_DISTILL_TOP_K", "is_peft_model"]
