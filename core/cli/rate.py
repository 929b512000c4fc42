"""``rate --auto MODULE:FUNC``: a scripted rater judges samples as an annotator would."""

from __future__ import annotations

import argparse

from core.cli.common import open_store, progress_bar
from core.items import MODES
from core.raters import load_rater, rate_auto


def add_parser(sub: argparse._SubParsersAction) -> None:
    rate = sub.add_parser("rate", help="rate samples with a scripted rater")
    rate.add_argument(
        "--auto",
        required=True,
        metavar="MODULE:FUNC",
        help="f(prompt, response) -> float in [0, 1], e.g. core.raters:sentiment",
    )
    rate.add_argument("--mode", required=True, choices=MODES)
    rate.add_argument("--annotator", dest="rate_annotator", required=True)
    rate.add_argument("--limit", type=int, default=None, help="write at most N ratings")


def run(args: argparse.Namespace) -> int:
    rater = load_rater(args.auto)
    with open_store(args) as store:
        written = 0
        with progress_bar("item", "rate") as bar:
            for prog in rate_auto(
                store,
                rater,
                mode=args.mode,
                annotator=args.rate_annotator,
                limit=args.limit,
                rater_spec=args.auto,
            ):
                bar.to(prog.done, prog.total)
                written = prog.written
    print(f"{written} {args.mode} ratings written by {args.rate_annotator} ({args.auto}).")
    return 0
