"""The arena's statistics: hand-solved Bradley–Terry fits, the tie rule, the anchor, degenerate
arenas, interval coverage in simulated arenas, the leaderboard shape, and the power estimate."""

from __future__ import annotations

import json
import math
import random
import re

import numpy as np
import pytest

from core.evaluation.bradley_terry import (
    ELO_PER_LOGIT,
    bootstrap,
    bradley_terry,
    leaderboard,
    prior_driven,
)
from core.evaluation.head_to_head import (
    comparisons_to_separate,
    describe_pair,
    head_to_head,
    win_matrix,
    win_rate_interval,
)

EXACT = 1e-3  # rating points: the ridge moves a well-posed fit by far less than this


def games(a: str, b: str, a_wins: int, b_wins: int, ties: int = 0) -> list[tuple[str, str, str]]:
    return [(a, b, "a")] * a_wins + [(a, b, "b")] * b_wins + [(a, b, "tie")] * ties


def simulated(p: float, n: int, rng: np.random.Generator, tie: float = 0.0) -> list[tuple]:
    """n comparisons of A against B: A wins with probability p − tie/2, ties with probability tie."""
    u = rng.random(n)
    outcome = np.where(u < tie, "tie", np.where(u < tie + p - tie / 2, "a", "b"))
    return [("A", "B", o) for o in outcome]


# ---- Bradley–Terry by hand ---------------------------------------------------------------------
def test_two_models_three_wins_of_four() -> None:
    # MLE: σ(θA − θB) = 3/4, so sA/sB = 3 and B = 1000 − 400·log10(3)
    ratings = bradley_terry(games("A", "B", 3, 1), ["A", "B"])
    assert ratings["A"] == 1000.0
    assert ratings["B"] == pytest.approx(1000 - 400 * math.log10(3), abs=EXACT)


def test_three_models_whose_results_fit_exactly() -> None:
    # Strengths 4:2:1 predict A–B 2/3, B–C 2/3, A–C 4/5; observed exactly so, hence the MLE
    comparisons = games("A", "B", 2, 1) + games("B", "C", 2, 1) + games("A", "C", 4, 1)
    ratings = bradley_terry(comparisons, ["A", "B", "C"])
    assert ratings["B"] == pytest.approx(1000 - 400 * math.log10(2), abs=EXACT)
    assert ratings["C"] == pytest.approx(1000 - 400 * math.log10(4), abs=EXACT)


def test_three_models_in_a_cycle_solved_by_hand() -> None:
    # A–B 2:1, B–C 2:1, A–C 2:1 (3 games each). By symmetry sA/sB = sB/sC = s; A's 4 wins of 6
    # must equal 3·s/(1+s) + 3·s²/(1+s²), which expands to 2s³ − s² − s − 4 = 0 (B's equation holds).
    comparisons = games("A", "B", 2, 1) + games("B", "C", 2, 1) + games("A", "C", 2, 1)
    s = next(r.real for r in np.roots([2, -1, -1, -4]) if abs(r.imag) < 1e-12)
    ratings = bradley_terry(comparisons, ["A", "B", "C"])
    assert ratings["B"] == pytest.approx(1000 - 400 * math.log10(s), abs=EXACT)
    assert ratings["C"] == pytest.approx(1000 - 800 * math.log10(s), abs=EXACT)


def test_fit_satisfies_the_likelihood_equations() -> None:
    # At the MLE each model's expected wins equal its observed wins (ties as half)
    rng = random.Random(4)
    models = ["m0", "m1", "m2", "m3", "m4"]
    comparisons = [(*rng.sample(models, 2), rng.choice("aab")) for _ in range(300)]
    comparisons += [(*rng.sample(models, 2), "tie") for _ in range(40)]
    ratings = bradley_terry(comparisons, models)
    theta = np.array([ratings[m] for m in models]) / ELO_PER_LOGIT
    wins = win_matrix(comparisons, models)
    expected = (wins + wins.T) / (1 + np.exp(theta[None, :] - theta[:, None]))
    np.testing.assert_allclose(expected.sum(axis=1), wins.sum(axis=1), atol=1e-3)


def test_a_tie_is_half_a_win_for_each_side() -> None:
    assert bradley_terry([("A", "B", "tie")], ["A", "B"])["B"] == pytest.approx(1000, abs=EXACT)
    # one win and one tie: A has 1.5 wins to B's 0.5, so sA/sB = 3
    ratings = bradley_terry([("A", "B", "a"), ("B", "A", "tie")], ["A", "B"])
    assert ratings["B"] == pytest.approx(1000 - 400 * math.log10(3), abs=EXACT)
    np.testing.assert_array_equal(win_matrix([("A", "B", "tie")], ["A", "B"]), [[0, 0.5], [0.5, 0]])


