"""Head to head: a pair's win rate with its interval, and how many more comparisons would
separate two models at 95 %.

A comparison is ``(model_a, model_b, outcome)`` with outcome ``"a"``, ``"b"`` or ``"tie"``; a tie
counts as half a win for each side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

OUTCOMES = {"a": 0, "b": 1, "tie": 2}
Comparison = Sequence[str]  # (model_a, model_b, outcome)


def _z(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.96 for 0.95."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


# ---- counting ------------------------------------------------------------------------------------
def _cells(
    comparisons: Iterable[Comparison], models: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Group comparisons into cells (ordered pair, outcome); returns cell counts (C,) and the
    matrix (C, k·k) that maps counts to a flattened win matrix, so a resample redraws only counts."""
    index = {m: i for i, m in enumerate(models)}
    if len(index) != len(models):
        raise ValueError(f"models: each model must be listed once, got {list(models)!r}")
    k = len(models)
    codes = []
    for n, comparison in enumerate(comparisons):
        try:
            a, b, outcome = comparison
        except (TypeError, ValueError):
            raise ValueError(
                f"comparison {n}: expected (model_a, model_b, outcome), got {comparison!r}"
            ) from None
        for m in (a, b):
            if m not in index:
                raise ValueError(f"comparison {n}: model {m!r} is not in models; add it there")
        if a == b:
            raise ValueError(f"comparison {n}: {a!r} is compared with itself; drop it")
        if outcome not in OUTCOMES:
            raise ValueError(f"comparison {n}: outcome {outcome!r}, expected 'a', 'b' or 'tie'")
        codes.append((index[a] * k + index[b]) * 3 + OUTCOMES[outcome])
    cells, counts = np.unique(np.asarray(codes, dtype=np.int64), return_counts=True)
    pair, outcome = np.divmod(cells, 3)
    i, j = np.divmod(pair, k)
    to_wins = np.zeros((len(cells), k * k))
    rows = np.arange(len(cells))
    to_wins[rows, np.where(outcome == 1, j * k + i, i * k + j)] = np.where(outcome == 2, 0.5, 1.0)
    tie = outcome == 2
    to_wins[rows[tie], (j * k + i)[tie]] = 0.5  # a tie is half a win for each side
    return counts.astype(float), to_wins


def win_matrix(comparisons: Iterable[Comparison], models: Sequence[str]) -> np.ndarray:
    """``W[i, j]`` = wins of model i over model j; a tie adds ½ to both ``W[i, j]`` and ``W[j, i]``."""
    counts, to_wins = _cells(comparisons, models)
    return (counts @ to_wins).reshape(len(models), len(models))


# ---- head to head --------------------------------------------------------------------------------
def win_rate_interval(
    win_rate: float, n: int, tie_rate: float = 0.0, confidence: float = 0.95
) -> tuple[float, float]:
    """Score interval for a win rate whose comparisons score 1, ½ (tie) or 0.

    Solves (p̂ − p)² = z²·(p(1 − p) − t/4) / n for p, the variance of one comparison's score at win
    rate p and tie fraction t. With no ties this is Wilson's interval. t is shrunk to
    ties / (n + z²) so that a handful of ties alone cannot give a zero-width interval.
    """
    if n <= 0:
        return (0.0, 1.0)
    z2 = _z(confidence) ** 2
    t = tie_rate * n / (n + z2)
    disc = z2 * (n * (4 * win_rate * (1 - win_rate) - t) + z2 * (1 - t))
    centre, half = 2 * n * win_rate + z2, math.sqrt(max(disc, 0.0))
    lo, hi = (centre - half) / (2 * (n + z2)), (centre + half) / (2 * (n + z2))
    return (max(0.0, min(lo, win_rate)), min(1.0, max(hi, win_rate)))


def head_to_head(
    comparisons: Iterable[Comparison], models: Sequence[str], confidence: float = 0.95
) -> list[dict[str, Any]]:
    """For each pair that met (a listed before b): a's win rate (wins + ties/2) / n, its score
    interval, n, and the number of ties."""
    comparisons = list(comparisons)
    wins = win_matrix(comparisons, models)
    ties = 2 * win_matrix([c for c in comparisons if c[2] == "tie"], models)
    pairs = []
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            n = int(round(wins[i, j] + wins[j, i]))
            if n:
                rate = float(wins[i, j] / n)
                ci = win_rate_interval(rate, n, ties[i, j] / n, confidence)
                pairs.append(
                    {
                        "a": models[i],
                        "b": models[j],
                        "win_rate": rate,
                        "ci95": list(ci),
                        "n": n,
                        "ties": int(round(ties[i, j])),
                    }
                )
    return pairs


# ---- how many more comparisons -------------------------------------------------------------------
def comparisons_to_separate(
    win_rate: float,
    n_so_far: int = 0,
    tie_rate: float = 0.0,
    confidence: float = 0.95,
    power: float = 0.8,
) -> int | None:
    """How many more comparisons would make the win rate's interval exclude ½, if ``win_rate`` and
    ``tie_rate`` are the true rates: ``None`` when the rate is exactly ½ (no number would).

    Normal approximation of a one-sample test of p = ½ at the interval's confidence, with
    probability ``power`` of separating:  N = ((z_c·σ₀ + z_power·σ₁) / |p − ½|)², where
    σ₀² = ¼ − t/4 and σ₁² = p(1 − p) − t/4 are one comparison's score variances at ½ and at p.
    """
    if not tie_rate / 2 <= win_rate <= 1 - tie_rate / 2:
        raise ValueError(f"win rate {win_rate} is impossible with tie fraction {tie_rate}")
    gap = abs(win_rate - 0.5)
    if gap < 1e-12:
        return None
    sd_null = math.sqrt(max(0.25 - tie_rate / 4, 0.0))
    sd_true = math.sqrt(max(win_rate * (1 - win_rate) - tie_rate / 4, 0.0))
    spread = _z(confidence) * sd_null + NormalDist().inv_cdf(power) * sd_true
    total = math.ceil((spread / gap) ** 2 - 1e-9)  # the tolerance absorbs float noise at integers
    return max(0, total - n_so_far)


def describe_pair(pair: dict[str, Any], confidence: float = 0.95) -> str:
    """One line for people, e.g. "round 3 beat round 2: 64 % [55–72 %], 120 comparisons", or the
    same with "not separated yet: about N more comparisons would tell at 95 %". A pair from
    ``head_to_head`` carries its ties, which the estimate uses; without them it assumes none."""
    a, b, rate, (lo, hi), n = pair["a"], pair["b"], pair["win_rate"], pair["ci95"], pair["n"]
    if not n:
        return f"{a} vs {b}: no comparisons yet"
    if rate < 0.5:  # speak from the leader's side
        a, b, rate, lo, hi = b, a, 1 - rate, 1 - hi, 1 - lo
    figures = f"{rate:.0%} [{lo:.0%}–{hi:.0%}]".replace("%", " %").replace(" %–", "–")
    figures += f", {n} comparison{'s' if n != 1 else ''}"
    if lo > 0.5:
        return f"{a} beat {b}: {figures}"
    more = comparisons_to_separate(rate, n, pair.get("ties", 0) / n, confidence)
    more = None if more is None else max(more, 1)  # not separated now, so at least one more
    level = f"{round(confidence * 100)} %"
    if more is None:
        return f"{a} and {b} are level: {figures}; while they stay level no number separates them"
    return f"{a} vs {b}: {figures}; not separated yet: about {more} more comparisons would tell at {level}"
