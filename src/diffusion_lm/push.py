"""Publishing a checkpoint directory: is it push-ready, which files go, and the upload itself.

A checkpoint directory is push-ready when it holds everything ``AutoModel.from_pretrained(dir,
trust_remote_code=True)`` needs with only torch and transformers installed: ``config.json`` with ``auto_map``, the
configuration / modeling / generation code files, safetensors weights, ``generation_config.json``, the tokenizer with
its mask token, and a ``README.md`` model card (``model_card``). ``checkpoint.save_checkpoint`` writes such
directories; ``diffusion-lm push`` (``push_checkpoint``) uploads one in a single commit.
"""

from __future__ import annotations

import os
import sys

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .model_card import is_generated_card, load_tokenizer, render_card
from .paths import read_json

REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM")
# what checkpoint code may import: it runs as remote code where only torch and transformers are promised
REMOTE_CODE_PACKAGES = {"torch", "transformers"}

# what a Trainer leaves next to a model that does not belong in a model repository
TRAINER_LEFTOVER_FILES = {"optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "trainer_state.json"}
TRAINER_LEFTOVER_DIRS = {"__pycache__", "runs", "wandb"}
# pickle files run code when they are loaded; the weights travel as safetensors
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def files_to_upload(folder) -> list[str]:
    """The files (relative, "/"-separated, sorted) that a push of ``folder`` uploads.

    Left out: hidden files and folders, ``checkpoint-*`` folders, Trainer state (optimizer, scheduler, RNG states,
    training arguments), pickles, and sub-folders that hold a PEFT adapter (``adapter_config.json``: its base is a
    local path). A symbolic link whose target lies outside ``folder`` (or does not exist) is refused with a
    ValueError: skipping it could leave out the weights or tokenizer of a push that reports success, and following
    it would publish a file from elsewhere on the machine. Links within ``folder`` are uploaded as the file they
    point at; linked folders are not followed.
    """
    root = os.path.realpath(folder)
    if not os.path.isdir(root):
        raise ValueError(f"not a directory: {folder}")
    selected, escaping = [], []
    for current, dirs, files in os.walk(root):
        kept_dirs = []
        for name in sorted(dirs):
            path = os.path.join(current, name)
            if name.startswith(".") or name.startswith("checkpoint-") or name in TRAINER_LEFTOVER_DIRS:
                continue
            if os.path.islink(path):  # os.walk does not follow it; a link out of the folder must not pass unseen
                if not _inside(os.path.realpath(path), root):
                    escaping.append(path)
                continue
            if os.path.isfile(os.path.join(path, "adapter_config.json")):
                continue
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            if (name.startswith(".") or name in TRAINER_LEFTOVER_FILES or name.startswith("rng_state")
                    or name.lower().endswith(PICKLE_SUFFIXES)):
                continue
            path = os.path.join(current, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if not _inside(target, root) or not os.path.isfile(target):
                    escaping.append(path)
                    continue
            selected.append(os.path.relpath(path, root).replace(os.sep, "/"))
    if escaping:
        shown = ", ".join(f"{os.path.relpath(p, root)} -> {os.readlink(p)}" for p in escaping[:3])
        more = f" and {len(escaping) - 3} more" if len(escaping) > 3 else ""
        raise ValueError(
            f"refusing to push {folder}: symbolic links point outside it or nowhere ({shown}{more}); copy the files "
            "in or remove the links"
        )
    return sorted(selected)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def push_readiness_problems(model_dir: str | os.PathLike) -> list[str]:
    """What keeps ``model_dir`` from loading on the Hub with only torch + transformers (empty when push-ready)."""
    if not os.path.isdir(model_dir):
        return [f"{model_dir} is not a directory"]
    config = read_json(os.path.join(model_dir, "config.json"))
    if config is None:
        return ["config.json is missing"]
    problems = []
    auto_map = config.get("auto_map") or {}
    for auto_class in REQUIRED_AUTO_CLASSES:
        if auto_class not in auto_map:
            problems.append(f"config.json auto_map has no {auto_class} entry")
    modules = {entry.split("--")[-1].rsplit(".", 1)[0] for entry in auto_map.values() if isinstance(entry, str)}
    checked: set[str] = set()
    for module in sorted(modules):
        problems += _code_problems(model_dir, f"{module}.py", checked)
    problems += _weight_problems(model_dir, config)
    if not os.path.isfile(os.path.join(model_dir, "generation_config.json")):
        problems.append("generation_config.json is missing")
    problems += _tokenizer_problems(model_dir, config.get("mask_token_id"))
    readme = os.path.join(model_dir, "README.md")
    if not os.path.isfile(readme):
        problems.append(f"README.md (model card) is missing: write it with `diffusion-lm card {model_dir}`")
    else:
        card = ModelCard.load(readme)
        if not card.data.to_dict():
            problems.append("README.md has no YAML metadata")
    return problems


def ensure_push_ready(model_dir: str | os.PathLike) -> None:
    problems = push_readiness_problems(model_dir)
    if problems:
        raise ValueError(f"{model_dir} is not ready to push: " + "; ".join(problems))


def _code_problems(model_dir, filename: str, checked: set[str]) -> list[str]:
    """Missing code files and imports the Hub environment will not have, following relative imports."""
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    if filename in checked:
        return []
    checked.add(filename)
    path = os.path.join(model_dir, filename)
    if not os.path.isfile(path):
        return [f"code file {filename} is missing"]
    problems = []
    # get_imports skips imports guarded by try/except, as transformers does when it checks remote code
    foreign = sorted(
        name for name in get_imports(path)
        if name not in REMOTE_CODE_PACKAGES and name not in sys.stdlib_module_names
    )
    if foreign:
        problems.append(f"{filename} imports {foreign}, which a torch + transformers environment lacks")
    for module in get_relative_imports(path):
        problems += _code_problems(model_dir, f"{module}.py", checked)
    return problems


def _weight_problems(model_dir, config: dict) -> list[str]:
    index = read_json(os.path.join(model_dir, "model.safetensors.index.json"))
    if index is not None:
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing = [shard for shard in shards if not os.path.isfile(os.path.join(model_dir, shard))]
        return [f"weight shards missing: {missing}"] if missing or not shards else []
    if os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        return []
    return ["no safetensors weights (model.safetensors or model.safetensors.index.json)"]


def _tokenizer_problems(model_dir, mask_token_id: int | None) -> list[str]:
    if not os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")):
        return ["tokenizer files are missing (tokenizer_config.json)"]
    if mask_token_id is None:
        return ["config.json has no mask_token_id"]
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.mask_token_id != mask_token_id:
        return [f"the tokenizer's mask token id is {tokenizer.mask_token_id}, the config's {mask_token_id}"]
    return []


def commit_operations(model_dir: str | os.PathLike, repo_id: str | None = None) -> list[CommitOperationAdd]:
    """The files an upload of ``model_dir`` commits, as huggingface_hub commit operations.

    The selection is ``files_to_upload`` (shared with ``model.push_to_hub``): Trainer leftovers (optimizer state,
    checkpoint-* folders, logs), pickles and hidden files stay behind, and a symbolic link pointing outside
    ``model_dir`` is refused. A card rendered by diffusion-lm is rendered again for ``repo_id`` so its usage snippet
    names the repository; a hand-written README.md is uploaded as it is.
    """
    model_dir = os.fspath(model_dir)
    operations = []
    for path_in_repo in files_to_upload(model_dir):
        path = os.path.join(model_dir, *path_in_repo.split("/"))
        if path_in_repo == "README.md" and repo_id is not None:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if is_generated_card(text):
                tags = ModelCard(text, ignore_metadata_errors=True).data.tags  # keep tags added since
                card = render_card(model_dir, repo_id=repo_id, tags=tags)
                operations.append(CommitOperationAdd("README.md", str(card).encode("utf-8")))
                continue
        operations.append(CommitOperationAdd(path_in_repo, path))
    return operations


def push_checkpoint(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
):
    """Upload a push-ready checkpoint directory to ``repo_id`` (created if needed) in one commit.

    The token comes from ``token``, else ``HF_TOKEN`` or the stored login (huggingface_hub's usual lookup).
    ``revision`` names a branch, created from main when it does not exist. Returns huggingface_hub's CommitInfo.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repo id {repo_id!r}: {error}") from None
    ensure_push_ready(model_dir)
    operations = commit_operations(model_dir, repo_id)  # refusals (links out of the folder) come before any request
    api = api or HfApi(token=token)
    created = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if created != repo_id:  # the card names the repository as the Hub spells it
        repo_id, operations = created, commit_operations(model_dir, created)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or "Upload diffusion-lm checkpoint",
        revision=revision,
        create_pr=create_pr,
    )


__all__ = ["commit_operations", "ensure_push_ready", "files_to_upload", "push_checkpoint", "push_readiness_problems"]
