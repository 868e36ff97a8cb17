"""``diffusion-lm push``, ``diffusion-lm card`` and ``diffusion-lm import-reference``."""

from __future__ import annotations

import argparse
import os

from ..checkpoint import DTYPE_NAMES



def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.set_defaults(_hub_command=name)
    if name == "push":
        parser.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint directory (push-ready)")
        parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, e.g. user/my-diffugpt")
        parser.add_argument("--private", action="store_true", help="create the repository as private")
        parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created when missing)")
        parser.add_argument("--commit-message", help="commit message")
        parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    elif name == "card":
        parser.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint directory")
        parser.add_argument("--repo-id", help="model id the card's usage snippet loads (default: the directory name)")
    elif name == "import-reference":
        parser.add_argument("src", metavar="SRC", help="Hub id (e.g. diffusionfamily/diffugpt-s) or local directory")
        parser.add_argument("out_dir", metavar="OUT_DIR", help="where to write the converted checkpoint")
        parser.add_argument("--mask-token-id", type=int, help="override the reference's mask token id")
        parser.add_argument("--revision", help="Hub revision of SRC")
        parser.add_argument("--dtype", choices=DTYPE_NAMES, default="auto", help="weights dtype (default: as stored)")
        parser.add_argument("--repo-id", help="model id the card's usage snippet loads (default: OUT_DIR's name)")
    else:
        raise ValueError(f"diffusion_lm.cli.hub does not serve the command {name!r}")


def run(args: argparse.Namespace) -> int:
    if args._hub_command == "push":
        from ..push import push_checkpoint

        commit = push_checkpoint(
            args.model_dir,
            args.repo_id,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
        )
        print(f"Pushed {args.model_dir} to {getattr(commit, 'commit_url', None) or args.repo_id}")
    elif args._hub_command == "card":
        from ..model_card import write_card

        write_card(args.model_dir, repo_id=args.repo_id)
        print(f"Wrote {os.path.join(args.model_dir, 'README.md')}")
    else:
        from ..reference_import import import_reference

        model, _ = import_reference(
            args.src, args.out_dir, mask_token_id=args.mask_token_id, revision=args.revision, dtype=args.dtype,
            repo_id=args.repo_id,
        )
        print(f"Imported {args.src} as {type(model).__name__} (mask token id {model.config.mask_token_id}) "
              f"into {args.out_dir}")
    return 0
