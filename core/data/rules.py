"""The training examples and the rules that build them from judgments.

Part of core.data (import from there); the rules are stated in its ``__init__`` docstring. Each
builder takes the ratings read once by :func:`core.data.judgments.load`, so ``data_summary`` reads
the table once for all four kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

from core.data.judgments import (
    EPS,
    Judged,
    Judgment,
    Loaded,
    comparison_votes,
    kinds_of,
    labels,
    rating_ids_of,
    reward_values,
    scores,
    who,
)


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


# ---- preference pairs ---------------------------------------------------------------------------
def build_preference_pairs(
    data: Loaded,
    *,
    criterion: str | None,
    score_margin: float,
    aggregate: bool,
    min_agreement: float,
) -> list[PreferencePair]:
    """See :func:`core.data.preference_pairs`."""
    votes = comparison_votes(data)
    scored = scores(data, criterion)
    if not aggregate:
        pairs = [
            PreferencePair(
                j.prompt_id,
                j.value,
                b if j.value == a else a,
                0.0,
                [j.rating_id],
                annotator,
                j.kind,
            )
            for (a, b), by_annotator in votes.items()
            for annotator, j in by_annotator.items()
            if j.value is not None
        ]
        pairs += _score_pairs_per_annotator(scored, score_margin)
        return sorted(pairs, key=lambda p: (p.rating_ids, p.chosen_id, p.rejected_id))

    def keep(pairs: dict[tuple[int, int], PreferencePair]) -> dict[tuple[int, int], PreferencePair]:
        return {k: p for k, p in pairs.items() if p.agreement >= min_agreement - EPS}

    compared = keep(_aggregate_comparisons(votes))
    by_scores = keep(_aggregate_score_pairs(scored, score_margin))
    merged = []
    for key in compared.keys() | by_scores.keys():
        c, s = compared.get(key), by_scores.get(key)
        if c and s:
            if c.chosen_id != s.chosen_id:
                continue  # comparisons and scores disagree: contested
            ids = sorted(set(c.rating_ids) | set(s.rating_ids))
            annotator = c.annotator if c.annotator == s.annotator else None
            kinds = "+".join(sorted(set(c.source.split("+")) | {"score"}))
            s = PreferencePair(
                c.prompt_id,
                c.chosen_id,
                c.rejected_id,
                s.margin,
                ids,
                annotator,
                kinds,
                min(c.agreement, s.agreement),
            )
        merged.append(s or c)
    return sorted(merged, key=lambda p: (p.prompt_id, p.chosen_id, p.rejected_id))


def _score_pairs_per_annotator(scored: Judged, score_margin: float) -> list[PreferencePair]:
    groups: dict[tuple[str, int], list[tuple[int, Judgment]]] = {}
    for sample, by_annotator in scored.items():
        for annotator, j in by_annotator.items():
            groups.setdefault((annotator, j.prompt_id), []).append((sample, j))
    pairs = []
    for (annotator, prompt_id), rows in groups.items():
        rows.sort(key=lambda row: row[0])
        for i, (s, js) in enumerate(rows):
            for t, jt in rows[i + 1 :]:
                d = js.value - jt.value
                if abs(d) >= score_margin - EPS and abs(d) > EPS:
                    hi, lo = (s, t) if d > 0 else (t, s)
                    ids = rating_ids_of([js, jt])
                    pairs.append(PreferencePair(prompt_id, hi, lo, abs(d), ids, annotator, "score"))
    return pairs


def _aggregate_score_pairs(
    by_sample: Judged, score_margin: float
) -> dict[tuple[int, int], PreferencePair]:
    by_prompt: dict[int, list[int]] = {}
    for sample, votes in by_sample.items():
        by_prompt.setdefault(next(iter(votes.values())).prompt_id, []).append(sample)
    out = {}
    for prompt_id, samples in by_prompt.items():
        samples.sort()
        for i, s in enumerate(samples):
            for t in samples[i + 1 :]:
                shared = sorted(by_sample[s].keys() & by_sample[t].keys())
                if not shared:  # different people's scales are not comparable
                    continue
                diffs = [by_sample[s][a].value - by_sample[t][a].value for a in shared]
                d = sum(diffs) / len(diffs)
                if abs(d) < score_margin - EPS or abs(d) <= EPS:
                    continue
                agree = sum(1 for x in diffs if x * d > 0) / len(diffs)
                used = [by_sample[s][a] for a in shared] + [by_sample[t][a] for a in shared]
                hi, lo = (s, t) if d > 0 else (t, s)
                annotator = shared[0] if len(shared) == 1 else None
                out[(s, t)] = PreferencePair(
                    prompt_id, hi, lo, abs(d), rating_ids_of(used), annotator, "score", agree
                )
    return out


def _aggregate_comparisons(votes: Judged) -> dict[tuple[int, int], PreferencePair]:
    """A pair per sample pair whose votes give one side a strict plurality over the other side
    and over "no preference" (None)."""
    out = {}
    for pair, by_annotator in votes.items():
        js = list(by_annotator.values())
        counts: dict[int | None, int] = {}
        for j in js:
            counts[j.value] = counts.get(j.value, 0) + 1
        ranked = sorted(counts.values(), reverse=True)
        top = max(counts, key=counts.__getitem__)
        if top is None or (len(ranked) > 1 and ranked[1] == ranked[0]):
            continue  # "no preference" won, or no strict plurality
        loser = pair[1] if top == pair[0] else pair[0]
        out[pair] = PreferencePair(
            js[0].prompt_id,
            top,
            loser,
            0.0,
            rating_ids_of(js),
            who(by_annotator),
            kinds_of(js),
            ranked[0] / len(js),
        )
    return out


# ---- unpaired examples, rewards, demonstrations --------------------------------------------------
def build_unpaired_examples(
    data: Loaded,
    *,
    criterion: str | None,
    score_threshold: float,
    aggregate: bool,
    min_agreement: float,
) -> list[UnpairedExample]:
    """See :func:`core.data.unpaired_examples`."""
    labelled = labels(data, criterion, score_threshold)
    if not aggregate:
        out = [
            UnpairedExample(j.prompt_id, sample, j.value, [j.rating_id], annotator)
            for sample, by_annotator in labelled.items()
            for annotator, j in by_annotator.items()
        ]
        return sorted(out, key=lambda e: (e.rating_ids, e.sample_id))
    out = []
    for sample, votes in labelled.items():
        n_up = sum(1 for j in votes.values() if j.value)
        n_down = len(votes) - n_up
        if n_up == n_down:
            continue
        agreement = max(n_up, n_down) / len(votes)
        if agreement >= min_agreement - EPS:
            js = list(votes.values())
            out.append(
                UnpairedExample(
                    js[0].prompt_id,
                    sample,
                    n_up > n_down,
                    rating_ids_of(js),
                    who(votes),
                    agreement,
                )
            )
    return sorted(out, key=lambda e: (e.prompt_id, e.sample_id))


def build_scalar_rewards(
    data: Loaded,
    *,
    criterion: str | None,
    score_threshold: float,
    aggregate: bool,
    min_agreement: float,
) -> list[ScalarReward]:
    """See :func:`core.data.scalar_rewards`."""
    values = reward_values(data, criterion)
    if not aggregate:
        out = [
            ScalarReward(j.prompt_id, sample, j.value, [j.rating_id], annotator)
            for sample, by_annotator in values.items()
            for annotator, j in by_annotator.items()
        ]
        return sorted(out, key=lambda e: (e.rating_ids, e.sample_id))
    out = []
    for sample, votes in values.items():
        js = list(votes.values())
        mean = sum(j.value for j in js) / len(js)
        high = mean >= score_threshold - EPS
        agreement = sum(1 for j in js if (j.value >= score_threshold - EPS) == high) / len(js)
        if agreement >= min_agreement - EPS:
            out.append(
                ScalarReward(
                    js[0].prompt_id, sample, mean, rating_ids_of(js), who(votes), agreement
                )
            )
    return sorted(out, key=lambda e: (e.prompt_id, e.sample_id))


def build_demonstrations(
    data: Loaded,
    *,
    criterion: str | None,
    min_score: float | None,
    aggregate: bool,
    min_agreement: float,
) -> list[Demonstration]:
    """See :func:`core.data.demonstrations`."""
    out: dict[int, Demonstration] = {}
    for r in data.ratings:
        sample = r.value.get("rewrite") if r.kind == "rewrite" else None
        if sample is None or sample in data.flagged:
            continue
        if sample in out:
            out[sample].rating_ids.append(r.id)
            if out[sample].annotator != r.annotator:
                out[sample].annotator = None
        else:
            out[sample] = Demonstration(r.prompt_id, sample, [r.id], r.annotator)
    if min_score is not None:
        for sample, votes in scores(data, criterion).items():
            js = list(votes.values())
            if sample in out or sum(j.value for j in js) / len(js) < min_score - EPS:
                continue
            agreement = sum(1 for j in js if j.value >= min_score - EPS) / len(js)
            if not aggregate or agreement >= min_agreement - EPS:
                out[sample] = Demonstration(
                    js[0].prompt_id, sample, rating_ids_of(js), who(votes), agreement
                )
    return sorted(out.values(), key=lambda e: (e.prompt_id, e.sample_id))


def used_rating_ids(examples: Iterable[Example]) -> list[int]:
    """The sorted ratings behind some examples: what a run records in ``runs.rating_ids``."""
    return sorted({rid for e in examples for rid in e.rating_ids})
