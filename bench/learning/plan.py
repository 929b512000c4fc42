"""What one learning-bench run measures, and the rules that keep tuning away from the test raters.

``--role dev`` trains and measures the development raters on train and dev prompts: tuning runs
(``--set``) and the defaults' development figures. ``--role test`` trains the test raters on train
prompts and measures them on test prompts: only the reporting run, which says so with
``--report``, reports every test rater and uses at least three seeds (docs/learning-protocol.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from bench.common import code_version, mode_of, parser
from bench.learning import preferences

RUNS = ("dpo_large", "dpo_small", "reward", "rloo", "reinforce")
ROLES = ("dev", "test")
TARGETS = {  # issue 16: gains in SE of the paired difference, mean over seeds; issue 6: times
    "dpo_large_se": 6.0,
    "dpo_large_time": 300.0,
    "dpo_small_se": 2.0,
    "rm_accuracy": 80.0,
    "rloo_se": 3.0,
    "rloo_time": 900.0,
}
# The reward model's target is set "on an easy rule": per role, the rater whose base-model answers
# to dev prompts differ most often within a prompt (the room-to-move table), fixed before training.
EASY_RULE = {"dev": "avoid_the", "test": "formality"}
MIN_REPORT_SEEDS = 3
SIZES: dict[str, dict[str, Any]] = {
    # train prompts, held-out prompts, K, new tokens, pairwise ratings, pairs (large, small), steps
    "full": dict(train=100, heldout=32, k=4, new=64, ratings=200, large=150, small=50, steps=None),
    "quick": dict(train=16, heldout=8, k=4, new=32, ratings=32, large=24, small=8, steps=3),
    "smoke": dict(train=6, heldout=4, k=2, new=8, ratings=6, large=4, small=2, steps=1),
}
SMOKE_SEEDS = "0,1"  # the smoke run still averages over seeds, in seconds


@dataclass(frozen=True)
class Rater:
    """A rater as the bench uses it: its name, its spec for the app (``rate --auto``, ``arena
    --judge``) and the prompt sources it applies to (None: all)."""

    name: str
    spec: str
    sources: tuple[str, ...] | None

    @property
    def project(self) -> str:
        """The training project it shares with the raters of the same sources."""
        if self.sources is None:
            return "all"
        return "english" if self.sources == preferences.ENGLISH else "-".join(self.sources)


# A tiny random model's outputs look alike to every real rater (ties), so the smoke run rates by a
# hash of the text, which separates any two.
SMOKE_RATER = Rater("text_hash", "bench.learning.raters:text_hash", None)


def protocol_rater(name: str) -> Rater:
    spec = preferences.RATERS[name]
    return Rater(name, f"bench.learning.preferences:{name}", spec.sources)


@dataclass
class Plan:
    role: str
    mode: str
    model: str
    seeds: list[int]
    runs: list[str]
    raters: list[Rater]
    settings: dict[str, list[str]] = field(default_factory=dict)
    report: bool = False
    dtype: str | None = None  # every model of the run in this precision (None: the app's choice)

    @property
    def size(self) -> dict[str, Any]:
        return SIZES[self.mode]

    def projects(self) -> dict[str, list[Rater]]:
        """The raters grouped by training project (raters of the same sources share one)."""
        out: dict[str, list[Rater]] = {}
        for rater in self.raters:
            out.setdefault(rater.project, []).append(rater)
        return out


def protocol_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every learning-bench script shares: the role, the reporting run's flag, the
    raters and the training seeds."""
    p = parser(description)
    p.add_argument(
        "--role",
        choices=ROLES,
        default="dev",
        help="dev: development raters on dev prompts (tuning); test: test raters on test "
        "prompts (the reporting run only, with --report)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="this is the reporting run: required by --role test, which no tuning may look at",
    )
    p.add_argument(
        "--raters",
        help="comma-separated raters of the role (default: all of them; --smoke: text_hash); "
        "a reporting run reports every test rater",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="carry on the interrupted run in --workdir (same arguments, same code) from its last "
        "finished step, instead of starting afresh",
    )
    p.add_argument(
        "--journal",
        metavar="FILE",
        help="keep the run's journal in FILE instead of the work folder, e.g. a tracked file "
        "that carries a long run to another machine (--resume there redoes what lacks its files)",
    )
    p.add_argument(
        "--seeds",
        help=f"comma-separated training seeds (default 0,1,2; --smoke {SMOKE_SEEDS}); "
        "each figure is their mean and spread",
    )
    return p


