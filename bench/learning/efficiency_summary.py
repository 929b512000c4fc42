"""The label-efficiency experiment's figures and tables: each arm's gain curve over the seeds, the
labels each arm needs to reach the fixed gain, their ratio, and which selections were written.

Input, per rater: ``{"rater", "seeds": {seed: {"data", "base_mean", "arms": {arm: {"db",
"points", "selection"}}}}}``; a point is one budget's round: ``budget``, ``labels`` (pairwise
ratings so far), ``pairs`` (the non-tie ones), ``z`` (held-out gain in SE) and more, or ``error``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.common import Result
from bench.learning.plan import Plan
from bench.learning.summary import ROLE_TITLES, spread

RATIO_TARGET = 1.5  # the goal: uncertain pairs reach the gain with 1.5x fewer labels


def title(plan: Plan) -> str:
    return f"Label efficiency, uncertain against random pairs, {ROLE_TITLES[plan.role]}"


def labels_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The labels at which a gain curve, given as (labels, gain) points in order, first reaches
    ``target``: linear between points, from the base model (0 labels, gain 0); None if never."""
    if target <= 0:
        return 0.0
    x0, z0 = 0.0, 0.0
    for x, z in points:
        if z >= target:  # z0 < target <= z here, so the slope is positive
            return x0 + (target - z0) * (x - x0) / (z - z0)
        x0, z0 = x, z
    return None


def ratio(
    random: float | None, uncertain: float | None, most_random: float, most_uncertain: float
) -> tuple[float | None, str]:
    """(random / uncertain labels, bound): bound ``≥`` when only the uncertain arm reached the
    gain (the random arm would need more than its ``most_random`` labels), ``≤`` when only the
    random arm did, "" when both did; (None, "") when neither did."""
    if random is not None and uncertain is not None:
        return random / uncertain, ""
    if uncertain is not None:
        return most_random / uncertain, "≥"
    if random is not None:
        return random / most_uncertain, "≤"
    return None, ""


def in_seed_round(random: float | None, uncertain: float | None, seed_round: float) -> bool:
    """Both arms reached the gain within the seed round they share: equal by construction, so
    they are not compared at this gain."""
    return random is not None and uncertain is not None and max(random, uncertain) <= seed_round


def decided(value: float | None, bound: str, target: float) -> float | None:
    """A censored ratio as a figure: a bound counts only when it settles pass or short."""
    if value is None or not bound:
        return value
    if bound == "≥":
        return value if value >= target else None
    return value if value < target else None


def measured(points: list[dict]) -> list[tuple[float, float]]:
    return [(p["labels"], p["z"]) for p in points if "z" in p]


def curve(seeds: dict[int, dict], arm: str) -> list[dict[str, Any]]:
    """The arm's gain at each budget: mean and SD over the seeds that measured it."""
    budgets = [p["budget"] for p in next(iter(seeds.values()))["arms"][arm]["points"]]
    out = []
    for i, budget in enumerate(budgets):
        at = {s: r["arms"][arm]["points"][i] for s, r in seeds.items()}
        done = {s: p for s, p in at.items() if "z" in p}
        z = spread([p["z"] for p in done.values()])
        out.append(
            {
                "budget": budget,
                "labels": spread([p["labels"] for p in done.values()])["mean"],
                "pairs": spread([p["pairs"] for p in done.values()])["mean"],
                "z_mean": z["mean"],
                "z_sd": z["sd"],
                "z": {s: p["z"] for s, p in done.items()},
                "train_s": spread([p.get("train_s") for p in done.values()])["mean"],
                "errors": {s: p["error"] for s, p in at.items() if "error" in p},
            }
        )
    return out


def report(res: Result, plan: Plan, results: dict[str, dict]) -> None:
    """Fill ``res`` with each rater's curves, labels needed, ratio and selection check."""
    size = plan.size
    target = size["target"]
    res.details.update(
        role=plan.role,
        report=plan.report,
        seeds=plan.seeds,
        budgets=list(size["budgets"]),
        target_se=target,
        raters={n: r["rater"].spec for n, r in results.items()},
        curves={},
    )
    table, needs, picks, data = [], [], [], []
    for name, r in results.items():
        curves = {arm: curve(r["seeds"], arm) for arm in ("random", "uncertain")}
        res.details["curves"][name] = curves
        for arm, points in curves.items():
            table += [_curve_row(name, arm, p) for p in points]
            _final_gain_figure(res, plan, name, arm, points[-1])
        needs += _need_rows(name, r["seeds"], target)
        _ratio_figures(res, plan, name, r["seeds"], curves)
        picks += _selection_rows(name, r["seeds"])
        _share_figure(res, plan, name, r["seeds"])
        data += [
            {
                "rater": name,
                "seed": s,
                **run["data"],
                "base held-out mean": _round(run["base_mean"], 3),
            }
            for s, run in r["seeds"].items()
        ]
    res.details["table"] = table
    res.details["tables"] = [
        {"title": f"Labels to reach +{target:g} SE, each seed", "rows": needs},
        {
            "title": "How the labels were picked (the project files' selection column)",
            "rows": picks,
        },
        {"title": "Data (per rater and seed; both arms rate the same answers)", "rows": data},
    ]
    res.notes += _notes(plan)


