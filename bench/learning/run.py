"""The learning proof, by the protocol of docs/learning-protocol.md, with the app's own commands.

``--role dev`` (default): the development raters, measured on dev prompts, for tuning.
``--role test --report``: the test raters, measured on test prompts: the reporting run.

For each project (the raters of one set of prompt sources share it):
1. ``prompts import`` the train prompts, and the role's held-out prompts with ``--split eval``;
   ``generate`` K answers per training prompt.
2. Per rater: ``rate --auto RATER`` pairwise (at most N ratings, and the first ones holding the
   large and the small number of pairs under their own annotator names) and in score mode.
3. Per rater and training seed (``--seeds``): ``train`` with default settings (``--seed S``): DPO
   on the large and the small pairs, a reward model, RLOO on that reward model, REINFORCE on the
   scores. Each policy then meets the base model in the arena (``arena --models BASE
   checkpoint:N --judge RATER --json``): its win rate with a 95% CI; the rater's scores of the same
   answers give the held-out mean and the paired gain over the base model in SE. The reward model
   is checked on pairs of the base model's held-out answers.

Figures are means over the seeds, per rater (bench/learning/summary.py); plots go to docs/ in a
full run. Commands run in this process through ``main.main``, the CLI a user runs. ``--resume``
carries on an interrupted run in the same work folder from its last finished step (a project
made, a rater's ratings, one training run and its evaluation: bench/learning/journal.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from bench.common import Result, finish, fresh, log, plots_dir, use_bench_home, workdir
from bench.learning import evaluate, summary
from bench.learning.data import Cli, answers_digest, make_project, rate
from bench.learning.journal import Journal, JournalMismatch, identity
from bench.learning.plan import RUNS, Plan, Rater, parse

EVAL_SEED = "1234"  # generation seed of every policy's held-out answers
ALGO = {"dpo_large": "dpo", "dpo_small": "dpo", "reward": "reward", "rloo": "rloo"}
ANNOTATOR = {"dpo_large": "-large", "dpo_small": "-small", "reward": "", "reinforce": "-score"}
METRICS = (
    "loss",
    "step_time",
    "rewards/margins",
    "rewards/accuracies",
    "accuracy",
    "margin",
    "reward",
    "kl",
)


def main(argv: list[str] | None = None) -> dict:
    args, plan = parse(argv, __doc__.split("\n")[0])
    use_bench_home()
    res = Result(_name(plan, args), _title(plan, args), plan.mode)
    folder = workdir(args, f"learning_{plan.role}")
    try:
        journal = Journal.open(
            folder, identity(plan), args.resume, Path(args.journal) if args.journal else None
        )
    except JournalMismatch as e:
        raise SystemExit(f"learning: {e}") from None
    dropped = journal.forget(lambda key: on_disk(folder, plan, journal, key))
    if dropped:
        log(f"learning: {len(dropped)} journalled steps name project files {folder} lacks: redone")
    results: dict[str, dict] = {}
    for project, raters in plan.projects().items():
        results.update(run_project(folder, project, raters, plan, journal))
    res.notes += remade_notes(results)
    plot_dir = plots_dir(args) if importlib.util.find_spec("matplotlib") else None
    if plot_dir is None:
        res.notes.append("matplotlib is not installed (pip install -e '.[bench]'): no plots.")
    summary.report(res, plan, results, plot_dir)
    if plan.settings or plan.dtype:
        summary.mark_variant(
            res, {**plan.settings, **({"all": [f"dtype={plan.dtype}"]} if plan.dtype else {})}
        )
    if journal.sittings > 1:
        res.notes.append(journal.resumed_note())
    return finish(res, args)


def on_disk(folder: Path, plan: Plan, journal: Journal, key: str) -> bool:
    """Whether journal step ``key`` can be built on in ``folder``: everything needs its project
    file, except a rater's seed whose runs all finished (RLOO needs the reward model's
    checkpoint), which stands alone in a journal carried to an empty work folder."""
    parts = key.split("/")
    if parts[0] == "project":
        return (folder / f"{parts[1]}.db").exists()
    project = {r.name: p for p, raters in plan.projects().items() for r in raters}.get(parts[0])
    if project is not None and (folder / f"{project}.db").exists():
        return True
    return len(parts) == 3 and all(
        journal.get(f"{parts[0]}/{parts[1]}/{run}") is not None for run in plan.runs
    )


def remade_notes(results: dict[str, dict]) -> list[str]:
    """A note per rater whose seeds trained on projects made apart (a sitting on another machine
    made the project again) with different candidate answers."""
    notes = []
    for name, r in results.items():
        pools = {run.get("answers") for runs in r["seeds"].values() for run in runs.values()}
        if len(pools - {None}) > 1:
            notes.append(
                f"{name}: the project was made again in a later sitting and its seeds trained on "
                f"{len(pools - {None})} different sets of candidate answers; figures are per seed "
                "as always, but not from one pool."
            )
    return notes


def _name(plan: Plan, args) -> str:
    name = f"learning_{plan.role}"
    if args.runs:
        name += "_" + "_".join(plan.runs)
    if args.raters:
        name += "_" + "_".join(r.name for r in plan.raters)
    return name


def _title(plan: Plan, args) -> str:
    title = f"Learning proof, {summary.ROLE_TITLES[plan.role]}"
    subset = [", ".join(plan.runs)] if args.runs else []
    subset += [", ".join(r.name for r in plan.raters)] if args.raters else []
    return title + (f", re-measured: {'; '.join(subset)}" if subset else "")


def run_project(
    folder: Path, project: str, raters: list[Rater], plan: Plan, journal: Journal
) -> dict[str, dict]:
    """Make one training project, then train and evaluate each of its raters over the seeds;
    each of these steps is one of ``journal``'s, skipped when a resumed run finds it done."""
    from core.models import load_model
    from core.raters import load_rater
    from core.store import ProjectStore

    db = folder / f"{project}.db"
    cli = Cli(db, plan.dtype)
    made = journal.get(f"project/{project}")
    if made is None:
        fresh(db)
        log(f"learning: project {project} for {', '.join(r.name for r in raters)}")
        made = make_project(cli, folder, plan, raters[0].sources)
        # the pool the raters draw from, taken before held-out and policies' answers join the file
        made = journal.put(f"project/{project}", {**made, "answers": answers_digest(db)})
    made = dict(made)
    answers = made.pop("answers", None) or answers_digest(db)
    store = ProjectStore(db)
    base = load_model(plan.model, dtype=plan.dtype)
    size = plan.size
    spec = evaluate.heldout_spec(store, [base.spec], size["k"], size["new"], int(EVAL_SEED))
    evaluate.ensure_answers(store, spec, base)
    out = {}
    for rater in raters:
        log(f"learning: rater {rater.name}")
        data = journal.get(f"{rater.name}/rated") or journal.put(
            f"{rater.name}/rated", {**made, **rate(cli, rater, size)}
        )
        score = load_rater(rater.spec)
        base_ev = evaluate.answers_eval(store, spec, base.spec, "base", score)
        log(f"learning: {rater.name}: base held-out {base_ev.summary()['mean']:.3f}")
        ctx = {
            "cli": cli,
            "store": store,
            "base": base,
            "base_ev": base_ev,
            "spec": spec,
            "journal": journal,
            "answers": answers,
        }
        seeds = {seed: train_seed(ctx, plan, rater, score, seed) for seed in plan.seeds}
        out[rater.name] = {
            "rater": rater,
            "project": project,
            "data": data,
            "base": base_ev,
            "seeds": seeds,
        }
    store.close()
    return out


