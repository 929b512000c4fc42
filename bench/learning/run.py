"""The learning proof, end to end with the app's own commands and default settings.

1. Training project: prompts import; ``generate`` (K = 4 per prompt); ``rate --auto
   core.raters:sentiment --mode pairwise`` (at most 200 ratings) and ``--mode score``.
2. Train with defaults: ``dpo`` on at most 150 pairs, ``dpo`` on at most 50 pairs, ``reward``
   then ``rloo`` with that reward model, and ``reinforce`` on the scores.
3. Evaluation project (held-out prompts on topics no training prompt mentions): every policy
   answers the same prompts with the same seeds; the rater scores each response. Reported: mean
   score with a 95% CI (over prompts), the paired gain over the base model in standard errors,
   KL to the base model, distinct-1/2 and mean length (collapse checks), and the reward model's
   accuracy on held-out pairs. Plots go to docs/ (full run).

The commands run in this process through ``main.main`` (the CLI entry point, the same code a user
runs); the held-out generation uses ``core.generation.generate_samples``.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Result,
    finish,
    log,
    mode_of,
    parser,
    plots_dir,
    use_bench_home,
    workdir,
)
from bench.learning import evaluate, plots
from bench.learning.prompts import heldout_prompts, train_prompts

PLAN_KEYS = ("dpo_large", "dpo_small", "reward", "rloo", "reinforce")
TARGETS = {  # issue #6
    "dpo_large_se": 5.0,
    "dpo_large_time_s": 300.0,
    "dpo_small_se": 2.0,
    "rloo_se": 2.0,
    "rloo_time_s": 900.0,
}
SIZES = {
    # train prompts, held-out prompts, K, new tokens, ratings, pairs (large, small), steps
    "full": dict(train=100, heldout=32, k=4, new=64, ratings=200, large=150, small=50, steps=None),
    "quick": dict(train=16, heldout=8, k=4, new=32, ratings=32, large=24, small=8, steps=3),
    "smoke": dict(train=6, heldout=4, k=2, new=8, ratings=6, large=4, small=2, steps=1),
}


class Cli:
    """``main.py --db DB ...`` in this process; remembers each call's wall time."""

    def __init__(self, db: Path):
        self.db = db

    def __call__(self, *argv: str) -> float:
        import main as app_main

        log(f"  main.py --db {self.db.name} {' '.join(argv)}")
        t0 = time.perf_counter()
        rc = app_main.main(["--db", str(self.db), *argv])
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"main.py {' '.join(argv)} exited {rc}")
        return seconds


def rating_limit(store, annotator: str, pairs: int) -> int:
    """How many of ``annotator``'s pairwise ratings (in order) hold ``pairs`` non-tie pairs: a
    second annotator rating the same items in the same order with this limit gets exactly them."""
    seen = n = 0
    for n, (value,) in enumerate(
        store.conn.execute(
            "SELECT value FROM ratings WHERE annotator = ? AND kind = 'pairwise' ORDER BY id",
            (annotator,),
        ),
        start=1,
    ):
        seen += json.loads(value)["choice"] not in ("tie", "both_bad")
        if seen >= pairs:
            return n
    return n if seen else 0


def count_pairs(store, annotator: str) -> int:
    return sum(
        json.loads(v)["choice"] not in ("tie", "both_bad")
        for (v,) in store.conn.execute(
            "SELECT value FROM ratings WHERE annotator = ? AND kind = 'pairwise'", (annotator,)
        )
    )


