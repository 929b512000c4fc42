"""Ratings become training examples: preference pairs, unpaired examples, scalar rewards, demonstrations.

The rules live here, once, so that what an export writes (issue #5) is what a run trains on.

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

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from core.store import ProjectStore

log = logging.getLogger(__name__)

_EPS = 1e-9  # scores are stored as floats: 0.75 − 0.5 must count as a 0.25 margin


@dataclass
class PreferencePair:
    prompt_id: int
    chosen_id: int
    rejected_id: int
    margin: float = 0.0
    rating_ids: list[int] = field(default_factory=list)
    annotator: str | None = None
    source: str = ""  # rating kinds that produced it, e.g. "pairwise", "rank+score"
    agreement: float = 1.0


@dataclass
class UnpairedExample:
    prompt_id: int
    sample_id: int
    label: bool  # True: desirable
    rating_ids: list[int] = field(default_factory=list)
    annotator: str | None = None
    agreement: float = 1.0


@dataclass
class ScalarReward:
    prompt_id: int
    sample_id: int
    reward: float  # in [0, 1]
    rating_ids: list[int] = field(default_factory=list)
    annotator: str | None = None
    agreement: float = 1.0


@dataclass
class Demonstration:
    prompt_id: int
    sample_id: int
    rating_ids: list[int] = field(default_factory=list)
    annotator: str | None = None
    agreement: float = 1.0


Example = Union[PreferencePair, UnpairedExample, ScalarReward, Demonstration]  # noqa: UP007


# ---- reading ratings ----------------------------------------------------------------------------
@dataclass
class _Loaded:
    ratings: list[dict[str, Any]]  # usable judgments, oldest first (no flag, skip, superseded)
    flagged: set[int]


@dataclass
class _Judgment:
    """One annotator's latest value for one item."""

    prompt_id: int
    value: Any
    rating_id: int
    kind: str


def _load(
    store: ProjectStore, annotators: Iterable[str] | None, rating_ids: Iterable[int] | None
) -> _Loaded:
    names = None if annotators is None else set(annotators)
    ids = None if rating_ids is None else set(rating_ids)
    ratings, flagged = [], set()
    for r in store.ratings(include_superseded=False):
        if r["kind"] == "flag":
            sid = r["value"].get("sample_id")
            flagged.update([sid] if sid is not None else r["sample_ids"])
        elif r["kind"] == "skip":
            continue
        elif (names is None or r["annotator"] in names) and (ids is None or r["id"] in ids):
            ratings.append(r)
    return _Loaded(ratings, flagged)


def _check_options(aggregate: bool, min_agreement: float) -> None:
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be a fraction in [0, 1], got {min_agreement}")
    if min_agreement > 0 and not aggregate:
        raise ValueError(
            "min_agreement needs aggregate=True: agreement is measured across annotators' "
            "judgments of the same item"
        )


def _score_value(value: dict[str, Any], criterion: str | None) -> float | None:
    scores = value.get("scores") or {}
    if criterion is None:
        vals = [float(v) for v in scores.values() if v is not None]
        return sum(vals) / len(vals) if vals else None
    v = scores.get(criterion)
    return None if v is None else float(v)


def _comparisons(r: dict[str, Any]) -> list[tuple[int, int, int | None]]:
    """(a, b, winner or None) for each sample pair a comparison rating judges."""
    v, ids = r["value"], r["sample_ids"]
    try:
        if r["kind"] == "pairwise":
            a, b = ids[0], ids[1]
            if v["choice"] in ("tie", "both_bad"):
                return [(a, b, None)]
            winner = v.get("winner")
            if winner is None:
                winner = {"a": a, "b": b}[v["choice"]]
            return [(a, b, winner)] if winner in (a, b) else []
        if r["kind"] == "rank":
            order = list(dict.fromkeys(v["order"]))
            return [(s, t, s) for i, s in enumerate(order) for t in order[i + 1 :]]
        if r["kind"] == "rewrite":
            return [(v["rewrite"], v["original"], v["rewrite"])]
    except (KeyError, IndexError, TypeError):
        log.warning("rating %s (%s) has an unexpected value %r; left out", r["id"], r["kind"], v)
    return []


