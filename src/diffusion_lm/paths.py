"""Local path or Hub id? Model and dataset arguments that name local paths never reach the Hub.

A missing local path fails at once with FileNotFoundError naming it, instead of 30 s of Hub retries ending in
"couldn't connect to huggingface.co". A Hub id is only tried on the Hub when huggingface.co answers within a few
seconds; otherwise the run goes offline (cached copies still load) and a Hub id that is not cached fails at once.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket

# file types we read or write: a name ending in one is a file, never a Hub repository
LOCAL_EXTENSIONS = (
    ".gguf", ".safetensors", ".bin", ".pt", ".json", ".jsonl", ".txt", ".csv", ".parquet", ".arrow", ".yaml",
    ".yml", ".md", ".gz", ".zst",
)
HUB_HOST = "huggingface.co"
HUB_PROBE_TIMEOUT_S = 3.0


def looks_local(name: str) -> bool:
    """True when ``name`` can only be a local path: it exists, starts like a path (``.``, ``/``, ``~``), is a glob,
    ends in a known file extension, has more parts than ``owner/name``, starts with an existing local directory,
    or is no valid Hub repository id."""
    if not name:
        return True
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name.startswith((".", "/", "~", "\\")) or os.path.splitdrive(name)[0]:
        return True
    if glob.has_magic(name) or name.lower().endswith(LOCAL_EXTENSIONS):
        return True
    parts = name.replace("\\", "/").split("/")
    if len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0])):  # e.g. runs/sft when runs/ exists
        return True
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def require_local_path(name: str, what: str, *, kind: str = "any") -> str:
    """``name`` with ``~`` expanded; FileNotFoundError naming ``what`` and the path when nothing is there.

    ``kind`` is ``"file"``, ``"dir"`` or ``"any"``; a glob counts as present when it matches a file.
    """
    path = os.path.expanduser(name)
    if glob.has_magic(path) and not os.path.exists(path):
        if not glob.glob(path):
            raise FileNotFoundError(f"{what}: no file matches {name}")
        return path
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: {name} does not exist")
    if kind == "dir" and not os.path.isdir(path):
        raise NotADirectoryError(f"{what}: {name} is a file, expected a directory")
    if kind == "file" and not os.path.isfile(path):
        raise IsADirectoryError(f"{what}: {name} is a directory, expected a file")
    return path


def resolve_reference(name: str, what: str, *, kind: str = "any") -> str:
    """A model / dataset argument: a local path (checked, ``~`` expanded) or a Hub id (returned as given)."""
    if looks_local(name):
        return require_local_path(name, what, kind=kind)
    return name


def resolve_model_reference(name: str, what: str, *, gguf: bool = False) -> str:
    """A model argument: a Hub id as given, or a local checkpoint directory (with ``config.json`` or, for a LoRA
    adapter, ``adapter_config.json``) or, when ``gguf``, a ``.gguf`` file; FileNotFoundError otherwise."""
    if not looks_local(name):
        return name
    path = require_local_path(name, what)
    if os.path.isfile(path):
        if gguf and path.endswith(".gguf"):
            return path
        expected = "a checkpoint directory or .gguf file" if gguf else "a checkpoint directory"
        raise NotADirectoryError(f"{what}: {name} is a file, expected {expected}")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(f"{what}: {name} has no config.json; is it a checkpoint directory?")
    return path


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> None:
    """``value`` as JSON into ``path`` (its folder created), replaced in one rename: a kill never leaves half a
    file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.partial"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=indent)
    os.replace(temporary, path)


def read_json(path: str | os.PathLike, what: str | None = None):
    """The JSON value in the local file ``path``; None when there is no such file; ValueError naming the file (or
    ``what``) when it is not valid JSON."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    problem = utf8_problem(data)
    if problem is not None:
        raise ValueError(f"{what or path} is not UTF-8 text ({problem})")
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{what or path} is not valid JSON: {error}") from None


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to huggingface.co (or HF_ENDPOINT) opens within ``timeout`` seconds."""
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_offline_flag() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def hub_offline():
    """Offline mode for huggingface_hub, transformers and datasets inside the block (restored afterwards): Hub ids
    load from the local cache or fail at once, without retries."""
    from huggingface_hub import constants

    previous_env = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    previous_flags = [(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)]
    try:
        import datasets.config as datasets_config

        previous_flags += [(datasets_config, name, getattr(datasets_config, name))
                           for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(datasets_config, name)]
    except ImportError:
        pass
    for module, name, _ in previous_flags:
        setattr(module, name, True)
    os.environ.update({key: "1" for key in previous_env})
    try:
        yield
    finally:
        for module, name, value in previous_flags:
            setattr(module, name, value)
        for key, value in previous_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def model_in_hub_cache(repo_id: str) -> bool:
    """Whether the Hub cache holds a config.json of ``repo_id`` (what loading it offline needs first)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def current_umask() -> int:
    """The process's umask, read without changing it where /proc tells it (os.umask sets it while reading)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_permissions(*paths: str | os.PathLike) -> None:
    """Give every file under ``paths`` that was left private (mode 0600, what an atomic save's temporary file has:
    safetensors writes ``model.safetensors`` that way) the mode an ordinary write gives: 0666 minus the umask. Files
    with any other mode were written with the umask already and stay as they are."""
    wanted = 0o666 & ~current_umask()
    for root in paths:
        root = os.fspath(root)
        if os.path.isfile(root):
            files = [root]
        else:
            files = [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]
        for file in files:
            try:
                mode = os.lstat(file).st_mode
            except OSError:
                continue
            if not os.path.islink(file) and mode & 0o777 == 0o600 and wanted != 0o600:
                os.chmod(file, wanted)


def utf8_problem(data: bytes, offset: int = 0, final: bool = True) -> str | None:
    """None when ``data`` (found at byte ``offset`` of its file) is valid UTF-8, else what is wrong and where:
    ``invalid byte 0xff at byte offset 1234``. With ``final=False`` a character cut at the end is fine."""
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        if not final and error.start >= len(data) - 3 and error.reason == "unexpected end of data":
            return None
        return f"invalid byte 0x{data[error.start]:02x} at byte offset {offset + error.start}"


def check_utf8_file(path: str | os.PathLike, what: str, chunk_bytes: int = 1 << 22) -> None:
    """ValueError ``{what} {path} is not UTF-8 text (invalid byte 0x.. at byte offset N)`` for the first byte of
    ``path`` that is not UTF-8; reads the whole file in chunks."""
    offset, carry = 0, b""  # carry: the start of a character cut by the chunk's end
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_bytes)
            data = carry + chunk
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as error:
                cut = error.reason == "unexpected end of data" and error.start >= len(data) - 3
                if not (cut and chunk):  # a real error, or a character cut by the end of the file
                    raise ValueError(f"{what} {path} is not UTF-8 text ({utf8_problem(data, offset)})") from None
                carry = data[error.start:]
                offset += error.start
                continue
            if not chunk:
                return
            offset += len(data)


def read_text(path: str | os.PathLike, what: str) -> str:
    """The text of the UTF-8 file ``path``; ValueError naming ``what``, the file and the byte offset otherwise."""
    with open(path, "rb") as f:
        data = f.read()
    problem = utf8_problem(data)
    if problem is not None:
        raise ValueError(f"{what} {path} is not UTF-8 text ({problem})")
    return data.decode("utf-8")
