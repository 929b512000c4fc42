"""core.data: the rules that turn ratings into training examples (see the module docstring)."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

import pytest

from core.data import (
    Demonstration,
    PreferencePair,
    ScalarReward,
    UnpairedExample,
    data_summary,
    demonstrations,
    describe,
    materialize,
    preference_pairs,
    scalar_rewards,
    unpaired_examples,
    used_rating_ids,
)
from core.store import ProjectError, ProjectStore


def add_prompt(store: ProjectStore, text: str, messages: list[dict] | None = None) -> int:
    (pid,), _ = store.add_prompts([{"text": text, "messages": messages}], source="test")
    return pid


@pytest.fixture
def project(tmp_path):
    """A project with prompt P (samples a, b, c, d) and prompt Q (samples e, f)."""
    store = ProjectStore(tmp_path / "p.db")
    p = add_prompt(store, "Say hi")
    q = add_prompt(
        store,
        "And now?",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "And now?"}],
    )
    ids = store.add_samples(
        [{"prompt_id": p, "text": f"answer {n}", "model": "test"} for n in "abcd"]
        + [{"prompt_id": q, "text": f"answer {n}", "model": "test"} for n in "ef"]
    )
    s = dict(zip("abcdef", ids, strict=True))
    yield store, p, q, s
    store.close()


def rate(store, who, kind, sample_ids, value):
    return store.add_rating(annotator=who, kind=kind, sample_ids=sample_ids, value=value)


def pairwise(store, who, a, b, choice):
    winner = {"a": a, "b": b}.get(choice)
    return rate(store, who, "pairwise", [a, b], {"choice": choice, "winner": winner})


def score(store, who, sample, **scores):
    return rate(store, who, "score", [sample], {"scores": scores})


def as_tuples(pairs: list[PreferencePair]) -> set[tuple[int, int]]:
    return {(p.chosen_id, p.rejected_id) for p in pairs}


# ---- preference pairs ---------------------------------------------------------------------------
def test_pairwise_winners_become_pairs_and_ties_and_both_bad_do_not(project):
    store, p, _, s = project
    r1 = pairwise(store, "alice", s["a"], s["b"], "a")
    rate(store, "alice", "pairwise", [s["c"], s["a"]], {"choice": "b", "winner": None})
    pairwise(store, "alice", s["b"], s["c"], "tie")
    pairwise(store, "alice", s["c"], s["d"], "both_bad")
    pairs = preference_pairs(store)
    assert as_tuples(pairs) == {(s["a"], s["b"]), (s["a"], s["c"])}
    first = next(x for x in pairs if x.rejected_id == s["b"])
    assert first == PreferencePair(p, s["a"], s["b"], 0.0, [r1], "alice", "pairwise", 1.0)


def test_a_ranking_expands_to_every_ordered_pair(project):
    store, _, _, s = project
    rid = rate(store, "bob", "rank", [s["a"], s["b"], s["c"]], {"order": [s["c"], s["a"], s["b"]]})
    pairs = preference_pairs(store)
    assert as_tuples(pairs) == {(s["c"], s["a"]), (s["c"], s["b"]), (s["a"], s["b"])}
    assert all(x.rating_ids == [rid] and x.source == "rank" for x in pairs)


def test_scores_pair_when_they_differ_by_the_margin(project):
    store, _, _, s = project
    ra = score(store, "alice", s["a"], overall=0.75, fluency=0.0)
    rb = score(store, "alice", s["b"], overall=0.5, fluency=1.0)
    score(store, "alice", s["c"], overall=0.6)
    score(store, "bob", s["d"], overall=0.0)  # another annotator's scale: never paired with alice's
    pairs = preference_pairs(store, score_margin=0.25)
    assert as_tuples(pairs) == {(s["a"], s["b"])}
    assert pairs[0].margin == pytest.approx(0.25)
    assert pairs[0].rating_ids == [ra, rb] and pairs[0].source == "score"
    assert as_tuples(preference_pairs(store, score_margin=0.1)) == {
        (s["a"], s["b"]),
        (s["a"], s["c"]),
        (s["c"], s["b"]),
    }
    fluency = preference_pairs(store, criterion="fluency")
    assert as_tuples(fluency) == {(s["b"], s["a"])} and fluency[0].margin == pytest.approx(1.0)


def test_equal_scores_never_pair_even_with_zero_margin(project):
    store, _, _, s = project
    score(store, "alice", s["a"], overall=0.5)
    score(store, "alice", s["b"], overall=0.5)
    assert preference_pairs(store, score_margin=0.0) == []


def test_rewrite_is_preferred_to_its_original_and_is_a_demonstration(project):
    store, p, _, s = project
    (rewrite,) = store.add_samples([{"prompt_id": p, "text": "better", "model": "human:alice"}])
    rid = rate(
        store, "alice", "rewrite", [s["a"], rewrite], {"original": s["a"], "rewrite": rewrite}
    )
    assert as_tuples(preference_pairs(store)) == {(rewrite, s["a"])}
    assert unpaired_examples(store) == [UnpairedExample(p, rewrite, True, [rid], "alice")]
    assert demonstrations(store) == [Demonstration(p, rewrite, [rid], "alice")]


def test_superseded_and_skipped_ratings_never_train(project):
    store, _, _, s = project
    undone = pairwise(store, "alice", s["a"], s["b"], "a")
    store.set_superseded(undone)
    rate(store, "alice", "skip", [s["c"], s["d"]], {})
    undone_rewrite = rate(
        store, "alice", "rewrite", [s["a"], s["c"]], {"original": s["a"], "rewrite": s["c"]}
    )
    store.set_superseded(undone_rewrite)
    assert preference_pairs(store) == []
    assert demonstrations(store) == []
    assert data_summary(store)["ratings"] == 0


def test_flagged_samples_are_left_out_everywhere(project):
    store, _, _, s = project
    pairwise(store, "alice", s["a"], s["b"], "a")
    pairwise(store, "alice", s["c"], s["d"], "a")
    rate(store, "alice", "thumbs", [s["b"]], {"up": False})
    score(store, "alice", s["b"], overall=0.0)
    rate(store, "carol", "flag", [s["a"], s["b"]], {"reason": "unsafe", "sample_id": s["b"]})
    assert as_tuples(preference_pairs(store)) == {(s["c"], s["d"])}
    # flags count whoever made them, even when only alice's ratings are used
    assert as_tuples(preference_pairs(store, annotators=["alice"])) == {(s["c"], s["d"])}
    assert unpaired_examples(store) == [] and scalar_rewards(store) == []
    # a flag with no sample_id covers every sample shown
    rate(store, "carol", "flag", [s["c"], s["d"]], {"reason": "other", "sample_id": None})
    assert preference_pairs(store) == []
    assert data_summary(store)["flagged_samples"] == 3


def test_annotator_and_rating_id_filters(project):
    store, _, _, s = project
    r1 = pairwise(store, "alice", s["a"], s["b"], "a")
    pairwise(store, "bob", s["c"], s["d"], "b")
    assert as_tuples(preference_pairs(store, annotators=["bob"])) == {(s["d"], s["c"])}
    snapshot = preference_pairs(store, rating_ids={r1})
    assert as_tuples(snapshot) == {(s["a"], s["b"])}
    assert used_rating_ids(snapshot) == [r1]


def test_an_annotators_latest_judgment_replaces_earlier_ones(project):
    store, _, _, s = project
    rate(store, "alice", "rank", [s["a"], s["b"], s["c"]], {"order": [s["a"], s["b"], s["c"]]})
    later = pairwise(store, "alice", s["b"], s["a"], "a")  # now b ≻ a
    pairs = preference_pairs(store)
    assert as_tuples(pairs) == {(s["b"], s["a"]), (s["a"], s["c"]), (s["b"], s["c"])}
    assert next(
        x for x in pairs if x.chosen_id == s["b"] and x.rejected_id == s["a"]
    ).rating_ids == [later]


# ---- aggregation --------------------------------------------------------------------------------
def test_majority_over_annotators_and_min_agreement(project):
    store, p, _, s = project
    ids = [
        pairwise(store, who, s["a"], s["b"], c) for who, c in [("x", "a"), ("y", "a"), ("z", "b")]
    ]
    pairwise(store, "x", s["c"], s["d"], "a")  # one person: agreement 1, annotator kept
    assert len(preference_pairs(store)) == 4  # without aggregation every judgment is an example
    pairs = preference_pairs(store, aggregate=True)
    assert pairs[0] == PreferencePair(p, s["a"], s["b"], 0.0, ids, None, "pairwise", 2 / 3)
    assert pairs[1].annotator == "x" and pairs[1].agreement == 1.0
    strict = preference_pairs(store, aggregate=True, min_agreement=0.7)
    assert as_tuples(strict) == {(s["c"], s["d"])}


def test_split_votes_and_no_preference_majorities_are_dropped(project):
    store, _, _, s = project
    pairwise(store, "x", s["a"], s["b"], "a")
    pairwise(store, "y", s["b"], s["a"], "a")  # shown the other way round: a vote for b
    pairwise(store, "x", s["c"], s["d"], "a")
    pairwise(store, "y", s["c"], s["d"], "tie")
    pairwise(store, "z", s["c"], s["d"], "both_bad")
    assert preference_pairs(store, aggregate=True) == []


def test_aggregated_scores_use_the_mean_difference(project):
    store, _, _, s = project
    for who, a, b in [("x", 1.0, 0.5), ("y", 0.25, 0.5)]:
        score(store, who, s["a"], overall=a)
        score(store, who, s["b"], overall=b)
    score(store, "w", s["a"], overall=1.0)  # w scored only a: not comparable, not used
    assert preference_pairs(store, aggregate=True) == []  # mean difference 0.125 < 0.25
    score(store, "z", s["a"], overall=0.75)
    score(store, "z", s["b"], overall=0.25)
    (pair,) = preference_pairs(store, aggregate=True)
    assert (pair.chosen_id, pair.rejected_id) == (s["a"], s["b"])
    assert pair.margin == pytest.approx((0.5 - 0.25 + 0.5) / 3)
    assert pair.agreement == pytest.approx(2 / 3)
    assert len(pair.rating_ids) == 6 and pair.annotator is None
    assert preference_pairs(store, aggregate=True, min_agreement=0.9) == []


def test_comparisons_and_scores_merge_when_they_agree_and_cancel_when_not(project):
    store, _, _, s = project
    pairwise(store, "x", s["a"], s["b"], "a")
    score(store, "x", s["a"], overall=1.0)
    score(store, "x", s["b"], overall=0.5)
    (pair,) = preference_pairs(store, aggregate=True)
    assert pair.source == "pairwise+score" and pair.margin == pytest.approx(0.5)
    assert pair.annotator == "x" and len(pair.rating_ids) == 3
    pairwise(store, "x", s["e"], s["f"], "a")  # on prompt Q, so no score pairs with a or b
    score(store, "x", s["e"], overall=0.0)
    score(store, "x", s["f"], overall=1.0)
    assert as_tuples(preference_pairs(store, aggregate=True)) == {(s["a"], s["b"])}


def test_min_agreement_is_checked(project):
    store, *_ = project
    with pytest.raises(ValueError, match="aggregate=True"):
        preference_pairs(store, min_agreement=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        unpaired_examples(store, aggregate=True, min_agreement=1.5)


# ---- unpaired, rewards, demonstrations ----------------------------------------------------------
def test_unpaired_from_thumbs_and_thresholded_scores(project):
    store, p, _, s = project
    up = rate(store, "alice", "thumbs", [s["a"]], {"up": True})
    rate(store, "alice", "thumbs", [s["b"]], {"up": False})
    score(store, "alice", s["c"], overall=0.5)  # at the threshold: desirable
    score(store, "alice", s["d"], overall=0.25, fluency=1.0)
    labels = {e.sample_id: e.label for e in unpaired_examples(store)}
    assert labels == {s["a"]: True, s["b"]: False, s["c"]: True, s["d"]: False}
    assert unpaired_examples(store)[0] == UnpairedExample(p, s["a"], True, [up], "alice")
    fluent = unpaired_examples(store, criterion="fluency", annotators=["alice"])
    assert {e.sample_id: e.label for e in fluent} == {s["a"]: True, s["b"]: False, s["d"]: True}
    assert {e.sample_id for e in unpaired_examples(store, score_threshold=0.6) if e.label} == {
        s["a"]
    }


def test_unpaired_aggregation_takes_the_majority_and_drops_ties(project):
    store, _, _, s = project
    for who, up in [("x", True), ("y", True), ("z", False)]:
        rate(store, who, "thumbs", [s["a"]], {"up": up})
    rate(store, "x", "thumbs", [s["b"]], {"up": True})
    rate(store, "y", "thumbs", [s["b"]], {"up": False})
    (example,) = unpaired_examples(store, aggregate=True)
    assert (example.sample_id, example.label) == (s["a"], True)
    assert example.agreement == pytest.approx(2 / 3) and len(example.rating_ids) == 3
    assert unpaired_examples(store, aggregate=True, min_agreement=0.75) == []


def test_scalar_rewards_from_scores_and_thumbs(project):
    store, p, _, s = project
    r = score(store, "alice", s["a"], overall=0.75, fluency=0.25, grammar=0.5)
    rate(store, "alice", "thumbs", [s["b"]], {"up": True})
    rate(store, "alice", "thumbs", [s["c"]], {"up": False})
    score(store, "alice", s["d"], fluency=1.0)  # no "overall": no reward for it by default
    rewards = {e.sample_id: e.reward for e in scalar_rewards(store)}
    assert rewards == {s["a"]: 0.75, s["b"]: 1.0, s["c"]: 0.0}
    assert scalar_rewards(store)[0] == ScalarReward(p, s["a"], 0.75, [r], "alice")
    mean_of_criteria = {e.sample_id: e.reward for e in scalar_rewards(store, criterion=None)}
    assert mean_of_criteria[s["a"]] == pytest.approx(0.5) and mean_of_criteria[s["d"]] == 1.0


def test_scalar_rewards_aggregate_to_the_mean(project):
    store, _, _, s = project
    score(store, "x", s["a"], overall=1.0)
    score(store, "y", s["a"], overall=0.75)
    rate(store, "z", "thumbs", [s["a"]], {"up": False})
    (reward,) = scalar_rewards(store, aggregate=True)
    assert reward.reward == pytest.approx(1.75 / 3)
    assert reward.agreement == pytest.approx(2 / 3)  # z is below 0.5, the mean above


def test_demonstrations_from_high_scores(project):
    store, p, _, s = project
    score(store, "x", s["a"], overall=1.0)
    score(store, "y", s["a"], overall=0.75)
    score(store, "x", s["b"], overall=0.5)
    assert demonstrations(store) == []
    (demo,) = demonstrations(store, min_score=0.8)
    assert (demo.prompt_id, demo.sample_id, demo.agreement) == (p, s["a"], 0.5)
    assert demonstrations(store, min_score=0.8, aggregate=True, min_agreement=0.6) == []


# ---- summary and materialize --------------------------------------------------------------------
def test_data_summary_and_describe(project):
    store, p, q, s = project
    pairwise(store, "alice", s["a"], s["b"], "a")
    pairwise(store, "bob", s["e"], s["f"], "b")
    rate(store, "bob", "thumbs", [s["c"]], {"up": True})
    summary = data_summary(store)
    assert summary["pairs"] == 2 and summary["prompts"] == 2
    assert summary["unpaired"] == 1 and summary["desirable"] == 1 and summary["undesirable"] == 0
    assert summary["rewards"] == 1 and summary["demonstrations"] == 0
    assert summary["annotators"] == 2 and summary["annotators_by"]["unpaired"] == 1
    assert summary["ratings"] == 3
    assert describe(summary, "pairs") == "2 pairs from 2 annotators"
    assert describe(summary, "unpaired") == "1 unpaired example from 1 annotator"
    assert describe(summary) == "2 pairs, 1 unpaired example, 1 reward from 2 annotators"
    assert "no training data" in describe(data_summary(store, annotators=[]))


def test_materialize_attaches_messages_and_texts(project):
    store, p, q, s = project
    pairwise(store, "alice", s["a"], s["b"], "b")
    pairwise(store, "alice", s["e"], s["f"], "a")
    rate(store, "alice", "thumbs", [s["c"]], {"up": False})
    examples = [*preference_pairs(store), *unpaired_examples(store), *scalar_rewards(store)]
    rows = list(materialize(store, examples, chunk_size=2))
    assert rows[0]["prompt"] == [{"role": "user", "content": "Say hi"}]
    assert (rows[0]["chosen"], rows[0]["rejected"]) == ("answer b", "answer a")
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert rows[1]["chosen"] == "answer e" and rows[1]["margin"] == 0.0
    assert rows[2]["completion"] == "answer c" and rows[2]["label"] is False
    assert rows[3]["reward"] == 0.0 and rows[3]["sample_id"] == s["c"]
    rows[0]["prompt"].append({"role": "user", "content": "mutated"})  # caches hand out copies
    again = list(materialize(store, examples[:1], conversational=True))
    assert again[0]["prompt"] == [{"role": "user", "content": "Say hi"}]
    assert again[0]["chosen"] == [{"role": "assistant", "content": "answer b"}]
    demo_row = next(materialize(store, [Demonstration(p, s["d"], [])]))
    assert demo_row["completion"] == "answer d" and "label" not in demo_row


def test_missing_sample_texts_are_a_project_error_naming_the_ratings(project):
    store, _, _, s = project
    rid = pairwise(store, "alice", s["a"], s["b"], "a")
    with store.transaction() as conn:
        conn.execute("DELETE FROM samples WHERE id = ?", (s["b"],))
    with pytest.raises(
        ProjectError, match=rf"ratings {rid} use samples {s['b']}, which are missing"
    ):
        list(materialize(store, preference_pairs(store)))


def test_a_rating_that_is_not_json_is_a_project_error_naming_it(project):
    store, _, _, s = project
    rid = pairwise(store, "alice", s["a"], s["b"], "a")
    with store.transaction() as conn:
        conn.execute("UPDATE ratings SET value = '{\"choice\": ' WHERE id = ?", (rid,))
    with pytest.raises(
        ProjectError, match=rf"rating {rid} \(pairwise\) has a value that is not JSON"
    ):
        preference_pairs(store)


# ---- the fast builders against a plain reference ----------------------------------------------------
# The builders read the ratings table with one query and one json.loads per column and fetch texts
# a chunk at a time. The reference below reads through store.ratings() and store.prompt_messages()
# and follows the module docstring's rules step by step; on a random project with every kind of
# rating, re-ratings, undos, flags and several annotators the two must agree exactly.
EPS = 1e-9


def mixed_project(store: ProjectStore, *, seed: int = 7, nan: bool = False) -> None:
    rng = random.Random(seed)
    prompts = [add_prompt(store, f"prompt {i}") for i in range(6)] + [
        add_prompt(store, f"chat {i}", [{"role": "user", "content": f"chat {i}"}]) for i in range(2)
    ]
    samples = {
        p: store.add_samples(
            [{"prompt_id": p, "text": f"{p}/{j}", "model": "test"} for j in range(4)]
        )
        for p in prompts
    }
    people, made = ["ana", "ben", "cy", "dee", "eli"], []
    for _ in range(420):
        p, who = rng.choice(prompts), rng.choice(people)
        shown = rng.sample(samples[p], 4)
        kind = rng.choices(
            ["pairwise", "score", "thumbs", "rank", "rewrite", "flag", "skip", "undo"],
            [40, 25, 12, 8, 4, 1, 3, 4],
        )[0]
        if kind == "undo" and made:
            store.set_superseded(rng.choice(made))
            continue
        if kind == "pairwise":
            choice = rng.choice(["a", "a", "b", "b", "tie", "both_bad"])
            winner = {"a": shown[0], "b": shown[1]}.get(choice)
            value = {"choice": choice, "winner": winner if rng.random() < 0.8 else None}
            made.append(rate(store, who, kind, shown[:2], value))
        elif kind == "score":
            scores = {"overall": rng.choice([0, 0.25, 0.5, 0.75, 1.0]), "fluency": rng.random()}
            if rng.random() < 0.1:
                del scores["overall"]
            made.append(rate(store, who, kind, shown[:1], {"scores": scores}))
        elif kind == "thumbs":
            made.append(rate(store, who, kind, shown[:1], {"up": rng.random() < 0.6}))
        elif kind == "rank":
            made.append(rate(store, who, kind, shown[:3], {"order": rng.sample(shown[:3], 3)}))
        elif kind == "rewrite":
            (new,) = store.add_samples([{"prompt_id": p, "text": f"by {who}", "model": "human"}])
            value = {"original": shown[0], "rewrite": new}
            made.append(rate(store, who, kind, [shown[0], new], value))
        elif kind in ("flag", "skip"):
            value = {"reason": "other", "sample_id": rng.choice([shown[0], None])}
            rate(store, who, kind, shown[:2], value if kind == "flag" else {})
    if nan:  # NaN is JSON to Python's json module but not to SQLite's json_valid
        score(store, "ana", samples[prompts[0]][0], overall=0.5, fluency=float("nan"))


def ref_ratings(store, annotators=None, rating_ids=None):
    """The current ratings that may train (read through store.ratings()), and the flagged samples."""
    flagged, kept = set(), []
    for r in store.ratings():
        if r["kind"] == "flag":
            sid = r["value"]["sample_id"]
            flagged |= set(r["sample_ids"]) if sid is None else {sid}
        elif r["kind"] != "skip" and (annotators is None or r["annotator"] in annotators):
            if rating_ids is None or r["id"] in rating_ids:
                kept.append(r)
    return kept, flagged


def ref_items(store, judge, **filters):
    """{item: {annotator: (rating, value)}}: each annotator's last word on each item."""
    ratings, flagged = ref_ratings(store, **filters)
    out = defaultdict(dict)
    for r in ratings:
        for item, value in judge(r):
            if not flagged & set(item if isinstance(item, tuple) else (item,)):
                out[item][r["annotator"]] = (r, value)
    return out


