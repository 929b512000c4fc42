"""Project statistics: counts, annotator speed, inter-annotator agreement, score distributions and
how each model or checkpoint fares in human judgements. Everything ``stats --json`` prints.

Rules (also in docs/exports.md):
  - Only current ratings count (not undone); ``skip`` is not a rating.
  - Speed: ``median_seconds`` is the median time on an item; ``items_per_hour`` is items rated per
    hour of time spent on items (3600 × timed items / their total seconds), breaks excluded.
    Ratings without a time (scripted raters) are counted but not timed.
  - Agreement compares each annotator's latest judgement of an item, over items that two or more
    annotators judged. Pairwise: the item is the unordered sample pair and the label which of the
    two won (the sides shown are randomised), ``tie`` or ``both_bad``; Cohen's kappa and raw
    agreement for each two annotators, raw agreement pooled over all of them, and nominal
    Krippendorff alpha. Thumbs: the same with up/down. Scores: Krippendorff's alpha per criterion,
    interval and ordinal. A figure is null when it is undefined (fewer than two annotators on
    shared items, or no variation at all).
  - Per model/checkpoint (the ``model`` a sample records): ratings that judged its samples, the
    mean score (``overall``, else the mean of the criteria a rating scored), the thumbs-up rate,
    and pairwise results against samples of other models: wins, losses, ties (tie and both_bad)
    and win_rate = (wins + ties / 2) / comparisons.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any

from core.evaluation import arena_report
from core.store import ProjectStore

HIST_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # five bins: a 1–5 rating falls in its own bin


def project_stats(store: ProjectStore) -> dict[str, Any]:
    """Everything `stats --json` prints, under stable keys."""
    stats = store.basic_stats()
    keys = ("annotator", "kind", "sample_ids", "value", "seconds")
    ratings = [{k: r[k] for k in keys} for r in store.ratings() if r["kind"] != "skip"]
    stats["speed"] = speed(ratings)
    stats["agreement"] = agreement(ratings)
    stats["score_distribution"] = score_distribution(ratings)
    stats["per_checkpoint"] = per_checkpoint(store, ratings)
    stats["arena"] = arena_report(store)
    stats["run_details"] = [
        {**run, "alerts": store.alerts(run["id"])} for run in store.recent_runs(limit=-1)
    ]
    return stats


# ---- speed ----------------------------------------------------------------------------------------
def speed(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """Per annotator and for everyone: ratings, timed ratings, median seconds, items per hour."""
    times: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for r in ratings:
        counts[r["annotator"]] += 1
        if r["seconds"] is not None and r["seconds"] > 0:
            times[r["annotator"]].append(float(r["seconds"]))
    everyone = [t for ts in times.values() for t in ts]
    return {
        "annotators": {a: _pace(counts[a], times[a]) for a in sorted(counts)},
        "all": _pace(sum(counts.values()), everyone),
    }


def _pace(n: int, times: list[float]) -> dict[str, Any]:
    total = sum(times)
    return {
        "ratings": n,
        "timed": len(times),
        "median_seconds": _round(_median(times)),
        "items_per_hour": _round(3600 * len(times) / total) if total > 0 else None,
    }


# ---- agreement ------------------------------------------------------------------------------------
def agreement(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """Inter-annotator agreement on items two or more annotators judged (module rules)."""
    pairwise: dict[tuple[str, Any], str] = {}
    thumbs: dict[tuple[str, Any], str] = {}
    scores: dict[str, dict[tuple[str, Any], float]] = defaultdict(dict)
    for r in ratings:  # oldest first: a later judgement replaces an earlier one
        v, ids, who = r["value"], r["sample_ids"], r["annotator"]
        if r["kind"] == "pairwise" and len(ids) >= 2:
            label = _pairwise_label(v, ids[0], ids[1])
            if label is not None:
                pairwise[(who, (min(ids[:2]), max(ids[:2])))] = label
        elif r["kind"] == "thumbs" and "up" in v:
            thumbs[(who, ids[0])] = "up" if v["up"] else "down"
        elif r["kind"] == "score":
            for criterion, s in (v.get("scores") or {}).items():
                if s is not None:
                    scores[criterion][(who, ids[0])] = float(s)
    return {
        "pairwise": label_agreement(pairwise),
        "thumbs": label_agreement(thumbs),
        "scores": {c: score_agreement(scores[c]) for c in sorted(scores)},
    }


def _pairwise_label(value: dict[str, Any], a: int, b: int) -> str | None:
    choice = value.get("choice")
    if choice in ("tie", "both_bad"):
        return choice
    winner = value.get("winner")
    if winner is None:
        winner = {"a": a, "b": b}.get(choice)
    if winner not in (a, b):
        return None
    return "first" if winner == min(a, b) else "second"


def _by_item(judged: dict[tuple[str, Any], Any]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = defaultdict(dict)
    for (who, item), label in judged.items():
        out[item][who] = label
    return {item: votes for item, votes in out.items() if len(votes) >= 2}


def cohen_kappa(a: list[Any], b: list[Any]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same items: (p_o − p_e) / (1 − p_e).

    p_o is the share of items they label alike; p_e = Σ_k p_a(k) · p_b(k), the agreement expected
    by chance from each one's label frequencies. None when p_e = 1 (both used one same label)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_e = sum((a.count(k) / n) * (b.count(k) / n) for k in set(a) | set(b))
    return None if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def label_agreement(judged: dict[tuple[str, Any], str]) -> dict[str, Any]:
    """Kappa and raw agreement for each two annotators, pooled raw agreement, nominal alpha."""
    items = _by_item(judged)
    names = sorted({who for votes in items.values() for who in votes})
    pairs, agree, shared_total = [], 0, 0
    for x, y in combinations(names, 2):
        shared = [votes for votes in items.values() if x in votes and y in votes]
        if not shared:
            continue
        a, b = [v[x] for v in shared], [v[y] for v in shared]
        same = sum(p == q for p, q in zip(a, b, strict=True))
        agree, shared_total = agree + same, shared_total + len(shared)
        pairs.append(
            {
                "annotators": [x, y],
                "items": len(shared),
                "raw_agreement": _round(same / len(shared)),
                "kappa": _round(cohen_kappa(a, b)),
            }
        )
    codes = {label: i for i, label in enumerate(sorted(set(judged.values())))}
    alpha = _alpha({k: codes[v] for k, v in judged.items()}, "nominal")
    return {
        "items": len(items),
        "annotators": len(names),
        "raw_agreement": _round(agree / shared_total) if shared_total else None,
        "alpha_nominal": _round(alpha),
        "pairs": pairs,
    }


def score_agreement(judged: dict[tuple[str, Any], float]) -> dict[str, Any]:
    """Krippendorff's alpha (interval and ordinal) for one criterion's scores."""
    items = _by_item(judged)
    names = {who for votes in items.values() for who in votes}
    return {
        "items": len(items),
        "annotators": len(names),
        "alpha_interval": _round(_alpha(judged, "interval")),
        "alpha_ordinal": _round(_alpha(judged, "ordinal")),
    }


def _alpha(judged: dict[tuple[str, Any], float], level: str) -> float | None:
    """Krippendorff's alpha over the items two or more annotators judged; None if undefined."""
    import krippendorff
    import numpy as np

    items = _by_item(judged)
    names = sorted({who for votes in items.values() for who in votes})
    if len(names) < 2 or not items:
        return None
    data = np.full((len(names), len(items)), np.nan)
    for j, votes in enumerate(items.values()):
        for who, value in votes.items():
            data[names.index(who), j] = value
    domain = np.unique(data[~np.isnan(data)])
    if len(domain) < 2:
        return None
    try:
        alpha = krippendorff.alpha(data, level_of_measurement=level, value_domain=domain)
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(alpha) else float(alpha)


