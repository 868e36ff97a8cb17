"""Corpora for continual pre-training: load (Hub name, local txt/json/jsonl/csv/parquet, streaming) and pack.

Packing joins documents with EOS into one token stream and cuts it into fixed blocks, as the reference does.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import torch
from datasets import Dataset, IterableDataset, load_dataset

_LOCAL_BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _local_files(dataset: str) -> list[str]:
    if os.path.isdir(dataset):
        files = sorted(f for f in glob.glob(os.path.join(dataset, "*")) if os.path.splitext(f)[1] in _LOCAL_BUILDERS)
        if not files:
            raise ValueError(f"no .txt/.json/.jsonl/.csv/.parquet files in directory {dataset}")
        return files
    return sorted(glob.glob(dataset))


def load_text_dataset(
    dataset: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    streaming: bool = False,
    text_sample_by: str = "paragraph",
) -> Dataset | IterableDataset:
    """A text dataset from a Hub name or local file(s) (path, glob or directory of same-type files)."""
    files = _local_files(dataset)
    if files:
        extensions = {os.path.splitext(f)[1] for f in files}
        builders = {_LOCAL_BUILDERS.get(ext) for ext in extensions}
        if None in builders or len(builders) != 1:
            raise ValueError(f"local dataset files must share one of {sorted(_LOCAL_BUILDERS)}; got {sorted(extensions)}")
        builder = builders.pop()
        extra = {"sample_by": text_sample_by} if builder == "text" else {}
        return load_dataset(builder, data_files=files, split="train", streaming=streaming, **extra)
    if os.path.sep in dataset and not os.path.exists(dataset) and dataset.startswith((".", "/")):
        raise ValueError(f"dataset path does not exist: {dataset}")
    return load_dataset(dataset, config_name, split=split, streaming=streaming)


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
        stream: list[int] = []
        for text in batch[text_column]:
            if text and text.strip():
                stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
                stream.append(tokenizer.eos_token_id)
        usable = len(stream) // block_size * block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

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