def ref_vote(r):
    v, ids = r["value"], r["sample_ids"]
    if r["kind"] == "pairwise":
        if v["choice"] in ("tie", "both_bad"):
            return [(tuple(sorted(ids)), None)]
        return [(tuple(sorted(ids)), v["winner"] or ids["ab".index(v["choice"])])]
    if r["kind"] == "rank":  # combinations keep the order: each (better, worse)
        return [(tuple(sorted(c)), c[0]) for c in itertools.combinations(v["order"], 2)]
    if r["kind"] == "rewrite":
        return [(tuple(sorted((v["rewrite"], v["original"]))), v["rewrite"])]
    return []


def ref_score(r):
    s = r["value"]["scores"].get("overall") if r["kind"] == "score" else None
    return [] if s is None else [(r["sample_ids"][0], float(s))]


def only(by):
    return next(iter(by)) if len(by) == 1 else None


def ids_of(rs):
    return sorted({r["id"] for r in rs})


def ref_pairs(store, aggregate, min_agreement=0.0, margin=0.25, **filters):
    votes = ref_items(store, ref_vote, **filters)
    scores = ref_items(store, ref_score, **filters)
    samples = sorted(scores)
    same_prompt = [
        (s, t)
        for s, t in itertools.combinations(samples, 2)
        if next(iter(scores[s].values()))[0]["prompt_id"]
        == next(iter(scores[t].values()))[0]["prompt_id"]
    ]
    if not aggregate:
        pairs = [
            PreferencePair(r["prompt_id"], w, b if w == a else a, 0.0, [r["id"]], who, r["kind"])
            for (a, b), by in votes.items()
            for who, (r, w) in by.items()
            if w is not None
        ]
        for s, t in same_prompt:
            for who in scores[s].keys() & scores[t].keys():
                (rs, vs), (rt, vt) = scores[s][who], scores[t][who]
                if abs(vs - vt) >= margin - EPS and abs(vs - vt) > EPS:
                    hi, lo = (s, t) if vs > vt else (t, s)
                    pairs.append(
                        PreferencePair(
                            rs["prompt_id"], hi, lo, abs(vs - vt), ids_of([rs, rt]), who, "score"
                        )
                    )
        return sorted(pairs, key=lambda p: (p.rating_ids, p.chosen_id, p.rejected_id))
    compared = {}
    for (a, b), by in votes.items():
        tally = Counter(w for _, w in by.values()).most_common()
        (top, n), rest = tally[0], tally[1:]
        if top is not None and not (rest and rest[0][1] == n):
            rs = [r for r, _ in by.values()]
            kinds = "+".join(sorted({r["kind"] for r in rs}))
            compared[(a, b)] = PreferencePair(
                rs[0]["prompt_id"],
                top,
                b if top == a else a,
                0.0,
                ids_of(rs),
                only(by),
                kinds,
                n / len(rs),
            )
    scored = {}
    for s, t in same_prompt:
        shared = sorted(scores[s].keys() & scores[t].keys())
        diffs = [scores[s][who][1] - scores[t][who][1] for who in shared]
        d = sum(diffs) / len(diffs) if diffs else 0.0
        if abs(d) >= margin - EPS and abs(d) > EPS:
            rs = [scores[u][who][0] for u in (s, t) for who in shared]
            agree = sum(1 for x in diffs if x * d > 0) / len(diffs)
            hi, lo = (s, t) if d > 0 else (t, s)
            scored[(s, t)] = PreferencePair(
                rs[0]["prompt_id"], hi, lo, abs(d), ids_of(rs), only(shared), "score", agree
            )
    merged = []
    for key in compared.keys() | scored.keys():
        c, s = (
            p if p is not None and p.agreement >= min_agreement - EPS else None
            for p in (compared.get(key), scored.get(key))
        )
        if c and s and c.chosen_id == s.chosen_id:
            merged.append(
                PreferencePair(
                    c.prompt_id,
                    c.chosen_id,
                    c.rejected_id,
                    s.margin,
                    sorted(set(c.rating_ids) | set(s.rating_ids)),
                    c.annotator if c.annotator == s.annotator else None,
                    "+".join(sorted(set(c.source.split("+")) | {"score"})),
                    min(c.agreement, s.agreement),
                )
            )
        elif bool(c) != bool(s):
            merged.append(c or s)
    return sorted(merged, key=lambda p: (p.prompt_id, p.chosen_id, p.rejected_id))