def _latest(
    data: _Loaded, make: Callable[[dict[str, Any]], list[tuple[Any, Any]]]
) -> dict[tuple[str, Any], _Judgment]:
    """{(annotator, item): latest judgment} from ``make(rating) -> [(item, value)]``."""
    out: dict[tuple[str, Any], _Judgment] = {}
    for r in data.ratings:
        for item, value in make(r):
            samples = item if isinstance(item, tuple) else (item,)
            if data.flagged.intersection(samples):
                continue
            out[(r["annotator"], item)] = _Judgment(r["prompt_id"], value, r["id"], r["kind"])
    return out


def _comparison_votes(data: _Loaded) -> dict[tuple[str, Any], _Judgment]:
    def make(r: dict[str, Any]) -> list[tuple[Any, Any]]:
        if r["kind"] not in ("pairwise", "rank", "rewrite"):
            return []
        return [((min(a, b), max(a, b)), w) for a, b, w in _comparisons(r) if a != b]

    return _latest(data, make)


def _scores(data: _Loaded, criterion: str | None) -> dict[tuple[str, Any], _Judgment]:
    def make(r: dict[str, Any]) -> list[tuple[Any, Any]]:
        if r["kind"] != "score" or not isinstance(r["value"], dict):
            return []
        s = _score_value(r["value"], criterion)
        return [] if s is None else [(r["sample_ids"][0], s)]

    return _latest(data, make)


def _labels(
    data: _Loaded, criterion: str | None, score_threshold: float
) -> dict[tuple[str, Any], _Judgment]:
    def make(r: dict[str, Any]) -> list[tuple[Any, Any]]:
        v = r["value"]
        if r["kind"] == "thumbs" and "up" in v:
            return [(r["sample_ids"][0], bool(v["up"]))]
        if r["kind"] == "score":
            s = _score_value(v, criterion)
            return [] if s is None else [(r["sample_ids"][0], s >= score_threshold - _EPS)]
        if r["kind"] == "rewrite" and "rewrite" in v:
            return [(v["rewrite"], True)]
        return []

    return _latest(data, make)


def _reward_values(data: _Loaded, criterion: str | None) -> dict[tuple[str, Any], _Judgment]:
    def make(r: dict[str, Any]) -> list[tuple[Any, Any]]:
        if r["kind"] == "thumbs" and "up" in r["value"]:
            return [(r["sample_ids"][0], 1.0 if r["value"]["up"] else 0.0)]
        if r["kind"] == "score":
            s = _score_value(r["value"], criterion)
            return [] if s is None else [(r["sample_ids"][0], s)]
        return []

    return _latest(data, make)


def _by_item(judged: dict[tuple[str, Any], _Judgment]) -> dict[Any, dict[str, _Judgment]]:
    out: dict[Any, dict[str, _Judgment]] = defaultdict(dict)
    for (annotator, item), j in judged.items():
        out[item][annotator] = j
    return out


def _who(votes: dict[str, _Judgment]) -> str | None:
    return next(iter(votes)) if len(votes) == 1 else None


def _ids(votes: Iterable[_Judgment]) -> list[int]:
    return sorted({j.rating_id for j in votes})


def _kinds(votes: Iterable[_Judgment]) -> str:
    return "+".join(sorted({j.kind for j in votes}))


# ---- preference pairs ---------------------------------------------------------------------------
def _score_pairs_per_annotator(
    scores: dict[tuple[str, Any], _Judgment], score_margin: float
) -> list[PreferencePair]:
    groups: dict[tuple[str, int], list[tuple[int, _Judgment]]] = defaultdict(list)
    for (annotator, sample), j in scores.items():
        groups[(annotator, j.prompt_id)].append((sample, j))
    pairs = []
    for (annotator, prompt_id), rows in groups.items():
        rows.sort(key=lambda row: row[0])
        for i, (s, js) in enumerate(rows):
            for t, jt in rows[i + 1 :]:
                d = js.value - jt.value
                if abs(d) >= score_margin - _EPS and abs(d) > _EPS:
                    hi, lo = (s, t) if d > 0 else (t, s)
                    pairs.append(
                        PreferencePair(
                            prompt_id, hi, lo, abs(d), _ids([js, jt]), annotator, "score"
                        )
                    )
    return pairs


