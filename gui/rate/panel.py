"""The Rate tab: a keyboard-first, blind rating panel that never waits.

Each key commits one rating row at once (core.store.add_rating: one small transaction on the GUI
thread) and the next item comes from the in-memory queue kept full by gui.rate.queue.ItemFeeder.
Undo supersedes a rating (never deletes it) and brings its item back. If a write fails, what the
annotator entered stays on screen and a message says why, so nothing is dropped silently.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QWidget

from core.items import Item, item_for_rating, last_live_rating
from gui.context import AppContext
from gui.rate.queue import ItemFeeder
from gui.rate.texts import ARENA
from gui.rate.view import RateView
from gui.widgets import ShortcutSheet

K = Qt.Key
LETTER_ACTIONS = {K.Key_S: "skip", K.Key_F: "flag", K.Key_E: "rewrite", K.Key_C: "comment"}
PAIRWISE_KEYS = {K.Key_A: "a", K.Key_B: "b", K.Key_T: "tie", K.Key_N: "both_bad"}
THUMBS_KEYS = {K.Key_U: "up", K.Key_D: "down"}
ENTER = (K.Key_Return, K.Key_Enter)


@dataclass
class Action:
    """One undoable step: the rating(s) it wrote and the item they judged."""

    rating_ids: list[int]
    kind: str
    item: Item | None
    comment: str = ""

    @property
    def moves_on(self) -> bool:
        """Ratings that finish an item (a rewrite leaves the item on screen)."""
        return self.kind != "rewrite" and self.item is not None


class RatePanel(QWidget):
    """Rate items in score, pairwise, rank, thumbs or arena mode (the arena's comparisons, rated
    as pairwise), by keyboard or buttons."""

    ready = Signal()
    """Once: the first item is on screen, or the empty state of a project without prompts."""
    stalled = Signal(str)
    """Nothing to show and nothing being prepared (e.g. no model could be loaded); the reason."""
    rated = Signal(int)
    """A rating row was committed (its id)."""
    item_shown = Signal()
    """A new item is on screen (the benchmark times submit → this)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.item: Item | None = None
        self.shown_at = time.perf_counter()
        self.undo_stack: list[Action] = []
        self.redo_stack: list[Action] = []
        self.session_count = 0
        self.total = ctx.store.live_rating_count()
        self._ready_sent = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        mode = self._project_mode = ctx.settings()["mode"]
        self.feeder = ItemFeeder(ctx, mode, self)
        self.view = RateView(self)
        self.feeder.changed.connect(self._on_feeder_changed)
        self.feeder.model_failed.connect(self.view.model_failed)
        ctx.data_changed.connect(self._on_data_changed)
        ctx.settings_changed.connect(self._on_settings_changed)
        self.view.apply_settings(self.feeder.settings)
        self.view.set_mode_choice(mode)
        self.feeder.start()
        self._on_feeder_changed()

    # ---- showing items ---------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Rate in another mode from now on (the current, unrated item is dropped)."""
        if mode == self.feeder.mode:
            return
        self.item = None
        self.feeder.set_mode(mode)
        self.view.set_mode_choice(mode)
        self._next()

    def _next(self) -> None:
        item = self.feeder.take()
        if item is None:
            self.item = None
            self._show_empty()
        else:
            self._show(item)

    def _show(self, item: Item, comment: str = "") -> None:
        self.item = item
        self.view.show_item(item, self.feeder.settings["rubric"], comment)
        self.shown_at = time.perf_counter()
        self.setFocus()
        self._update_progress()
        self.item_shown.emit()
        if not self._ready_sent:
            self._ready_sent = True
            self.ready.emit()

    def _show_empty(self) -> None:
        f = self.feeder
        no_prompts = f.prompt_count == 0
        self.view.show_empty(f, no_prompts)
        self._update_progress()
        if no_prompts and not f.busy and not self._ready_sent:
            self._ready_sent = True
            self.ready.emit()
        elif not f.busy and f.prompt_count:
            why = None if f.mode == ARENA else f.model_error
            self.stalled.emit(why or f"every item in {f.mode} mode is rated")

    def _on_feeder_changed(self) -> None:
        if self.item is None:
            self._next() if self.feeder.queue else self._show_empty()
        else:
            self._update_progress()

    def _on_settings_changed(self, settings: dict) -> None:
        self.view.apply_settings(settings)
        if settings["mode"] != self._project_mode:  # the project's default mode was changed
            self._project_mode = settings["mode"]
            self.set_mode(settings["mode"])

    def _on_data_changed(self) -> None:
        self.total = self.ctx.store.live_rating_count()
        self._update_progress()

    def _update_progress(self) -> None:
        f = self.feeder
        state = " · loading model…" if f.loading_model and f.mode != ARENA else ""
        if f.refill_task is not None and f.loaded is not None:
            state += " · generating…"
        self.view.progress.setText(
            f"Rated this session: <b>{self.session_count}</b> · Total ratings: "
            f"<b>{self.total}</b> · Ready: <b>{len(f.queue)}</b>{state}"
        )

    # ---- committing ------------------------------------------------------------------------
    def commit(self, kind: str, value: dict) -> int | None:
        """Write one rating of the current item now; on success show the next item."""
        item = self.item
        if item is None:
            return None
        comment = self.view.comment.text().strip()
        try:
            rid = self.ctx.store.add_rating(
                annotator=self.ctx.annotator,
                kind=kind,
                sample_ids=item.sample_ids,
                value=value,
                prompt_id=item.prompt_id,
                comment=comment or None,
                seconds=max(time.perf_counter() - self.shown_at, 1e-6),
                selection=item.selection,
            )
        except (sqlite3.Error, OSError) as e:
            self._write_failed(e)
            return None
        self._did(Action([rid], kind, item, comment), +1 if kind != "skip" else 0)
        self.view.comment.clear()
        self.rated.emit(rid)
        self._next()
        return rid

    def rewrite(self, original_id: int, text: str) -> int | None:
        """Store an edited response as a human sample plus a rewrite rating (one transaction)."""
        item = self.item
        if item is None:
            return None
        if not text.strip() or text.strip() == self.view.rewrite.original_text().strip():
            self.view.message("Edit the response into a better one first (Esc cancels).")
            return None
        store = self.ctx.store
        try:
            with store.transaction():
                [new_id] = store.add_samples(
                    [
                        {
                            "prompt_id": item.prompt_id,
                            "text": text.strip(),
                            "model": f"human:{self.ctx.annotator}",
                            "params": {"rewrite_of": original_id},
                        }
                    ]
                )
                rid = store.add_rating(
                    annotator=self.ctx.annotator,
                    kind="rewrite",
                    sample_ids=[original_id, new_id],
                    value={"original": original_id, "rewrite": new_id},
                    prompt_id=item.prompt_id,
                    seconds=max(time.perf_counter() - self.shown_at, 1e-6),
                )
        except (sqlite3.Error, OSError) as e:
            self._write_failed(e)
            return None
        self._did(Action([rid], "rewrite", item), +1)
        self.view.close_editors()
        self.view.message("Rewrite saved. Now rate the item as usual, or press S to skip it.")
        self.setFocus()
        self.rated.emit(rid)
        return rid

    def _did(self, action: Action, counted: int) -> None:
        self.undo_stack.append(action)
        self.redo_stack.clear()
        self.session_count += counted
        self.total += counted

    def _write_failed(self, e: Exception) -> None:
        text = str(e)
        if "readonly" in text or "read-only" in text:
            why = "the project file is read-only"
        elif "locked" in text or "busy" in text:
            why = "the project file is locked by another program"
        else:
            why = f"the project file could not be written ({text})"
        self.view.message(
            f"Not saved: {why}. Everything you entered is still on screen; press the key again "
            f"once the file is writable. ({self.ctx.db_path})",
            error=True,
        )
        self.ctx.status_message.emit(f"Rating not saved: {why}.")

    # ---- undo / redo -----------------------------------------------------------------------
    def undo(self) -> None:
        action = self.undo_stack[-1] if self.undo_stack else self._older_action()
        if action is None:
            self.view.message("Nothing to undo.")
            return
        try:
            for rid in action.rating_ids:
                self.ctx.store.set_superseded(rid, True)
        except (sqlite3.Error, OSError) as e:
            self._write_failed(e)
            return
        if self.undo_stack and self.undo_stack[-1] is action:
            self.undo_stack.pop()
        self.redo_stack.append(action)
        counted = 0 if action.kind == "skip" else 1
        self.session_count = max(0, self.session_count - counted)
        self.total -= counted
        if action.moves_on:
            if self.item is not None and self.item.key != action.item.key:
                self.feeder.give_back(self.item)
            self.feeder.hold(action.item)
            self._show(action.item, action.comment)
            self.feeder.poke()
        note = self.view.other_mode_note(self.item) if self.item is not None else ""
        self.view.message(
            f"Undone: {action.kind} rating (kept in the project file as superseded). {note}".strip()
        )

    def _older_action(self) -> Action | None:
        """Undo beyond this session: the annotator's newest live rating in the project file."""
        rating = last_live_rating(self.ctx.store, self.ctx.annotator)
        if rating is None:
            return None
        item = item_for_rating(self.ctx.store, rating, self.feeder.mode)
        return Action([rating["id"]], rating["kind"], item, rating["comment"] or "")

    def redo(self) -> None:
        if not self.redo_stack:
            self.view.message("Nothing to redo.")
            return
        action = self.redo_stack[-1]
        try:
            for rid in action.rating_ids:
                self.ctx.store.set_superseded(rid, False)
        except (sqlite3.Error, OSError) as e:
            self._write_failed(e)
            return
        self.redo_stack.pop()
        self.undo_stack.append(action)
        counted = 0 if action.kind == "skip" else 1
        self.session_count += counted
        self.total += counted
        if action.moves_on:
            if self.item is not None and self.item.key == action.item.key:
                self.view.comment.clear()
                self._next()
            else:
                self.feeder.hold(action.item)
        self.view.message(f"Redone: {action.kind} rating.")
        self._update_progress()

    # ---- keys --------------------------------------------------------------------------------
    def event(self, e: QEvent) -> bool:  # noqa: D401 - Qt override
        """Tab / Shift+Tab move between score criteria instead of moving keyboard focus."""
        if (
            e.type() == QEvent.Type.KeyPress
            and e.key() in (K.Key_Tab, K.Key_Backtab)
            and self.view.scoring()
        ):
            backwards = e.key() == K.Key_Backtab or bool(
                e.modifiers() & Qt.KeyboardModifier.ShiftModifier
            )
            self.view.score.move(-1 if backwards else 1)
            return True
        return super().event(e)

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if not self.handle_key(e.key(), e.modifiers()):
            super().keyPressEvent(e)

    def handle_key(self, key: int, mods: Qt.KeyboardModifier) -> bool:
        """One key press of the annotator; True when it was a rating-panel shortcut."""
        if mods & Qt.KeyboardModifier.ControlModifier:
            if key != K.Key_Z:
                return False
            self.redo() if mods & Qt.KeyboardModifier.ShiftModifier else self.undo()
            return True
        if key == K.Key_Question:
            ShortcutSheet(self).open()
        elif key == K.Key_G:
            self.view.toggle_guidelines()
        elif key in (K.Key_PageUp, K.Key_PageDown):
            self.view.scroll(-1 if key == K.Key_PageUp else 1)
        elif self.item is None:
            return False
        elif self.view.flag_bar.isVisible():
            if K.Key_1 <= key <= K.Key_9:
                self.view.flag_bar.choose_number(key - K.Key_0)
            elif key == K.Key_Escape:
                self.view.close_editors()
        elif key in LETTER_ACTIONS:
            self.view.start(LETTER_ACTIONS[key], self.item)
        else:
            return self._mode_key(key)
        return True

    def _mode_key(self, key: int) -> bool:
        mode, n = self.item.mode, 0
        if K.Key_1 <= key <= K.Key_9:
            n = key - K.Key_0
        if mode == "pairwise" and key in PAIRWISE_KEYS:
            self.view.choose(PAIRWISE_KEYS[key])
        elif mode == "thumbs" and key in THUMBS_KEYS:
            self.view.choose(THUMBS_KEYS[key])
        elif mode == "score" and 1 <= n <= 5:
            self.view.score.set_score(n)
        elif mode == "rank" and 1 <= n <= len(self.item.responses):
            self.view.rank.pick(n - 1)
        elif mode == "rank" and key == K.Key_Backspace:
            self.view.rank.take_back()
        elif key in ENTER and mode in ("score", "rank"):
            self.view.submit()
        else:
            return False
        return True

    def shutdown(self) -> None:
        """Stop the background Tasks and wait for them (the window stops every Task on close)."""
        self.feeder.shutdown()
