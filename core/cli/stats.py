"""``stats [--json]``: counts, agreement, annotator speed and per-model results."""

from __future__ import annotations

import argparse
import json

from core.cli.common import open_store
from core.stats import format_stats, project_stats


def add_parser(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser("stats", help="counts, agreement and speed")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        stats = project_stats(store)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
    else:
        print(format_stats(stats))
    return 0
