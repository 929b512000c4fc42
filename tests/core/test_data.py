"""core.data: the rules that turn ratings into training examples (see the module docstring)."""

from __future__ import annotations

import json

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
from core.store import ProjectStore, new_uuid, now


def add_prompt(store: ProjectStore, text: str, messages: list[dict] | None = None) -> int:
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO prompts(uuid, text, messages, content_key, source, created_at) "
            "VALUES (?, ?, ?, ?, 'test', ?)",
            (new_uuid(), text, json.dumps(messages) if messages else None, text, now()),
        )
    return int(cur.lastrowid)


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
