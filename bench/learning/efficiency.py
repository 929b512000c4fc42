"""Label efficiency: the pairwise labels DPO needs to reach a fixed held-out gain when an annotator
rates the pairs the newest policy is least sure of (``rate --select uncertain``), against pairs
drawn at random, by the protocol of docs/learning-protocol.md.

Per training seed and set of prompt sources, one project (bench/learning/data.py): train prompts
with K answers each from the base model, a pool of pairs several times the largest budget so that
selection has room to choose; the role's held-out prompts as evaluation prompts; the base model's
answers to them. Per rater the project is copied; in the copy the seed round (the first budget) is
rated with ``--select random`` (no model exists yet to be uncertain with), and DPO trains on it
and is measured. That copy is copied once per arm, so both arms hold the same candidate answers,
the same seed round and its checkpoint. Each later round rates up to the next budget (``--select
random`` in the random arm; ``--select uncertain --random-fraction 0.2`` in the uncertain arm,
whose scorer is the policy just trained: its implicit DPO reward against the base model), then
``train --algo dpo`` with default settings, from the base model, on all labels so far, and the new
checkpoint answers the held-out prompts: its gain over the base model in SE of the paired
difference (no spread counts as no gain).

A label is a pairwise rating written: a tie costs the annotator as much as a preference. The gain
to reach is fixed per size before any run (+3 SE in full runs); the labels an arm needs are
interpolated linearly between budgets (efficiency_summary.py).

How long: a full run (4 raters x 3 seeds, budgets 25/50/100/150) takes about 22 hours per role on
a quiet 2-core CPU, derived in docs/learning-protocol.md ("Label efficiency"). ``--resume`` carries
on an interrupted run in the same work folder from its last finished step (bench/learning/journal.py);
``--journal FILE`` keeps the journal elsewhere, to carry a run to another machine.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Result, finish, fresh, log, mode_of, use_bench_home, workdir
from bench.learning import efficiency_summary, evaluate
from bench.learning.data import (
    Cli,
    answers_digest,
    count_pairs,
    make_project,
    pairwise_choices,
)
from bench.learning.journal import Journal, JournalMismatch, identity
from bench.learning.plan import (
    Plan,
    Rater,
    protocol_parser,
    protocol_problem,
    raters_of,
    seeds_of,
)
from bench.learning.run import EVAL_SEED, last_run

SIZES: dict[str, dict[str, Any]] = {
    # train prompts, held-out prompts, K (at least), new tokens, the pool of disjoint pairs the
    # answers must hold (sets K: data.answers_per_prompt), label budgets (the first is the seed
    # round), the gain to reach in SE, optimizer steps (None: the app's default)
    "full": dict(
        train=100,
        heldout=32,
        k=4,
        new=64,
        ratings=400,
        budgets=(25, 50, 100, 150),
        target=3.0,
        steps=None,
    ),
    "quick": dict(
        train=16, heldout=8, k=4, new=32, ratings=48, budgets=(8, 16, 24), target=1.0, steps=3
    ),
    "smoke": dict(
        train=6, heldout=4, k=2, new=8, ratings=18, budgets=(2, 6, 10), target=0.5, steps=1
    ),
}
ARMS = ("random", "uncertain")
RANDOM_FRACTION = "0.2"  # the uncertain arm's control slice, the app's default
SELECT = {
    "random": ("--select", "random"),
    "uncertain": ("--select", "uncertain", "--random-fraction", RANDOM_FRACTION),
}
GENERATION_SEED = 1  # plus the training seed: each seed's project has its own candidate answers


@dataclass
class EfficiencyPlan(Plan):
    """A learning-bench plan whose sizes are this experiment's."""

    @property
    def size(self) -> dict[str, Any]:
        return SIZES[self.mode]


def parse(argv: list[str] | None) -> tuple[Any, EfficiencyPlan]:
    """The arguments and the plan; a plan that breaks the protocol exits 2 saying why."""
    p = protocol_parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    plan = EfficiencyPlan(
        role=args.role,
        mode=mode_of(args),
        model=args.model,
        seeds=seeds_of(p, args),
        runs=["dpo"],
        raters=raters_of(p, args),
        report=args.report,
    )
    problem = protocol_problem(plan, args.raters is not None)
    if problem:
        p.error(problem)
    return args, plan


