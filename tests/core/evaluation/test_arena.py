"""Evaluation prompts stay out of training; the arena compares models blind on them."""

from __future__ import annotations

import json

import pytest

import main
from core import data
from core.errors import UserError
from core.evaluation import ArenaSpec, arena_report, comparisons, run_arena
from core.exchange import export_ratings
from core.items import select_items
from core.models import load_model
from core.prompts import parse_eval_amount, split_for_evaluation
from core.raters import rate_auto


def add_samples(store, model: str, per_prompt: int = 2) -> None:
    params = ArenaSpec([model, "other"]).generation()  # the settings an arena answers with
    rows = [
        {"prompt_id": p, "text": f"{model} answer {k} to {p}", "model": model, "params": params}
        for p in store.prompt_ids()
        for k in range(per_prompt)
    ]
    store.add_samples(rows)


def test_split_marks_unrated_prompts_once_and_keeps_them(project_with_prompts):
    store = project_with_prompts
    add_samples(store, "m")
    first = store.samples_for_prompt(1)
    store.add_rating(
        annotator="ann", kind="thumbs", sample_ids=[first[0]["id"]], value={"up": True}
    )
    res = split_for_evaluation(store, 2, seed=3)
    assert len(res.marked) == 2 and 1 not in res.marked  # a rated prompt may have trained
    assert (res.eval_prompts, res.train_prompts) == (2, 3)
    assert split_for_evaluation(store, 2, seed=9).marked == []  # the same amount: no change
    assert split_for_evaluation(store, 0.6).eval_prompts == 3  # a fraction of all prompts
    with pytest.raises(UserError, match="only 1 prompts have no ratings"):
        split_for_evaluation(store, 5)
    assert len(store.prompt_ids("eval")) == 3  # nothing changed by the refusal
    assert parse_eval_amount("0.25") == 0.25 and parse_eval_amount("40") == 40
    for bad in ("0", "-3", "1.5", "many"):
        with pytest.raises(UserError, match="--eval"):
            parse_eval_amount(bad)


def test_an_eval_prompt_never_reaches_training_or_the_rating_queue(project_with_prompts, tmp_path):
    store = project_with_prompts
    add_samples(store, "m", per_prompt=3)
    store.set_split([2], "eval")
    # a pairwise judgment on every prompt, the evaluation prompt included (as an arena would)
    for pid in store.prompt_ids():
        a, b, _ = (s["id"] for s in store.samples_for_prompt(pid))
        store.add_rating(
            annotator="ann",
            kind="pairwise",
            sample_ids=[a, b],
            value={"choice": "a", "winner": a},
        )
    pairs = data.preference_pairs(store)
    assert {p.prompt_id for p in pairs} == {1, 3, 4, 5}
    summary = data.data_summary(store)
    assert summary["pairs"] == 4
    out = tmp_path / "pref.jsonl"
    export_ratings(store, out, "preference")
    prompts = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert len(prompts) == 4 and not any("capital of France" in str(p) for p in prompts)
    raw = tmp_path / "raw.jsonl"
    export_ratings(store, raw, "jsonl")
    splits = {
        json.loads(line)["prompt_id"]: json.loads(line)["prompt_split"] for line in raw.open()
    }
    assert splits[2] == "eval" and splits[1] == "train"  # raw exports carry the split
    items = select_items(store, mode="thumbs", annotator="new", k=1, n=50)
    assert items and all(i.prompt_id != 2 for i in items)
    written = list(rate_auto(store, "core.raters:length", mode="thumbs", annotator="bot"))
    rated = {r["prompt_id"] for r in store.ratings() if r["annotator"] == "bot"}
    assert written and 2 not in rated