def train_seed(ctx: dict, plan: Plan, rater: Rater, score, seed: int) -> dict[str, dict]:
    """Every run of the plan with training seed ``seed``, each policy evaluated; a run the
    journal holds as finished is not done again."""
    cli, store, journal = ctx["cli"], ctx["store"], ctx["journal"]
    steps = ["--steps", str(plan.size["steps"])] if plan.size["steps"] else []
    runs: dict[str, dict[str, Any]] = {}
    for key in RUNS:
        if key not in plan.runs:
            continue
        done = journal.get(f"{rater.name}/s{seed}/{key}")
        if done is not None:
            runs[key] = done
            continue
        algo = ALGO.get(key, key)
        run: dict[str, Any] = {
            "label": summary.label(key, plan.size),
            "algo": algo,
            "answers": ctx["answers"],
        }
        runs[key] = run
        if key == "rloo":
            reward = runs.get("reward", {}).get("checkpoint")
            if reward is None:
                run["error"] = "no reward model"
                continue
            extra = ["--reward-model", f"checkpoint:{reward}"]
        else:
            extra = ["--annotators", rater.name + ANNOTATOR[key]]
        changed = [a for setting in plan.settings.get(key, []) for a in ("--set", setting)]
        log(f"learning: {rater.name}, seed {seed}: train {run['label']}")
        try:
            run["train_s"] = cli(
                "train", "--algo", algo, *extra, "--seed", str(seed), *steps, *changed
            )
            run.update(last_run(store))
            if algo == "reward":
                run["heldout_accuracy"] = reward_accuracy(store, run["checkpoint"], ctx["base_ev"])
            else:
                evaluate_policy(ctx, plan, rater, score, run)
        except Exception as e:  # noqa: BLE001 - one failing run must not hide the others
            run["error"] = " ".join(str(e).split())[:300]
            log(f"  FAILED: {run['error']}")
        if "error" not in run:  # a failed run is tried again by a resumed one
            runs[key] = journal.put(f"{rater.name}/s{seed}/{key}", run)
    return runs