def test_first_model_is_1000_whatever_the_order() -> None:
    models = ["base", "round 1", "round 2"]
    comparisons = games("base", "round 1", 3, 5, 2) + games("round 1", "round 2", 4, 4, 1)
    comparisons += games("base", "round 2", 2, 6)
    reference = bradley_terry(comparisons, models)
    rng = random.Random(0)
    for _ in range(5):
        shuffled = [(b, a, {"a": "b", "b": "a"}[o]) if o != "tie" and rng.random() < 0.5 else
                    (a, b, o) for a, b, o in rng.sample(comparisons, len(comparisons))]  # fmt: skip
        ratings = bradley_terry(shuffled, models)
        assert ratings["base"] == 1000.0
        for m in models:
            assert ratings[m] == pytest.approx(reference[m], abs=1e-6)
    assert bradley_terry(comparisons, ["round 2", "base", "round 1"])["round 2"] == 1000.0


# ---- degenerate arenas -------------------------------------------------------------------------
def test_unbeaten_model_gets_a_finite_rating_and_interval() -> None:
    comparisons = games("base", "round 1", 4, 4) + games("round 2", "base", 12, 0)
    board = leaderboard(comparisons, ["base", "round 1", "round 2"], rounds=200)
    top = board["models"][0]
    assert top["model"] == "round 2" and math.isfinite(top["rating"]) and top["rating"] > 1000
    assert all(math.isfinite(x) for x in top["ci95"])
    assert board["pairs"][0]["win_rate"] == 1.0 and board["pairs"][0]["ci95"][0] < 0.8


def test_empty_and_unlinked_models_have_no_rating() -> None:
    assert bradley_terry([], ["A", "B"]) == {"A": None, "B": None}
    assert leaderboard([], []) == {"models": [], "pairs": []}
    board = leaderboard([], ["A", "B"], rounds=10)
    assert board["models"] == [
        {"model": "A", "rating": None, "ci95": None, "comparisons": 0},
        {"model": "B", "rating": None, "ci95": None, "comparisons": 0},
    ]
    assert board["pairs"] == []
    # C and D only met each other: nothing links them to the anchor A; E never played
    comparisons = games("A", "B", 3, 2) + games("C", "D", 2, 2)
    ratings = bradley_terry(comparisons, ["A", "B", "C", "D", "E"])
    assert ratings["A"] == 1000.0 and ratings["B"] is not None
    assert ratings["C"] is None and ratings["D"] is None and ratings["E"] is None
    assert bootstrap(comparisons, ["A", "B", "C", "D", "E"], rounds=20)["ratings"]["C"] is None
    # the first listed model never played: the anchor moves to the next one that did
    assert bradley_terry(comparisons, ["E", "B", "A"] + ["C", "D"])["B"] == 1000.0


@pytest.mark.parametrize(
    ("comparison", "message"),
    [(("A", "Z", "a"), "'Z' is not in models"), (("A", "B", "win"), "expected 'a', 'b' or 'tie'"),
     (("A", "A", "a"), "compared with itself"), (("A", "B"), "expected (model_a")],
)  # fmt: skip
def test_bad_comparisons_are_named(comparison: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=r"comparison 1: .*" + re.escape(message)):
        bradley_terry([("A", "B", "a"), comparison], ["A", "B"])


# ---- intervals ---------------------------------------------------------------------------------
def test_wilson_interval_by_hand() -> None:
    # Wilson, 6 of 10: (6 + z²/2 ± z·sqrt(6·4/10 + z²/4)) / (10 + z²) with z = 1.95996
    lo, hi = win_rate_interval(0.6, 10)
    assert (lo, hi) == pytest.approx((0.312674, 0.831820), abs=1e-6)
    # ties shrink one comparison's variance by t/4, so the interval narrows
    lo_t, hi_t = win_rate_interval(0.6, 100, tie_rate=0.4)
    lo_0, hi_0 = win_rate_interval(0.6, 100)
    assert lo_0 < lo_t < 0.6 < hi_t < hi_0
    assert win_rate_interval(0.5, 3, tie_rate=1.0)[0] < 0.5  # all ties still leave doubt


def test_win_rate_interval_covers_in_simulated_arenas() -> None:
    rng = np.random.default_rng(11)
    for tie in (0.0, 0.3):
        covered = 0
        for _ in range(200):
            pair = head_to_head(simulated(0.6, 200, rng, tie), ["A", "B"])[0]
            covered += pair["ci95"][0] <= 0.6 <= pair["ci95"][1]
        assert 0.90 <= covered / 200 <= 0.99, (tie, covered)