def ref_per_sample(store, make, judge, aggregate, min_agreement, agree, **filters):
    """Unpaired examples or rewards: one per judgment, or with ``aggregate`` one per sample
    (``agree(values)`` → (value, agreement), or None to drop the sample)."""
    by_sample = ref_items(store, judge, **filters)
    if not aggregate:
        out = [
            make(r["prompt_id"], sample, value, [r["id"]], who)
            for sample, by in by_sample.items()
            for who, (r, value) in by.items()
        ]
        return sorted(out, key=lambda e: (e.rating_ids, e.sample_id))
    out = []
    for sample, by in by_sample.items():
        rs, values = [r for r, _ in by.values()], [v for _, v in by.values()]
        verdict = agree(values)
        if verdict is not None and verdict[1] >= min_agreement - EPS:
            out.append(
                make(rs[0]["prompt_id"], sample, verdict[0], ids_of(rs), only(by), verdict[1])
            )
    return sorted(out, key=lambda e: (e.prompt_id, e.sample_id))


def ref_unpaired(store, aggregate, min_agreement=0.0, **filters):
    def judge(r):
        if r["kind"] == "thumbs":
            return [(r["sample_ids"][0], r["value"]["up"])]
        if r["kind"] == "rewrite":
            return [(r["value"]["rewrite"], True)]
        return [(s, v >= 0.5 - EPS) for s, v in ref_score(r)]

    def majority(labels):
        up = sum(labels)
        down = len(labels) - up
        return None if up == down else (up > down, max(up, down) / len(labels))

    return ref_per_sample(
        store, UnpairedExample, judge, aggregate, min_agreement, majority, **filters
    )


