"""Arena ratings: Bradley–Terry on an Elo scale, with bootstrap intervals, and the leaderboard.

A comparison is ``(model_a, model_b, outcome)`` with outcome ``"a"`` (a won), ``"b"`` (b won) or
``"tie"``. A tie counts as half a win for each side, as the public chatbot arenas count it.

Rules:
  - Ratings are on an Elo scale anchored at the first listed model that has a comparison:
    ``rating = 1000 + 400·log10(strength / strength_anchor)``, so the first model is exactly 1000.
  - A model with no comparisons, or none linking it (through other models) to the anchor, has
    rating ``None``: its strength relative to the anchor is not identified by the data.
  - A tiny ridge (Gaussian prior on log-strengths, ``RIDGE``) keeps the rating of a model that
    never lost (or never won) finite; that rating, and its narrow interval, then reflect the
    prior, not a measurement: ``prior_driven`` names such models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.evaluation.head_to_head import Comparison, _cells, head_to_head, win_matrix

BASE_RATING = 1000.0
ELO_PER_LOGIT = 400 / math.log(10)  # rating points per unit of natural log-strength
RIDGE = 1e-6  # prior precision on log-strengths: negligible next to one comparison's information
MAX_STEP = 4.0  # largest Newton move in log-strength: keeps near-separated fits from overshooting


# ---- Bradley–Terry -------------------------------------------------------------------------------
def fit_log_strengths(wins: np.ndarray, ridge: float = RIDGE, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths θ for a batch of win matrices ``wins`` (R, k, k), by Newton's method.

    Maximises  Σ_ij W_ij·log σ(θ_i − θ_j) − ridge/2·Σ_i θ_i²  where σ is the logistic function,
    i.e. P(i beats j) = s_i / (s_i + s_j) with s = exp(θ). Returns θ (R, k).
    """
    theta = np.zeros(wins.shape[:2])
    eye = np.eye(wins.shape[1])
    active = np.arange(len(wins)) if wins.size else np.arange(0)
    for _ in range(100):
        w, th = wins[active], theta[active]
        games = w + np.swapaxes(w, 1, 2)
        p = 0.5 * (1 + np.tanh((th[:, :, None] - th[:, None, :]) / 2))  # stable σ(θi − θj)
        grad = (games * p - w).sum(axis=2) + ridge * th  # of the negative log posterior
        # judged on the gradient: the step along the ridge-only direction (a common shift) is noise
        going = np.abs(grad).max(axis=1) > tol * (1 + games.sum(axis=(1, 2)))
        active, th, games, p, grad = active[going], th[going], games[going], p[going], grad[going]
        if not active.size:
            break
        curv = games * p * (1 - p)
        hess = eye * (curv.sum(axis=2) + ridge)[:, :, None] - curv
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        largest = np.abs(step).max(axis=1, keepdims=True)
        theta[active] = th - step * np.minimum(1.0, MAX_STEP / largest)
    return theta


def _anchor(games: np.ndarray) -> int | None:
    """The first listed model with a comparison: the model that rates 1000."""
    played = np.flatnonzero(games.sum(axis=1) > 0)
    return int(played[0]) if played.size else None


def _linked(games: np.ndarray, anchor: int) -> np.ndarray:
    """Which models the comparisons link to ``anchor``, for a batch of game matrices (R, k, k)."""
    adjacent = (games > 0).astype(float)
    reached = np.zeros(games.shape[:2])
    reached[:, anchor] = 1.0
    for _ in range(games.shape[1]):
        reached = np.maximum(reached, (reached[:, None, :] @ adjacent)[:, 0, :] > 0)
    return reached > 0


def _ratings(wins: np.ndarray, anchor: int, ridge: float) -> np.ndarray:
    """Elo-scale ratings (R, k) relative to ``anchor``; NaN where a model is not linked to it."""
    theta = fit_log_strengths(wins, ridge)
    ratings = BASE_RATING + ELO_PER_LOGIT * (theta - theta[:, [anchor]])
    ratings[~_linked(wins + np.swapaxes(wins, 1, 2), anchor)] = np.nan
    return ratings


def bradley_terry(
    comparisons: Iterable[Comparison], models: Sequence[str], ridge: float = RIDGE
) -> dict[str, float | None]:
    """Maximum-likelihood Bradley–Terry ratings, ties as half a win each.

    rating_m = 1000 + 400·log10(s_m / s_anchor); ``None`` for a model not linked to the anchor.
    """
    wins = win_matrix(comparisons, models)
    anchor = _anchor(wins + wins.T)
    if anchor is None:
        return dict.fromkeys(models)
    row = _ratings(wins[None], anchor, ridge)[0]
    return {m: None if np.isnan(r) else float(r) for m, r in zip(models, row, strict=True)}