def test_rating_interval_covers_in_simulated_arenas() -> None:
    rng = np.random.default_rng(12)
    true_b = 1000 - 400 * math.log10(0.6 / 0.4)  # B's rating when A wins 60 % (no ties)
    covered = 0
    for arena in range(200):
        lo, hi = bootstrap(simulated(0.6, 200, rng), ["A", "B"], seed=arena)["ratings"]["B"]
        covered += lo <= true_b <= hi
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_bootstrap_width_matches_normal_theory() -> None:
    # 240 of 400: the logit's standard error is 1/sqrt(n·p(1−p)), so the interval spans about
    # 2·1.96·ELO_PER_LOGIT/sqrt(96) rating points
    comparisons = games("A", "B", 240, 160)
    lo, hi = bootstrap(comparisons, ["A", "B"], rounds=2000, seed=1)["ratings"]["B"]
    assert hi - lo == pytest.approx(2 * 1.96 * ELO_PER_LOGIT / math.sqrt(96), rel=0.12)
    assert lo < bradley_terry(comparisons, ["A", "B"])["B"] < hi
    assert bootstrap(comparisons, ["A", "B"], rounds=50, seed=3) == bootstrap(
        comparisons, ["A", "B"], rounds=50, seed=3
    )


# ---- leaderboard and summaries -----------------------------------------------------------------
def test_leaderboard_shape_and_order() -> None:
    models = ["base", "round 1", "round 2"]
    comparisons = games("base", "round 1", 30, 50, 10) + games("round 2", "round 1", 60, 30)
    comparisons += games("base", "round 2", 20, 40, 5)
    board = leaderboard(comparisons, models, rounds=200)
    json.dumps(board)
    assert set(board) == {"models", "pairs"}
    assert [r["model"] for r in board["models"]] == ["round 2", "round 1", "base"]
    for row in board["models"]:
        assert set(row) == {"model", "rating", "ci95", "comparisons"}
        assert row["ci95"][0] <= row["rating"] <= row["ci95"][1]
    assert {r["model"]: r["comparisons"] for r in board["models"]} == {
        "base": 155, "round 1": 180, "round 2": 155,
    }  # fmt: skip
    first = board["pairs"][0]
    assert set(first) == {"a", "b", "win_rate", "ci95", "n"}
    assert (first["a"], first["b"], first["n"]) == ("round 2", "round 1", 90)
    assert first["win_rate"] == pytest.approx(60 / 90, abs=1e-4)
    third = board["pairs"][2]  # seen from round 1's side: 50 wins and 10 ties of 90
    assert (third["a"], third["b"], third["win_rate"]) == (
        "round 1",
        "base",
        pytest.approx(55 / 90, abs=1e-4),
    )


def test_comparisons_to_separate() -> None:
    assert (
        comparisons_to_separate(0.6) == 194
    )  # ((1.96·0.5 + 0.8416·sqrt(0.24)) / 0.1)², power 80 %
    assert 150 <= comparisons_to_separate(0.6) <= 300
    assert comparisons_to_separate(0.4) == 194
    assert comparisons_to_separate(0.6, n_so_far=150) == 44
    assert comparisons_to_separate(0.5) is None
    assert comparisons_to_separate(0.6, tie_rate=0.3) < 194  # ties make each comparison less noisy
    # at power 50 % the answer is where the score interval around 0.6 just stops touching 0.5
    needed = comparisons_to_separate(0.6, power=0.5)
    assert win_rate_interval(0.6, needed)[0] > 0.5 >= win_rate_interval(0.6, needed - 1)[0]


def test_describe_pair() -> None:
    separated = {"a": "round 2", "b": "round 3", "win_rate": 0.36, "ci95": [0.28, 0.45], "n": 120}
    assert describe_pair(separated) == "round 3 beat round 2: 64 % [55–72 %], 120 comparisons"
    close = {"a": "round 3", "b": "round 2", "win_rate": 0.55, "ci95": [0.46, 0.64], "n": 120}
    assert describe_pair(close) == (
        "round 3 vs round 2: 55 % [46–64 %], 120 comparisons; not separated yet: "
        f"about {comparisons_to_separate(0.55, 120)} more comparisons would tell at 95 %"
    )
    level = {"a": "x", "b": "y", "win_rate": 0.5, "ci95": [0.3, 0.7], "n": 20}
    assert describe_pair(level).startswith("x and y are level: 50 % [30–70 %], 20 comparisons")
    assert describe_pair({**level, "n": 0}) == "x vs y: no comparisons yet"


def test_prior_driven_names_models_the_data_cannot_place() -> None:
    assert prior_driven(games("A", "B", 3, 1), ["A", "B"]) == []
    assert prior_driven(games("A", "B", 0, 0, 1), ["A", "B"]) == []  # a tie is half a win each way
    unbeaten = games("base", "round 1", 4, 4) + games("round 2", "base", 12, 0)
    assert prior_driven(unbeaten, ["base", "round 1", "round 2"]) == ["round 2"]
    # the anchor lost every comparison: everything is infinitely far above it
    beaten = games("base", "round 1", 0, 3) + games("round 1", "round 2", 2, 2)
    assert prior_driven(beaten, ["base", "round 1", "round 2"]) == ["round 1", "round 2"]
    # B beat C, C beat A, A beat B: a cycle pins every ratio
    assert (
        prior_driven(
            games("A", "B", 1, 0) + games("B", "C", 1, 0) + games("C", "A", 1, 0), list("ABC")
        )
        == []
    )