def _key(plan: Plan, rater: str, what: str) -> str:
    return f"efficiency.{plan.role}.{rater}.{what}"


def _curve_row(rater: str, arm: str, p: dict) -> dict[str, Any]:
    return {
        "rater": rater,
        "arm": arm,
        "budget": p["budget"],
        "labels": _round(p["labels"], 1),
        "non-tie pairs": _round(p["pairs"], 1),
        "gain / SE": _round(p["z_mean"], 1),
        "SD": _round(p["z_sd"], 1),
        "per seed": ", ".join(f"{z:+.1f}" for z in p["z"].values()),
        "train s": _round(p["train_s"], 0),
        "note": "; ".join(f"seed {s}: {e}" for s, e in p["errors"].items()),
    }


def _round(value: float, digits: int) -> float | None:
    return None if value != value else round(value, digits)  # nan (nothing measured): empty cell


def _needs(run: dict, target: float) -> dict[str, Any]:
    """One seed's labels needed per arm, their ratio, and whether both arms reached the gain in
    the seed round they share (then the ratio is not claimed)."""
    out: dict[str, Any] = {}
    for arm in ("random", "uncertain"):
        points = measured(run["arms"][arm]["points"])
        out[arm] = labels_to_reach(points, target)
        out[f"most {arm}"] = max((x for x, _ in points), default=0.0)
    out["ratio"] = ratio(out["random"], out["uncertain"], out["most random"], out["most uncertain"])
    first = run["arms"]["random"]["points"][0].get("labels", 0)
    out["shared"] = in_seed_round(out["random"], out["uncertain"], first)
    return out


def _fmt_ratio(value: float | None, bound: str, shared: bool = False) -> str:
    if shared:
        return "both in the shared seed round"
    return "neither reached" if value is None else f"{bound}{value:.2f}"


def _fmt_labels(labels: float | None, most: float) -> str:
    return f"not reached in {most:.0f}" if labels is None else f"{labels:.0f}"


def _need_rows(rater: str, seeds: dict[int, dict], target: float) -> list[dict[str, Any]]:
    rows = []
    for seed, run in seeds.items():
        n = _needs(run, target)
        rows.append(
            {
                "rater": rater,
                "seed": seed,
                "random": _fmt_labels(n["random"], n["most random"]),
                "uncertain": _fmt_labels(n["uncertain"], n["most uncertain"]),
                "random / uncertain": _fmt_ratio(*n["ratio"], n["shared"]),
            }
        )
    return rows


def _ratio_figures(
    res: Result, plan: Plan, rater: str, seeds: dict[int, dict], curves: dict[str, list[dict]]
) -> None:
    """Labels each arm's mean curve needs, and the ratio of the two (target 1.5x); each seed's
    values in the notes."""
    target = plan.size["target"]
    per_seed = {s: _needs(run, target) for s, run in seeds.items()}
    need, most = {}, {}
    for arm, points in curves.items():
        mean_points = [(p["labels"], p["z_mean"]) for p in points if p["z"]]
        need[arm] = labels_to_reach(mean_points, target)
        most[arm] = max((x for x, _ in mean_points), default=0.0)
        seeds_text = ", ".join(
            f"seed {s}: {_fmt_labels(n[arm], n[f'most {arm}'])}" for s, n in per_seed.items()
        )
        res.figure(
            _key(plan, rater, f"labels_{arm}"),
            f"{rater}: labels to reach +{target:g} SE, {arm} pairs",
            need[arm],
            "labels",
            digits=0,
            note=f"mean curve over the seeds; {seeds_text}"
            + ("" if need[arm] is not None else f"; not reached in {most[arm]:.0f} labels"),
        )
    value, bound = ratio(need["random"], need["uncertain"], most["random"], most["uncertain"])
    first = curves["random"][0]["labels"] if curves["random"][0]["z"] else 0.0
    shared = in_seed_round(need["random"], need["uncertain"], first)
    exact = [
        n["ratio"][0]
        for n in per_seed.values()
        if n["ratio"][0] and not n["ratio"][1] and not n["shared"]
    ]
    note = f"mean curves: {_fmt_ratio(value, bound)}; each seed: " + ", ".join(
        f"{_fmt_ratio(*n['ratio'], n['shared'])} (seed {s})" for s, n in per_seed.items()
    )
    if shared:
        value, bound = None, ""
        note = (
            f"not compared: both arms reach +{target:g} SE within the seed round of "
            f"{first:.0f} random labels they share, so their labels to reach it are equal by "
            f"construction (compare their gains at the larger budgets instead); {note}"
        )
    if len(exact) > 1:
        sd = spread(exact)
        note += (
            f"; the {len(exact)} seeds where both arms reached it: mean {sd['mean']:.2f}, "
            f"SD {sd['sd']:.2f}, range {min(exact):.2f}–{max(exact):.2f}"
        )
    if bound:
        note += "; a bound (one arm did not reach the gain) counts only when it settles the target"
    res.figure(
        _key(plan, rater, "ratio"),
        f"{rater}: labels to +{target:g} SE, random / uncertain",
        decided(value, bound, RATIO_TARGET),
        "x",
        target=RATIO_TARGET,
        digits=2,
        note=note,
    )


