"""Reading ratings for core.data: which ratings count; each annotator's latest judgment per item.

Part of core.data (import from there). The rules are in core/data/__init__.py's docstring, "Which ratings
count"; this module reads the ratings table once per build and reduces it to judgments,
``{item: {annotator: Judgment}}``: an item is a sample pair (smaller id first) or a sample.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.store import ProjectError, ProjectStore

log = logging.getLogger("core.data")  # the public module: one logger for all of core.data

EPS = 1e-9  # scores are stored as floats: 0.75 − 0.5 must count as a 0.25 margin
COMPARISON_KINDS = frozenset({"pairwise", "rank", "rewrite"})


class Rating(NamedTuple):
    """One current rating as the rules read it: its JSON columns decoded."""

    id: int
    annotator: str
    kind: str
    prompt_id: int
    sample_ids: list[int]
    value: Any


class Judgment(NamedTuple):
    """One annotator's latest value for one item."""

    prompt_id: int
    value: Any
    rating_id: int
    kind: str


Judged = dict[Any, dict[str, Judgment]]  # {item: {annotator: latest judgment}}


@dataclass
class Loaded:
    ratings: list[Rating]  # usable judgments, oldest first (no flag, skip, superseded)
    flagged: set[int]


# ---- reading the ratings table -------------------------------------------------------------------
def load(
    store: ProjectStore, annotators: Iterable[str] | None, rating_ids: Iterable[int] | None
) -> Loaded:
    """The current ratings that may train, after the ``annotators`` and ``rating_ids`` filters,
    and every flagged sample (flags count whoever made them)."""
    names = None if annotators is None else set(annotators)
    ids = None if rating_ids is None else set(rating_ids)
    rows = store.trainable_rating_rows()  # its json_valid column lets _decoded parse in bulk
    ratings, flagged = [], set()
    for (rid, annotator, kind, prompt_id, _, _, _), (sample_ids, value) in zip(
        rows, _decoded(store, rows), strict=True
    ):
        if kind == "flag":
            sid = value.get("sample_id")
            flagged.update([sid] if sid is not None else sample_ids)
        elif kind == "skip":
            continue
        elif (names is None or annotator in names) and (ids is None or rid in ids):
            ratings.append(Rating(rid, annotator, kind, prompt_id, sample_ids, value))
    return Loaded(ratings, flagged)


def _decoded(store: ProjectStore, rows: list[tuple]) -> Iterable[tuple[Any, Any]]:
    """(sample_ids, value) of each row, decoded from JSON.

    When SQLite finds every text valid JSON, each column is joined into one JSON array and decoded
    by one ``json.loads`` (a third of the time of one call per row). Otherwise each row is decoded
    alone, so values Python accepts and SQLite does not (NaN) still load, and a broken one is named.
    """
    if all(row[6] for row in rows):
        sample_ids = json.loads("[" + ",".join([row[4] for row in rows]) + "]")
        values = json.loads("[" + ",".join([row[5] for row in rows]) + "]")
        return zip(sample_ids, values, strict=True)
    return [_decode_row(store, row) for row in rows]


def _decode_row(store: ProjectStore, row: tuple) -> tuple[Any, Any]:
    rid, kind = row[0], row[2]
    decoded = []
    for column, text in (("sample_ids", row[4]), ("value", row[5])):
        try:
            decoded.append(json.loads(text))
        except (TypeError, ValueError) as e:
            undo = f"UPDATE ratings SET superseded = 1 WHERE id = {rid}"
            raise ProjectError(
                f"{store.path}: rating {rid} ({kind}) has a {column} that is not JSON ({e}), so "
                "no training data can be built from this file. It was changed outside RLHF "
                "Studio: restore it from a backup, or set that rating aside as undone with "
                f"sqlite-utils query {shlex.quote(str(store.path))} {shlex.quote(undo)}"
            ) from None
    return decoded[0], decoded[1]


# ---- what a rating says about which item ---------------------------------------------------------
def score_value(value: dict[str, Any], criterion: str | None) -> float | None:
    """The score on ``criterion``, or with None the mean of the criteria scored; None if absent."""
    scores = value.get("scores") or {}
    if criterion is None:
        vals = [float(v) for v in scores.values() if v is not None]
        return sum(vals) / len(vals) if vals else None
    v = scores.get(criterion)
    return None if v is None else float(v)


