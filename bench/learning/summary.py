"""The learning bench's figures and tables: each rater's runs, averaged over the training seeds.

Input, per rater: ``{"rater", "project", "data", "base": PolicyEval, "seeds": {seed: {run key:
run}}}``, a run holding its training record and, for a policy, ``gain`` (evaluate.paired_gain),
``win`` (evaluate.win_rate) and ``summary`` (PolicyEval.summary), for the reward model
``heldout_accuracy``. Every figure is the mean over the seeds that finished, with each seed's value
in its note; the tables give the per-seed numbers.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from bench.common import Result
from bench.learning.plan import EASY_RULE, TARGETS, Plan

LABELS = {
    "dpo_large": "DPO, ≤{large} pairs",
    "dpo_small": "DPO, ≤{small} pairs",
    "reward": "reward model",
    "rloo": "RLOO with the reward model",
    "reinforce": "REINFORCE on scores",
}
ROLE_TITLES = {
    "dev": "development raters on dev prompts",
    "test": "test raters on test prompts",
}


def label(key: str, size: dict[str, Any]) -> str:
    return LABELS[key].format(**size)


def spread(values: list[float]) -> dict[str, float]:
    """Mean and standard deviation over seeds (the SD is nan for one seed)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    return {"mean": statistics.fmean(vals), "sd": sd, "n": len(vals)}


def _r(value: Any, digits: int) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(value, digits)


def report(res: Result, plan: Plan, results: dict[str, dict], plot_dir: Path | None) -> None:
    """Fill ``res`` with the figures, tables, notes and plots of the whole run."""
    size = plan.size
    res.details.update(
        role=plan.role,
        report=plan.report,
        seeds=plan.seeds,
        runs=plan.runs,
        raters={n: r["rater"].spec for n, r in results.items()},
    )
    table, per_seed, rewards, data = [], [], [], []
    for name, r in results.items():
        data.append({"rater": name, "project": r["project"], **r["data"]})
        table.append(_base_row(name, r["base"].summary()))
        for key in plan.runs:
            runs = {s: by_key[key] for s, by_key in r["seeds"].items() if key in by_key}
            if key == "reward":
                rewards += [_reward_row(name, s, run) for s, run in runs.items()]
                continue
            table.append(_mean_row(f"{name}: {label(key, size)}", runs))
            per_seed += [_seed_row(name, label(key, size), s, run) for s, run in runs.items()]
        _figures(res, plan, name, r)
    res.details["table"] = table
    res.details["tables"] = [
        {"title": "Each seed (a policy against the base model)", "rows": per_seed},
        {"title": "Reward models: held-out pair accuracy", "rows": rewards},
        {"title": "Data (per rater; the answers are shared by a project's raters)", "rows": data},
    ]
    res.notes += _notes(plan, results)
    if plot_dir is not None:
        from bench.learning import plots

        res.plots.append(
            str(plots.reward_vs_step(results, plan, plot_dir / f"{res.name}_steps.png"))
        )
        res.plots.append(str(plots.score_grid(results, plan, plot_dir / f"{res.name}_scores.png")))


def _base_row(rater: str, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "policy": f"{rater}: base model",
        "seeds": "",
        "held-out mean": _r(s["mean"], 3),
        "gain": None,
        "gain / SE": None,
        "gain / SE per seed": f"95% CI {s['ci_lo']:.3f}–{s['ci_hi']:.3f}",
        "win rate vs base": None,
        "win rate per seed": "",
        "KL to base": None,
        "distinct-2": _r(s["distinct_2"], 3),
        "mean tokens": _r(s["mean_tokens"], 1),
        "train s": None,
    }


def _mean_row(policy: str, runs: dict[int, dict]) -> dict[str, Any]:
    done = {s: run for s, run in runs.items() if run.get("gain")}
    z = spread([run["gain"]["z"] for run in done.values()])

    def mean(get) -> float:
        return spread([get(run) for run in done.values()])["mean"]

    return {
        "policy": policy,
        "seeds": ", ".join(map(str, done)) or "none finished",
        "held-out mean": _r(mean(lambda run: run["summary"]["mean"]), 3),
        "gain": _r(mean(lambda run: run["gain"]["gain"]), 3),
        "gain / SE": _r(z["mean"], 1),
        "gain / SE per seed": ", ".join(f"{run['gain']['z']:+.1f}" for run in done.values())
        + (f" (SD {z['sd']:.1f})" if z["n"] > 1 else ""),
        "win rate vs base": _r(mean(lambda run: run["win"]["win_rate"]), 3),
        "win rate per seed": ", ".join(f"{run['win']['win_rate']:.2f}" for run in done.values()),
        "KL to base": _r(mean(lambda run: run["summary"]["kl_to_base"]), 2),
        "distinct-2": _r(mean(lambda run: run["summary"]["distinct_2"]), 3),
        "mean tokens": _r(mean(lambda run: run["summary"]["mean_tokens"]), 1),
        "train s": _r(spread([run.get("train_s") for run in runs.values()])["mean"], 0),
    }