def _aggregate_score_pairs(
    scores: dict[tuple[str, Any], _Judgment], score_margin: float
) -> dict[tuple[int, int], PreferencePair]:
    by_sample = _by_item(scores)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for sample, votes in by_sample.items():
        by_prompt[next(iter(votes.values())).prompt_id].append(sample)
    out = {}
    for prompt_id, samples in by_prompt.items():
        samples.sort()
        for i, s in enumerate(samples):
            for t in samples[i + 1 :]:
                shared = sorted(set(by_sample[s]) & set(by_sample[t]))
                if not shared:  # different people's scales are not comparable
                    continue
                diffs = [by_sample[s][a].value - by_sample[t][a].value for a in shared]
                d = sum(diffs) / len(diffs)
                if abs(d) < score_margin - _EPS or abs(d) <= _EPS:
                    continue
                agree = sum(1 for x in diffs if x * d > 0) / len(diffs)
                used = [by_sample[s][a] for a in shared] + [by_sample[t][a] for a in shared]
                hi, lo = (s, t) if d > 0 else (t, s)
                who = shared[0] if len(shared) == 1 else None
                out[(s, t)] = PreferencePair(
                    prompt_id, hi, lo, abs(d), _ids(used), who, "score", agree
                )
    return out


def _aggregate_comparisons(
    votes: dict[tuple[str, Any], _Judgment],
) -> dict[tuple[int, int], PreferencePair]:
    out = {}
    for pair, by_annotator in _by_item(votes).items():
        counts: dict[int | None, int] = defaultdict(int)
        for j in by_annotator.values():
            counts[j.value] += 1
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        top, n_top = ranked[0]
        if top is None or (len(ranked) > 1 and ranked[1][1] == n_top):
            continue  # "no preference" won, or no strict plurality
        loser = pair[1] if top == pair[0] else pair[0]
        js = list(by_annotator.values())
        out[pair] = PreferencePair(
            js[0].prompt_id,
            top,
            loser,
            0.0,
            _ids(js),
            _who(by_annotator),
            _kinds(js),
            n_top / len(js),
        )
    return out


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
    return _preference_pairs(
        _load(store, annotators, rating_ids),
        criterion=criterion,
        score_margin=score_margin,
        aggregate=aggregate,
        min_agreement=min_agreement,
    )


def _preference_pairs(
    data: _Loaded,
    *,
    criterion: str | None,
    score_margin: float,
    aggregate: bool,
    min_agreement: float,
) -> list[PreferencePair]:
    votes = _comparison_votes(data)
    scores = _scores(data, criterion)
    if not aggregate:
        pairs = []
        for (annotator, (a, b)), j in votes.items():
            if j.value is not None:
                loser = b if j.value == a else a
                pairs.append(
                    PreferencePair(
                        j.prompt_id, j.value, loser, 0.0, [j.rating_id], annotator, j.kind
                    )
                )
        pairs += _score_pairs_per_annotator(scores, score_margin)
        return sorted(pairs, key=lambda p: (p.rating_ids, p.chosen_id, p.rejected_id))

    def keep(pairs: dict[tuple[int, int], PreferencePair]) -> dict[tuple[int, int], PreferencePair]:
        return {k: p for k, p in pairs.items() if p.agreement >= min_agreement - _EPS}

    compared = keep(_aggregate_comparisons(votes))
    scored = keep(_aggregate_score_pairs(scores, score_margin))
    merged = []
    for key in compared.keys() | scored.keys():
        c, s = compared.get(key), scored.get(key)
        if c and s:
            if c.chosen_id != s.chosen_id:
                continue  # comparisons and scores disagree: contested
            ids = sorted(set(c.rating_ids) | set(s.rating_ids))
            who = c.annotator if c.annotator == s.annotator else None
            kinds = "+".join(sorted(set(c.source.split("+")) | {"score"}))
            s = PreferencePair(
                c.prompt_id, c.chosen_id, c.rejected_id, s.margin, ids, who, kinds,
                min(c.agreement, s.agreement),
            )  # fmt: skip
        merged.append(s or c)
    return sorted(merged, key=lambda p: (p.prompt_id, p.chosen_id, p.rejected_id))


