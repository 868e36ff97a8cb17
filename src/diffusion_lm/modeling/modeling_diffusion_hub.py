"""What ``save_pretrained`` / ``from_pretrained`` add for diffusion checkpoints: the ``auto_map`` that makes a saved
directory load as remote code, the training record and the model card, and the Hub upload of exactly that folder.

Only the standard library, ``torch`` and ``transformers`` are imported: this file travels with checkpoints.
"""

from __future__ import annotations


class DiffusionAutoMapMixin:
    """Makes every ``save_pretrained`` directory ready for the Hub, and ``push_to_hub`` upload exactly that.

    - ``config.json`` gets an ``auto_map`` serving ``AutoModel`` and ``AutoModelForCausalLM`` (TRL / PEFT load
      through the latter); transformers copies this file's code and its relative imports next to it.
    - ``training_info`` (a JSON-able dict, see ``diffusion_lm.hub.TrainingInfo``) is written as
      ``diffusion_lm_training.json``.
    - ``README.md``: an existing card is kept; otherwise the card is rendered by ``diffusion_lm.hub`` where that
      package is installed, else ``model_card_text`` is written (``from_pretrained`` reads both from a local
      checkpoint, so they survive a load / save / push round trip as remote code).

    Saving and loading use only the standard library (this file travels with checkpoints as remote code); the upload
    uses huggingface_hub, which transformers itself depends on.
    """

    TRAINING_INFO_NAME = "diffusion_lm_training.json"
    training_info: dict | None = None
    model_card_text: str | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        import json
        import os

        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        directory = os.path.join(os.fspath(pretrained_model_name_or_path or ""), kwargs.get("subfolder") or "")
        # local directories only: a Hub repo keeps its card there, and fetching it here would cost a request
        if pretrained_model_name_or_path and os.path.isdir(directory):
            info_path = os.path.join(directory, cls.TRAINING_INFO_NAME)
            if os.path.isfile(info_path):
                with open(info_path, encoding="utf-8") as f:
                    model.training_info = json.load(f)
            readme = os.path.join(directory, "README.md")
            if os.path.isfile(readme):
                with open(readme, encoding="utf-8") as f:
                    model.model_card_text = f.read()
        return loaded

    def save_pretrained(self, save_directory, *args, push_to_hub: bool = False, repo_id: str | None = None, **kwargs):
        """As transformers' ``save_pretrained``, plus the training record and card; ``repo_id`` names the model in
        the card's usage snippet (and is the target with ``push_to_hub=True``)."""
        import os

        module_name = type(self).__module__.split(".")[-1]
        entry = f"{module_name}.{type(self).__name__}"
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", entry)
        auto_map.setdefault("AutoModelForCausalLM", entry)
        self.config.auto_map = auto_map
        # transformers' own push would write the Hub repo's current card (or a blank one) over ours
        upload_kwargs = {k: kwargs.pop(k) for k in ("commit_message", "commit_description", "private", "create_pr",
                                                     "revision") if k in kwargs}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        is_main_process = args[0] if args else kwargs.get("is_main_process", True)
        if is_main_process:
            self._write_card_files(save_directory, repo_id)
        if push_to_hub and is_main_process:
            repo_id = repo_id or os.path.basename(os.path.normpath(os.fspath(save_directory)))
            self._upload_folder(save_directory, repo_id, token=kwargs.get("token"), **upload_kwargs)
        return result

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ):
        """Upload what ``save_pretrained`` writes (weights, config, code, training record, card) to ``repo_id``.

        Same arguments as transformers' ``push_to_hub``; ``revision`` names a branch, created when missing.
        """
        import tempfile

        if tags:
            self.add_model_tags(tags)
        with tempfile.TemporaryDirectory() as work_dir:
            self.save_pretrained(work_dir, max_shard_size=max_shard_size, repo_id=repo_id)
            return self._upload_folder(
                work_dir,
                repo_id,
                token=token,
                private=private,
                revision=revision,
                create_pr=create_pr,
                commit_message=commit_message,
                commit_description=commit_description,
            )

    def _write_card_files(self, directory, repo_id: str | None) -> None:
        import json
        import os

        info_path = os.path.join(directory, self.TRAINING_INFO_NAME)
        if self.training_info is not None and not os.path.exists(info_path):
            with open(info_path, "w", encoding="utf-8") as f:
                json.dump(self.training_info, f, indent=2)
        readme = os.path.join(directory, "README.md")
        if os.path.exists(readme):
            return
        try:
            from diffusion_lm.hub import render_card
        except ImportError:  # loaded as remote code: carry on the card read at load time, if any
            render_card = None
        if render_card is not None:
            render_card(directory, repo_id=repo_id, tags=self.model_tags).save(readme)
        elif self.model_card_text:
            with open(readme, "w", encoding="utf-8") as f:
                f.write(self.model_card_text)

    @staticmethod
    def _upload_folder(folder, repo_id: str, *, token=None, private=None, revision=None, create_pr=False,
                       commit_message=None, commit_description=None):
        import os

        from huggingface_hub import CommitOperationAdd, HfApi  # a dependency of transformers itself

        # the file list is checked before anything reaches the Hub (a link out of the folder is refused)
        operations = [CommitOperationAdd(path, os.path.join(folder, path)) for path in files_to_upload(folder)]
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "Upload model",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )


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
    import os

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
    import os

    return os.path.commonpath([path, root]) == root
