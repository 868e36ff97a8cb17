"""lm-evaluation-harness model type ``diffusion_lm`` (optional: needs ``pip install lm-eval``).

- ``loglikelihood``: ``(score, is_greedy)``. ``score`` is minus the Monte-Carlo diffusion loss of the continuation
  given its frozen context: by default the ELBO estimator (count form, low variance) summed over the continuation's
  tokens, a *lower bound* on its log-likelihood (so a perplexity the harness derives from it is an upper bound), and
  the harness's ``acc`` / ``acc_norm`` (which divides by length itself) mean what they say. ``is_greedy`` is True
  exactly when greedy diffusion decoding of the masked continuation (its length known, the context frozen, the
  adapter's decoding settings) reproduces it token for token, as the paper's LAMBADA evaluation decides a hit; this
  costs a decode per request, so ``greedy_check=false`` skips it for multiple-choice tasks that never read it (then
  ``is_greedy`` is always False, and a metric built on it is meaningless).
- ``loglikelihood_rolling``: the ELBO bound of the whole text.
- ``generate_until``: diffusion decoding of ``max_gen_toks`` tokens, cut at the first stop string.

Importing this module registers the model. lm-eval releases that discover plugins through the ``lm_eval.models``
entry-point group find it by themselves; with older ones (0.4.x up to at least 0.4.13) run the harness through
``diffusion_lm.evaluation.lm_eval_cli``, which imports this module first:

    python -m diffusion_lm.evaluation.lm_eval_cli run --model diffusion_lm --model_args pretrained=DIR --tasks ...
"""

from __future__ import annotations

import hashlib

import torch

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as error:  # keep the error actionable: lm-eval is an optional dependency
    raise ImportError(
        "the lm-evaluation-harness adapter needs lm-eval: pip install 'lm-eval>=0.4' (or diffusion-lm[eval])"
    ) from error

from ..infilling import decode_text
from .evaluators import (
    DecodingSettings,
    DiffusionEvaluator,
    ScoringSettings,
    context_token_ids,
    continuation_token_ids,
    cut_at_eos,
)
from .scoring import ScoringRequest


def _stable_key(*texts: str) -> tuple[int]:
    """A request's Monte-Carlo key from its text, so its score does not depend on the order of the requests."""
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "little") % (2**62),)


def _noise_key(request, context: str) -> tuple[int]:
    """The choices of one document share their noise (common random numbers: the noise moves their scores together
    rather than deciding the answer); without a document id, requests with the same context share it."""
    doc_id = getattr(request, "doc_id", None)
    if doc_id is not None:
        return _stable_key(str(getattr(request, "task_name", "")), str(doc_id))
    return _stable_key(context)