def _seed_row(rater: str, policy: str, seed: int, run: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"rater": rater, "policy": policy, "seed": seed}
    if run.get("gain"):
        s, g, w = run["summary"], run["gain"], run["win"]
        row.update(
            {
                "held-out mean": _r(s["mean"], 3),
                "gain (95% CI)": f"{g['gain']:+.3f} ({g['lo']:+.3f} to {g['hi']:+.3f})",
                "gain / SE": _r(g["z"], 1),
                "win rate vs base (95% CI)": f"{w['win_rate']:.2f} ({w['lo']:.2f}–{w['hi']:.2f})",
                "comparisons": w["n"],
                "KL to base": _r(s["kl_to_base"], 2),
            }
        )
    row.update(
        {
            "examples": run.get("ratings"),
            "steps": run.get("steps"),
            "train s": _r(run.get("train_s"), 0),
            "note": run.get("error")
            or (
                "answers equal the base's: no gain" if run.get("gain", {}).get("no_spread") else ""
            ),
        }
    )
    return row


def _reward_row(rater: str, seed: int, run: dict) -> dict[str, Any]:
    acc = run.get("heldout_accuracy") or {}
    return {
        "rater": rater,
        "seed": seed,
        "held-out pairs": acc.get("pairs"),
        "accuracy %": _r(100 * acc["accuracy"], 1) if acc.get("pairs") else None,
        "95% CI": f"{100 * acc['lo']:.0f}–{100 * acc['hi']:.0f}%" if acc.get("pairs") else "",
        "examples": run.get("ratings"),
        "steps": run.get("steps"),
        "train s": _r(run.get("train_s"), 0),
        "note": run.get("error", ""),
    }


# ---- figures ------------------------------------------------------------------------------------
def _figures(res: Result, plan: Plan, rater: str, r: dict) -> None:
    size, prefix = plan.size, f"learn.{plan.role}.{rater}."
    runs = {
        key: {s: by_key[key] for s, by_key in r["seeds"].items() if key in by_key}
        for key in plan.runs
    }
    rows = res.details.setdefault("figure_rows", {})  # figure -> its row of the table
    for key in ("dpo_large", "dpo_small", "rloo", "reinforce"):
        if key not in runs:
            continue
        name = f"{rater}: {label(key, size)}"
        target = TARGETS.get(f"{key}_se")
        _gain_figure(res, prefix + f"{key}_se", f"{name}, gain", runs[key], target)
        rows[prefix + f"{key}_se"] = name
        if f"{key}_time" in TARGETS:
            target = TARGETS[f"{key}_time"]
            _time_figure(res, prefix + f"{key}_time", f"{name}, training time", runs[key], target)
    if "reward" in runs:
        easy = EASY_RULE.get(plan.role) == rater
        _accuracy_figure(
            res,
            prefix + "rm_accuracy",
            rater,
            runs["reward"],
            TARGETS["rm_accuracy"] if easy else None,
        )
    base = r["base"].summary()
    res.figure(
        prefix + "base_mean",
        f"{rater}: base model held-out mean score",
        base["mean"],
        "",
        digits=3,
        note=f"95% CI {base['ci_lo']:.3f}–{base['ci_hi']:.3f}, {base['prompts']} prompts x {size['k']}",
    )


def _seed_list(values: dict[int, float], fmt: str) -> str:
    return (
        ", ".join(format(v, fmt) for v in values.values())
        + f" (seeds {', '.join(map(str, values))})"
    )


def _gain_figure(
    res: Result, key: str, name: str, runs: dict[int, dict], target: float | None
) -> None:
    done = {s: run for s, run in runs.items() if run.get("gain")}
    failed = {s: run.get("error", "no evaluation") for s, run in runs.items() if s not in done}
    if not done:
        why = "; ".join(f"seed {s}: {e}" for s, e in failed.items()) or "did not run"
        res.figure(key, name, None, "SE", target=target, note=f"not measured: {why}")
        return
    z = spread([run["gain"]["z"] for run in done.values()])
    win = spread([run["win"]["win_rate"] for run in done.values()])
    gain = spread([run["gain"]["gain"] for run in done.values()])
    note = f"{_seed_list({s: run['gain']['z'] for s, run in done.items()}, '+.1f')}"
    note += f", SD {z['sd']:.1f}" if z["n"] > 1 else ", one seed: no spread"
    note += f"; gain {gain['mean']:+.3f}; win rate vs base {win['mean']:.0%}"
    used = sorted({run["ratings"] for run in done.values() if run.get("ratings")})
    if used:
        note += f"; {'/'.join(map(str, used))} ratings"
    flat = [s for s, run in done.items() if run["gain"].get("no_spread")]
    if flat:
        note += f"; seed {', '.join(map(str, flat))}: answers equal the base's (no gain)"
    if failed:
        note += "; " + "; ".join(f"seed {s} failed: {e}" for s, e in failed.items())
    if target is not None and z["mean"] < target:
        note += "; " + _cause(list(done.values())[-1])
    res.figure(key, name, z["mean"], "SE", target=target, note=note)


