"""Active selection: the pairs a model is least sure of come first, with a random control slice,
and every rating records how its pair was picked."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import main
from core.selection import NoScorer, choose_pairs, newest_scorer


def test_uncertain_pairs_come_first_with_a_random_slice():
    candidates = [(1, a, b) for a in range(10) for b in range(a + 1, 10)]
    scores = {i: float(i) for i in range(10)}  # adjacent samples are the closest calls
    picked = choose_pairs(candidates, 5, "uncertain", scores, 0.0, random.Random(0), disjoint=True)
    assert [abs(scores[p.first] - scores[p.second]) for p in picked] == [1.0] * 5
    assert {p.selection for p in picked} == {"uncertain"}
    used = [s for p in picked for s in (p.first, p.second)]
    assert len(used) == len(set(used))  # disjoint: each sample in one pair
    # over many picks about a fifth are random, and recorded so
    many = choose_pairs(candidates, 45, "uncertain", scores, 0.2, random.Random(1))
    share = Counter(p.selection for p in many)["random"] / 45
    assert 0.05 < share < 0.4 and len({(p.first, p.second) for p in many}) == 45
    spread = choose_pairs(candidates, 45, "random", None, 0.2, random.Random(2))
    gaps = [abs(scores[p.first] - scores[p.second]) for p in spread[:10]]
    assert max(gaps) > 1.0 and {p.selection for p in spread} == {"random"}
    with pytest.raises(ValueError, match="needs reward scores"):
        choose_pairs(candidates, 1, "uncertain", None)


def test_no_model_to_be_uncertain_with_is_a_clear_error(project_with_prompts, capsys):
    with pytest.raises(NoScorer, match="no reward model or trained policy"):
        newest_scorer(project_with_prompts)
    db = str(project_with_prompts.path)
    argv = ["--db", db, "rate", "--auto", "core.raters:length", "--mode", "pairwise"]
    assert main.main([*argv, "--annotator", "bot", "--select", "uncertain"]) == 2
    assert "train one first" in capsys.readouterr().err
    assert main.main([*argv, "--annotator", "bot", "--select", "random", "--mode", "thumbs"]) == 2


def test_rate_auto_select_uncertain_writes_ratings_that_say_so(
    project_with_prompts, tiny_model_dir, capsys
):
    store = project_with_prompts
    db = str(store.path)
    for pid in store.prompt_ids():  # 6 answers per prompt: 15 candidate pairs each
        store.add_samples(
            [{"prompt_id": pid, "text": "word " * (12 * k + 3), "model": "x"} for k in range(6)]
        )
    rate = ["--db", db, "rate", "--auto", "core.raters:length", "--mode", "pairwise"]
    assert main.main([*rate, "--annotator", "first", "--limit", "8"]) == 0
    train = ["--db", db, "--device", "cpu", "train", "--algo", "reward", "--steps", "1"]
    assert main.main([*train, "--model", str(tiny_model_dir), "--batch-size", "4"]) == 0
    capsys.readouterr()
    argv = [*rate, "--annotator", "second", "--select", "uncertain", "--limit", "10"]
    assert main.main(argv) == 0
    assert "Uncertainty from the reward model checkpoint:" in capsys.readouterr().err
    mine = [r for r in store.ratings() if r["annotator"] == "second"]
    how = Counter(r["selection"] for r in mine)
    assert len(mine) == 10 and how["uncertain"] >= 6 and set(how) <= {"uncertain", "random"}
    firsts = {r["selection"] for r in store.ratings() if r["annotator"] == "first"}
    assert firsts == {"coverage"}


def test_without_a_reward_model_the_policy_s_implicit_reward_decides(
    project_with_prompts, tiny_model_dir
):
    import math

    from core.training import config_for, train

    store = project_with_prompts
    ids = []
    for pid in store.prompt_ids():
        a, b = store.add_samples(
            [{"prompt_id": pid, "text": t, "model": "x"} for t in ("Paris.", "bad sad bad")]
        )
        store.add_rating(
            annotator="a", kind="pairwise", sample_ids=[a, b], value={"choice": "a", "winner": a}
        )
        ids += [a, b]
    cfg = config_for("dpo", "cpu")
    cfg.model, cfg.steps, cfg.batch_size, cfg.learning_rate = str(tiny_model_dir), 2, 4, 1e-2
    list(train(store, cfg))
    label, scores = newest_scorer(store, "cpu")
    assert label.startswith("policy checkpoint:") and label.endswith(str(tiny_model_dir))
    rewards = scores(ids)
    assert set(rewards) == set(ids) and all(math.isfinite(r) for r in rewards.values())
    assert len({round(r, 6) for r in rewards.values()}) > 1  # trained: not all zero