# ---- unpaired examples, rewards, demonstrations ---------------------------------------------------
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
    return _unpaired_examples(
        _load(store, annotators, rating_ids),
        criterion=criterion,
        score_threshold=score_threshold,
        aggregate=aggregate,
        min_agreement=min_agreement,
    )


def _unpaired_examples(
    data: _Loaded,
    *,
    criterion: str | None,
    score_threshold: float,
    aggregate: bool,
    min_agreement: float,
) -> list[UnpairedExample]:
    labels = _labels(data, criterion, score_threshold)
    if not aggregate:
        out = [
            UnpairedExample(j.prompt_id, sample, j.value, [j.rating_id], annotator)
            for (annotator, sample), j in labels.items()
        ]
        return sorted(out, key=lambda e: (e.rating_ids, e.sample_id))
    out = []
    for sample, votes in _by_item(labels).items():
        n_up = sum(1 for j in votes.values() if j.value)
        n_down = len(votes) - n_up
        if n_up == n_down:
            continue
        agreement = max(n_up, n_down) / len(votes)
        if agreement >= min_agreement - _EPS:
            js = list(votes.values())
            out.append(
                UnpairedExample(
                    js[0].prompt_id, sample, n_up > n_down, _ids(js), _who(votes), agreement
                )
            )
    return sorted(out, key=lambda e: (e.prompt_id, e.sample_id))


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
    return _scalar_rewards(
        _load(store, annotators, rating_ids),
        criterion=criterion,
        score_threshold=score_threshold,
        aggregate=aggregate,
        min_agreement=min_agreement,
    )


def _scalar_rewards(
    data: _Loaded,
    *,
    criterion: str | None,
    score_threshold: float,
    aggregate: bool,
    min_agreement: float,
) -> list[ScalarReward]:
    values = _reward_values(data, criterion)
    if not aggregate:
        out = [
            ScalarReward(j.prompt_id, sample, j.value, [j.rating_id], annotator)
            for (annotator, sample), j in values.items()
        ]
        return sorted(out, key=lambda e: (e.rating_ids, e.sample_id))
    out = []
    for sample, votes in _by_item(values).items():
        js = list(votes.values())
        mean = sum(j.value for j in js) / len(js)
        high = mean >= score_threshold - _EPS
        agreement = sum(1 for j in js if (j.value >= score_threshold - _EPS) == high) / len(js)
        if agreement >= min_agreement - _EPS:
            out.append(
                ScalarReward(js[0].prompt_id, sample, mean, _ids(js), _who(votes), agreement)
            )
    return sorted(out, key=lambda e: (e.prompt_id, e.sample_id))


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
    return _demonstrations(
        _load(store, annotators, rating_ids),
        criterion=criterion,
        min_score=min_score,
        aggregate=aggregate,
        min_agreement=min_agreement,
    )


def _demonstrations(
    data: _Loaded,
    *,
    criterion: str | None,
    min_score: float | None,
    aggregate: bool,
    min_agreement: float,
) -> list[Demonstration]:
    out: dict[int, Demonstration] = {}
    for r in data.ratings:
        sample = r["value"].get("rewrite") if r["kind"] == "rewrite" else None
        if sample is None or sample in data.flagged:
            continue
        if sample in out:
            out[sample].rating_ids.append(r["id"])
            if out[sample].annotator != r["annotator"]:
                out[sample].annotator = None
        else:
            out[sample] = Demonstration(r["prompt_id"], sample, [r["id"]], r["annotator"])
    if min_score is not None:
        for sample, votes in _by_item(_scores(data, criterion)).items():
            js = list(votes.values())
            if sample in out or sum(j.value for j in js) / len(js) < min_score - _EPS:
                continue
            agreement = sum(1 for j in js if j.value >= min_score - _EPS) / len(js)
            if not aggregate or agreement >= min_agreement - _EPS:
                out[sample] = Demonstration(
                    js[0].prompt_id, sample, _ids(js), _who(votes), agreement
                )
    return sorted(out.values(), key=lambda e: (e.prompt_id, e.sample_id))


def used_rating_ids(examples: Iterable[Example]) -> list[int]:
    """The sorted ratings behind some examples: what a run records in ``runs.rating_ids``."""
    return sorted({rid for e in examples for rid in e.rating_ids})