def last_run(store) -> dict[str, Any]:
    run_id, algo, status, message, rating_ids = store.conn.execute(
        "SELECT id, algo, status, message, rating_ids FROM runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    ck = store.conn.execute(
        "SELECT id FROM checkpoints WHERE run_id = ? ORDER BY step DESC, id DESC LIMIT 1", (run_id,)
    ).fetchone()
    metrics: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in store.conn.execute(
        "SELECT step, name, value FROM metrics WHERE run_id = ? ORDER BY step", (run_id,)
    ):
        metrics.setdefault(name, []).append((step, value))
    steps = max((s for s, _ in metrics.get("loss", [])), default=0)
    return {
        "run_id": run_id,
        "algo": algo,
        "status": status,
        "message": message,
        "ratings": len(json.loads(rating_ids or "[]")),
        "checkpoint": ck[0] if ck else None,
        "steps": steps,
        "step_seconds": sum(v for _, v in metrics.get("step_time", [])),
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument(
        "--rater",
        default=None,
        help="rater spec (default core.raters:sentiment; "
        "--smoke: bench.learning.raters:text_hash, which separates a tiny model's outputs)",
    )
    p.add_argument(
        "--runs",
        default=None,
        help="comma-separated training runs to do (default "
        "all): " + ", ".join(PLAN_KEYS) + "; a subset is reported as its own benchmark "
        "(learning_<runs>), with its own plots",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="RUN:FIELD=VALUE",
        help="a non-default setting for one run, e.g. rloo:rollouts_per_sampling=4 "
        "(passed to `train --set`); the figures are then named after it, so that they "
        "sit beside the defaults' figures and do not supersede them",
    )
    args = p.parse_args(argv)
    settings: dict[str, list[str]] = {}
    for item in args.settings:
        run, sep, assignment = item.partition(":")
        if not sep or run not in PLAN_KEYS or "=" not in assignment:
            p.error(f"--set {item!r}: write RUN:FIELD=VALUE with RUN one of {', '.join(PLAN_KEYS)}")
        settings.setdefault(run, []).append(assignment)
    chosen = args.runs.split(",") if args.runs else list(PLAN_KEYS)
    unknown = set(chosen) - set(PLAN_KEYS)
    if unknown or ("rloo" in chosen and "reward" not in chosen):
        p.error(f"--runs: unknown {sorted(unknown)}" if unknown else "--runs: rloo needs reward")
    use_bench_home()
    from core.generation import GenerationParams
    from core.models import load_model
    from core.prompts import import_prompts
    from core.raters import TIE_MARGIN, load_rater
    from core.store import ProjectStore

    mode = mode_of(args)
    size = SIZES[mode]
    rater = args.rater or (
        "bench.learning.raters:text_hash" if args.smoke else "core.raters:sentiment"
    )
    score = load_rater(rater)
    if args.runs:
        res = Result(
            f"learning_{'_'.join(chosen)}",
            f"Learning proof, re-measured: {', '.join(chosen)}",
            mode,
        )
    else:
        res = Result("learning", "Learning proof (held-out rater score)", mode)
    res.details["runs"] = chosen
    res.details["rater"] = rater
    folder = workdir(args, "learning")
    train_db, eval_db = folder / "train.db", folder / "heldout.db"
    for db in (train_db, eval_db):
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            path.unlink(missing_ok=True)
    cli = Cli(train_db)
    steps = ["--steps", str(size["steps"])] if size["steps"] else []

    # ---- 1. data: generate and rate with the app's commands
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"prompt": t}) + "\n" for t in train_prompts(size["train"]))
    )
    cli("prompts", "import", str(folder / "train.jsonl"))
    if args.model != "default":
        with ProjectStore(train_db) as store:
            store.update_settings(model=args.model)
    timings = {
        "generate_s": cli(
            "generate",
            "--per-prompt",
            str(size["k"]),
            "--max-new-tokens",
            str(size["new"]),
            "--seed",
            "1",
        )
    }
    timings["rate_s"] = cli(
        "rate",
        "--auto",
        rater,
        "--mode",
        "pairwise",
        "--annotator",
        "vader",
        "--limit",
        str(size["ratings"]),
    )
    with ProjectStore(train_db) as store:
        limits = {n: rating_limit(store, "vader", size[n]) for n in ("large", "small")}
        total_pairs = count_pairs(store, "vader")
    for n, who in (("large", "vader-large"), ("small", "vader-small")):
        cli(
            "rate",
            "--auto",
            rater,
            "--mode",
            "pairwise",
            "--annotator",
            who,
            "--limit",
            str(limits[n]),
        )
    cli(
        "rate",
        "--auto",
        rater,
        "--mode",
        "score",
        "--annotator",
        "vader-score",
        "--limit",
        str(size["ratings"]),
    )
    with ProjectStore(train_db) as store:
        data = {
            "samples": store.count("samples"),
            "pairwise ratings": store.count("ratings", "annotator = 'vader'"),
            "pairs (all)": total_pairs,
            "pairs (large)": count_pairs(store, "vader-large"),
            "pairs (small)": count_pairs(store, "vader-small"),
            "score ratings": store.count("ratings", "annotator = 'vader-score'"),
        }
    log(f"learning: data {data}")

    # ---- 2. the held-out baseline
    with ProjectStore(eval_db) as store:
        (folder / "heldout.jsonl").write_text(
            "".join(json.dumps({"prompt": t}) + "\n" for t in heldout_prompts(size["heldout"]))
        )
        import_prompts(store, folder / "heldout.jsonl")
    eval_store = ProjectStore(eval_db)
    heldout_ids = [r[0] for r in eval_store.conn.execute("SELECT id FROM prompts ORDER BY id")]
    params = GenerationParams(per_prompt=size["k"], max_new_tokens=size["new"], seed=1234)
    base = load_model(args.model)
    evals = {
        "base": evaluate.generate_heldout(eval_store, base, params, heldout_ids, "base", score)
    }
    log(f"learning: base held-out {evals['base'].summary()['mean']:.3f}")

    # ---- 3. train with defaults, evaluate each policy
    plan = [
        ("dpo_large", "dpo", f"DPO, ≤{size['large']} pairs", ["--annotators", "vader-large"]),
        ("dpo_small", "dpo", f"DPO, ≤{size['small']} pairs", ["--annotators", "vader-small"]),
        ("reward", "reward", "reward model", ["--annotators", "vader"]),
        ("rloo", "rloo", "RLOO with the reward model", []),
        ("reinforce", "reinforce", "REINFORCE on scores", ["--annotators", "vader-score"]),
    ]
    runs: dict[str, dict[str, Any]] = {}
    train_store = ProjectStore(train_db)
    for key, algo, label, extra in plan:
        if key not in chosen:
            continue
        if key == "rloo":
            if runs.get("reward", {}).get("checkpoint") is None:
                runs[key] = {"label": label, "algo": algo, "error": "no reward model"}
                continue
            extra = ["--reward-model", f"checkpoint:{runs['reward']['checkpoint']}"]
        log(f"learning: train {label}")
        try:
            changed = [a for setting in settings.get(key, []) for a in ("--set", setting)]
            seconds = cli("train", "--algo", algo, *extra, *steps, *changed)
        except Exception as e:  # noqa: BLE001 - one failing algorithm must not hide the others
            runs[key] = {"label": label, "algo": algo, "error": str(e)}
            log(f"  FAILED: {e}")
            continue
        run = {"label": label, "algo": algo, "train_s": seconds, **last_run(train_store)}
        runs[key] = run
        if algo == "reward":
            from core.models.reward import load_reward_model

            rm = load_reward_model(train_store, run["checkpoint"])
            run["heldout_accuracy"] = evaluate.reward_accuracy(rm, evals["base"], TIE_MARGIN)
            del rm
            continue
        policy = load_model(f"checkpoint:{run['checkpoint']}", store=train_store)
        policy.checkpoint_id = None  # a checkpoint of the training project, not of the eval one
        ev = evaluate.generate_heldout(eval_store, policy, params, heldout_ids, key, score)
        ev.kl = evaluate.kl_to_base(policy.model, base.model, base.tokenizer, ev.prompts, ev.texts)
        evals[key] = ev
        run["gain"] = evaluate.paired_gain(evals["base"], ev)
        log(
            f"  {label}: held-out {ev.summary()['mean']:.3f}, gain {run['gain']['z']:.1f} SE, KL {ev.kl:.2f}"
        )
        del policy
    train_store.close()
    eval_store.close()

    _report(res, args, size, data, timings, evals, runs)
    if settings:
        _mark_variant(res, settings)
    return finish(res, args)


