"""``prompts import FILE``: prompts from .txt, .jsonl, .json or .csv into the project."""

from __future__ import annotations

import argparse

from core.cli.common import open_store
from core.prompts import import_prompts


def add_parser(sub: argparse._SubParsersAction) -> None:
    prompts = sub.add_parser("prompts", help="manage prompts")
    actions = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help="import prompts from .txt, .jsonl, .json or .csv")
    imp.add_argument("file")
    imp.add_argument("--source", help="label stored with each prompt (default: the file name)")


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        res = import_prompts(store, args.file, source=args.source)
    print(
        f"{res.path}: {res.added} prompts added, {res.skipped_duplicates} duplicates skipped "
        f"({res.total} read)."
    )
    return 0
