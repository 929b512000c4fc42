"""The label-efficiency experiment: both arms rate the same answers, each arm picks pairs the way
it says (the project files' selection column), and the result holds both curves and the ratio."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from bench.learning import efficiency
from bench.learning.efficiency_summary import labels_to_reach, ratio


def rows(db, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_smoke_run_compares_the_arms_on_the_same_answers(tiny_model_dir, tmp_path):
    out, work = tmp_path / "result.json", tmp_path / "work"
    efficiency.main(
        ["--smoke", "--model", str(tiny_model_dir), "--out", str(out), "--workdir", str(work)]
    )
    result = json.loads(out.read_text())
    budgets = efficiency.SIZES["smoke"]["budgets"]
    assert result["name"] == "label_efficiency_dev" and result["details"]["seeds"] == [0, 1]

    later = {"random": [], "uncertain": []}
    for seed in (0, 1):
        arm_db = {arm: work / f"text_hash-s{seed}-{arm}.db" for arm in efficiency.ARMS}
        answers = (  # the candidates; held-out answers differ, each arm's policies wrote them
            "SELECT s.id, s.prompt_id, s.text FROM samples s JOIN prompts p ON p.id = s.prompt_id "
            "WHERE p.split = 'train' ORDER BY s.id"
        )
        assert rows(arm_db["random"], answers) == rows(arm_db["uncertain"], answers)
        picks = {
            arm: rows(
                db,
                "SELECT selection, sample_ids FROM ratings WHERE annotator = 'text_hash' "
                "AND kind = 'pairwise' ORDER BY id",
            )
            for arm, db in arm_db.items()
        }
        assert len(picks["random"]) == len(picks["uncertain"]) == budgets[-1]
        # the seed round is one set of random pairs, shared
        assert picks["random"][: budgets[0]] == picks["uncertain"][: budgets[0]]
        assert {s for s, _ in picks["uncertain"][: budgets[0]]} == {"random"}
        for arm in efficiency.ARMS:
            later[arm] += [s for s, _ in picks[arm][budgets[0] :]]
        # one DPO run per round after the shared seed round's
        runs = "SELECT COUNT(*) FROM runs WHERE status = 'finished'"
        assert rows(arm_db["uncertain"], runs) == [(len(budgets),)]
    assert set(later["random"]) == {"random"}
    assert set(later["uncertain"]) == {"uncertain", "random"}
    assert later["uncertain"].count("uncertain") > later["uncertain"].count("random")

    curves = result["details"]["curves"]["text_hash"]
    for arm in efficiency.ARMS:
        assert [p["budget"] for p in curves[arm]] == list(budgets)
        assert all(set(p["z"]) == {"0", "1"} and not p["errors"] for p in curves[arm])
    assert curves["random"][0]["z"] == curves["uncertain"][0]["z"]  # the shared checkpoint
    figures = {f["key"]: f for f in result["figures"]}
    ratio_fig = figures["efficiency.dev.text_hash.ratio"]
    assert ratio_fig["target"] == 1.5 and ratio_fig["status"] in ("pass", "short", "missing")
    share = figures["efficiency.dev.text_hash.uncertain_share"]["value"]
    uncertain = later["uncertain"]
    assert share == pytest.approx(100 * uncertain.count("uncertain") / len(uncertain))


def test_the_test_raters_need_the_reporting_run(capsys):
    with pytest.raises(SystemExit):
        efficiency.main(["--smoke", "--role", "test"])
    assert "may not look at the test raters" in capsys.readouterr().err


def test_labels_to_reach_interpolates_from_the_base_model():
    assert labels_to_reach([(25, 1.0), (50, 4.0)], 3.0) == pytest.approx(25 + 25 * 2 / 3)
    assert labels_to_reach([(25, 6.0)], 3.0) == pytest.approx(12.5)  # from (0 labels, gain 0)
    assert labels_to_reach([(25, 3.5), (50, 1.0), (100, 5.0)], 3.0) < 25  # the first crossing
    assert labels_to_reach([(25, 1.0), (50, 2.9)], 3.0) is None


def test_a_ratio_with_one_arm_short_of_the_gain_is_a_bound():
    assert ratio(60.0, 30.0, 150, 150) == (2.0, "")
    assert ratio(None, 50.0, 150, 150) == (3.0, "≥")
    assert ratio(75.0, None, 150, 150) == (0.5, "≤")
    assert ratio(None, None, 150, 150) == (None, "")


def synthetic(gains: dict[str, list[float]], budgets=(25, 50, 100, 150)) -> dict:
    """One rater, two seeds with the same curves: ``gains[arm]`` at each budget (the first is
    the shared seed round)."""
    from bench.learning.plan import Rater

    def arm(z: list[float], how: str) -> dict:
        points = [
            {"budget": b, "labels": b, "pairs": b, "z": g} for b, g in zip(budgets, z, strict=True)
        ]
        return {"db": "", "points": points, "selection": [how] * budgets[-1]}

    run = {
        "data": {},
        "base_mean": 0.5,
        "arms": {a: arm(z, "random" if a == "random" else "uncertain") for a, z in gains.items()},
    }
    return {"r": {"rater": Rater("r", "m:r", None), "seeds": {0: run, 1: run}}}


@pytest.mark.parametrize(
    ("gains", "value", "said"),
    [
        ({"random": [1.0, 2.0, 4.0, 5.0], "uncertain": [1.0, 4.0, 5.0, 6.0]}, 1.8, "1.80"),
        ({"random": [4.6, 5.0, 6.0, 7.0], "uncertain": [4.6, 6.0, 7.0, 8.0]}, None, "seed round"),
    ],
)
def test_the_ratio_is_not_claimed_when_both_arms_reach_the_gain_in_the_shared_seed_round(
    gains, value, said
):
    from bench.common import Result
    from bench.learning import efficiency_summary

    plan = efficiency.EfficiencyPlan("dev", "full", "default", [0, 1], ["dpo"], [])
    res = Result("label_efficiency_dev", "t", "full")
    efficiency_summary.report(res, plan, synthetic(gains))
    fig = next(f for f in res.to_dict()["figures"] if f["key"].endswith(".ratio"))
    assert fig["value"] == (None if value is None else pytest.approx(value, abs=0.01))
    assert said in fig["note"]


def figures(result: dict) -> str:
    """Every curve's labels and gains (times aside), comparable whatever they hold (NaN too)."""
    curves = result["details"]["curves"]
    return json.dumps(
        {
            rater: {
                arm: [{k: v for k, v in p.items() if k != "train_s"} for p in pts]
                for arm, pts in arms.items()
            }
            for rater, arms in curves.items()
        },
        sort_keys=True,
    )


