"""Statistics checked against a small case computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json

import pytest

import main
from core.stats import cohen_kappa, format_stats, project_stats
from core.store import ProjectStore


def add_prompt(store: ProjectStore, text: str) -> int:
    (pid,), _ = store.add_prompts([{"text": text}], source="test")
    return pid


@pytest.fixture
def hand_case(store):
    """Four items, each a (default sample d, checkpoint sample c) pair; F = d wins, S = c wins.

    alice: F F S T   (seconds 2, 4, 10, none)        bob: F S S T   (seconds 5 each)
    carol: S on item 1 only. Scores (overall) of three more default samples:
    alice 0, .5, 1 and bob .25, .5, 1 (plus fluency from alice only)."""
    ckpt = store.add_checkpoint(
        run_id=None, step=7, kind="policy", path="x", sha256="", base_model="default", adapter=True
    )
    items = []
    for i in range(4):
        p = add_prompt(store, f"prompt {i}")
        d, c = store.add_samples(
            [
                {"prompt_id": p, "text": "d", "model": "default"},
                {"prompt_id": p, "text": "c", "model": f"checkpoint:{ckpt}", "checkpoint_id": ckpt},
            ]
        )
        items.append((d, c))

    def vote(who, item, label, seconds=None, flip=False):
        d, c = items[item]
        shown = [c, d] if flip else [d, c]  # sides are randomised: the label must not care
        if label == "T":
            value = {"choice": "tie", "winner": None}
        else:
            winner = d if label == "F" else c
            value = {"choice": "a" if shown[0] == winner else "b", "winner": winner}
        return store.add_rating(
            annotator=who, kind="pairwise", sample_ids=shown, value=value, seconds=seconds
        )

    for i, (label, secs) in enumerate(zip("FFST", (2, 4, 10, None), strict=True)):
        vote("alice", i, label, secs)
    for i, label in enumerate("FSST"):
        vote("bob", i, label, 5, flip=i % 2 == 0)
    vote("carol", 0, "S")
    undone = vote("bob", 1, "F", 99)  # undone: must not count anywhere
    store.set_superseded(undone)
    store.add_rating(annotator="bob", kind="skip", sample_ids=list(items[2]), value={})

    p = add_prompt(store, "scored")
    scored = store.add_samples([{"prompt_id": p, "text": t, "model": "default"} for t in "xyz"])
    for s, a, b in zip(scored, (0.0, 0.5, 1.0), (0.25, 0.5, 1.0), strict=True):
        store.add_rating(
            annotator="alice",
            kind="score",
            sample_ids=[s],
            value={"scores": {"overall": a, "fluency": 1.0}},
        )
        store.add_rating(
            annotator="bob", kind="score", sample_ids=[s], value={"scores": {"overall": b}}
        )
    return store, ckpt


def test_cohen_kappa_by_hand():
    # p_o = 3/4; p_e = .5·.25 (F) + .25·.5 (S) + .25·.25 (T) = .3125 → (.75 − .3125)/.6875 = 7/11
    assert cohen_kappa(list("FFST"), list("FSST")) == pytest.approx(7 / 11)
    assert cohen_kappa(list("FF"), list("FF")) is None  # p_e = 1: undefined
    assert cohen_kappa(list("FS"), list("SF")) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None


def test_pairwise_agreement_matches_the_hand_computation(hand_case):
    store, _ = hand_case
    pw = project_stats(store)["agreement"]["pairwise"]
    assert pw["items"] == 4 and pw["annotators"] == 3
    pairs = {tuple(p["annotators"]): p for p in pw["pairs"]}
    assert pairs[("alice", "bob")] == {
        "annotators": ["alice", "bob"],
        "items": 4,
        "raw_agreement": 0.75,
        "kappa": round(7 / 11, 4),
    }
    # one shared item, opposite labels: p_o = 0, p_e = 0 → kappa 0
    assert pairs[("alice", "carol")] == {
        "annotators": ["alice", "carol"],
        "items": 1,
        "raw_agreement": 0.0,
        "kappa": 0.0,
    }
    assert pairs[("bob", "carol")]["raw_agreement"] == 0.0
    assert pw["raw_agreement"] == 0.5  # (3 + 0 + 0) agreeing of (4 + 1 + 1) shared judgements
    # Nominal alpha. Coincidences: item 1 (F,F,S) gives FF 1, FS 1, SF 1; item 2 (F,S) FS 1, SF 1;
    # item 3 SS 2; item 4 TT 2. n_F = 3, n_S = 4, n_T = 2, n = 9.
    # D_o = 4/9; D_e = 2(3·4 + 3·2 + 4·2)/(9·8) = 13/18; alpha = 1 − (4/9)/(13/18) = 5/13.
    assert pw["alpha_nominal"] == pytest.approx(5 / 13, abs=1e-4)


def test_score_agreement_matches_the_hand_computation(hand_case):
    store, _ = hand_case
    scores = project_stats(store)["agreement"]["scores"]
    overall = scores["overall"]
    assert overall["items"] == 3 and overall["annotators"] == 2
    # Interval: units {0, .25}, {.5, .5}, {1, 1}; n = 6.
    # D_o = 2·.25²/6 = .125/6; D_e = 2·(6·Σx² − (Σx)²)/(6·5) = 2·(15.375 − 10.5625)/30 = 9.625/30
    # alpha = 1 − (.125·30)/(6·9.625) = 1 − 5/77 = 72/77.
    assert overall["alpha_interval"] == pytest.approx(72 / 77, abs=1e-4)
    # Ordinal: frequencies n(0)=1, n(.25)=1, n(.5)=2, n(1)=2; δ²(c,k) = (Σ_{g=c..k} n_g − (n_c+n_k)/2)².
    # δ²: (0,.25)=1, (0,.5)=6.25, (0,1)=20.25, (.25,.5)=2.25, (.25,1)=12.25, (.5,1)=4.
    # D_o = 2·1/6 = 1/3; D_e = 2·(1 + 2·6.25 + 2·20.25 + 2·2.25 + 2·12.25 + 4·4)/30 = 198/30.
    # alpha = 1 − (1/3)/(6.6) = 94/99.
    assert overall["alpha_ordinal"] == pytest.approx(94 / 99, abs=1e-4)
    # fluency: only alice scored it, so nothing overlaps
    assert scores["fluency"] == {
        "items": 0,
        "annotators": 0,
        "alpha_interval": None,
        "alpha_ordinal": None,
    }


def test_speed_counts_and_distribution(hand_case):
    store, _ = hand_case
    stats = project_stats(store)
    pace = stats["speed"]["annotators"]
    # alice: 4 pairwise + 3 scores; timed 2, 4, 10 s → median 4, 3600·3/16 = 675 per hour
    assert pace["alice"] == {
        "ratings": 7,
        "timed": 3,
        "median_seconds": 4.0,
        "items_per_hour": 675.0,
    }
    assert pace["bob"] == {"ratings": 7, "timed": 4, "median_seconds": 5.0, "items_per_hour": 720.0}
    assert pace["carol"] == {
        "ratings": 1,
        "timed": 0,
        "median_seconds": None,
        "items_per_hour": None,
    }
    assert stats["speed"]["all"]["timed"] == 7 and stats["speed"]["all"]["median_seconds"] == 5.0
    dist = stats["score_distribution"]["overall"]
    # 0 | .25 | .5 .5 | – | 1 1   over [0, .2, .4, .6, .8, 1]
    assert dist["counts"] == [1, 1, 2, 0, 2] and dist["n"] == 6
    assert dist["mean"] == pytest.approx(3.25 / 6, abs=1e-4)
    assert stats["score_distribution"]["fluency"]["counts"] == [0, 0, 0, 0, 3]


def test_per_checkpoint_win_rates(hand_case):
    store, ckpt = hand_case
    models = project_stats(store)["per_checkpoint"]
    c = models[f"checkpoint:{ckpt}"]
    d = models["default"]
    # checkpoint wins: alice 1 + bob 2 + carol 1 = 4; default wins 3; ties 2 → (4 + 1)/9
    assert c["pairwise"] == {"wins": 4, "losses": 3, "ties": 2, "win_rate": round(5 / 9, 4)}
    assert d["vs"][f"checkpoint:{ckpt}"] == {
        "wins": 3,
        "losses": 4,
        "ties": 2,
        "win_rate": round(4 / 9, 4),
    }
    assert c["checkpoint_id"] == ckpt and c["step"] == 7 and c["samples"] == 4
    assert c["ratings"] == 9 and c["mean_score"] is None
    assert d["ratings"] == 9 + 6 and d["samples"] == 7
    assert d["mean_score"] == pytest.approx(3.25 / 6, abs=1e-4)


def test_stats_json_keeps_the_old_keys_and_adds_the_new(hand_case, capsys):
    store, _ = hand_case
    old = set(store.basic_stats())
    assert main.main(["--db", str(store.path), "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    new = {"agreement", "speed", "per_checkpoint", "score_distribution", "arena", "run_details"}
    assert old | new == set(stats) and "eval_prompts" in old
    assert stats["arena"] is None and stats["run_details"] == []  # no arena, no runs yet
    assert set(stats["agreement"]) == {"pairwise", "thumbs", "scores"}
    assert main.main(["--db", str(store.path), "stats"]) == 0
    text = capsys.readouterr().out
    assert "kappa 0.64" in text and "alpha interval 0.94" in text and "675 items/h" in text


def test_stats_of_an_empty_project(store):
    stats = project_stats(store)
    assert stats["agreement"]["pairwise"] == {
        "items": 0,
        "annotators": 0,
        "raw_agreement": None,
        "alpha_nominal": None,
        "pairs": [],
    }
    assert stats["per_checkpoint"] == {} and stats["score_distribution"] == {}
    assert format_stats(stats)
