"""Scripted raters: loading specs, built-ins, and the rows rate_auto writes in each mode."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from core import raters
from core.raters import RateProgress, RaterError, ScriptedRater, load_rater, rate_auto
from core.store import ProjectStore

RATER_FILE = """
def by_length(prompt, response):
    return min(1.0, len(response) / 10)

def broken(prompt, response):
    return 1.5

def nan(prompt, response):
    return float("nan")

def text(prompt, response):
    return "0.5"

def boom(prompt, response):
    raise KeyError("oops")

NOT_CALLABLE = 3
"""


@pytest.fixture
def store(tmp_path: Path):
    s = ProjectStore(tmp_path / "p.db")
    yield s
    s.close()


@pytest.fixture
def rater_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rater.py"
    path.write_text(RATER_FILE)
    return path


def add_prompt(store: ProjectStore, text: str) -> int:
    (pid,), _ = store.add_prompts([{"text": text}])
    return pid


def make_project(store: ProjectStore, per_prompt: tuple[int, ...] = (4, 3)) -> list[list[int]]:
    """Prompts with samples of lengths 1, 2, 3, ... words apart enough for clear winners."""
    groups = []
    for i, k in enumerate(per_prompt):
        pid = add_prompt(store, f"prompt {i}")
        texts = ["word " * (10 * (j + 1)) for j in range(k)]
        groups.append(
            store.add_samples(
                [{"prompt_id": pid, "text": t, "model": "test", "params": {}} for t in texts]
            )
        )
    return groups


def run(gen) -> list[RateProgress]:
    return list(gen)


def live(store: ProjectStore, annotator: str = "bot") -> list[dict]:
    return [r for r in store.ratings() if r["annotator"] == annotator]


# ---- loading ----------------------------------------------------------------------------------
def test_load_by_module_by_file_and_builtin(rater_file):
    assert load_rater("core.raters:length")("p", "one two") == pytest.approx(0.02)
    assert load_rater(f"{rater_file}:by_length")("p", "12345") == 0.5
    builtin = load_rater("no_repetition")
    assert isinstance(builtin, ScriptedRater) and builtin.spec == "no_repetition"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("just_a_name", r"not a rater spec.*module:function"),
        ("no_such_module_xyz:f", r"module 'no_such_module_xyz' not found"),
        ("/no/such/file.py:f", r"file /no/such/file\.py not found"),
        ("core.raters:missing", r"core\.raters has no attribute 'missing'"),
        ("core.raters:TIE_MARGIN", r"TIE_MARGIN is a float, not a function"),
        ("core.raters:", r"give both parts"),
    ],
)
def test_load_errors(spec, message):
    with pytest.raises(RaterError, match=message):
        load_rater(spec)


def test_file_errors(rater_file, tmp_path):
    with pytest.raises(RaterError, match="has no attribute 'nope'"):
        load_rater(f"{rater_file}:nope")
    with pytest.raises(RaterError, match="NOT_CALLABLE is a int"):
        load_rater(f"{rater_file}:NOT_CALLABLE")
    bad = tmp_path / "syntax.py"
    bad.write_text("def f(:\n")
    with pytest.raises(RaterError, match="running .*syntax.py failed"):
        load_rater(f"{bad}:f")


@pytest.mark.parametrize(("name", "shown"), [("broken", "1.5"), ("nan", "nan"), ("text", "'0.5'")])
def test_bad_values_name_the_spec_and_value(rater_file, name, shown):
    spec = f"{rater_file}:{name}"
    with pytest.raises(RaterError, match=rf"rater .*my_rater\.py:{name} returned {shown}"):
        load_rater(spec)("p", "r")


def test_rater_exception_is_wrapped(rater_file):
    with pytest.raises(RaterError, match=r"my_rater\.py:boom raised KeyError"):
        load_rater(f"{rater_file}:boom")("p", "r")


# ---- built-ins --------------------------------------------------------------------------------
def test_builtins_are_in_range_and_point_the_right_way():
    long, short = "word " * 200, "Paris."
    assert raters.length("p", long) == 1.0 and raters.length("p", short) < 0.1
    assert raters.concise("p", short) == 1.0 and raters.concise("p", long) < 0.2
    assert raters.concise("p", "   ") == 0.0
    assert raters.sentiment("p", "I love this, it is wonderful!") > 0.8
    assert raters.sentiment("p", "This is terrible and I hate it.") < 0.2
    assert raters.no_repetition("p", "the cat sat on the mat") == 1.0
    assert raters.no_repetition("p", "go go go go go go go go") < 0.2
    assert raters.no_repetition("p", "") == 0.0
    for f in raters.BUILTIN_RATERS.values():
        for text in ["", "hi", long, "你好世界 🌍"]:
            assert 0.0 <= f("p", text) <= 1.0 and math.isfinite(f("p", text))


# ---- rate_auto --------------------------------------------------------------------------------
def test_score_mode(store):
    groups = make_project(store)
    progress = run(rate_auto(store, "length", mode="score", annotator="bot"))
    assert progress[0] == RateProgress(0, 7) and progress[-1].done == progress[-1].total == 7
    rows = live(store)
    assert [r["sample_ids"] for r in rows] == [[s] for g in groups for s in g]
    assert {r["kind"] for r in rows} == {"score"}
    assert rows[0]["value"] == {"scores": {"overall": 0.1}, "rater": "length"}
    assert rows[0]["prompt_id"] == store.db["samples"].get(groups[0][0])["prompt_id"]
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in rows)
    assert store.count("annotators", "name = 'bot'") == 1


def test_thumbs_mode(store):
    make_project(store, (6,))
    run(rate_auto(store, raters.length, mode="thumbs", annotator="bot", rater_spec="x:len"))
    values = [r["value"] for r in live(store)]
    assert [v["up"] for v in values] == [False] * 4 + [True] * 2
    assert values[-1] == {"up": True, "scores": [0.6], "rater": "x:len"}


def test_pairwise_mode(store):
    groups = make_project(store, (4, 3))
    run(rate_auto(store, "length", mode="pairwise", annotator="bot", seed=1))
    rows = live(store)
    # consecutive pairs per prompt; the odd sample of the 3-sample prompt stays unrated
    assert [sorted(r["sample_ids"]) for r in rows] == [groups[0][:2], groups[0][2:], groups[1][:2]]
    for r in rows:
        a, b = r["sample_ids"]
        v = r["value"]
        assert r["kind"] == "pairwise" and v["rater"] == "length"
        assert v["winner"] == max(a, b)  # longer text, higher id
        assert v["choice"] == ("a" if v["winner"] == a else "b")
        assert (
            v["scores"][0 if v["choice"] == "a" else 1]
            > v["scores"][1 if v["choice"] == "a" else 0]
        )


def test_pairwise_tie_and_shuffled_sides(store):
    pid = add_prompt(store, "p")
    store.add_samples([{"prompt_id": pid, "text": "same", "model": "test", "params": {}}] * 40)
    run(rate_auto(store, "length", mode="pairwise", annotator="bot", seed=3))
    rows = live(store)
    assert len(rows) == 20
    assert all(r["value"]["choice"] == "tie" and r["value"]["winner"] is None for r in rows)
    swapped = sum(r["sample_ids"][0] > r["sample_ids"][1] for r in rows)
    assert 0 < swapped < 20


def test_rank_mode(store):
    groups = make_project(store, (4, 1, 3))
    run(rate_auto(store, "length", mode="rank", annotator="bot"))
    rows = live(store)
    assert [sorted(r["sample_ids"]) for r in rows] == [groups[0], groups[2]]
    for r, g in zip(rows, [groups[0], groups[2]], strict=True):
        v = r["value"]
        assert r["kind"] == "rank" and v["order"] == sorted(g, reverse=True)
        by_id = dict(zip(r["sample_ids"], v["scores"], strict=True))
        assert [by_id[s] for s in v["order"]] == sorted(v["scores"], reverse=True)


@pytest.mark.parametrize("mode", ["score", "thumbs", "pairwise", "rank"])
def test_second_run_rates_nothing_new(store, mode):
    make_project(store, (4, 2))
    first = run(rate_auto(store, "length", mode=mode, annotator="bot"))
    assert first[-1].done > 0
    second = run(rate_auto(store, "length", mode=mode, annotator="bot"))
    assert second == [RateProgress(0, 0)]
    # another annotator has rated nothing yet
    assert run(rate_auto(store, "length", mode=mode, annotator="other"))[-1].done == first[-1].done


def test_superseded_ratings_do_not_count(store):
    make_project(store, (2,))
    run(rate_auto(store, "length", mode="score", annotator="bot"))
    first = live(store)[0]
    store.set_superseded(first["id"])
    run(rate_auto(store, "length", mode="score", annotator="bot"))
    assert [r["sample_ids"] for r in live(store)][-1] == first["sample_ids"]
    assert len(live(store)) == 2


def test_limit_caps_ratings(store):
    make_project(store, (4, 3))
    progress = run(rate_auto(store, "length", mode="score", annotator="bot", limit=3))
    assert progress[-1] == RateProgress(3, 3, progress[-1].rating_id)
    assert len(live(store)) == 3
    run(rate_auto(store, "length", mode="score", annotator="bot", limit=10))
    assert len(live(store)) == 7


def test_cancel_stops_between_ratings(store):
    make_project(store, (4, 3))
    cancel = threading.Event()
    gen = rate_auto(store, "length", mode="score", annotator="bot", cancel=cancel)
    for p in gen:
        if p.done == 2:
            cancel.set()
    assert len(live(store)) == 2


def test_bad_arguments_fail_before_any_work(store):
    with pytest.raises(ValueError, match="rating mode 'stars'"):
        rate_auto(store, "length", mode="stars", annotator="bot")
    with pytest.raises(ValueError, match="annotator name is empty"):
        rate_auto(store, "length", mode="score", annotator=" ")
    with pytest.raises(RaterError):
        rate_auto(store, "nope", mode="score", annotator="bot")


def test_bad_rater_value_stops_before_writing_it(store, rater_file):
    make_project(store, (3,))
    gen = rate_auto(store, f"{rater_file}:broken", mode="score", annotator="bot")
    with pytest.raises(RaterError, match="returned 1.5"):
        run(gen)
    assert live(store) == []


def test_errors_are_user_errors_and_progress_counts_written(store):
    from core.errors import UserError

    assert issubclass(RaterError, UserError) and issubclass(RaterError, ValueError)
    make_project(store, (2,))
    assert run(rate_auto(store, "concise", mode="score", annotator="bot"))[-1].written == 2