def main(argv: list[str] | None = None) -> dict:
    args, plan = parse(argv)
    use_bench_home()
    name = f"label_efficiency_{plan.role}"
    res = Result(name, efficiency_summary.title(plan), plan.mode)
    folder = workdir(args, name)
    try:
        journal = Journal.open(
            folder, identity(plan), args.resume, Path(args.journal) if args.journal else None
        )
    except JournalMismatch as e:
        raise SystemExit(f"efficiency: {e}") from None
    dropped = journal.forget(lambda key: on_disk(folder, plan, key))
    if dropped:
        log(
            f"efficiency: {len(dropped)} journalled steps name project files {folder} lacks: redone"
        )
    results: dict[str, dict] = {r.name: {"rater": r, "seeds": {}} for r in plan.raters}
    for seed in plan.seeds:
        for group, raters in plan.projects().items():
            done = {r.name: journal.get(f"{r.name}/s{seed}/done") for r in raters}
            base = None
            if any(v is None for v in done.values()):
                base = make_base(folder, group, raters[0].sources, plan, seed, journal)
            for rater in raters:
                results[rater.name]["seeds"][seed] = done[rater.name] or run_rater(
                    folder, base, rater, plan, seed, journal
                )
            res.notes += remade_notes(group, seed, [done[r.name] for r in raters], base)
    efficiency_summary.report(res, plan, results)
    if journal.sittings > 1:
        res.notes.append(journal.resumed_note())
    return finish(res, args)


def on_disk(folder: Path, plan: Plan, key: str) -> bool:
    """Whether journal step ``key`` can be built on in ``folder``: a finished rater and seed
    (``.../done``) stands alone; any other step needs the project files it made, and those it was
    made from (a journal carried to an empty work folder keeps only the finished units)."""
    parts = key.split("/")
    if parts[-1] == "done":
        return True
    if parts[0] == "base":
        return (folder / f"{parts[1]}-{parts[2]}.db").exists()
    group = {r.name: g for g, raters in plan.projects().items() for r in raters}.get(parts[0])
    rater, seed = parts[0], parts[1]
    needs = [folder / f"{group}-{seed}.db", folder / f"{rater}-{seed}.db"]
    if len(parts) > 2 and parts[2] in ARMS:
        needs.append(folder / f"{rater}-{seed}-{parts[2]}.db")
    return group is not None and all(p.exists() for p in needs)


def remade_notes(group: str, seed: int, done: list[dict | None], base: dict | None) -> list[str]:
    """A note when the raters of one seed drew their labels from projects made apart (a sitting on
    another machine made the project again) whose candidate answers or precision differ."""
    made = [d for d in done if d] + ([base] if base else [])
    answers = {m.get("answers") for m in made}
    precision = {m.get("precision") for m in made}
    if len(answers) < 2 and len(precision) < 2:
        return []
    return [
        f"Seed {seed} ({group}): the project was made again in a later sitting, with "
        f"{len(answers)} different sets of candidate answers and precision "
        f"{', '.join(sorted(str(p) for p in precision))}; its raters' figures are per seed as "
        "always, but were not drawn from one pool."
    ]


def make_base(
    folder: Path,
    group: str,
    sources: tuple[str, ...] | None,
    plan: Plan,
    seed: int,
    journal: Journal,
) -> dict[str, Any]:
    """The project the raters of ``sources`` start from with training seed ``seed``: prompts,
    candidate answers and the base model's held-out answers; nothing rated or trained."""
    from core.models import load_model
    from core.store import ProjectStore

    db = folder / f"{group}-s{seed}.db"
    key = f"base/{group}/s{seed}"
    made = journal.get(key)
    if made is None:
        clear(db)
        log(f"efficiency: project {db.name}")
        data = make_project(Cli(db), folder, plan, sources, seed=str(GENERATION_SEED + seed))
        base = load_model(plan.model)
        with ProjectStore(db) as store:
            evaluate.ensure_answers(store, _heldout(store, plan, base.spec), base)
        made = journal.put(
            key,
            {
                "data": data,
                "base": base.spec,
                "answers": answers_digest(db),
                "precision": base.device_label,
            },
        )
    with ProjectStore(db) as store:
        spec = _heldout(store, plan, made["base"])
    return {
        "db": db,
        "spec": spec,
        **{k: made.get(k) for k in ("data", "base", "answers", "precision")},
    }


def _heldout(store, plan: Plan, base: str):
    size = plan.size
    return evaluate.heldout_spec(store, [base], size["k"], size["new"], int(EVAL_SEED))