def _report(res: Result, args, size, data, timings, evals, runs) -> None:
    base = evals["base"].summary()
    table = [_row("base model", None, base, None)]
    for key, run in runs.items():
        if key in evals:
            table.append(_row(run["label"], run, evals[key].summary(), run.get("gain")))
    res.details["table"] = table
    rm = runs.get("reward", {})
    acc = rm.get("heldout_accuracy")
    res.details["tables"] = [
        {
            "title": "Training runs (default settings)",
            "rows": [
                {
                    "run": r["label"],
                    "status": r.get("status", "failed"),
                    "examples": r.get("ratings"),
                    "steps": r.get("steps"),
                    "train s (command)": round(r.get("train_s", 0), 1),
                    "step s (sum)": round(r.get("step_seconds", 0), 1),
                    "note": r.get("error") or r.get("message") or "",
                }
                for r in runs.values()
            ],
        },
        {"title": "Data", "rows": [{**data, "generate s": round(timings["generate_s"], 1)}]},
    ]
    if acc:
        res.figure(
            "learn.rm_accuracy",
            f"reward model accuracy on {acc['pairs']} held-out pairs",
            100 * acc["accuracy"],
            "%",
            note=f"95% CI {100 * acc['lo']:.0f}–{100 * acc['hi']:.0f}%",
        )
    _gain_figure(
        res, runs, "dpo_large", f"DPO gain, ≤{size['large']} pairs", TARGETS["dpo_large_se"]
    )
    _time_figure(
        res, runs, "dpo_large", "DPO training time, large set", TARGETS["dpo_large_time_s"]
    )
    _gain_figure(
        res, runs, "dpo_small", f"DPO gain, ≤{size['small']} pairs", TARGETS["dpo_small_se"]
    )
    _gain_figure(res, runs, "rloo", "RLOO gain (reward model)", TARGETS["rloo_se"])
    _time_figure(res, runs, "rloo", "RLOO training time", TARGETS["rloo_time_s"])
    _gain_figure(res, runs, "reinforce", "REINFORCE gain (scores)", None)
    res.figure(
        "learn.base_mean",
        "base model held-out mean score",
        base["mean"],
        "",
        digits=3,
        note=f"95% CI {base['ci_lo']:.3f}–{base['ci_hi']:.3f}, {base['prompts']} prompts x {size['k']}",
    )
    if importlib.util.find_spec("matplotlib") is None:
        res.notes.append("matplotlib is not installed (pip install -e '.[bench]'): no plots.")
        return
    out = plots_dir(args)
    stem = "learning" if res.name == "learning" else res.name
    curves = [
        {"label": r["label"], "algo": r["algo"], "metrics": r.get("metrics", {})}
        for r in runs.values()
        if r.get("metrics")
    ]
    if curves:
        res.plots.append(str(plots.reward_vs_step(curves, out / f"{stem}_reward_vs_step.png")))
    groups = [("base", evals["base"].scores)] + [
        (runs[k]["label"], evals[k].scores) for k in runs if k in evals
    ]
    res.plots.append(
        str(plots.score_distributions(groups, out / f"{stem}_scores.png", res.details["rater"]))
    )
    res.notes.append(
        f"Rater {res.details['rater']}; {size['train']} training prompts, "
        f"{size['heldout']} held-out prompts on other topics, K={size['k']}, "
        f"{size['new']} new tokens, temperature 0.8, top-p 0.95, the same seeds for every policy. "
        "Gain = mean over held-out prompts of (policy - base) per-prompt mean score; SE of "
        "those differences; KL = sum over response tokens of KL(policy || base), nats per response."
    )


