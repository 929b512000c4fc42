"""The Rate tab's Arena mode: the arena's blind comparisons, rated by keyboard as pairwise."""

from __future__ import annotations

from PySide6.QtCore import Qt

from core.evaluation import ArenaSpec, save_arena

CTRL = Qt.KeyboardModifier.ControlModifier
EVAL_PROMPTS = [1, 2]


def add_arena(store, models=("m1", "m2"), per_prompt=2) -> None:
    """Prompts 1 and 2 kept for evaluation, each model's answers to them, and the arena."""
    store.set_split(EVAL_PROMPTS, "eval")
    spec = ArenaSpec(list(models), per_prompt=per_prompt)
    store.add_samples(
        {
            "prompt_id": p,
            "text": f"Answer {k} to prompt {p}.",
            "model": m,
            "params": spec.generation(),
        }
        for m in models
        for p in EVAL_PROMPTS
        for k in range(per_prompt)
    )
    save_arena(store, spec)


def model_of(store, sample_id: int) -> str:
    models = {s["id"]: s["model"] for p in store.prompt_ids() for s in store.samples_for_prompt(p)}
    return models[sample_id]


def item_ready(qtbot, panel):
    qtbot.waitUntil(lambda: panel.item is not None, timeout=20000)
    return panel.item


def test_arena_items_rated_by_keyboard_are_blind_pairwise_rows_of_the_arena(
    qtbot, rate_setup, store
):
    add_arena(store)
    panel, _ctx = rate_setup("arena", eager=True)  # eager: a normal mode would load the model
    assert panel.view.mode_combo.currentData() == "arena"
    rated = []
    for key, choice in [("a", "a"), ("b", "b"), ("t", "tie"), ("n", "both_bad")]:
        item = item_ready(qtbot, panel)
        assert item.mode == "pairwise" and item.selection == "arena"
        assert item.prompt_id in EVAL_PROMPTS
        assert {model_of(store, s) for s in item.sample_ids} == {"m1", "m2"}
        headers = [c.header.text() for c in panel.view.responses.cards[:2]]
        assert headers == ["<b>Response A</b>", "<b>Response B</b>"]  # never a model's name
        assert panel.view.note.text() == ""
        with qtbot.waitSignal(panel.rated):
            qtbot.keyClick(panel, key)
        rated.append((item, choice))
    rows = list(store.ratings())
    assert len(rows) == 4 and len({frozenset(r["sample_ids"]) for r in rows}) == 4
    for row, (item, choice) in zip(rows, rated, strict=True):
        assert row["kind"] == "pairwise" and row["selection"] == "arena"
        assert row["sample_ids"] == item.sample_ids and row["annotator"] == "alice"
        winner = {"a": item.sample_ids[0], "b": item.sample_ids[1]}.get(choice)
        assert row["value"] == {"choice": choice, "winner": winner}
    # every comparison is judged: the empty state says so and what to do next
    qtbot.waitUntil(lambda: panel.view.stack.currentWidget() is panel.view.empty_page)
    qtbot.waitUntil(lambda: "Nothing left to rate in the arena" in panel.view.empty_text.text())
    assert "Evaluate against its starting model" in panel.view.empty_text.text()
    assert panel.feeder.last_load_task is None  # the arena never loads a model

    # undo brings the last comparison back (no "came back by undo" note: it is an arena item)
    qtbot.keyClick(panel, Qt.Key.Key_Z, CTRL)
    assert panel.item.key == rated[-1][0].key and panel.view.note.text().startswith("Undone")
    with qtbot.waitSignal(panel.rated):
        qtbot.keyClick(panel, "a")
    assert list(store.ratings())[-1]["selection"] == "arena"


def test_normal_modes_never_show_evaluation_prompts_and_undo_keeps_an_arena_item_arena(
    qtbot, rate_setup, store
):
    add_arena(store)
    panel, ctx = rate_setup("arena")  # also gives every prompt 4 responses of model "test"
    item_ready(qtbot, panel)
    with qtbot.waitSignal(panel.rated):
        qtbot.keyClick(panel, "a")
    arena_key = list(store.ratings())[-1]["sample_ids"]
    panel.set_mode("pairwise")
    assert panel.view.mode_combo.currentData() == "pairwise"
    for _ in range(6):
        item = item_ready(qtbot, panel)
        assert item.selection == "coverage" and item.prompt_id not in EVAL_PROMPTS
        with qtbot.waitSignal(panel.rated):
            qtbot.keyClick(panel, "b")
    qtbot.waitUntil(lambda: len(panel.feeder.queue) > 0, timeout=20000)
    assert all(i.prompt_id not in EVAL_PROMPTS for i in panel.feeder.queue)
    assert all(r["selection"] == "coverage" for r in list(store.ratings())[1:])

    # a new session: undo reaches back past the pairwise ratings to the arena rating
    panel.undo_stack.clear()
    for row in list(store.ratings())[1:]:
        store.set_superseded(row["id"], True)
    qtbot.keyClick(panel, Qt.Key.Key_Z, CTRL)
    assert panel.item.sample_ids == arena_key
    assert "came back by undo; rate it in arena mode" in panel.view.note.text()
    with qtbot.waitSignal(panel.rated):
        qtbot.keyClick(panel, "t")
    last = list(store.ratings())[-1]
    assert last["selection"] == "arena" and last["value"]["choice"] == "tie"


def test_arena_mode_without_an_arena_says_how_to_start_one(qtbot, rate_setup):
    panel, _ctx = rate_setup("pairwise")
    item_ready(qtbot, panel)
    panel.set_mode("arena")
    qtbot.waitUntil(lambda: "No arena to rate" in panel.view.empty_text.text(), timeout=20000)
    text = panel.view.empty_text.text()
    assert "Evaluate against its starting model" in text and "main.py arena --models" in text
    assert panel.view.stack.currentWidget() is panel.view.empty_page
    assert not panel.view.import_button.isVisible()


def test_queued_items_of_prompts_just_kept_for_evaluation_are_dropped(qtbot, rate_setup, store):
    panel, ctx = rate_setup("pairwise")
    item_ready(qtbot, panel)
    qtbot.waitUntil(lambda: len(panel.feeder.queue) >= 4 and not panel.feeder.busy, timeout=20000)
    queued = {i.prompt_id for i in panel.feeder.queue} - {panel.item.prompt_id}
    assert queued
    store.set_split(sorted(queued), "eval")  # as Settings → Keep for evaluation does
    ctx.data_changed.emit()
    qtbot.waitUntil(lambda: not panel.feeder.busy, timeout=20000)
    assert panel.feeder.queue and all(i.prompt_id not in queued for i in panel.feeder.queue)