def comparison_items(r: Rating) -> list[tuple[tuple[int, int], int | None]]:
    """((a, b) with a < b, winner or None) for each sample pair a comparison rating judges."""
    v, ids = r.value, r.sample_ids
    try:
        if r.kind == "pairwise":
            a, b = ids[0], ids[1]
            if v["choice"] in ("tie", "both_bad"):
                winner = None
            else:
                winner = v.get("winner")
                if winner is None:
                    winner = {"a": a, "b": b}[v["choice"]]
                if winner not in (a, b):
                    return []
            return [_pair(a, b, winner)] if a != b else []
        if r.kind == "rank":
            order = list(dict.fromkeys(v["order"]))
            return [_pair(s, t, s) for i, s in enumerate(order) for t in order[i + 1 :]]
        if r.kind == "rewrite":
            a, b = v["rewrite"], v["original"]
            return [_pair(a, b, a)] if a != b else []
    except (KeyError, IndexError, TypeError):
        log.warning("rating %s (%s) has an unexpected value %r; left out", r.id, r.kind, v)
    return []


def _pair(a: int, b: int, winner: int | None) -> tuple[tuple[int, int], int | None]:
    return ((a, b) if a < b else (b, a)), winner


def latest(
    data: Loaded, kinds: Iterable[str], make: Callable[[Rating], list[tuple[Any, Any]]]
) -> Judged:
    """{item: {annotator: latest judgment}} from ``make(rating) -> [(item, value)]`` over the
    ratings of ``kinds``, items and annotators in the order first judged; an item with a flagged
    sample is left out."""
    kinds, flagged = frozenset(kinds), data.flagged
    out: Judged = {}
    for r in data.ratings:
        if r.kind not in kinds:
            continue
        for item, value in make(r):
            if flagged and not flagged.isdisjoint(item if isinstance(item, tuple) else (item,)):
                continue
            out.setdefault(item, {})[r.annotator] = Judgment(r.prompt_id, value, r.id, r.kind)
    return out


def comparison_votes(data: Loaded) -> Judged:
    """Votes on sample pairs: the winner, or None for "no preference"."""
    return latest(data, COMPARISON_KINDS, comparison_items)


def scores(data: Loaded, criterion: str | None) -> Judged:
    """Scores of samples on ``criterion`` (see :func:`score_value`)."""

    def make(r: Rating) -> list[tuple[Any, Any]]:
        if not isinstance(r.value, dict):
            return []
        s = score_value(r.value, criterion)
        return [] if s is None else [(r.sample_ids[0], s)]

    return latest(data, ("score",), make)


def labels(data: Loaded, criterion: str | None, score_threshold: float) -> Judged:
    """Desirable (True) or not, per sample: thumbs, thresholded scores, rewrites."""

    def make(r: Rating) -> list[tuple[Any, Any]]:
        v = r.value
        if r.kind == "thumbs" and "up" in v:
            return [(r.sample_ids[0], bool(v["up"]))]
        if r.kind == "score":
            s = score_value(v, criterion)
            return [] if s is None else [(r.sample_ids[0], s >= score_threshold - EPS)]
        if r.kind == "rewrite" and "rewrite" in v:
            return [(v["rewrite"], True)]
        return []

    return latest(data, ("thumbs", "score", "rewrite"), make)


def reward_values(data: Loaded, criterion: str | None) -> Judged:
    """Rewards in [0, 1] per sample: scores, and thumbs as 1.0 / 0.0."""

    def make(r: Rating) -> list[tuple[Any, Any]]:
        if r.kind == "thumbs" and "up" in r.value:
            return [(r.sample_ids[0], 1.0 if r.value["up"] else 0.0)]
        if r.kind == "score":
            s = score_value(r.value, criterion)
            return [] if s is None else [(r.sample_ids[0], s)]
        return []

    return latest(data, ("thumbs", "score"), make)


# ---- summing up an item's judgments --------------------------------------------------------------
def who(votes: dict[str, Judgment]) -> str | None:
    """The annotator when a single person judged the item, else None."""
    return next(iter(votes)) if len(votes) == 1 else None


def rating_ids_of(votes: Iterable[Judgment]) -> list[int]:
    return sorted({j.rating_id for j in votes})


def kinds_of(votes: Iterable[Judgment]) -> str:
    return "+".join(sorted({j.kind for j in votes}))
