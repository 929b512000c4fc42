"""Held-out measures: a paired gain with no spread is no gain, and an arena pair is read from the
policy's side."""

from __future__ import annotations

import math

import pytest

from bench.learning import summary
from bench.learning.evaluate import PolicyEval, paired_gain, win_rate


def policy(name: str, scores: list[float]) -> PolicyEval:
    ids = [i // 2 for i in range(len(scores))]  # two answers per prompt
    return PolicyEval(name, name, prompt_ids=ids, scores=scores)


def test_a_policy_that_answers_as_the_base_does_has_no_gain():
    base = policy("base", [0.2, 0.4, 0.5, 0.5, 0.9, 0.1])
    same = paired_gain(base, policy("same", list(base.scores)))
    assert same["z"] == 0.0 and same["no_spread"] and same["gain"] == 0.0
    shifted = paired_gain(base, policy("shifted", [s + 0.1 for s in base.scores]))
    assert shifted["z"] == 0.0 and shifted["no_spread"]  # se = 0 is no evidence, never +inf


def test_a_paired_gain_is_in_standard_errors_of_the_differences():
    base = policy("base", [0.2, 0.4, 0.5, 0.5, 0.9, 0.1])
    after = policy("after", [0.4, 0.4, 0.6, 0.8, 0.9, 0.3])
    g = paired_gain(base, after)  # per-prompt differences 0.1, 0.2, 0.1
    assert g["gain"] == pytest.approx(0.4 / 3)
    assert g["se"] == pytest.approx(0.0577350 / math.sqrt(3), rel=1e-4)
    assert g["z"] == pytest.approx(g["gain"] / g["se"]) and not g["no_spread"]
    assert g["lo"] < g["gain"] < g["hi"]


def test_win_rate_is_read_from_the_policys_side():
    board = {
        "pairs": [
            {"a": "default", "b": "checkpoint:3", "win_rate": 0.7, "ci95": [0.6, 0.8], "n": 64}
        ]
    }
    assert win_rate(board, "checkpoint:3", "default") == pytest.approx(
        {"win_rate": 0.3, "lo": 0.2, "hi": 0.4, "n": 64}
    )
    assert win_rate(board, "default", "checkpoint:3")["win_rate"] == 0.7
    assert math.isnan(win_rate({"pairs": []}, "checkpoint:3", "default")["win_rate"])


def test_figures_are_means_over_seeds_with_each_seed_named():
    from bench.common import Result

    def run(z: float, win: float) -> dict:
        return {
            "gain": {"gain": z / 10, "z": z, "lo": 0, "hi": 0, "no_spread": z == 0},
            "win": {"win_rate": win},
            "ratings": 150,
        }

    res = Result("learning_dev", "t", "full")
    runs = {0: run(5.0, 0.6), 1: run(7.0, 0.7), 2: {"error": "out of memory"}}
    summary._gain_figure(res, "learn.dev.x.dpo_large_se", "x: DPO", runs, 6.0)
    fig = res.figures[0]
    assert fig["value"] == 6.0 and fig["status"] == "pass"
    assert (
        "+5.0, +7.0 (seeds 0, 1)" in fig["note"] and "seed 2 failed: out of memory" in fig["note"]
    )
    assert "win rate vs base 65%" in fig["note"]