def evaluate_policy(ctx: dict, plan: Plan, rater: Rater, score, run: dict) -> None:
    """The arena against the base model (judge: the rater), then the same answers scored."""
    from core.models import load_model

    cli, store, base, spec = ctx["cli"], ctx["store"], ctx["base"], ctx["spec"]
    policy_spec = f"checkpoint:{run['checkpoint']}"
    board = json.loads(
        cli.output(
            "arena",
            "--models",
            base.spec,
            policy_spec,
            "--judge",
            rater.spec,
            "--per-prompt",
            str(spec.per_prompt),
            "--max-new-tokens",
            str(spec.max_new_tokens),
            "--seed",
            EVAL_SEED,
            "--json",
        )
    )
    run["win"] = evaluate.win_rate(board, policy_spec, base.spec)
    ev = evaluate.answers_eval(store, spec, policy_spec, run["label"], score)
    policy = load_model(policy_spec, store=store, dtype=plan.dtype)
    ev.kl = evaluate.kl_to_base(policy.model, base.model, base.tokenizer, ev.prompts, ev.texts)
    del policy
    run["gain"] = evaluate.paired_gain(ctx["base_ev"], ev)
    run["summary"] = ev.summary()
    run["scores"] = ev.scores
    log(
        f"  held-out {run['summary']['mean']:.3f}, gain {run['gain']['z']:.1f} SE, win rate "
        f"{run['win']['win_rate']:.2f} ({run['win']['lo']:.2f}-{run['win']['hi']:.2f}), "
        f"KL {ev.kl:.2f}"
    )


def reward_accuracy(store, checkpoint: int, base_ev: evaluate.PolicyEval) -> dict[str, float]:
    from core.models.reward import load_reward_model
    from core.raters import TIE_MARGIN

    rm = load_reward_model(store, checkpoint)
    return evaluate.reward_accuracy(rm, base_ev, TIE_MARGIN)


def last_run(store) -> dict[str, Any]:
    """The newest run's record: status, ratings used, last checkpoint, steps and metrics."""
    run_id = store.last_run_id()
    row = store.run(run_id)
    checkpoints = sorted(store.checkpoints_of(run_id), key=lambda c: (c["step"], c["id"]))
    metrics: dict[str, list[tuple[int, float]]] = {}
    for step, values in store.metric_history(run_id, METRICS):
        for name, value in values.items():
            metrics.setdefault(name, []).append((step, value))
    if row["status"] != "finished" or not checkpoints:
        raise RuntimeError(f"run {run_id} {row['status']}: {row.get('message') or 'no checkpoint'}")
    return {
        "run_id": run_id,
        "status": row["status"],
        "message": row.get("message"),
        "ratings": len(row["rating_ids"]),
        "checkpoint": checkpoints[-1]["id"],
        "steps": max((s for s, _ in metrics.get("loss", [])), default=0),
        "step_seconds": sum(v for _, v in metrics.get("step_time", [])),
        "metrics": metrics,
    }


if __name__ == "__main__":
    main()
