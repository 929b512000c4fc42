"""``merge OTHER.db ...``: other project files merged into this one by uuid (idempotent)."""

from __future__ import annotations

import argparse

from core.cli.common import open_store
from core.exchange import merge_projects


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge other project files into this one")
    p.add_argument("others", nargs="+", metavar="OTHER.db", help="project files to merge in")


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        report = merge_projects(store, args.others)
    print(report.summary())
    print(f"merged into {store.path} in {report.seconds:.1f} s.")
    return 0