def run_rater(
    folder: Path, base: dict, rater: Rater, plan: Plan, seed: int, journal: Journal
) -> dict[str, Any]:
    """The seed round in a copy of ``base``, then each arm's later rounds in its own copy.
    Each round, and each copy, is a step of ``journal``: a resumed run skips those done. When
    every round finished, the whole is a step too (``.../done``), which needs no project file."""
    from core.raters import load_rater
    from core.store import ProjectStore

    score = load_rater(rater.spec)
    key = f"{rater.name}/s{seed}"
    shared = folder / f"{rater.name}-s{seed}.db"
    if journal.get(f"{key}/copy") is None:
        copy_project(base["db"], shared)
        journal.put(f"{key}/copy", str(shared))
    with ProjectStore(shared) as store:
        base_ev = evaluate.answers_eval(store, base["spec"], base["base"], "base", score)
    ctx = {"rater": rater, "seed": seed, "plan": plan, "score": score, "base_ev": base_ev, **base}
    budgets = plan.size["budgets"]
    first = journal.get(f"{key}/{budgets[0]}")
    if first is None:
        log(f"efficiency: {rater.name}, seed {seed}: seed round of {budgets[0]} labels")
        first = _finished(
            journal, f"{key}/{budgets[0]}", labelled_round(ctx, shared, "random", budgets[0])
        )
    arms = {}
    for arm in ARMS:
        db = folder / f"{rater.name}-s{seed}-{arm}.db"
        if journal.get(f"{key}/{arm}/copy") is None:
            copy_project(shared, db)
            journal.put(f"{key}/{arm}/copy", str(db))
        points = [first]
        for budget in budgets[1:]:
            point = journal.get(f"{key}/{arm}/{budget}")
            if point is None:
                log(f"efficiency: {rater.name}, seed {seed}, {arm}: up to {budget} labels")
                point = _finished(
                    journal, f"{key}/{arm}/{budget}", labelled_round(ctx, db, arm, budget)
                )
            points.append(point)
        arms[arm] = {"db": str(db), "points": points, "selection": selections(db, rater.name)}
    unit = {
        "data": base["data"],
        "base_mean": base_ev.summary()["mean"],
        "answers": base["answers"],
        "precision": base["precision"],
        "arms": arms,
    }
    if all("error" not in p for a in arms.values() for p in a["points"]):
        unit = journal.put(f"{key}/done", unit)
    return unit


def _finished(journal: Journal, key: str, point: dict[str, Any]) -> dict[str, Any]:
    """Journal a round that finished; a failed one is left out, so a resumed run tries it again."""
    return point if "error" in point else journal.put(key, point)


def labelled_round(ctx: dict, db: Path, arm: str, budget: int) -> dict[str, Any]:
    """Rate up to ``budget`` labels the ``arm`` way, train DPO on all of them, measure it."""
    from core.store import ProjectStore

    cli, rater, size = Cli(db), ctx["rater"], ctx["plan"].size
    point: dict[str, Any] = {"budget": budget}
    try:
        have = len(choices_of(db, rater.name))
        if budget > have:
            cli(
                "rate",
                "--auto",
                rater.spec,
                "--mode",
                "pairwise",
                "--annotator",
                rater.name,
                *SELECT[arm],
                "--limit",
                str(budget - have),
            )
        choices = choices_of(db, rater.name)
        point.update(labels=len(choices), pairs=count_pairs(choices))
        steps = ["--steps", str(size["steps"])] if size["steps"] else []
        point["train_s"] = cli(
            "train", "--algo", "dpo", "--annotators", rater.name, "--seed", str(ctx["seed"]), *steps
        )
        with ProjectStore(db) as store:
            run = last_run(store)
        point.update(checkpoint=run["checkpoint"], examples=run["ratings"], steps=run["steps"])
        point.update(heldout_gain(ctx, db, run["checkpoint"]))
        log(f"  {point['labels']} labels: gain {point['z']:+.1f} SE")
    except Exception as e:  # noqa: BLE001 - one failing round must not hide the others
        point["error"] = " ".join(str(e).split())[:300]
        log(f"  FAILED: {point['error']}")
    return point


def heldout_gain(ctx: dict, db: Path, checkpoint: int) -> dict[str, Any]:
    """The checkpoint's answers to the held-out prompts (the arena's settings and seed, as the
    base model's), scored by the rater and paired with the base model's per prompt."""
    from core.models import load_model
    from core.store import ProjectStore

    spec = f"checkpoint:{checkpoint}"
    with ProjectStore(db) as store:
        policy = load_model(spec, store=store)
        evaluate.ensure_answers(store, ctx["spec"], policy)
        ev = evaluate.answers_eval(store, ctx["spec"], spec, spec, ctx["score"])
    gain = evaluate.paired_gain(ctx["base_ev"], ev)
    return {
        "z": gain["z"],
        "gain": gain["gain"],
        "no_spread": gain["no_spread"],
        "heldout_mean": ev.summary()["mean"],
    }


def choices_of(db: Path, annotator: str) -> list[str]:
    from core.store import ProjectStore

    with ProjectStore(db) as store:
        return pairwise_choices(store, annotator)


def selections(db: Path, annotator: str) -> list[str]:
    """How each of ``annotator``'s live pairwise ratings was picked, oldest first."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT selection FROM ratings WHERE annotator = ? AND kind = 'pairwise' "
            "AND superseded = 0 ORDER BY id",
            (annotator,),
        ).fetchall()
    return [s or "" for (s,) in rows]


def clear(db: Path) -> None:
    """Remove a project file and the checkpoints of an earlier run in the same scratch folder."""
    fresh(db)
    shutil.rmtree(db.parent / f"{db.stem}.checkpoints", ignore_errors=True)


def copy_project(src: Path, dst: Path) -> Path:
    """A consistent copy of a project file, its write-ahead log included. Its checkpoint rows keep
    naming the source's folders, which nothing writes to again."""
    clear(dst)
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)
    return dst


if __name__ == "__main__":
    main()