def _time_figure(res: Result, key: str, name: str, runs: dict[int, dict], target: float) -> None:
    seconds = {s: run["train_s"] for s, run in runs.items() if run.get("train_s")}
    t = spread(list(seconds.values()))
    steps = sorted({run.get("steps") for run in runs.values() if run.get("train_s")})
    note = f"{_seed_list(seconds, '.0f')}; {'/'.join(map(str, steps))} steps" if seconds else ""
    value = t["mean"] if seconds else None
    res.figure(key, name, value, "s", target=target, better="lower", digits=0, note=note)


def _accuracy_figure(
    res: Result, key: str, rater: str, runs: dict[int, dict], target: float | None
) -> None:
    accs = {
        s: run["heldout_accuracy"]
        for s, run in runs.items()
        if (run.get("heldout_accuracy") or {}).get("pairs")
    }
    name = f"{rater}: reward model held-out pair accuracy" + (" (the easy rule)" if target else "")
    if not accs:
        why = "; ".join(
            f"seed {s}: {run.get('error', 'no held-out pairs')}" for s, run in runs.items()
        )
        res.figure(
            key, name, None, "%", target=target, note=f"not measured: {why or 'did not run'}"
        )
        return
    mean = spread([100 * a["accuracy"] for a in accs.values()])
    pairs = sorted({a["pairs"] for a in accs.values()})
    note = f"{_seed_list({s: 100 * a['accuracy'] for s, a in accs.items()}, '.0f')}; {'/'.join(map(str, pairs))} held-out pairs"
    res.figure(key, name, mean["mean"], "%", target=target, note=note)


def _cause(run: dict) -> str:
    m = run.get("metrics", {})
    last = {k: v[-1][1] for k, v in m.items() if v}
    shown = ", ".join(
        f"{k} {last[k]:.3g}"
        for k in ("rewards/accuracies", "rewards/margins", "reward", "kl")
        if k in last
    )
    return f"last step: {shown}" if shown else "see the tables"


def _notes(plan: Plan, results: dict[str, dict]) -> list[str]:
    size = plan.size
    sources = "; ".join(
        f"{n}: {', '.join(r['rater'].sources) if r['rater'].sources else 'all sources'}"
        for n, r in results.items()
    )
    notes = [
        f"Protocol (docs/learning-protocol.md): the {ROLE_TITLES[plan.role]}"
        + (", the reporting run" if plan.report else "")
        + f". Each rater trains on train prompts of its sources ({sources}) and is measured on "
        f"{plan.role} prompts of the same sources, never trained on (evaluation prompts of the "
        f"project). Training seeds {', '.join(map(str, plan.seeds))}: every figure is the mean "
        "over the seeds, with each seed's value in its note.",
        f"Up to {size['train']} training prompts with K answers each (more where a rater's "
        f"sources have fewer prompts), {size['new']} new tokens; up to {size['heldout']} "
        f"held-out prompts x {size['k']} answers per policy, the same generation seed for every "
        "policy. Gain = mean over held-out prompts of (policy - base) per-prompt mean score; "
        "gain / SE divides by the standard error of those paired differences (0 when they do "
        "not vary: no gain). Win rate vs base: `arena --models BASE checkpoint:N --judge RATER`, "
        "the k-th answers of the two on each held-out prompt compared blind, ties half, 95% CI "
        "by bootstrap. KL = sum over response tokens of KL(policy || base), nats per response.",
        "Targets (issue 16): DPO ≥ +6 SE from ≤ 150 pairs in ≤ 300 s of training, ≥ +2 SE from "
        "≤ 50 pairs, RLOO ≥ +3 SE (RLOO time: issue 6), reward model ≥ 80% on the easy rule "
        f"({EASY_RULE.get(plan.role, '—')}, fixed beforehand: the most room to move).",
    ]
    if plan.settings:
        sets = "; ".join(f"{run}: {', '.join(items)}" for run, items in plan.settings.items())
        notes.append(f"Non-default settings (a tuning run): {sets}.")
    return notes


def mark_variant(res: Result, settings: dict[str, list[str]]) -> None:
    """Name every figure after the non-default settings it was measured with."""
    tag = "; ".join(f"{run}: {', '.join(items)}" for run, items in settings.items())
    old_name = res.name
    res.name += "_" + "_".join(
        a.partition("=")[0] + a.partition("=")[2] for items in settings.values() for a in items
    )
    for i, plot in enumerate(res.plots):  # plots are named after the result: the default's own
        path = Path(plot)  # run must not overwrite them
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
