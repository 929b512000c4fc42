"""The Rate tab driven by keyboard alone; every assertion is on rows in the project file."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def item_ready(qtbot, panel):
    qtbot.waitUntil(lambda: panel.item is not None, timeout=20000)
    return panel.item


def rows(store, **kw):
    return list(store.ratings(include_superseded=True, **kw))


def press(qtbot, panel, *keys):
    for key in keys:
        if isinstance(key, tuple):
            qtbot.keyClick(panel, key[0], key[1])
        else:
            qtbot.keyClick(panel, key)


def check_row(row, item, kind, annotator="alice"):
    assert row["kind"] == kind
    assert row["annotator"] == annotator
    assert row["sample_ids"] == item.sample_ids  # the order shown, A first
    assert row["prompt_id"] == item.prompt_id
    assert row["seconds"] > 0
    assert row["superseded"] == 0


def test_pairwise_keys_commit_each_choice_and_show_the_next_item(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("pairwise")
    seen = []
    for key, choice in [("a", "a"), ("b", "b"), ("t", "tie"), ("n", "both_bad")]:
        item = item_ready(qtbot, panel)
        assert [c.header.text() for c in panel.view.responses.cards[:2]] == [
            "<b>Response A</b>",
            "<b>Response B</b>",
        ]  # labels only: the model that wrote a response is never shown
        for card, response in zip(panel.view.responses.cards, item.responses, strict=False):
            shown = card.view.toPlainText()  # Markdown rendered: "**Answer 2**" shows "Answer 2"
            assert response.text.split("**")[1] in shown and f"prompt {item.prompt_id}." in shown
        assert panel.view.prompt_view.toPlainText() == store.prompt(item.prompt_id)["text"] or (
            "Say hello." in panel.view.prompt_view.toPlainText()
        )
        with qtbot.waitSignal(panel.rated):
            press(qtbot, panel, key)
        row = rows(store)[-1]
        check_row(row, item, "pairwise")
        winner = {"a": item.sample_ids[0], "b": item.sample_ids[1]}.get(choice)
        assert row["value"] == {"choice": choice, "winner": winner}
        assert panel.item is not None and panel.item.key != item.key  # next one, at once
        seen.append(item.key)
    assert len(set(seen)) == 4
    assert panel.session_count == 4


def test_score_keys_rate_each_criterion_and_enter_submits(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("score")
    item = item_ready(qtbot, panel)
    assert len(item.responses) == 1
    press(qtbot, panel, "5", "4", Qt.Key.Key_Tab, "2", (Qt.Key.Key_Tab, SHIFT), "3")
    assert panel.view.score.values == {"overall": 5, "fluency": 4, "grammar": 2, "accuracy": 3}
    press(qtbot, panel, Qt.Key.Key_Return)
    row = rows(store)[-1]
    check_row(row, item, "score")
    assert row["value"] == {
        "scores": {"overall": 1.0, "fluency": 0.75, "accuracy": 0.5, "grammar": 0.25}
    }


def test_score_needs_every_criterion_before_enter(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("score", rubric=["overall", "helpful"])
    item = item_ready(qtbot, panel)
    press(qtbot, panel, "3", Qt.Key.Key_Return)
    assert rows(store) == [] and panel.item is item
    assert "helpful" in panel.view.note.text()
    press(qtbot, panel, "1", Qt.Key.Key_Enter)
    assert rows(store)[-1]["value"] == {"scores": {"overall": 0.5, "helpful": 0.0}}


def test_rank_picks_best_first_and_enter_submits(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("rank")
    item = item_ready(qtbot, panel)
    assert len(item.responses) == 4  # K = per_prompt
    press(qtbot, panel, "3", "1", Qt.Key.Key_Backspace, "2", "1")  # last place is implied
    assert panel.view.rank.order == [2, 1, 0, 3]
    press(qtbot, panel, Qt.Key.Key_Return)
    row = rows(store)[-1]
    check_row(row, item, "rank")
    ids = item.sample_ids
    assert row["value"] == {"order": [ids[2], ids[1], ids[0], ids[3]]}


def test_thumbs_up_and_down(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("thumbs")
    first = item_ready(qtbot, panel)
    press(qtbot, panel, "u")
    second = panel.item
    press(qtbot, panel, "d")
    up, down = rows(store)
    check_row(up, first, "thumbs")
    check_row(down, second, "thumbs")
    assert up["value"] == {"up": True} and down["value"] == {"up": False}


def test_comment_goes_with_the_rating(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("thumbs")
    item_ready(qtbot, panel)
    press(qtbot, panel, "c")
    assert panel.view.comment.hasFocus()
    qtbot.keyClicks(panel.view.comment, "too short")
    qtbot.keyClick(panel.view.comment, Qt.Key.Key_Return)  # back to rating, nothing submitted
    assert rows(store) == [] and panel.hasFocus()
    press(qtbot, panel, "u")
    assert rows(store)[-1]["comment"] == "too short"
    assert panel.view.comment.text() == ""


def test_skip_and_flag(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("pairwise")
    skipped = item_ready(qtbot, panel)
    press(qtbot, panel, "s")
    flagged = panel.item
    press(qtbot, panel, "f")
    assert panel.view.flag_bar.isVisible()
    press(qtbot, panel, "3")  # gibberish, about all shown
    skip, flag = rows(store)
    check_row(skip, skipped, "skip")
    assert skip["value"] == {}
    check_row(flag, flagged, "flag")
    assert flag["value"] == {"reason": "gibberish", "sample_id": None}
    assert not panel.view.flag_bar.isVisible()
    # Esc leaves the flag bar without writing anything; a single response is flagged by id.
    panel.set_mode("thumbs")
    item = item_ready(qtbot, panel)
    press(qtbot, panel, "f", Qt.Key.Key_Escape)
    assert len(rows(store)) == 2 and panel.item is item
    press(qtbot, panel, "f", "1")
    assert rows(store)[-1]["value"] == {"reason": "unsafe", "sample_id": item.sample_ids[0]}
    assert panel.session_count == 2  # skips are not ratings


def test_rewrite_stores_a_human_sample_and_an_implied_preference(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("pairwise")
    item = item_ready(qtbot, panel)
    press(qtbot, panel, "e")
    editor = panel.view.rewrite
    assert editor.isVisible() and editor.edit.toPlainText() == item.responses[0].text
    editor.source.setCurrentIndex(1)  # rewrite response B
    assert editor.edit.toPlainText() == item.responses[1].text
    qtbot.keyClick(editor.edit, Qt.Key.Key_Return, CTRL)  # unchanged: refused
    assert rows(store) == [] and "Edit the response" in panel.view.note.text()
    editor.edit.setPlainText("A **much** better answer. 更好的回答。")
    qtbot.keyClick(editor.edit, Qt.Key.Key_Return, CTRL)
    (row,) = rows(store)
    original = item.sample_ids[1]
    new = row["sample_ids"][1]
    assert row["kind"] == "rewrite" and row["sample_ids"] == [original, new]
    assert row["value"] == {"original": original, "rewrite": new}
    assert row["seconds"] > 0 and row["annotator"] == "alice"
    sample = store.db["samples"].get(new)
    assert sample["model"] == "human:alice" and sample["prompt_id"] == item.prompt_id
    assert sample["text"] == "A **much** better answer. 更好的回答。"
    assert panel.item is item and not editor.isVisible()  # still to be rated
    press(qtbot, panel, "b")
    assert rows(store)[-1]["kind"] == "pairwise"
    # Undo twice: the pairwise rating (item back), then the rewrite (row kept, superseded).
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL), (Qt.Key.Key_Z, CTRL))
    assert [r["superseded"] for r in rows(store)] == [1, 1]
    assert panel.item.key == item.key


def test_undo_brings_the_item_back_and_redo_restores_the_rating(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("pairwise")
    first = item_ready(qtbot, panel)
    press(qtbot, panel, "a")
    second = panel.item
    press(qtbot, panel, "b")
    third = panel.item
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL))
    assert panel.item.key == second.key
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL))
    assert panel.item.key == first.key
    assert [r["superseded"] for r in rows(store)] == [1, 1]  # kept, never deleted
    assert panel.session_count == 0
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL | SHIFT))
    assert [r["superseded"] for r in rows(store)] == [0, 1]
    assert panel.item.key == second.key  # the undone second item comes back up
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL | SHIFT))
    assert [r["superseded"] for r in rows(store)] == [0, 0]
    assert panel.item.key == third.key
    # A new rating after an undo clears the redo stack.
    press(qtbot, panel, (Qt.Key.Key_Z, CTRL), "t", (Qt.Key.Key_Z, CTRL | SHIFT))
    assert "Nothing to redo" in panel.view.note.text()
    live = list(store.ratings())
    assert [r["value"]["choice"] for r in live] == ["a", "tie"]


def test_undo_reaches_ratings_of_an_earlier_session(qtbot, rate_setup, store):
    panel, ctx = rate_setup("thumbs")
    item = item_ready(qtbot, panel)
    press(qtbot, panel, "u")
    panel.shutdown()
    later, _ = rate_setup("thumbs", samples=0)
    item_ready(qtbot, later)
    press(qtbot, later, (Qt.Key.Key_Z, CTRL))
    assert later.item.key == item.key
    assert rows(store)[0]["superseded"] == 1


def test_a_failed_write_keeps_everything_on_screen(qtbot, rate_setup, store):
    panel, ctx = rate_setup("score", rubric=["overall"])
    item = item_ready(qtbot, panel)
    press(qtbot, panel, "c")
    qtbot.keyClicks(panel.view.comment, "keep me")
    qtbot.keyClick(panel.view.comment, Qt.Key.Key_Escape)
    ctx.store.conn.execute("PRAGMA query_only = ON")  # every write now fails as read-only
    press(qtbot, panel, "4", Qt.Key.Key_Return)
    assert rows(store) == []
    assert "read-only" in panel.view.note.text() and "still on screen" in panel.view.note.text()
    assert panel.item is item and panel.view.score.values == {"overall": 4}
    assert panel.view.comment.text() == "keep me"
    ctx.store.conn.execute("PRAGMA query_only = OFF")
    press(qtbot, panel, Qt.Key.Key_Return)
    (row,) = rows(store)
    assert row["value"] == {"scores": {"overall": 0.75}} and row["comment"] == "keep me"


def test_shortcut_sheet_and_guidelines(qtbot, rate_setup):
    from gui.widgets import ShortcutSheet

    panel, _ctx = rate_setup("pairwise")
    item_ready(qtbot, panel)
    press(qtbot, panel, "?")
    sheet = panel.findChild(ShortcutSheet)
    assert sheet is not None and sheet.isVisible()
    sheet.close()
    assert "Annotator guidelines" in panel.view.guidelines.toPlainText()
    press(qtbot, panel, "g")
    assert not panel.view.guidelines.isVisible()


@pytest.mark.parametrize("mode", ["score", "pairwise", "rank", "thumbs"])
def test_every_button_is_a_key(qtbot, rate_setup, store, mode):
    """Clicking the buttons writes the same rows as the keys."""
    panel, _ctx = rate_setup(mode, rubric=["overall"])
    item = item_ready(qtbot, panel)
    v = panel.view
    if mode == "score":
        v.score._rows[0][1].button(2).click()
        v.score.submit_button.click()
    elif mode == "pairwise":
        v.pairwise.buttons["tie"].click()
    elif mode == "rank":
        for b in v.rank._buttons[:3]:
            b.click()
        v.rank.submit_button.click()
    else:
        v.thumbs.buttons["down"].click()
    check_row(rows(store)[-1], item, mode)


def test_a_locked_project_file_is_reported_and_the_choice_can_be_retried(qtbot, rate_setup, store):
    import sqlite3

    panel, ctx = rate_setup("pairwise")
    item = item_ready(qtbot, panel)
    ctx.store.conn.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        press(qtbot, panel, "b")
        assert rows(store) == [] and panel.item is item
        assert "locked by another program" in panel.view.note.text()
    finally:
        other.execute("ROLLBACK")
        other.close()
    press(qtbot, panel, "b")
    assert rows(store)[-1]["value"]["choice"] == "b"