def prior_driven(comparisons: Iterable[Comparison], models: Sequence[str]) -> list[str]:
    """Rated models whose rating the ridge sets, not the data: the maximum-likelihood ratio to the
    anchor is infinite because, in the graph "i won at least half a comparison against j", the
    model and the anchor do not reach each other both ways (e.g. it never lost)."""
    wins = win_matrix(comparisons, models)
    anchor = _anchor(wins + wins.T)
    if anchor is None:
        return []
    reach = ((wins > 0) | np.eye(len(models), dtype=bool)).astype(float)
    for _ in range(len(models)):  # transitive closure by repeated squaring
        reach = (reach @ reach > 0).astype(float)
    linked = _linked((wins + wins.T)[None], anchor)[0]
    both_ways = (reach[:, anchor] > 0) & (reach[anchor, :] > 0)
    return [m for m, ok, solid in zip(models, linked, both_ways, strict=True) if ok and not solid]


# ---- bootstrap and leaderboard -------------------------------------------------------------------
def bootstrap(
    comparisons: Iterable[Comparison],
    models: Sequence[str],
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    ridge: float = RIDGE,
) -> dict[str, Any]:
    """Percentile intervals of the ratings over ``rounds`` resamples of the comparisons, drawn with
    replacement; plus ``head_to_head`` for the pairs.

    A resample of N comparisons is a multinomial draw of N over the (pair, outcome) cells with the
    observed frequencies, so each refit works on a k×k win matrix, all rounds in one batch. A
    model's interval uses the resamples in which it is still linked to the anchor; it is ``None``
    when the model has no rating. Returns {"ratings": {model: [lo, hi] | None}, "pairs": [...]}.
    """
    comparisons = list(comparisons)
    pairs = head_to_head(comparisons, models, confidence)
    counts, to_wins = _cells(comparisons, models)
    k, total = len(models), int(counts.sum())
    wins = (counts @ to_wins).reshape(k, k)
    anchor = _anchor(wins + wins.T)
    if anchor is None:
        return {"ratings": dict.fromkeys(models), "pairs": pairs}
    draws = np.random.default_rng(seed).multinomial(total, counts / total, size=rounds)
    ratings = _ratings((draws @ to_wins).reshape(rounds, k, k), anchor, ridge)
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for m, column in zip(models, ratings.T, strict=True):
        kept = column[~np.isnan(column)]
        intervals[m] = np.percentile(kept, [tail, 100 - tail]).tolist() if kept.size else None
    return {"ratings": intervals, "pairs": pairs}


def leaderboard(
    comparisons: Iterable[Comparison], models: Sequence[str], rounds: int = 1000, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """The arena table, JSON-ready: models by rating (unrated ones last, in listed order) and every
    pair that met, ``a`` being the higher-ranked model and ``win_rate`` a's rate against b."""
    comparisons = list(comparisons)
    point = bradley_terry(comparisons, models)
    spread = bootstrap(comparisons, models, rounds, seed)
    played = win_matrix(comparisons, models)
    played = played.sum(axis=0) + played.sum(axis=1)
    order = sorted(
        range(len(models)), key=lambda i: (point[models[i]] is None, -(point[models[i]] or 0), i)
    )
    rank = {models[i]: r for r, i in enumerate(order)}
    rows = [
        {
            "model": models[i],
            "rating": _round(point[models[i]], 1),
            "ci95": _round(spread["ratings"][models[i]], 1)
            if point[models[i]] is not None
            else None,
            "comparisons": int(round(played[i])),
        }
        for i in order
    ]
    pairs = []
    for p in spread["pairs"]:
        if rank[p["a"]] > rank[p["b"]]:  # show the pair from the higher-ranked model's side
            p = {
                **p,
                "a": p["b"],
                "b": p["a"],
                "win_rate": 1 - p["win_rate"],
                "ci95": [1 - p["ci95"][1], 1 - p["ci95"][0]],
            }
        pairs.append(
            {
                "a": p["a"],
                "b": p["b"],
                "win_rate": _round(p["win_rate"], 4),
                "ci95": _round(p["ci95"], 4),
                "n": p["n"],
            }
        )
    pairs.sort(key=lambda p: (rank[p["a"]], rank[p["b"]]))
    return {"models": rows, "pairs": pairs}


def _round(x: Any, digits: int) -> Any:
    """A float, or each float of a list, rounded for JSON; None stays None."""
    if x is None:
        return None
    return [round(float(v), digits) for v in x] if isinstance(x, list) else round(float(x), digits)