def ref_rewards(store, aggregate, min_agreement=0.0, **filters):
    def judge(r):
        if r["kind"] == "thumbs":
            return [(r["sample_ids"][0], 1.0 if r["value"]["up"] else 0.0)]
        return ref_score(r)

    def mean(values):
        m = sum(values) / len(values)
        same_side = [(v >= 0.5 - EPS) == (m >= 0.5 - EPS) for v in values]
        return m, sum(same_side) / len(values)

    return ref_per_sample(store, ScalarReward, judge, aggregate, min_agreement, mean, **filters)


def ref_demonstrations(store, aggregate, min_agreement=0.0, min_score=0.7, **filters):
    ratings, flagged = ref_ratings(store, **filters)
    out = {}
    for r in ratings:
        sample = r["value"]["rewrite"] if r["kind"] == "rewrite" else None
        if sample is not None and sample not in flagged:
            d = out.setdefault(sample, Demonstration(r["prompt_id"], sample, [], r["annotator"]))
            d.rating_ids.append(r["id"])
            d.annotator = d.annotator if d.annotator == r["annotator"] else None
    for sample, by in ref_items(store, ref_score, **filters).items():
        values = [v for _, v in by.values()]
        agreement = sum(1 for v in values if v >= min_score - EPS) / len(values)
        keep = not aggregate or agreement >= min_agreement - EPS
        if sample not in out and sum(values) / len(values) >= min_score - EPS and keep:
            rs = [r for r, _ in by.values()]
            out[sample] = Demonstration(rs[0]["prompt_id"], sample, ids_of(rs), only(by), agreement)
    return sorted(out.values(), key=lambda e: (e.prompt_id, e.sample_id))