def build_parser(description: str) -> argparse.ArgumentParser:
    p = protocol_parser(description)
    p.add_argument(
        "--runs",
        help="comma-separated training runs (default all): " + ", ".join(RUNS) + "; a subset is "
        "reported as its own benchmark (learning_<role>_<runs>)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="RUN:FIELD=VALUE",
        help="a non-default setting for one run, e.g. rloo:rollouts_per_sampling=4 (passed to "
        "`train --set`): a tuning run, named after the setting so that its figures sit beside "
        "the defaults' and do not supersede them",
    )
    p.add_argument(
        "--dtype",
        choices=["fp32", "bf16"],
        help="load every model of the run (generating, training, evaluating) in this precision "
        "instead of the one the app measured for this CPU; its figures are named after it",
    )
    return p


def parse(argv: list[str] | None, description: str) -> tuple[argparse.Namespace, Plan]:
    """The arguments and the plan; a plan that breaks the protocol exits 2 saying why."""
    p = build_parser(description)
    args = p.parse_args(argv)
    settings: dict[str, list[str]] = {}
    for item in args.settings:
        run, sep, assignment = item.partition(":")
        if not sep or run not in RUNS or "=" not in assignment:
            p.error(f"--set {item!r}: write RUN:FIELD=VALUE with RUN one of {', '.join(RUNS)}")
        settings.setdefault(run, []).append(assignment)
    runs = args.runs.split(",") if args.runs else list(RUNS)
    unknown = set(runs) - set(RUNS)
    if unknown or ("rloo" in runs and "reward" not in runs):
        p.error(f"--runs: unknown {sorted(unknown)}" if unknown else "--runs: rloo needs reward")
    plan = Plan(
        role=args.role,
        mode=mode_of(args),
        model=args.model,
        seeds=seeds_of(p, args),
        runs=runs,
        raters=raters_of(p, args),
        settings=settings,
        report=args.report,
        dtype=args.dtype,
    )
    problem = protocol_problem(plan, args.raters is not None)
    if problem:
        p.error(problem)
    return args, plan


def seeds_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    """The training seeds ``--seeds`` asks for (or the mode's default); a bad list exits 2."""
    try:
        seeds = [
            int(s) for s in (args.seeds or (SMOKE_SEEDS if args.smoke else "0,1,2")).split(",")
        ]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: write comma-separated integers, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        p.error(f"--seeds {args.seeds}: a seed twice")
    return seeds


def raters_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[Rater]:
    """The raters ``--raters`` asks for, all of the role's by default; another role's exits 2."""
    mine = list(preferences.raters(args.role))
    if args.raters is None:
        return [SMOKE_RATER] if args.smoke else [protocol_rater(n) for n in mine]
    names = args.raters.split(",")
    if args.smoke and names == [SMOKE_RATER.name]:
        return [SMOKE_RATER]
    wrong = [n for n in names if n not in mine]
    if wrong:
        roles = {n: preferences.RATERS[n].role if n in preferences.RATERS else None for n in wrong}
        what = "; ".join(
            f"{n} is a {r} rater" if r else f"{n} is unknown" for n, r in roles.items()
        )
        p.error(f"--raters: {what}; the {args.role} raters are {', '.join(mine)}")
    return [protocol_rater(n) for n in names]


def protocol_problem(plan: Plan, raters_chosen: bool) -> str | None:
    """Why this plan would break the protocol (docs/learning-protocol.md), or None."""
    if plan.role == "dev":
        if plan.report:
            return "--report is for the reporting run on the test raters (--role test)"
        return None
    if not plan.report:
        what = "a tuning run (--set)" if plan.settings else "a run"
        return (
            f"--role test: {what} may not look at the test raters; tune with --role dev. The "
            "reporting run, with settings frozen and committed, adds --report."
        )
    if raters_chosen:
        return "--role test --report reports every test rater: leave out --raters"
    if len(plan.seeds) < MIN_REPORT_SEEDS:
        return f"--role test --report needs at least {MIN_REPORT_SEEDS} seeds (--seeds 0,1,2)"
    if plan.mode == "full" and code_version().endswith("+changes"):
        return "--role test --report: commit the code first, so the figures name the settings"
    return None