def test_arena_with_a_judge_rates_blind_cross_model_pairs(
    project_with_prompts, tiny_model_dir, other_tiny_model_dir, capsys
):
    store = project_with_prompts
    db = str(store.path)
    assert main.main(["--db", db, "prompts", "split", "--eval", "3", "--seed", "1"]) == 0
    models = [str(tiny_model_dir), str(other_tiny_model_dir)]
    argv = ["--db", db, "--device", "cpu", "arena", "--models", *models, "--per-prompt", "2"]
    argv += ["--max-new-tokens", "6", "--judge", "core.raters:length", "--json"]
    capsys.readouterr()
    assert main.main(argv) == 0
    board = json.loads(capsys.readouterr().out)
    assert {m["model"] for m in board["models"]} == set(models)
    assert [p["n"] for p in board["pairs"]] == [3 * 2]  # 3 prompts x 2 answers
    assert board["annotators"] == ["judge:core.raters:length"]
    rating = {m["model"]: m["rating"] for m in board["models"]}
    assert rating[models[0]] == 1000.0 and rating[models[1]] is not None  # first listed: 1000
    judged = [r for r in store.ratings() if r["annotator"] == "judge:core.raters:length"]
    assert len(judged) == 6 and {r["selection"] for r in judged} == {"arena"}
    eval_ids = set(store.prompt_ids("eval"))
    made = dict(store.conn.execute("SELECT id, model FROM samples"))
    for r in judged:
        assert r["prompt_id"] in eval_ids and made[r["sample_ids"][0]] != made[r["sample_ids"][1]]
    sides = [made[r["sample_ids"][0]] for r in judged]
    assert set(sides) == set(models)  # which model is shown as A is drawn
    samples = store.count("samples")
    assert main.main(argv) == 0  # again: the answers are reused and nothing is judged twice
    assert store.count("samples") == samples == 3 * 2 * 2
    assert len([r for r in store.ratings() if r["annotator"].startswith("judge:")]) == 6
    capsys.readouterr()
    assert main.main(["--db", db, "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["eval_prompts"] == 3 and stats["arena"]["pairs"][0]["n"] == 6
    # a person's rating of one model's two answers is no arena comparison, nor its judge
    pid = next(iter(eval_ids))
    sql = "SELECT id FROM samples WHERE prompt_id = ? AND model = ? ORDER BY id"
    same = [r[0] for r in store.conn.execute(sql, (pid, models[0]))]
    store.add_rating(
        annotator="bob", kind="pairwise", sample_ids=same[:2], value={"choice": "a"}, prompt_id=pid
    )
    capsys.readouterr()
    assert main.main(["--db", db, "stats", "--json"]) == 0
    arena = json.loads(capsys.readouterr().out)["arena"]
    assert arena["annotators"] == ["judge:core.raters:length"] and arena["pairs"][0]["n"] == 6


def test_the_arena_needs_evaluation_prompts(project_with_prompts, tiny_model_dir, capsys):
    db = str(project_with_prompts.path)
    code = main.main(["--db", db, "arena", "--models", str(tiny_model_dir), "default"])
    assert code == 2 and "no evaluation prompts" in capsys.readouterr().err
    code = main.main(["--db", db, "arena", "--models", "default", "default"])
    assert code == 2 and "two different models" in capsys.readouterr().err


def test_people_s_ratings_count_and_both_bad_is_a_tie(project_with_prompts):
    store = project_with_prompts
    store.set_split([1, 2], "eval")
    add_samples(store, "base", per_prompt=1)
    add_samples(store, "checkpoint:1", per_prompt=1)
    spec = ArenaSpec(["base", "checkpoint:1"], per_prompt=1)
    store.update_settings(arena={"models": spec.models, "per_prompt": 1})
    for pid, choice in ((1, "b"), (2, "both_bad")):
        base, tuned = (s["id"] for s in store.samples_for_prompt(pid))
        store.add_rating(
            annotator="ann",
            kind="pairwise",
            sample_ids=[base, tuned],
            value={"choice": choice, "winner": tuned if choice == "b" else None},
            selection="arena",
        )
    assert comparisons(store, spec.models) == [
        ("base", "checkpoint:1", "b"),
        ("base", "checkpoint:1", "tie"),
    ]
    board = arena_report(store)
    assert board["pairs"][0]["a"] == "checkpoint:1" and board["pairs"][0]["win_rate"] == 0.75


def test_run_arena_loads_one_model_at_a_time(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    store.set_split([3], "eval")
    loaded = []

    def load(spec):
        loaded.append(spec)
        return load_model(spec, device="cpu")

    spec = ArenaSpec([str(tiny_model_dir), "other"], per_prompt=1, max_new_tokens=4)
    params = {"max_new_tokens": 4, "temperature": 0.8, "top_p": 0.95}
    store.add_samples([{"prompt_id": 3, "text": "x", "model": "other", "params": params}])
    progress = list(run_arena(store, spec, load))
    assert loaded == [str(tiny_model_dir)]  # the other model already had its answer
    assert progress[-1].done == progress[-1].total == 1
    assert store.settings()["arena"]["models"] == spec.models


def test_arena_items_are_blind_unrated_cross_model_pairs(project_with_prompts):
    import random

    from core.evaluation import arena_items

    store = project_with_prompts
    store.set_split([1, 2], "eval")
    add_samples(store, "base", per_prompt=2)
    add_samples(store, "tuned", per_prompt=2)
    store.update_settings(arena={"models": ["base", "tuned"], "per_prompt": 2})
    items = arena_items(store, "ann", 10, rng=random.Random(0))
    assert len(items) == 4 and {i.selection for i in items} == {"arena"}
    assert {i.mode for i in items} == {"pairwise"} and {i.prompt_id for i in items} == {1, 2}
    made = dict(store.conn.execute("SELECT id, model FROM samples"))
    assert all({made[s] for s in i.sample_ids} == {"base", "tuned"} for i in items)
    first = items[0]
    store.add_rating(
        annotator="ann",
        kind="pairwise",
        sample_ids=first.sample_ids,
        value={"choice": "tie", "winner": None},
        selection=first.selection,
    )
    left = arena_items(store, "ann", 10, exclude=[items[1].key])
    assert first.key not in {i.key for i in left} and items[1].key not in {i.key for i in left}
    assert len(left) == 2 and store.rating(1)["selection"] == "arena"