@register_model("diffusion_lm")
class DiffusionLMEval(LM):
    """``--model_args pretrained=DIR[,mc_samples=32,estimator=elbo,seed=0,steps=N,alg=confidence,max_gen_toks=256,
    greedy_check=true,dtype=float32]``; a loaded model can be passed instead as
    ``DiffusionLMEval(model=..., tokenizer=...)``."""

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        model=None,
        tokenizer=None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | str | None = 1,
        max_batch_size: int | None = None,  # passed by the harness; unused (no automatic batch search)
        mc_samples: int = 32,
        estimator: str = "elbo",
        seed: int = 0,
        steps: int | None = None,
        alg: str = "confidence",
        kv_cache: str | None = None,
        threshold: float | None = None,
        block_length: int | None = None,
        max_gen_toks: int = 256,
        max_length: int | None = None,
        greedy_check: bool | str = True,
    ):
        super().__init__()
        if (pretrained is None) == (model is None):
            raise ValueError("pass exactly one of pretrained (a checkpoint) and model (a loaded model)")
        if model is not None and tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but this machine has no CUDA: pass --device cpu")
        if pretrained is not None:
            from ..checkpoint import load_checkpoint

            model, tokenizer = load_checkpoint(str(pretrained), dtype=dtype, device=device, what="pretrained")
        if batch_size is None or str(batch_size).startswith("auto"):
            batch_size = 1  # no automatic batch-size search
        # the harness's batch size counts requests; each request is scored on mc_samples corrupted rows
        rows_per_forward = max(1, int(batch_size)) * int(mc_samples)
        scoring = ScoringSettings(int(mc_samples), str(estimator), int(seed), batch_size=rows_per_forward)
        kv_cache = None if kv_cache in (None, "", "none", "None") else str(kv_cache)  # model_args arrive as strings
        decoding = DecodingSettings(steps=int(steps) if steps else None, alg=str(alg), seed=int(seed),
                                    kv_cache=kv_cache, threshold=float(threshold) if threshold else None,
                                    block_length=int(block_length) if block_length else None)
        self.evaluator = DiffusionEvaluator(model, tokenizer, scoring, decoding)
        self.tokenizer = tokenizer
        self._device = torch.device(device)
        self.max_gen_toks = int(max_gen_toks)
        self.greedy_check = str(greedy_check).lower() not in ("false", "0", "no")  # model_args arrive as strings
        config = model.config
        self.max_length = int(
            max_length or getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)
        )

    # -- scoring --

    def _score(self, requests: list[ScoringRequest], keys, description: str) -> list[float]:
        scores = self.evaluator.score(requests, keys, progress=description)
        return [-score.total for score in scores]

    def _truncate_left(self, context_ids: list[int], target_ids: list[int]) -> list[int]:
        """Drop the oldest context tokens so context + target fits the model (at least one context token stays)."""
        if len(target_ids) >= self.max_length:
            raise ValueError(f"a continuation of {len(target_ids)} tokens does not fit max_length={self.max_length}")
        return context_ids[-(self.max_length - len(target_ids)) :]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        batch, keys, positions, targets = [], [], [], []
        for position, request in enumerate(requests):
            context, continuation = request.args
            target_ids = continuation_token_ids(self.tokenizer, continuation)
            if not target_ids:  # the empty continuation has probability 1
                results[position] = (0.0, False)
                continue
            context_ids = self._truncate_left(context_token_ids(self.tokenizer, context), target_ids)
            batch.append(ScoringRequest.from_parts(context_ids, target_ids))
            keys.append(_noise_key(request, context))
            positions.append(position)
            targets.append((context_ids, target_ids))
        if batch:
            greedy = self._is_greedy(targets, keys, not disable_tqdm) if self.greedy_check else [False] * len(batch)
            for position, value, hit in zip(positions, self._score(batch, keys, "diffusion loglikelihood"), greedy):
                results[position] = (value, hit)
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results  # type: ignore[return-value]

    def _is_greedy(self, targets: list[tuple[list[int], list[int]]], keys, progress: bool) -> list[bool]:
        """Does greedy diffusion decoding of ``len(target)`` masked tokens after the context reproduce the target?"""
        items = [(context_ids, len(target_ids), []) for context_ids, target_ids in targets]
        generated = self.evaluator.fill_many(items, [key[0] for key in keys],
                                             progress=progress and "diffusion greedy check")
        return [list(ids) == list(target_ids) for ids, (_, target_ids) in zip(generated, targets)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """ELBO bound of each text, in windows of ``max_length`` tokens; each window starts with the token before
        it (BOS for the first), which is given, not scored."""
        start = context_token_ids(self.tokenizer, "")
        batch, keys, owners = [], [], []
        for index, request in enumerate(requests):
            (text,) = request.args
            ids = continuation_token_ids(self.tokenizer, text)
            if not ids:
                raise ValueError(f"loglikelihood_rolling request {index} holds an empty text")
            window = self.max_length - 1
            for offset in range(0, len(ids), window):
                given = start if offset == 0 else ids[offset - 1 : offset]
                batch.append(ScoringRequest.from_parts(given, ids[offset : offset + window]))
                keys.append((*_stable_key(text), offset))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, value in zip(owners, self._score(batch, keys, "diffusion rolling loglikelihood")):
            totals[owner] += value
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # -- generation --

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs: list[str | None] = [None] * len(requests)
        jobs: dict[int, list] = {}  # max_gen_toks -> [(position, prompt ids, stop strings, key)]
        for position, request in enumerate(requests):
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new_tokens = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            prompt_ids = context_token_ids(self.tokenizer, context)[-max(1, self.max_length - max_new_tokens) :]
            jobs.setdefault(max_new_tokens, []).append((position, prompt_ids, until, _stable_key(context)[0]))
        for max_new_tokens, group in jobs.items():
            generated = self.evaluator.continue_many(
                [job[1] for job in group],
                max_new_tokens,
                [job[3] for job in group],
                batch_size=max(1, self.evaluator.scoring.batch_size // self.evaluator.scoring.mc_samples),
                progress=not disable_tqdm and "diffusion generate_until",
            )
            for (position, _, until, _), ids in zip(group, generated):
                text = decode_text(self.tokenizer, cut_at_eos(ids, self.tokenizer.eos_token_id), self.evaluator.model.config)
                for stop in until:  # cut at the first stop string
                    if stop:
                        text = text.split(stop, 1)[0]
                outputs[position] = text
        for request, text in zip(requests, outputs):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return outputs  # type: ignore[return-value]

    # -- chat templates (--apply_chat_template) --

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