# ---- counts for the UI ----------------------------------------------------------------------------
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
    data = _load(store, annotators, rating_ids)
    common = {"criterion": criterion, "aggregate": aggregate, "min_agreement": min_agreement}
    built: dict[str, list[Any]] = {
        "pairs": _preference_pairs(data, score_margin=score_margin, **common),
        "unpaired": _unpaired_examples(data, score_threshold=score_threshold, **common),
        "rewards": _scalar_rewards(data, score_threshold=score_threshold, **common),
        "demonstrations": _demonstrations(data, min_score=min_score, **common),
    }
    who = {r["id"]: r["annotator"] for r in data.ratings}
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


# ---- examples with their texts ----------------------------------------------------------------------
def materialize(
    store: ProjectStore,
    examples: Iterable[Example],
    *,
    conversational: bool = False,
    chunk_size: int = 256,
) -> Iterator[dict[str, Any]]:
    """Yield each example as a dict with its prompt messages and sample texts, in TRL's column names.

    The prompt is always ``prompt``: a list of ``{"role", "content"}`` messages
    (``store.prompt_messages``). Completions are strings, or with ``conversational`` one-message
    assistant lists (TRL's conversational format). Per kind:

    - PreferencePair → ``prompt, chosen, rejected, margin``
    - UnpairedExample → ``prompt, completion, label``
    - ScalarReward → ``prompt, completion, reward``
    - Demonstration → ``prompt, completion``

    plus the ids (``prompt_id``, ``chosen_id``/``rejected_id`` or ``sample_id``, ``rating_ids``).
    Streams: texts are read ``chunk_size`` examples at a time and prompts are cached (LRU).
    """
    prompts: OrderedDict[int, list[dict[str, str]]] = OrderedDict()

    def messages(prompt_id: int) -> list[dict[str, str]]:
        if prompt_id in prompts:
            prompts.move_to_end(prompt_id)
        else:
            prompts[prompt_id] = store.prompt_messages(prompt_id)
            if len(prompts) > 4096:
                prompts.popitem(last=False)
        return [dict(m) for m in prompts[prompt_id]]

    def completion(text: str) -> str | list[dict[str, str]]:
        return [{"role": "assistant", "content": text}] if conversational else text

    chunk: list[Example] = []
    for example in _chain(examples, chunk_size):
        if example is not None:
            chunk.append(example)
            continue
        texts = _sample_texts(store, {s for e in chunk for s in _sample_ids(e)})
        for e in chunk:
            row: dict[str, Any] = {"prompt": messages(e.prompt_id)}
            if isinstance(e, PreferencePair):
                row["chosen"] = completion(texts[e.chosen_id])
                row["rejected"] = completion(texts[e.rejected_id])
                row.update(margin=e.margin, chosen_id=e.chosen_id, rejected_id=e.rejected_id)
            else:
                row["completion"] = completion(texts[e.sample_id])
                if isinstance(e, UnpairedExample):
                    row["label"] = e.label
                elif isinstance(e, ScalarReward):
                    row["reward"] = e.reward
                row["sample_id"] = e.sample_id
            row.update(prompt_id=e.prompt_id, rating_ids=list(e.rating_ids))
            yield row
        chunk = []


def _chain(examples: Iterable[Example], size: int) -> Iterator[Example | None]:
    """The examples with a None after every ``size`` of them and at the end (chunk boundaries)."""
    n = 0
    for e in examples:
        yield e
        n += 1
        if n % size == 0:
            yield None
    if n % size:
        yield None


def _sample_ids(e: Example) -> tuple[int, ...]:
    if isinstance(e, PreferencePair):
        return (e.chosen_id, e.rejected_id)
    return (e.sample_id,)


def _sample_texts(store: ProjectStore, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    todo = sorted(ids)
    for i in range(0, len(todo), 500):  # stay under SQLite's bound-parameter limit
        part = todo[i : i + 500]
        sql = f"SELECT id, text FROM samples WHERE id IN ({', '.join('?' * len(part))})"
        found.update(store.conn.execute(sql, part).fetchall())
    missing = ids - found.keys()
    if missing:
        raise ValueError(
            f"{store.path}: samples {sorted(missing)[:10]} are referenced by ratings but missing "
            "from the samples table; the project file is inconsistent (was it edited by hand?)"
        )
    return found
