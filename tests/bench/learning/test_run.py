"""The learning bench carries an interrupted run on (--resume): what was finished is not done
again, what was cut off is done again without rating anything twice, and the figures are those of
an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from bench.learning import data, plan, run


class Killed(BaseException):
    """Stands for the process being killed: no handler of the bench catches it."""


def learning(tiny_model_dir, tmp_path, work: str, *extra: str) -> dict:
    out = tmp_path / f"{work}.json"
    argv = ["--smoke", "--model", str(tiny_model_dir), "--runs", "dpo_large,reward,rloo"]
    run.main([*argv, "--workdir", str(tmp_path / work), "--out", str(out), *extra])
    return json.loads(out.read_text())


def figures(result: dict) -> str:
    """The figures' values and notes (times aside, which differ run to run)."""
    return json.dumps(
        [
            (f["key"], f["value"], f.get("note"))
            for f in result["figures"]
            if "time" not in f["key"] and not f["key"].endswith("_s")
        ]
    )


def ratings_per_annotator(db) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT annotator, kind, COUNT(*) FROM ratings GROUP BY annotator, kind ORDER BY 1, 2"
        ).fetchall()


def test_a_run_killed_while_rating_and_while_training_resumes_to_the_same_figures(
    tiny_model_dir, tmp_path, monkeypatch
):
    # fewer ratings than the answers have pairs, so that rating anything twice would show
    monkeypatch.setitem(plan.SIZES, "smoke", {**plan.SIZES["smoke"], "ratings": 4, "large": 3})
    whole = learning(tiny_model_dir, tmp_path, "whole")

    real_call = data.Cli.__call__

    def killed_in_the_scores(self, *argv):
        if argv[0] == "rate" and "score" in argv:
            raise Killed  # after the pairwise ratings and their subsets, before the scores
        return real_call(self, *argv)

    monkeypatch.setattr(data.Cli, "__call__", killed_in_the_scores)
    with pytest.raises(Killed):
        learning(tiny_model_dir, tmp_path, "cut")
    monkeypatch.setattr(data.Cli, "__call__", real_call)

    real_last, trained = run.last_run, []

    def killed_after_the_second_training(store):
        trained.append(store.last_run_id())
        if len(trained) == 2:
            raise Killed  # the run finished and saved its checkpoint; nothing kept it
        return real_last(store)

    monkeypatch.setattr(run, "last_run", killed_after_the_second_training)
    with pytest.raises(Killed):
        learning(tiny_model_dir, tmp_path, "cut", "--resume")
    monkeypatch.setattr(run, "last_run", real_last)

    real_train, again = run.train_seed, []
    monkeypatch.setattr(
        run,
        "train_seed",
        lambda ctx, plan, rater, score, seed: (
            again.append(seed) or real_train(ctx, plan, rater, score, seed)
        ),
    )
    calls = []
    monkeypatch.setattr(
        data.Cli, "__call__", lambda self, *argv: calls.append(argv[0]) or real_call(self, *argv)
    )
    resumed = learning(tiny_model_dir, tmp_path, "cut", "--resume")

    assert figures(resumed) == figures(whole)
    counts = {a: n for a, _, n in ratings_per_annotator(tmp_path / "whole" / "all.db")}
    assert counts["text_hash"] == counts["text_hash-score"] == 4  # of 6 pairs, 6 answers
    assert ratings_per_annotator(tmp_path / "cut" / "all.db") == ratings_per_annotator(
        tmp_path / "whole" / "all.db"
    )
    # the last sitting made no project and rated nothing; it trained seed 0's killed reward
    # model and its RLOO, then seed 1's three runs
    assert "generate" not in calls and "rate" not in calls
    assert calls.count("train") == 5
    assert any("started 3 times" in n for n in resumed["notes"])
    # later sittings found more answers in the file (held-out ones), but the same rated pool
    assert not any("made again" in n for n in resumed["notes"])


def test_a_run_in_one_precision_loads_every_model_in_it(tiny_model_dir, tmp_path):
    """--dtype: the training answers, the held-out answers of the base model and of each policy
    are all made in that precision, and the figures are named after it."""
    result = learning(tiny_model_dir, tmp_path, "bf16", "--dtype", "bf16")
    assert result["name"].endswith("_dtypebf16")
    assert all("dtype=bf16" in f["label"] for f in result["figures"])
    with contextlib.closing(sqlite3.connect(tmp_path / "bf16" / "all.db")) as conn:
        dtypes = conn.execute(
            "SELECT DISTINCT json_extract(params, '$.dtype') FROM samples"
        ).fetchall()
        models = conn.execute("SELECT COUNT(DISTINCT model) FROM samples").fetchone()[0]
    assert dtypes == [("bfloat16",)] and models >= 3  # the base model and two policies


def test_a_journal_carried_to_an_empty_work_folder_keeps_only_whole_seeds(
    tiny_model_dir, tmp_path, monkeypatch
):
    whole = learning(tiny_model_dir, tmp_path, "whole")
    journal = tmp_path / "tracked" / "journal.json"
    real_last, trained = run.last_run, []

    def killed_in_seed_1(store):
        trained.append(store.last_run_id())
        if len(trained) == 5:
            raise Killed  # seed 0's three runs and seed 1's DPO kept; its reward model not
        return real_last(store)

    monkeypatch.setattr(run, "last_run", killed_in_seed_1)
    with pytest.raises(Killed):
        learning(tiny_model_dir, tmp_path, "first machine", "--journal", str(journal))
    monkeypatch.setattr(run, "last_run", real_last)

    real_call, calls = data.Cli.__call__, []
    monkeypatch.setattr(
        data.Cli, "__call__", lambda self, *argv: calls.append(argv[0]) or real_call(self, *argv)
    )
    carried = learning(
        tiny_model_dir, tmp_path, "second machine", "--journal", str(journal), "--resume"
    )
    # the project is made and rated again; seed 1's DPO, though it finished, is trained again
    # with the rest of its seed (RLOO needs that seed's reward model, now gone)
    assert "generate" in calls and calls.count("train") == 3
    assert figures(carried) == figures(whole)
    assert not any("made again" in n for n in carried["notes"])


def test_seeds_trained_on_projects_made_apart_are_noted():
    seeds = {0: {"dpo_large": {"answers": "aa"}}, 1: {"dpo_large": {"answers": "bb"}}}
    assert run.remade_notes({"r": {"seeds": {0: seeds[0]}}}) == []
    assert "2 different sets" in run.remade_notes({"r": {"seeds": seeds}})[0]