class Killed(BaseException):
    """Stands for the process being killed: no handler of the bench catches it."""


def test_an_interrupted_run_resumes_where_it_stopped_with_the_same_figures(
    tiny_model_dir, tmp_path, monkeypatch
):
    def run(work, *extra):
        out = tmp_path / f"{work}.json"
        argv = ["--smoke", "--model", str(tiny_model_dir), "--seeds", "0"]
        efficiency.main([*argv, "--workdir", str(tmp_path / work), "--out", str(out), *extra])
        return json.loads(out.read_text())

    whole = run("whole")
    real, calls = efficiency.labelled_round, []

    def killed_on_the_fourth(ctx, db, arm, budget):
        calls.append((arm, budget))
        point = real(ctx, db, arm, budget)  # rated and trained, then killed before it was kept
        if len(calls) == 4:
            raise Killed
        return point

    monkeypatch.setattr(efficiency, "labelled_round", killed_on_the_fourth)
    with pytest.raises(Killed):
        run("interrupted")
    budgets = efficiency.SIZES["smoke"]["budgets"]
    assert calls[-1] == ("uncertain", budgets[1])

    calls.clear()
    monkeypatch.setattr(efficiency, "labelled_round", lambda *a: calls.append(a[2:]) or real(*a))
    resumed = run("interrupted", "--resume")
    # the three rounds kept are not done again; the killed one is, then the last
    assert calls == [("uncertain", budgets[1]), ("uncertain", budgets[2])]
    assert figures(resumed) == figures(whole)
    assert any("started 2 times" in n for n in resumed["notes"])
    db = tmp_path / "interrupted" / "text_hash-s0-uncertain.db"
    labels = "SELECT COUNT(*) FROM ratings WHERE annotator = 'text_hash' AND kind = 'pairwise'"
    assert rows(db, labels) == [(budgets[-1],)]  # the redone round rated nothing twice

    with pytest.raises(SystemExit, match="seeds"):
        run("interrupted", "--resume", "--seeds", "0,1")


def test_a_journal_carried_to_an_empty_work_folder_redoes_only_the_unfinished_seed(
    tiny_model_dir, tmp_path, monkeypatch
):
    journal = tmp_path / "tracked" / "journal.json"

    def run(work, *extra):
        out = tmp_path / f"{work}.json"
        argv = ["--smoke", "--model", str(tiny_model_dir), "--workdir", str(tmp_path / work)]
        efficiency.main([*argv, "--out", str(out), *extra])
        return json.loads(out.read_text())

    whole = run("whole")
    budgets = efficiency.SIZES["smoke"]["budgets"]
    real, calls = efficiency.labelled_round, []

    def killed_in_seed_1(ctx, db, arm, budget):
        if ctx["seed"] == 1 and budget == budgets[1]:
            raise Killed  # seed 0 finished, seed 1's seed round too
        return real(ctx, db, arm, budget)

    monkeypatch.setattr(efficiency, "labelled_round", killed_in_seed_1)
    with pytest.raises(Killed):
        run("first machine", "--journal", str(journal))

    def counted(ctx, db, arm, budget):
        calls.append((ctx["seed"], arm, budget))
        return real(ctx, db, arm, budget)

    monkeypatch.setattr(efficiency, "labelled_round", counted)
    carried = run("second machine", "--journal", str(journal), "--resume")
    # seed 0 comes from the journal alone; seed 1 is done again from its start, project included
    assert calls == [(1, "random", budgets[0])] + [
        (1, arm, b) for arm in efficiency.ARMS for b in budgets[1:]
    ]
    assert sorted(p.name for p in (tmp_path / "second machine").glob("*-s0*.db")) == []
    assert figures(carried) == figures(whole)
    assert not any("made again" in n for n in carried["notes"])
    assert any("started 2 times" in n for n in carried["notes"])


def test_raters_of_one_seed_drawn_from_projects_made_apart_are_noted():
    made = {"answers": "aa", "precision": "cpu (bfloat16, measured)"}
    assert efficiency.remade_notes("all", 0, [made, None], made) == []
    note = efficiency.remade_notes("all", 1, [made], {**made, "answers": "bb"})
    assert len(note) == 1 and "2 different sets of candidate answers" in note[0]
    other = efficiency.remade_notes("all", 1, [made], {**made, "precision": "cpu (float32)"})
    assert "precision cpu (bfloat16, measured), cpu (float32);" in other[0]