def ref_rows(store, examples):
    """materialize's rows, one prompt and one sample text query per example."""

    def text(sample_id):
        return store.conn.execute("SELECT text FROM samples WHERE id = ?", (sample_id,)).fetchone()[
            0
        ]

    for e in examples:
        row = {"prompt": store.prompt_messages(e.prompt_id)}
        if isinstance(e, PreferencePair):
            row |= {
                "chosen": text(e.chosen_id),
                "rejected": text(e.rejected_id),
                "margin": e.margin,
                "chosen_id": e.chosen_id,
                "rejected_id": e.rejected_id,
            }
        else:
            row["completion"] = text(e.sample_id)
            if isinstance(e, UnpairedExample):
                row["label"] = e.label
            elif isinstance(e, ScalarReward):
                row["reward"] = e.reward
            row["sample_id"] = e.sample_id
        yield row | {"prompt_id": e.prompt_id, "rating_ids": e.rating_ids}


def exactly(examples):
    """Examples as field tuples with floats rounded: the reference may sum in another order."""
    return [
        tuple(round(v, 9) if isinstance(v, float) else v for v in vars(e).values())
        for e in examples
    ]


@pytest.mark.parametrize("nan", [False, True], ids=["bulk-json", "row-by-row-json"])
@pytest.mark.parametrize(
    "filters", [{}, {"annotators": ["ana", "ben", "cy"]}, {"rating_ids": set(range(1, 500, 3))}]
)
def test_builders_match_a_plain_reference_on_a_mixed_project(tmp_path, nan, filters):
    store = ProjectStore(tmp_path / "mixed.db")
    mixed_project(store, nan=nan)
    invalid = "SELECT COUNT(*) FROM ratings WHERE NOT json_valid(value)"
    assert store.conn.execute(invalid).fetchone()[0] == int(nan)
    for aggregate, min_agreement in [(False, 0.0), (True, 0.0), (True, 0.6)]:
        opts = {"aggregate": aggregate, "min_agreement": min_agreement, **filters}
        pairs = preference_pairs(store, **opts)
        assert exactly(pairs) == exactly(ref_pairs(store, **opts))
        assert exactly(unpaired_examples(store, **opts)) == exactly(ref_unpaired(store, **opts))
        assert exactly(scalar_rewards(store, **opts)) == exactly(ref_rewards(store, **opts))
        demos = demonstrations(store, min_score=0.7, **opts)
        assert exactly(demos) == exactly(ref_demonstrations(store, **opts))
        if aggregate and not min_agreement and not filters:
            assert len(pairs) > 20 and len({p.source for p in pairs}) > 3  # the project is mixed
            summary = data_summary(store, min_score=0.7, **opts)
            assert (summary["pairs"], summary["demonstrations"]) == (len(pairs), len(demos))
    examples = [
        *preference_pairs(store, aggregate=True),
        *unpaired_examples(store),
        *scalar_rewards(store),
        *demonstrations(store, min_score=0.7),
    ]
    assert list(materialize(store, examples, chunk_size=7)) == list(ref_rows(store, examples))
    store.close()
