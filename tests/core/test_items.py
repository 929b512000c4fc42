"""Item selection: prompt coverage, no repeated comparison per annotator, skips, undo, blindness."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from core.items import (
    Item,
    choose_sample_sets,
    item_for_rating,
    last_live_rating,
    seen_keys,
    select_items,
)


def _prompt_ids(store) -> list[int]:
    return [r[0] for r in store.conn.execute("SELECT id FROM prompts ORDER BY id")]


@pytest.fixture
def project(project_with_prompts):
    """Five prompts with four samples each (model "test")."""
    store = project_with_prompts
    store.add_samples(
        {"prompt_id": p, "text": f"response {j} to prompt {p}", "model": "test"}
        for p in _prompt_ids(store)
        for j in range(4)
    )
    return store


def _rate(store, item: Item, annotator="ann", kind=None) -> int:
    kind = kind or item.mode
    value = {"skip": {}, "thumbs": {"up": True}}.get(kind, {"choice": "a", "winner": None})
    return store.add_rating(
        annotator=annotator, kind=kind, sample_ids=item.sample_ids, value=value, seconds=1.0
    )


def test_pairs_come_from_one_prompt_and_cover_every_prompt_first(project):
    items = select_items(project, mode="pairwise", annotator="ann", k=4, n=5)
    assert len(items) == 5
    assert sorted(i.prompt_id for i in items) == _prompt_ids(project)  # one pair per prompt
    for item in items:
        prompts = {project.db["samples"].get(s)["prompt_id"] for s in item.sample_ids}
        assert prompts == {item.prompt_id} and len(item.sample_ids) == 2
        assert all(r.text.startswith("response") for r in item.responses)


def test_prompts_with_fewest_ratings_come_first(project):
    first, second, *_ = _prompt_ids(project)
    for item in select_items(project, mode="thumbs", annotator="other", k=4, n=20):
        if item.prompt_id in (first, second):
            _rate(project, item, annotator="other")
    items = select_items(project, mode="thumbs", annotator="ann", k=4, n=3)
    assert {i.prompt_id for i in items}.isdisjoint({first, second})


def test_no_annotator_sees_the_same_comparison_twice(project):
    keys: list[frozenset[int]] = []
    while True:
        items = select_items(project, mode="pairwise", annotator="ann", k=4, n=4)
        if not items:
            break
        for item in items:
            _rate(project, item)
            keys.append(item.key)
    assert len(keys) == len(set(keys)) == 5 * 6  # every pair of four, once
    # Another annotator still gets every comparison.
    assert len(select_items(project, mode="pairwise", annotator="bob", k=4, n=100)) == 30


def test_exclude_keeps_queued_items_out(project):
    queued = select_items(project, mode="score", annotator="ann", k=4, n=6)
    more = select_items(
        project, mode="score", annotator="ann", k=4, n=100, exclude=[i.key for i in queued]
    )
    assert len(more) == 20 - 6
    assert not {i.key for i in queued} & {i.key for i in more}


def test_skipped_items_are_not_shown_again_and_undone_ones_are(project):
    item = select_items(project, mode="thumbs", annotator="ann", k=4, n=1)[0]
    skip_id = _rate(project, item, kind="skip")
    assert item.key in seen_keys(project, "ann")
    all_keys = {i.key for i in select_items(project, mode="thumbs", annotator="ann", k=4, n=99)}
    assert item.key not in all_keys and len(all_keys) == 19
    project.set_superseded(skip_id, True)
    all_keys = {i.key for i in select_items(project, mode="thumbs", annotator="ann", k=4, n=99)}
    assert item.key in all_keys


def test_rank_items_hold_k_samples_of_one_prompt(project):
    items = select_items(project, mode="rank", annotator="ann", k=3, n=10)
    assert {len(i.responses) for i in items} == {3}
    assert len({i.prompt_id for i in items[:5]}) == 5


def test_human_rewrites_are_never_items(project):
    pid = _prompt_ids(project)[0]
    project.add_samples([{"prompt_id": pid, "text": "better", "model": "human:ann"}])
    items = select_items(project, mode="thumbs", annotator="ann", k=4, n=99)
    assert len(items) == 20 and all(r.text != "better" for i in items for r in i.responses)


def test_sides_are_randomised():
    groups = {1: [10, 11]}
    firsts = Counter(
        choose_sample_sets("pairwise", groups, k=2, n=1, seen=set(), rng=random.Random(s))[0][1][0]
        for s in range(200)
    )
    assert set(firsts) == {10, 11} and min(firsts.values()) > 60


def test_least_rated_samples_are_paired_first():
    groups = {1: [1, 2, 3, 4]}
    counts = Counter({1: 5, 2: 5})
    chosen = choose_sample_sets(
        "pairwise", groups, k=2, n=1, seen=set(), sample_counts=counts, rng=random.Random(0)
    )
    assert sorted(chosen[0][1]) == [3, 4]


def test_unknown_mode_is_refused(project):
    with pytest.raises(ValueError, match="not one of"):
        select_items(project, mode="stars", annotator="ann", k=4, n=1)


def test_undo_beyond_the_session_rebuilds_the_item_in_shown_order(project):
    item = select_items(project, mode="pairwise", annotator="ann", k=4, n=1)[0]
    rid = _rate(project, item)
    rating = last_live_rating(project, "ann")
    assert rating["id"] == rid
    again = item_for_rating(project, rating, current_mode="score")
    assert again == item
    assert last_live_rating(project, "ann", exclude_ids=[rid]) is None
    assert project.live_rating_count() == project.live_rating_count("ann") == 1
