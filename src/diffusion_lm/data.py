"""Corpora for continual pre-training: load (Hub name, local txt/json/jsonl/csv/parquet, streaming) and pack.

Packing joins documents with EOS into one token stream and cuts it into fixed blocks, as the reference does.
"""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass

import torch
from datasets import Dataset, IterableDataset, load_dataset
from datasets.exceptions import DatasetsError

_LOCAL_BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _local_files(dataset: str) -> list[str]:
    if os.path.isdir(dataset):
        files = sorted(f for f in glob.glob(os.path.join(dataset, "*")) if os.path.splitext(f)[1] in _LOCAL_BUILDERS)
        if not files:
            raise ValueError(f"no .txt/.json/.jsonl/.csv/.parquet files in directory {dataset}")
        return files
    return sorted(glob.glob(dataset))


def check_text_file(path: str) -> None:
    """ValueError naming ``path`` when it is empty or not text (a NUL byte in its first 64 KiB, or a byte anywhere
    that is not UTF-8: the message gives its offset)."""
    from .paths import check_utf8_file

    if os.path.getsize(path) == 0:
        raise ValueError(f"corpus file {path} is empty")
    if path.endswith(".parquet"):
        return
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if b"\0" in head:
        raise ValueError(f"corpus file {path} is binary, not text (it holds NUL bytes)")
    check_utf8_file(path, "corpus file")  # the whole file: the builders fail on a bad byte anywhere, unnamed
    if not head.strip():
        raise ValueError(f"corpus file {path} holds only whitespace")


@contextlib.contextmanager
def _no_load_count_ping():
    """datasets pings its servers to count loads of packaged builders (text, json, ...); reading local files must
    not touch the network."""
    import datasets.config

    previous = datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = previous


def load_text_dataset(
    dataset: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    streaming: bool = False,
    text_sample_by: str = "paragraph",
) -> Dataset | IterableDataset:
    """A text dataset from a Hub name or local file(s) (path, glob or directory of same-type files).

    A local path that does not exist raises FileNotFoundError at once (no Hub lookup); empty, binary or unreadable
    files raise ValueError naming the file.
    """
    from .paths import looks_local, require_local_path

    if looks_local(dataset):
        dataset = require_local_path(dataset, "dataset")
    files = _local_files(dataset)
    if files:
        extensions = {os.path.splitext(f)[1] for f in files}
        builders = {_LOCAL_BUILDERS.get(ext) for ext in extensions}
        if None in builders or len(builders) != 1:
            raise ValueError(f"local dataset files must share one of {sorted(_LOCAL_BUILDERS)}; got {sorted(extensions)}")
        for file in files:
            check_text_file(file)
        builder = builders.pop()
        extra = {"sample_by": text_sample_by} if builder == "text" else {}
        try:
            with _no_load_count_ping():
                return load_dataset(builder, data_files=files, split="train", streaming=streaming, **extra)
        except DatasetsError as error:  # e.g. malformed JSON: name the file, not the builder's internals
            cause = error.__cause__ or error
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise ValueError(f"cannot read {', '.join(files)} as {builder}: {detail}") from error
    return load_dataset(dataset, config_name, split=split, streaming=streaming)


def blocks_from_documents(
    documents, tokenizer, block_size: int, *, max_blocks: int | None = None
) -> list[list[int]]:
    """The packing rule, shared by training (``pack_tokens``) and held-out scoring: non-blank documents tokenised,
    each followed by EOS (when the tokenizer has one), joined and cut into ``block_size``-token blocks; the tail that
    does not fill a block is dropped. ``max_blocks``: stop after that many."""
    stream: list[int] = []
    blocks: list[list[int]] = []
    for text in documents:
        if not (text and text.strip()):
            continue
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
        while len(stream) >= block_size:
            blocks.append(stream[:block_size])
            stream = stream[block_size:]
            if max_blocks is not None and len(blocks) >= max_blocks:
                return blocks
    return blocks


def pack_tokens(
    dataset: Dataset | IterableDataset,
    tokenizer,
    block_size: int,
    *,
    text_column: str = "text",
    num_proc: int | None = None,
) -> Dataset | IterableDataset:
    """Tokenize, join documents with EOS and cut into ``block_size`` blocks; returns a dataset of ``input_ids``.

    The tail of each mapped batch that does not fill a block is dropped (as in transformers' run_clm).
    """
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token, needed to separate packed documents")
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"text column {text_column!r} not in the dataset's columns {columns}")

    def tokenize_and_pack(batch):
        return {"input_ids": blocks_from_documents(batch[text_column], tokenizer, block_size)}

    kwargs = {"batched": True, "remove_columns": columns}
    if isinstance(dataset, Dataset):
        kwargs.update(num_proc=num_proc, desc=f"Packing into blocks of {block_size}")
    return dataset.map(tokenize_and_pack, **kwargs)


@dataclass
class DiffusionDataCollator:
    """Right-pads ``input_ids`` to the longest sequence; ``attention_mask`` is 0 on padding (never masked or attended)."""

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        sequences = [torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features]
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = sequence
            attention_mask[row, : len(sequence)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
