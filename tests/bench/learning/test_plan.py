"""The protocol's guard rails: the test raters are for the reporting run alone, and a run uses
exactly the raters and prompts of its role."""

from __future__ import annotations

import pytest

from bench.learning import data, plan, preferences, prompt_sets


def parse(*argv: str):
    return plan.parse(list(argv), "test")


def error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(*argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_a_dev_run_uses_every_dev_rater_and_three_seeds():
    _args, p = parse()
    assert (p.role, p.seeds, p.report) == ("dev", [0, 1, 2], False)
    assert [r.name for r in p.raters] == list(preferences.raters("dev"))
    assert {r.spec for r in p.raters} == {
        f"bench.learning.preferences:{n}" for n in preferences.raters("dev")
    }
    groups = p.projects()  # raters of the same sources share a training project
    assert sorted(groups) == ["all", "english"]
    assert {r.name for r in groups["english"]} == {"sentiment", "avoid_the"}


@pytest.mark.parametrize(
    "argv, why",
    [
        (("--role", "test"), "may not look at the test raters"),
        (("--role", "test", "--set", "dpo_large:lr=1e-4"), "a tuning run (--set) may not look"),
        (("--role", "test", "--report", "--raters", "formality"), "every test rater"),
        (("--role", "test", "--report", "--seeds", "0,1"), "at least 3 seeds"),
        (("--report",), "--report is for the reporting run"),
        (("--raters", "formality"), "formality is a test rater; the dev raters are"),
        (("--raters", "nonsense"), "nonsense is unknown"),
        (("--seeds", "0,0,1"), "a seed twice"),
        (("--runs", "rloo"), "rloo needs reward"),
    ],
)
def test_runs_that_would_break_the_protocol_are_refused(capsys, argv, why):
    assert why in error(capsys, *argv)


def test_the_reporting_run_may_use_the_test_raters(monkeypatch):
    monkeypatch.setattr(plan, "code_version", lambda: "abc1234")
    _args, p = parse("--role", "test", "--report", "--set", "rloo:kl_coef=0.1")
    assert [r.name for r in p.raters] == list(preferences.raters("test"))
    assert p.settings == {"rloo": ["kl_coef=0.1"]}
    monkeypatch.setattr(plan, "code_version", lambda: "abc1234+changes")
    with pytest.raises(SystemExit):
        parse("--role", "test", "--report")


def test_each_rater_trains_on_train_prompts_and_is_judged_on_its_roles_prompts_of_its_sources():
    for name, spec in preferences.RATERS.items():
        sources = spec.sources
        train = data.prompt_texts("train", sources, 100)
        held = data.prompt_texts(spec.role, sources, 32)
        assert {prompt_sets.split_of(t) for t in train} == {"train"}
        assert {prompt_sets.split_of(t) for t in held} == {spec.role}
        mine = {p.text for p in prompt_sets.all_prompts() if sources is None or p.source in sources}
        assert set(train) | set(held) <= mine, name


def test_training_answers_per_prompt_cover_the_ratings():
    size = plan.SIZES["full"]
    assert data.answers_per_prompt(size, 100) == 4
    k = data.answers_per_prompt(size, 40)  # language_match: 40 train prompts
    assert k % 2 == 0 and 40 * k // 2 >= size["ratings"]


def test_rating_limit_finds_the_first_ratings_that_hold_n_pairs():
    choices = ["a", "tie", "b", "both_bad", "a", "b"]
    assert data.rating_limit(choices, 2) == 3
    assert data.rating_limit(choices, 4) == 6
    assert data.rating_limit(choices, 10) == 6  # fewer than asked: all of them
    assert data.rating_limit(["tie"], 1) == 0
