"""Ratings become training examples: preference pairs, unpaired examples, scalar rewards, demonstrations.

The rules live here, once, so that what an export writes is what a run trains on. This package's
``__init__`` is the public API; the work is split over ``judgments`` (reading ratings, the latest
judgment per annotator and item), ``rules`` (the example dataclasses and the builders) and
``texts`` (:func:`materialize`: ids to prompt and response texts).

Which ratings count
  - Only current ratings: superseded (undone) ratings never train; ``skip`` is not a judgment.
  - ``flag`` removes samples everywhere: a flagged sample (``value.sample_id``, or every shown
    sample when that is null) is in no pair, example, reward or demonstration. Flags from every
    annotator count, whatever the ``annotators`` and ``rating_ids`` filters say: a report of unsafe
    or private content wins over reproducing an older snapshot exactly.
  - ``annotators`` keeps only those annotators' ratings; ``rating_ids`` keeps only those ratings
    (a run's snapshot, ``runs.rating_ids``; see :func:`used_rating_ids`).
  - An annotator's latest judgment of an item replaces their earlier ones (re-rating without
    undo). The item is the unordered sample pair for comparisons (pairwise, rank, rewrite), the
    sample for labels and rewards, and (sample, criterion) for scores.
  - Without aggregation every annotator's judgment is its own example: two people who agree
    give two identical pairs, two who disagree give two opposite pairs (see Aggregation).

Preference pairs (chosen ≻ rejected)
  - pairwise: winner ≻ other, margin 0; ``tie`` and ``both_bad`` give no pair.
  - rank: ``order [s1, …, sn]`` gives every ``si ≻ sj`` with i < j (n(n−1)/2 pairs), margin 0.
  - score: one annotator's scores of two samples of a prompt on ``criterion``; a pair when they
    differ by at least ``score_margin`` (and by more than 0); margin = the difference.
  - rewrite: rewrite ≻ original, margin 0.

Unpaired examples (label True = desirable)
  - thumbs up/down; a score on ``criterion`` ≥ ``score_threshold`` is desirable, below it
    undesirable; a rewrite is desirable (its original gets no label: rewriting is not a verdict
    that the original was bad).

Scalar rewards in [0, 1]
  - score: the value of ``criterion``, or with ``criterion=None`` the mean of the criteria that
    rating scored (a rating without the criterion gives nothing); thumbs: 1.0 / 0.0.

Demonstrations
  - every rewrite; with ``min_score``, also each sample whose score on ``criterion`` (mean over
    annotators) is ≥ ``min_score``. One demonstration per sample.

Aggregation (``aggregate=True``): one example per item, combining annotators
  - comparisons: each annotator has one vote per sample pair: one side, or "no preference" (tie,
    both_bad). The pair is kept when one side has a strict plurality among the three outcomes;
    agreement = that side's votes / all votes.
  - scores → pairs: over the annotators who scored both samples, ``d = mean(s_a − s_b)``; a pair
    when ``|d| ≥ score_margin``, margin ``|d|``; agreement = share of those annotators whose own
    difference has the sign of ``d``. A pair reached both by comparisons and by scores is kept
    once when they agree (margin from the scores, agreement the lower one) and dropped when they
    point opposite ways.
  - labels: the majority label; a tie is dropped; agreement = the majority's share.
  - rewards: the mean; agreement = share of annotators on the same side of ``score_threshold``
    as the mean.
  - demonstrations from scores: mean ≥ ``min_score``; agreement = share of annotators whose own
    score is ≥ ``min_score`` (rewrites: 1).
  - ``min_agreement`` in [0, 1] drops every aggregated item whose agreement is below it (it needs
    ``aggregate=True``). An aggregated item lists every rating that voted on it in ``rating_ids``;
    ``annotator`` is set only when a single person judged it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from core.data.judgments import load
from core.data.rules import (
    Demonstration,
    Example,
    PreferencePair,
    ScalarReward,
    UnpairedExample,
    build_demonstrations,
    build_preference_pairs,
    build_scalar_rewards,
    build_unpaired_examples,
    used_rating_ids,
)
from core.data.texts import materialize
from core.store import ProjectStore

__all__ = [
    "Demonstration",
    "Example",
    "PreferencePair",
    "ScalarReward",
    "UnpairedExample",
    "data_summary",
    "demonstrations",
    "describe",
    "materialize",
    "preference_pairs",
    "scalar_rewards",
    "unpaired_examples",
    "used_rating_ids",
]


def _check_options(aggregate: bool, min_agreement: float) -> None:
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be a fraction in [0, 1], got {min_agreement}")
    if min_agreement > 0 and not aggregate:
        raise ValueError(
            "min_agreement needs aggregate=True: agreement is measured across annotators' "
            "judgments of the same item"
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Build without the cyclic garbage collector.

    A build makes ~10^5 small objects per 10^5 ratings that all live until it returns and form no
    reference cycles, so every full collection re-scans them (and the rest of the heap: torch
    alone is ~200k objects) for nothing; that was a third to half of the build time. Reference
    counting still frees everything. The collector is re-enabled only if it was on: another
    thread building at the same time at worst has its collector back early."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---- the builders --------------------------------------------------------------------------------
def preference_pairs(
    store: ProjectStore,
    *,
    annotators: Iterable[str] | None = None,
    rating_ids: Iterable[int] | None = None,
    criterion: str | None = "overall",
    score_margin: float = 0.25,
    aggregate: bool = False,
    min_agreement: float = 0.0,
) -> list[PreferencePair]:
    """(chosen ≻ rejected) pairs from pairwise, rank, score and rewrite ratings (module rules)."""
    _check_options(aggregate, min_agreement)
    with _gc_paused():
        return build_preference_pairs(
            load(store, annotators, rating_ids),
            criterion=criterion,
            score_margin=score_margin,
            aggregate=aggregate,
            min_agreement=min_agreement,
        )


def unpaired_examples(
    store: ProjectStore,
    *,
    annotators: Iterable[str] | None = None,
    rating_ids: Iterable[int] | None = None,
    criterion: str | None = "overall",
    score_threshold: float = 0.5,
    aggregate: bool = False,
    min_agreement: float = 0.0,
) -> list[UnpairedExample]:
    """Desirable / undesirable samples (KTO) from thumbs, scores and rewrites (module rules)."""
    _check_options(aggregate, min_agreement)
    with _gc_paused():
        return build_unpaired_examples(
            load(store, annotators, rating_ids),
            criterion=criterion,
            score_threshold=score_threshold,
            aggregate=aggregate,
            min_agreement=min_agreement,
        )


def scalar_rewards(
    store: ProjectStore,
    *,
    annotators: Iterable[str] | None = None,
    rating_ids: Iterable[int] | None = None,
    criterion: str | None = "overall",
    score_threshold: float = 0.5,
    aggregate: bool = False,
    min_agreement: float = 0.0,
) -> list[ScalarReward]:
    """Rewards in [0, 1] from scores and thumbs (module rules); ``score_threshold`` only matters
    for the agreement of aggregated rewards."""
    _check_options(aggregate, min_agreement)
    with _gc_paused():
        return build_scalar_rewards(
            load(store, annotators, rating_ids),
            criterion=criterion,
            score_threshold=score_threshold,
            aggregate=aggregate,
            min_agreement=min_agreement,
        )


def demonstrations(
    store: ProjectStore,
    *,
    annotators: Iterable[str] | None = None,
    rating_ids: Iterable[int] | None = None,
    criterion: str | None = "overall",
    min_score: float | None = None,
    aggregate: bool = False,
    min_agreement: float = 0.0,
) -> list[Demonstration]:
    """Samples to imitate (SFT): rewrites, plus samples scoring ≥ ``min_score`` when given."""
    _check_options(aggregate, min_agreement)
    with _gc_paused():
        return build_demonstrations(
            load(store, annotators, rating_ids),
            criterion=criterion,
            min_score=min_score,
            aggregate=aggregate,
            min_agreement=min_agreement,
        )


# ---- counts for the UI ---------------------------------------------------------------------------
_NOUNS = {
    "pairs": ("pair", "pairs"),
    "unpaired": ("unpaired example", "unpaired examples"),
    "rewards": ("reward", "rewards"),
    "demonstrations": ("demonstration", "demonstrations"),
}


def data_summary(
    store: ProjectStore,
    *,
    annotators: Iterable[str] | None = None,
    rating_ids: Iterable[int] | None = None,
    criterion: str | None = "overall",
    score_margin: float = 0.25,
    score_threshold: float = 0.5,
    min_score: float | None = None,
    aggregate: bool = False,
    min_agreement: float = 0.0,
) -> dict[str, Any]:
    """How much training data the ratings make, with the same options as the builders.

    ``{"pairs", "unpaired", "desirable", "undesirable", "rewards", "demonstrations": counts,
    "annotators": people behind any of them, "annotators_by": {kind: people}, "prompts": prompts
    with a pair, "ratings": ratings used, "flagged_samples": count}``. See :func:`describe`.
    """
    _check_options(aggregate, min_agreement)
    common = {"criterion": criterion, "aggregate": aggregate, "min_agreement": min_agreement}
    with _gc_paused():
        data = load(store, annotators, rating_ids)
        built: dict[str, list[Any]] = {
            "pairs": build_preference_pairs(data, score_margin=score_margin, **common),
            "unpaired": build_unpaired_examples(data, score_threshold=score_threshold, **common),
            "rewards": build_scalar_rewards(data, score_threshold=score_threshold, **common),
            "demonstrations": build_demonstrations(data, min_score=min_score, **common),
        }
    who = {r.id: r.annotator for r in data.ratings}
    by = {k: {who[i] for i in used_rating_ids(v)} for k, v in built.items()}
    summary: dict[str, Any] = {k: len(v) for k, v in built.items()}
    summary["desirable"] = sum(1 for e in built["unpaired"] if e.label)
    summary["undesirable"] = summary["unpaired"] - summary["desirable"]
    summary["annotators"] = len(set().union(*by.values()))
    summary["annotators_by"] = {k: len(v) for k, v in by.items()}
    summary["prompts"] = len({p.prompt_id for p in built["pairs"]})
    summary["ratings"] = len(used_rating_ids(e for v in built.values() for e in v))
    summary["flagged_samples"] = len(data.flagged)
    return summary


def describe(summary: dict[str, Any], what: str | None = None) -> str:
    """One line for the UI: ``describe(s, "pairs")`` → "312 pairs from 4 annotators"; with
    ``what=None`` every non-empty kind, e.g. "312 pairs, 40 unpaired examples from 4 annotators"."""

    def count(kind: str) -> str:
        n = summary[kind]
        return f"{n} {_NOUNS[kind][0] if n == 1 else _NOUNS[kind][1]}"

    def people(n: int) -> str:
        return f"from {n} annotator{'' if n == 1 else 's'}"

    if what is not None:
        if what not in _NOUNS:
            raise ValueError(f"describe: {what!r} is not one of {', '.join(_NOUNS)}")
        return f"{count(what)} {people(summary['annotators_by'][what])}"
    parts = [count(k) for k in _NOUNS if summary[k]]
    if not parts:
        return "no training data yet: rate some samples first"
    return f"{', '.join(parts)} {people(summary['annotators'])}"