# ---- distributions and models ---------------------------------------------------------------------
def score_distribution(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """Histogram counts of every current score per criterion, over HIST_EDGES."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in ratings:
        if r["kind"] == "score":
            for criterion, s in (r["value"].get("scores") or {}).items():
                if s is not None:
                    values[criterion].append(float(s))
    out = {}
    for criterion in sorted(values):
        vs = values[criterion]
        counts = [0] * (len(HIST_EDGES) - 1)
        for v in vs:
            i = next((i for i, e in enumerate(HIST_EDGES[1:-1]) if v < e), len(counts) - 1)
            counts[i] += 1
        out[criterion] = {
            "n": len(vs),
            "mean": _round(sum(vs) / len(vs)),
            "edges": list(HIST_EDGES),
            "counts": counts,
        }
    return out


def per_checkpoint(store: ProjectStore, ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """For the samples of each model spec / checkpoint: ratings, mean score, pairwise results."""
    model_of = store.sample_models()
    out: dict[str, dict[str, Any]] = {}
    for model, ckpt, n in store.samples_per_model():
        row = store.find_checkpoint(ckpt)
        out[model] = {
            "checkpoint_id": ckpt,
            "step": row["step"] if row else None,
            "run_id": row["run_id"] if row else None,
            "samples": n,
            "ratings": 0,
            "_scores": [],
            "_thumbs": [],
            "vs": defaultdict(lambda: [0, 0, 0]),
        }
    for r in ratings:
        models = {model_of.get(s) for s in r["sample_ids"]} - {None}
        for m in models:
            out[m]["ratings"] += 1
        v, first = r["value"], model_of.get(r["sample_ids"][0])
        if r["kind"] == "score" and first is not None:
            s = _overall(v)
            if s is not None:
                out[first]["_scores"].append(s)
        elif r["kind"] == "thumbs" and first is not None and "up" in v:
            out[first]["_thumbs"].append(bool(v["up"]))
        elif r["kind"] == "pairwise" and len(r["sample_ids"]) >= 2:
            _count_match(out, model_of, r)
    for entry in out.values():
        scores, thumbs, vs = entry.pop("_scores"), entry.pop("_thumbs"), entry.pop("vs")
        entry["scored"] = len(scores)
        entry["mean_score"] = _round(sum(scores) / len(scores)) if scores else None
        entry["thumbs_up_rate"] = _round(sum(thumbs) / len(thumbs)) if thumbs else None
        entry["pairwise"] = _record([sum(x) for x in zip(*vs.values(), strict=True)] or [0, 0, 0])
        entry["vs"] = {other: _record(wlt) for other, wlt in sorted(vs.items())}
    return out


def _count_match(out: dict[str, Any], model_of: dict[int, str], r: dict[str, Any]) -> None:
    a, b = r["sample_ids"][:2]
    ma, mb = model_of.get(a), model_of.get(b)
    if ma is None or mb is None or ma == mb:
        return
    label = _pairwise_label(r["value"], a, b)
    if label is None:
        return
    if label in ("tie", "both_bad"):
        out[ma]["vs"][mb][2] += 1
        out[mb]["vs"][ma][2] += 1
        return
    winner = min(a, b) if label == "first" else max(a, b)
    w, lose = (ma, mb) if winner == a else (mb, ma)
    out[w]["vs"][lose][0] += 1
    out[lose]["vs"][w][1] += 1


def _record(wlt: list[int]) -> dict[str, Any]:
    wins, losses, ties = wlt
    n = wins + losses + ties
    rate = _round((wins + ties / 2) / n) if n else None
    return {"wins": wins, "losses": losses, "ties": ties, "win_rate": rate}


def _overall(value: dict[str, Any]) -> float | None:
    scores = value.get("scores") or {}
    if scores.get("overall") is not None:
        return float(scores["overall"])
    vals = [float(s) for s in scores.values() if s is not None]
    return sum(vals) / len(vals) if vals else None


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s, n = sorted(xs), len(xs)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


# ---- for people -----------------------------------------------------------------------------------
def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable summary of ``project_stats``."""
    lines = [
        f"project     {stats['project']} (schema {stats['schema_version']})",
        f"prompts     {stats['prompts']} ({stats['eval_prompts']} kept for evaluation)",
        f"samples     {stats['samples']}",
        f"ratings     {stats['ratings']} ({stats['superseded']} undone)",
    ]
    for kind, n in stats.get("ratings_by_kind", {}).items():
        lines.append(f"  {kind:<10}{n}")
    lines.append(f"annotators  {len(stats['annotators'])}")
    pace = stats.get("speed", {}).get("annotators", {})
    for name, n in stats["annotators"].items():
        p = pace.get(name) or {}
        extra = ""
        if p.get("median_seconds") is not None:
            extra = f"  median {p['median_seconds']:.1f} s, {p['items_per_hour']:.0f} items/h"
        lines.append(f"  {name:<20}{n}{extra}")
    lines += [f"runs        {stats['runs']}", f"checkpoints {stats['checkpoints']}"]
    for run in stats.get("run_details") or []:
        for alert in run["alerts"]:
            lines.append(f"  run {run['id']} alert [{alert['rule']}] {alert['message']}")
    lines += _format_agreement(stats.get("agreement") or {})
    for criterion, d in (stats.get("score_distribution") or {}).items():
        bins = " ".join(str(c) for c in d["counts"])
        lines.append(f"scores {criterion:<12} n={d['n']} mean={d['mean']:.2f}  [{bins}]")
    models = stats.get("per_checkpoint") or {}
    if models:
        lines.append("by model    samples ratings mean-score win-rate")
    for model, m in models.items():
        score = "-" if m["mean_score"] is None else f"{m['mean_score']:.2f}"
        win = "-" if m["pairwise"]["win_rate"] is None else f"{m['pairwise']['win_rate']:.0%}"
        lines.append(f"  {model[:20]:<20}{m['samples']:>7} {m['ratings']:>7} {score:>10} {win:>8}")
    lines += format_arena(stats.get("arena"))
    return "\n".join(lines)


def format_arena(board: dict[str, Any] | None) -> list[str]:
    """The arena leaderboard for people: ratings with intervals, then one line per pair."""
    if not board:
        return []
    lines = ["arena       rating [95% CI]        comparisons"]
    for m in board["models"]:
        if m["rating"] is None:
            lines.append(f"  {m['model'][:24]:<24}not rated yet {m['comparisons']:>10}")
            continue
        lo, hi = m["ci95"]
        lines.append(
            f"  {m['model'][:24]:<24}{m['rating']:>6.0f} [{lo:.0f}–{hi:.0f}]{m['comparisons']:>14}"
        )
    lines += [f"  {line}" for line in board.get("summary", [])]
    return lines


def _format_agreement(ag: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("pairwise", "thumbs"):
        a = ag.get(kind) or {}
        if a.get("items"):
            lines.append(
                f"agreement {kind}: {a['items']} shared items, raw {_fmt(a['raw_agreement'])}, "
                f"alpha {_fmt(a['alpha_nominal'])}"
            )
            for p in a["pairs"]:
                names = " & ".join(p["annotators"])
                lines.append(
                    f"  {names:<30} {p['items']} items, raw {_fmt(p['raw_agreement'])}, "
                    f"kappa {_fmt(p['kappa'])}"
                )
    for criterion, a in (ag.get("scores") or {}).items():
        if a["items"]:
            lines.append(
                f"agreement {criterion}: {a['items']} shared items, alpha interval "
                f"{_fmt(a['alpha_interval'])}, ordinal {_fmt(a['alpha_ordinal'])}"
            )
    return lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
