"""``rate --auto MODULE:FUNC``: a scripted rater judges samples as an annotator would."""

from __future__ import annotations

import argparse

from core.cli.common import open_store, progress_bar, say
from core.errors import UserError
from core.items import MODES
from core.raters import load_rater, rate_auto
from core.selection import SELECTIONS, newest_scorer


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
    rate.add_argument(
        "--select",
        choices=SELECTIONS,
        default="coverage",
        help="pairwise: which pairs first: coverage (spread over prompts), uncertain (those the "
        "newest reward model or policy is least sure of, with a random control slice) or random",
    )
    rate.add_argument(
        "--random-fraction",
        type=float,
        default=0.2,
        help="with --select uncertain: the share of pairs drawn at random as a control (0.2)",
    )


def run(args: argparse.Namespace) -> int:
    rater = load_rater(args.auto)
    if not 0 <= args.random_fraction <= 1:
        raise UserError(f"--random-fraction {args.random_fraction} is not in [0, 1].")
    with open_store(args) as store:
        scores = None
        if args.select == "uncertain":
            label, scores = newest_scorer(store, args.device, args.dtype)
            say(f"Uncertainty from the {label}.")
        written = 0
        with progress_bar("item", "rate") as bar:
            for prog in rate_auto(
                store,
                rater,
                mode=args.mode,
                annotator=args.rate_annotator,
                limit=args.limit,
                rater_spec=args.auto,
                select=args.select,
                scores=scores,
                random_fraction=args.random_fraction,
            ):
                bar.to(prog.done, prog.total)
                written = prog.written
    print(f"{written} {args.mode} ratings written by {args.rate_annotator} ({args.auto}).")
    return 0
