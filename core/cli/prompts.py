"""``prompts import FILE`` and ``prompts split --eval N``: the project's prompts, and which of them
are kept for evaluation (never trained on; judged in the arena)."""

from __future__ import annotations

import argparse

from core.cli.common import open_store
from core.prompts import import_prompts, parse_eval_amount, split_for_evaluation


def add_parser(sub: argparse._SubParsersAction) -> None:
    prompts = sub.add_parser("prompts", help="manage prompts")
    actions = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help="import prompts from .txt, .jsonl, .json or .csv")
    imp.add_argument("file")
    imp.add_argument("--source", help="label stored with each prompt (default: the file name)")
    imp.add_argument(
        "--split",
        choices=("train", "eval"),
        default="train",
        help="eval: keep these prompts for evaluation (never trained on)",
    )
    split = actions.add_parser(
        "split", help="keep prompts for evaluation: never trained on, judged in the arena"
    )
    split.add_argument(
        "--eval",
        required=True,
        metavar="N|FRACTION",
        help="how many prompts are evaluation prompts: a number (50) or a fraction (0.2); only "
        "prompts without ratings are drawn, and none is moved back",
    )
    split.add_argument("--seed", type=int, default=0, help="which prompts are drawn")


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        if args.prompts_command == "split":
            print(split_for_evaluation(store, parse_eval_amount(args.eval), args.seed))
            return 0
        res = import_prompts(store, args.file, source=args.source, split=args.split)
    split = " as evaluation prompts" if args.split == "eval" else ""
    print(
        f"{res.path}: {res.added} prompts added{split}, {res.skipped_duplicates} duplicates "
        f"skipped ({res.total} read)."
    )
    return 0