def _row(label: str, run: dict | None, s: dict, gain: dict | None) -> dict[str, Any]:
    return {
        "policy": label,
        "held-out mean": round(s["mean"], 3),
        "95% CI": f"{s['ci_lo']:.3f}–{s['ci_hi']:.3f}",
        "gain": round(gain["gain"], 3) if gain else None,
        "gain / SE": round(gain["z"], 1) if gain else None,
        "KL to base": round(s["kl_to_base"], 2) if s["kl_to_base"] is not None else None,
        "distinct-1": round(s["distinct_1"], 3),
        "distinct-2": round(s["distinct_2"], 3),
        "mean tokens": round(s["mean_tokens"], 1),
        "train s": round(run["train_s"], 0) if run else None,
    }


def _mark_variant(res: Result, settings: dict[str, list[str]]) -> None:
    """Name every figure after the non-default settings it was measured with."""
    tag = "; ".join(f"{run}: {', '.join(items)}" for run, items in settings.items())
    old_name = res.name
    res.name += "_" + "_".join(
        a.partition("=")[0] + a.partition("=")[2] for items in settings.values() for a in items
    )
    for i, plot in enumerate(res.plots):  # plots are named after the result: the default's own
        path = Path(plot)  # subset run must not overwrite them
        if path.name.startswith(old_name) and path.exists():
            res.plots[i] = str(path.rename(path.with_name(res.name + path.name[len(old_name) :])))
    res.title += f" ({tag})"
    rows = res.details.get("figure_rows", {})
    for fig in res.figures:
        old = fig["key"]
        fig["key"] = f"{old}[{tag}]"
        fig["label"] += f" ({tag})"
        if old in rows:
            rows[fig["key"]] = rows.pop(old)
    res.details["settings"] = settings