def _final_gain_figure(res: Result, plan: Plan, rater: str, arm: str, last: dict) -> None:
    note = ", ".join(f"{z:+.1f} (seed {s})" for s, z in last["z"].items())
    if len(last["z"]) > 1:
        note += f"; SD {last['z_sd']:.1f}"
    if last["errors"]:
        note += "; " + "; ".join(f"seed {s} failed: {e}" for s, e in last["errors"].items())
    res.figure(
        _key(plan, rater, f"gain_{arm}"),
        f"{rater}: held-out gain after {last['budget']} labels, {arm} pairs",
        last["z_mean"] if last["z"] else None,
        "SE",
        note=note,
    )


def _counts(picks: list[str]) -> str:
    return ", ".join(f"{n} {how}" for how, n in sorted(Counter(picks).items())) or "none"


def _selection_rows(rater: str, seeds: dict[int, dict]) -> list[dict[str, Any]]:
    rows = []
    for seed, run in seeds.items():
        first = run["arms"]["random"]["points"][0].get("labels", 0)
        for arm, a in run["arms"].items():
            rows.append(
                {
                    "rater": rater,
                    "seed": seed,
                    "arm": arm,
                    "seed round": _counts(a["selection"][:first]),
                    "later rounds": _counts(a["selection"][first:]),
                }
            )
    return rows


def _share_figure(res: Result, plan: Plan, rater: str, seeds: dict[int, dict]) -> None:
    """The check that the arms did what they say: the uncertain arm's later labels are mostly
    picked by uncertainty (the rest a random control slice); the random arm's are all random."""
    later, random_arm = Counter(), Counter()
    for run in seeds.values():
        first = run["arms"]["random"]["points"][0].get("labels", 0)
        later.update(run["arms"]["uncertain"]["selection"][first:])
        random_arm.update(run["arms"]["random"]["selection"])
    total = sum(later.values())
    res.figure(
        _key(plan, rater, "uncertain_share"),
        f"{rater}: uncertain arm's later labels picked by uncertainty",
        100 * later["uncertain"] / total if total else None,
        "%",
        digits=0,
        note=f"uncertain arm after the seed round: {_counts(list(later.elements()))}; "
        f"random arm: {_counts(list(random_arm.elements()))}",
    )


def _notes(plan: Plan) -> list[str]:
    size = plan.size
    return [
        f"Protocol (docs/learning-protocol.md): the {ROLE_TITLES[plan.role]}"
        + (", the reporting run" if plan.report else "")
        + f". Training seeds {', '.join(map(str, plan.seeds))}, each with its own project: up "
        f"to {size['train']} train prompts whose answers hold at least {size['ratings']} "
        f"disjoint pairs, {size['new']} new tokens; up to {size['heldout']} held-out prompts x "
        f"{size['k']} answers per policy.",
        f"Budgets {', '.join(map(str, size['budgets']))} labels (pairwise ratings, ties "
        "included). The seed round is rated at random once and shared by both arms with its DPO "
        "checkpoint; later rounds pick pairs at random, or by the uncertainty of the policy "
        "just trained with a 20% random control slice. After each round `train --algo dpo` with "
        "default settings on all labels so far, from the base model.",
        f"Gain = mean over held-out prompts of (policy - base) per-prompt mean score, in SE of "
        f"those paired differences (0 when they do not vary). Labels to reach +{size['target']:g}"
        " SE (fixed before any run): the first crossing of the gain curve, linear between "
        "budgets, from the base model (0 labels, gain 0); the figure uses the seeds' mean "
        f"curve. Target: random / uncertain ≥ {RATIO_TARGET:g}.",
    ]
