"""``export ratings|checkpoint``: ratings as raw rows or TRL-ready data; a checkpoint as a Hugging
Face folder with a model card (docs/exports.md)."""

from __future__ import annotations

import argparse
import sys

from core.cli.common import open_store, progress_bar
from core.exchange import FORMATS, export_checkpoint, export_ratings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ratings or a checkpoint")
    what = p.add_subparsers(dest="export_what", metavar="WHAT", required=True)
    r = what.add_parser("ratings", help="ratings as raw rows or TRL-ready training data")
    r.add_argument("--format", required=True, choices=FORMATS)
    r.add_argument("-o", "--output", required=True, help="file to write")
    r.add_argument("--anonymize", action="store_true", help="salted hashes instead of names")
    r.add_argument("--include-superseded", action="store_true", help="also undone ratings")
    r.add_argument(
        "--annotator", nargs="*", dest="annotators", default=None, help="only these annotators"
    )
    r.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="drop items whose annotators agree less than this fraction",
    )
    r.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="sft: also samples whose mean overall score is at least X (0-1)",
    )
    c = what.add_parser("checkpoint", help="a Hugging Face folder with a model card")
    c.add_argument(
        "checkpoint",
        nargs="?",
        default="checkpoint:latest",
        help="checkpoint:ID or checkpoint:latest",
    )
    c.add_argument("--merged", action="store_true", help="merge a LoRA adapter into full weights")
    c.add_argument("-o", "--output", required=True, help="folder to write")


def run(args: argparse.Namespace) -> int:
    with open_store(args, create=False) as store:
        if args.export_what == "checkpoint":
            res = export_checkpoint(store, args.checkpoint, args.output, merged=args.merged)
            for note in res.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"checkpoint:{res.checkpoint_id} ({res.kind}, {res.form}) exported to {res.path}")
            return 0
        with progress_bar("row", f"export {args.format}", leave=False) as bar:
            res = export_ratings(
                store,
                args.output,
                args.format,
                anonymize=args.anonymize,
                include_superseded=args.include_superseded,
                annotators=args.annotators,
                min_agreement=args.min_agreement,
                min_score=args.min_score,
                progress=lambda p: bar.to(p.done, p.total or None),
            )
    if res.rows == 0:
        print(
            f"note: no ratings make {res.format} rows yet; see docs/exports.md for which "
            "ratings each format uses.",
            file=sys.stderr,
        )
    form = " (conversational)" if res.conversational else ""
    print(f"{res.rows} rows written to {res.path} as {res.format}{form} in {res.seconds:.1f} s.")
    return 0