def _gain_figure(res: Result, runs: dict, key: str, label: str, target: float | None) -> None:
    if key not in res.details["runs"]:
        return  # not asked for (--runs)
    run = runs.get(key, {})
    gain = run.get("gain")
    if not gain:
        res.figure(
            f"learn.{key}_se",
            label,
            None,
            "SE",
            target=target,
            note=f"not measured: {run.get('error', 'did not run')}",
        )
        return
    res.details.setdefault("figure_rows", {})[f"learn.{key}_se"] = run["label"]  # its table row
    used = f", {run['ratings']} ratings" if run.get("ratings") else ""
    note = f"{gain['gain']:+.3f} (95% CI {gain['lo']:+.3f} to {gain['hi']:+.3f}){used}"
    if target is not None and gain["z"] < target:
        note += "; " + _cause(run)
    res.figure(f"learn.{key}_se", label, gain["z"], "SE", target=target, note=note)


def _time_figure(res: Result, runs: dict, key: str, label: str, target: float) -> None:
    if key not in res.details["runs"]:
        return
    run = runs.get(key, {})
    value = run.get("train_s")
    res.figure(
        f"learn.{key}_time",
        label,
        value,
        "s",
        target=target,
        better="lower",
        digits=0,
        note=f"{run.get('steps')} steps, {run.get('step_seconds', 0):.0f} s in steps"
        if value
        else "",
    )


def _cause(run: dict) -> str:
    m = run.get("metrics", {})
    last = {k: v[-1][1] for k, v in m.items() if v}
    shown = ", ".join(
        f"{k} {last[k]:.3g}"
        for k in ("rewards/accuracies", "rewards/margins", "reward", "kl")
        if k in last
    )
    return f"last step: {shown}" if shown else "see the training table"


if __name__ == "__main__":
    main()
