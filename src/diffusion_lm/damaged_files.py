"""Damaged-file checks of checkpoint directories, from headers and archive directories alone (no tensor is read):
what a full disk, a killed save or a cut-short download leaves behind. ``checkpoint`` names the damaged file in its
load errors and skips damaged Trainer checkpoints when resuming.
"""

from __future__ import annotations

import glob
import json
import os
import struct


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the safetensors file ``path`` (None: its header parses and the file holds every tensor it
    lists), from the header alone: truncated, empty, or not a safetensors file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                return f"truncated ({size} bytes; not even a header)"
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > size - 8:
                return f"truncated ({size} bytes, its header alone needs {header_length + 8})"
            header = json.loads(f.read(header_length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, struct.error):
        return "not a safetensors file (its header does not parse)"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if not isinstance(header, dict):
        return "not a safetensors file (its header does not parse)"
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets", ())) == 2]
    needed = 8 + header_length + max(ends, default=0)
    if size < needed:
        return f"truncated ({size} of {needed} bytes)"
    return None


def torch_file_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a ``torch.save`` file (None: a complete zip archive, as torch writes them: its directory at
    the end lists members that all lie inside the file). Reads the archive's directory only, not the tensors."""
    import zipfile

    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty (0 bytes)"
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
        end = max((info.header_offset + info.compress_size for info in members), default=0)
        if not members or end > size:
            return f"truncated ({size} of at least {end} bytes)" if members else "holds nothing"
        return None
    except zipfile.BadZipFile:
        return f"truncated or not a torch file ({size} bytes, its archive directory is missing)"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"


def damaged_weight_files(directory: str) -> list[tuple[str, str]]:
    """(file, what is wrong) for each weights file of a checkpoint directory that is damaged."""
    found = []
    for pattern, problem_of in (("*.safetensors", safetensors_problem), ("*.bin", torch_file_problem)):
        for path in sorted(glob.glob(os.path.join(directory, pattern))):
            problem = problem_of(path)
            if problem:
                found.append((path, problem))
    return found


def damaged_json_files(directory: str) -> list[tuple[str, str]]:
    """(file, what is wrong) for each top-level ``*.json`` file of ``directory`` that is not UTF-8 JSON."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as error:
            found.append((path, f"unreadable ({error.strerror or error})"))
            continue
        if not data.strip():
            found.append((path, "empty"))
            continue
        try:
            json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            found.append((path, f"not UTF-8 (invalid byte 0x{data[error.start]:02x} at byte offset {error.start})"))
        except json.JSONDecodeError as error:
            found.append((path, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; cut "
                                "short?)"))
    return found


__all__ = ["damaged_json_files", "damaged_weight_files", "safetensors_problem", "torch_file_problem"]
