"""``arena --models SPEC SPEC ...``: the models answer the evaluation prompts; a scripted judge
(``--judge``) or people in the Rate tab's Arena mode compare the answers blind; the leaderboard
says which model is better, with 95 % intervals."""

from __future__ import annotations

import argparse
import json

from core.cli.common import open_store, progress_bar, say
from core.evaluation import ArenaSpec, arena_report, canonical_spec, run_arena
from core.evaluation.arena import judge_name
from core.models import load_model
from core.raters import load_rater
from core.stats import format_arena


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "arena", help="compare models blind on the evaluation prompts", description=__doc__
    )
    p.add_argument("--models", nargs="+", required=True, metavar="SPEC", help="two or more")
    p.add_argument("--per-prompt", type=int, default=2, help="answers per model and prompt (2)")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: the project's setting"
    )
    p.add_argument("--seed", type=int, default=0, help="generation seed and the sides shown")
    p.add_argument(
        "--judge",
        metavar="MODULE:FUNC",
        help="a scripted judge rates the comparisons now (annotator judge:MODULE:FUNC); "
        "without it they wait for people in the Rate tab's Arena mode",
    )
    p.add_argument("--json", action="store_true", help="the leaderboard as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    judge = load_rater(args.judge) if args.judge else None
    with open_store(args) as store:
        s = store.settings()
        spec = ArenaSpec(
            models=[canonical_spec(store, m) for m in args.models],
            per_prompt=args.per_prompt,
            max_new_tokens=args.max_new_tokens or s["max_new_tokens"],
            temperature=s["temperature"],
            top_p=s["top_p"],
            seed=args.seed,
        )
        spec.validate()

        def load(model: str):
            return load_model(
                model,
                store=store,
                device=args.device,
                dtype=args.dtype,
                trust_remote_code=args.trust_remote_code,
                progress=say,
            )

        with progress_bar("item", "arena") as bar:
            for prog in run_arena(store, spec, load, judge):
                bar.to(prog.done, prog.total, label=prog.model or prog.stage)
        judges = [judge_name(judge)] if judge else None
        board = arena_report(store, spec.models, annotators=judges, seed=args.seed)
    if args.json:
        print(json.dumps(board, ensure_ascii=False, indent=2))
        return 0
    print("\n".join(format_arena(board)))
    if not judge:
        print("The comparisons wait for people: rate them in the Rate tab's Arena mode.")
    return 0
