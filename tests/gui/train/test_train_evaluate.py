"""The checkpoint list's "Evaluate against its starting model": an arena of the checkpoint and the
model its run started from, run off the GUI thread, judged by the project's judge or by people."""

from __future__ import annotations

import threading

import pytest

from core.models import parse_spec

WAIT_MS = 60000


@pytest.fixture
def evaluate_setup(qtbot, project_with_prompts, tiny_model_dir, other_tiny_model_dir):
    """A CheckpointsTable on a project whose checkpoint:1 (other weights) started from the tiny
    model; ``make(eval_prompts, **settings)`` keeps those prompts for evaluation first."""
    from gui.context import AppContext
    from gui.train.history import CheckpointsTable

    store = project_with_prompts
    store.add_checkpoint(
        run_id=None,
        step=5,
        kind="policy",
        path=str(other_tiny_model_dir),
        sha256="",
        base_model=str(tiny_model_dir),
        adapter=False,
    )
    made = []

    def make(eval_prompts=(1, 2), **settings):
        store.set_split(list(eval_prompts), "eval")
        store.update_settings(max_new_tokens=4, **settings)
        ctx = AppContext(store.path, "alice", device="cpu")
        table = CheckpointsTable(ctx)
        qtbot.addWidget(table)
        table.show()
        table.select_checkpoint(1)
        made.append((table, ctx))
        return table, ctx

    yield make
    for table, ctx in made:
        table.evaluation.stop()
        ctx.close()


def evaluate(qtbot, table):
    with qtbot.waitSignal(table.evaluation.done, timeout=WAIT_MS) as blocker:
        task = table.evaluate_selected()
        assert task is not None and table.evaluate_button.text() == "Stop evaluating"
    return task, blocker.args


def test_evaluate_with_the_project_judge_makes_answers_and_judgments_off_the_gui_thread(
    qtbot, evaluate_setup, store, tiny_model_dir
):
    table, ctx = evaluate_setup(judge="core.raters:length")
    assert table.evaluate_button.isEnabled()
    progress, status = [], []
    ctx.background_progress.connect(lambda *a: progress.append(a))
    ctx.status_message.connect(status.append)
    with qtbot.waitSignal(ctx.data_changed), qtbot.waitSignal(ctx.settings_changed):
        task, (ok, text) = evaluate(qtbot, table)
    assert ok and task.worker_thread_ident != threading.get_ident()
    base = parse_spec(str(tiny_model_dir)).text
    assert store.settings()["arena"]["models"] == [base, "checkpoint:1"]
    assert store.settings()["arena"]["max_new_tokens"] == 4  # the project's generation settings
    for model in (base, "checkpoint:1"):
        made = [s for p in (1, 2) for s in store.samples_for_prompt(p) if s["model"] == model]
        assert len(made) == 4  # two answers to each evaluation prompt
    judged = list(store.ratings())
    assert len(judged) == 4  # 2 prompts × 2 answers, one pair of models
    assert {r["annotator"] for r in judged} == {"judge:core.raters:length"}
    assert {(r["kind"], r["selection"]) for r in judged} == {("pairwise", "arena")}
    assert text.startswith("Judged by core.raters:length: ") and "4 comparisons" in text
    assert status[-1] == text
    assert any(label.startswith("Arena: ") for label, _d, _t in progress)
    assert progress[-1] == ("", 0, 0)  # the status bar's bar is hidden again
    assert table.evaluate_button.text().startswith("Evaluate")


def test_without_a_judge_the_rate_tab_s_arena_mode_gets_the_comparisons(
    qtbot, evaluate_setup, store
):
    from gui.rate.panel import RatePanel

    table, ctx = evaluate_setup(mode="arena")
    panel = RatePanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    try:
        qtbot.waitUntil(lambda: "No arena to rate" in panel.view.empty_text.text(), timeout=WAIT_MS)
        _task, (ok, text) = evaluate(qtbot, table)
        assert ok and "4 comparisons wait for you in the Rate tab's Arena mode" in text
        assert list(store.ratings()) == []
        qtbot.waitUntil(lambda: panel.item is not None, timeout=WAIT_MS)
        assert panel.item.selection == "arena" and panel.item.prompt_id in (1, 2)
        with qtbot.waitSignal(panel.rated):
            qtbot.keyClick(panel, "a")
        assert list(store.ratings())[-1]["selection"] == "arena"
    finally:
        panel.shutdown()


def test_no_evaluation_prompts_or_a_judge_that_fails_is_explained(qtbot, evaluate_setup, store):
    table, ctx = evaluate_setup(eval_prompts=(), judge="no_such_module:judge")
    assert table.evaluate_selected() is None
    box = table.evaluation.last_message
    assert "Settings" in box.text() and "prompts split --eval" in box.text()
    assert store.settings()["arena"] is None
    box.close()
    store.set_split([1], "eval")
    _task, (ok, text) = evaluate(qtbot, table)
    assert not ok and "no_such_module" in text
    assert "no_such_module" in table.evaluation.last_message.text()
    table.evaluation.last_message.close()
