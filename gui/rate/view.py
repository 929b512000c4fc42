"""The widgets of the Rate tab and how an item is drawn; the panel (gui/rate/panel.py) decides.

Responses are Markdown in read-only views, side by side (pairwise) or in a grid (rank), labelled
A, B or 1..K only: which model made a response is never shown.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.items import Item
from gui.rate.controls import (
    ChoiceControls,
    CommentBox,
    FlagBar,
    RankControls,
    RewriteEditor,
    ScoreControls,
    key_button,
)
from gui.rate.texts import (
    ARENA,
    ARENA_EMPTY,
    MODES,
    PAIRWISE,
    STARTER_PROMPTS,
    THUMBS,
    guidelines_text,
    rating_mode,
)
from gui.widgets import (
    DocumentCache,
    EmptyState,
    MarkdownView,
    ResponseGrid,
    prompt_markdown,
    show_message,
)

ERROR_STYLE = "color: #b00020; font-weight: bold; border: 1px solid #b00020; padding: 4px;"


def response_labels(item: Item) -> list[str]:
    n = len(item.responses)
    if item.mode == "pairwise":
        return ["A", "B"][:n]
    if item.mode == "rank":
        return [str(i + 1) for i in range(n)]
    return [""] * n


def _prompt_text(item: Item) -> str:
    return prompt_markdown(item.prompt, item.messages)


class RateView:
    """Builds the panel's widgets and draws items; every button calls the same code as its key."""

    def __init__(self, panel: Any):  # the RatePanel that owns this view and decides
        self.panel, self.ctx = panel, panel.ctx
        self._fitted_once = False
        self._build_top()
        self._build_rating_page()
        self.empty_page = EmptyState()
        self.empty_page.import_button.clicked.connect(self.import_starter_prompts)
        self.empty_page.settings_button.clicked.connect(self.open_settings)
        self.empty_text = self.empty_page.text
        self.import_button = self.empty_page.import_button
        self.stack = QStackedWidget()
        self.stack.addWidget(self.rating_page)
        self.stack.addWidget(self.empty_page)
        self.guidelines = MarkdownView()
        self.guidelines.setMinimumWidth(220)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.stack)
        self.split.addWidget(self.guidelines)
        self.split.setStretchFactor(0, 4)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([900, 300])
        lay = QVBoxLayout(panel)
        lay.addLayout(self.top)
        lay.addWidget(self.split, 1)

    # ---- building ----------------------------------------------------------------------------
    def _build_top(self) -> None:
        self.mode_combo = QComboBox()
        self.mode_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for value, text in MODES:
            self.mode_combo.addItem(text, value)
        self.mode_combo.activated.connect(
            lambda i: self.panel.set_mode(self.mode_combo.itemData(i))
        )
        self.progress = QLabel()
        settings, sheet = key_button("Settings…"), key_button("Shortcuts (?)")
        guide = key_button("Guidelines (G)")
        settings.clicked.connect(self.open_settings)
        sheet.clicked.connect(
            lambda: self.panel.handle_key(Qt.Key.Key_Question, Qt.KeyboardModifier(0))
        )
        guide.clicked.connect(self.toggle_guidelines)
        self.top = QHBoxLayout()
        self.top.addWidget(QLabel("Mode:"))
        self.top.addWidget(self.mode_combo)
        self.top.addSpacing(12)
        self.top.addWidget(self.progress, 1)
        for b in (guide, sheet, settings):
            self.top.addWidget(b)

    def _build_rating_page(self) -> None:
        self.prompt_view = MarkdownView()
        self.docs = DocumentCache(self.prompt_view.font(), self.prompt_view)
        self.prompt_view.setMinimumHeight(36)  # a one-line prompt takes one line
        self.responses = ResponseGrid()
        self.rewrite = RewriteEditor()
        self.rewrite.hide()
        self.rewrite.saved.connect(self.panel.rewrite)
        self.rewrite.cancelled.connect(self.close_editors)
        self.body = body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.prompt_view)
        body.addWidget(self.responses)
        body.addWidget(self.rewrite)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 4)
        body.setStretchFactor(2, 2)
        body.setSizes([80, 450, 0])
        self.score = ScoreControls()
        self.score.submit.connect(self.submit)
        self.pairwise = ChoiceControls(PAIRWISE)
        self.pairwise.chosen.connect(self.choose)
        self.rank = RankControls()
        self.rank.changed.connect(self._mark_ranks)
        self.rank.submit.connect(self.submit)
        self.thumbs = ChoiceControls(THUMBS)
        self.thumbs.chosen.connect(self.choose)
        self.controls = QStackedWidget()
        self.mode_pages = {
            "score": self.score,
            "pairwise": self.pairwise,
            "rank": self.rank,
            "thumbs": self.thumbs,
        }
        for w in self.mode_pages.values():
            self.controls.addWidget(w)
        self.flag_bar = FlagBar()
        self.flag_bar.hide()
        self.flag_bar.flagged.connect(self._flag)
        self.flag_bar.cancelled.connect(self.close_editors)
        self.comment = CommentBox()
        self.comment.setPlaceholderText("Comment for this item (C); Enter returns to rating")
        self.comment.done.connect(self.panel.setFocus)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Comment:"))
        actions.addWidget(self.comment, 1)
        for text, slot in [
            ("Skip (S)", lambda: self.start("skip", self.panel.item)),
            ("Flag (F)", lambda: self.start("flag", self.panel.item)),
            ("Rewrite (E)", lambda: self.start("rewrite", self.panel.item)),
            ("Undo (Ctrl+Z)", self.panel.undo),
            ("Redo (Ctrl+Shift+Z)", self.panel.redo),
        ]:
            b = key_button(text)
            b.clicked.connect(slot)
            actions.addWidget(b)
        self.note = QLabel()
        self._note_error = False
        self.note.setWordWrap(True)
        self.rating_page = QWidget()
        lay = QVBoxLayout(self.rating_page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(body, 1)
        lay.addWidget(self.controls)
        lay.addWidget(self.flag_bar)
        lay.addLayout(actions)
        lay.addWidget(self.note)

    # ---- drawing -----------------------------------------------------------------------------
    def show_item(self, item: Item, rubric: list[str], comment: str = "") -> None:
        self.close_editors()
        self.prompt_view.show_document(self.docs.get("prompt", 0, _prompt_text(item)))
        self._fit_prompt()
        if not self.panel.isVisible() or not self._fitted_once:
            QTimer.singleShot(0, self._fit_prompt)  # again once the first layout pass is done
        texts = [r.text for r in item.responses]
        self.responses.show_responses(response_labels(item), texts, self.docs)
        QTimer.singleShot(0, self._prepare_next)
        self.controls.setCurrentWidget(self.mode_pages[item.mode])
        if item.mode == "score":
            self.score.set_rubric(list(rubric))
        elif item.mode == "rank":
            self.rank.reset(len(item.responses))
        self.comment.setText(comment)
        self.message(self.other_mode_note(item))
        self.stack.setCurrentWidget(self.rating_page)

    def other_mode_note(self, item: Item) -> str:
        """What to say when ``item`` belongs to another mode than the one chosen (undo brought it
        back): how to rate it; empty when it belongs to the chosen mode."""
        mode = rating_mode(item.mode, item.selection)
        if mode == self.panel.feeder.mode:
            return ""
        keys = " (A, B, T, N as in pairwise)" if mode == ARENA else ""
        return f"This item came back by undo; rate it in {mode} mode{keys}."

    def _prepare_next(self) -> None:
        """Build and lay out the next queued item's documents while this one is being read."""
        item = self.panel.item
        if item is None:
            return
        keep = {("prompt", 0, _prompt_text(item))}
        keep |= {("response", i, r.text) for i, r in enumerate(item.responses)}
        queue = self.panel.feeder.queue
        if queue:
            nxt = queue[0]
            width = self.responses.text_width(len(nxt.responses))
            for i, r in enumerate(nxt.responses):
                self.docs.prepare("response", i, r.text, width)
                keep.add(("response", i, r.text))
            self.docs.prepare("prompt", 0, _prompt_text(nxt), self.prompt_view.viewport().width())
            keep.add(("prompt", 0, _prompt_text(nxt)))
        self.docs.keep(keep)

    def _fit_prompt(self, editor_share: float = 0.0) -> None:
        """The prompt takes the height its text needs (up to 30 %); responses get the rest."""
        total = sum(self.body.sizes())
        if total <= 0 or self.rewrite.isVisible() and not editor_share:
            return
        self._fitted_once = self.panel.isVisible()
        view = self.prompt_view
        view.document().setTextWidth(view.viewport().width())
        prompt = min(max(view.content_height(), 48), int(total * 0.3))
        editor = int((total - prompt) * editor_share)
        self.body.setSizes([prompt, total - prompt - editor, editor])

    def _mark_ranks(self) -> None:
        self.responses.mark_places(self.rank.order)

    def show_empty(self, feeder, no_prompts: bool) -> None:
        self.close_editors()
        self.stack.setCurrentWidget(self.empty_page)
        arena = feeder.mode == ARENA  # no model is loaded or needed for the arena
        if arena and feeder.arena_state is not None and feeder.refill_task is None:
            self.import_button.hide()
            self.empty_text.setText(ARENA_EMPTY["none" if feeder.arena_state == "none" else "done"])
            return
        self.empty_page.show_state(
            prompt_count=feeder.prompt_count,
            busy=feeder.refill_task is not None if arena else feeder.busy,
            loading_model=feeder.loading_model and not arena,
            model_error=None if arena else feeder.model_error,
            can_import=no_prompts and STARTER_PROMPTS.exists(),
            preview=None if arena else feeder.preview,
            load_stage=feeder.load_stage,
        )

    def apply_settings(self, settings: dict[str, Any]) -> None:
        self.guidelines.show_markdown(guidelines_text(settings))

    def set_mode_choice(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))

    def message(self, text: str, error: bool = False) -> None:
        if error != self._note_error:  # a style sheet change restyles the label: only on change
            self._note_error = error
            self.note.setStyleSheet(ERROR_STYLE if error else "")
        if text != self.note.text():
            self.note.setText(text)

    def model_failed(self, text: str) -> None:
        self.message(f"The model could not be loaded: {text}", error=True)
        show_message(
            self.panel,
            "Model could not be loaded",
            f"{text}\n\nYou can keep rating the responses already in the project. Choose "
            "another model in Settings (Project → Settings…).",
        )

    # ---- actions -----------------------------------------------------------------------------
    def start(self, action: str, item: Item | None) -> None:
        """Skip, flag, rewrite or comment on the current item."""
        if item is None:
            return
        labels = [lb or "shown" for lb in response_labels(item)]
        if action == "skip":
            self.panel.commit("skip", {})
        elif action == "flag":
            self.close_editors()
            self.flag_bar.open_for(labels, item.sample_ids)
        elif action == "rewrite":
            self.close_editors()
            texts = [r.text for r in item.responses]
            self.rewrite.open_for(labels, item.sample_ids, texts)
            self._fit_prompt(editor_share=0.5)
        elif action == "comment":
            self.comment.setFocus()

    def choose(self, value: str) -> None:
        item = self.panel.item
        if item is None:
            return
        if item.mode == "thumbs":
            self.panel.commit("thumbs", {"up": value == "up"})
        elif item.mode == "pairwise":
            winner = {"a": item.sample_ids[0], "b": item.sample_ids[1]}.get(value)
            self.panel.commit("pairwise", {"choice": value, "winner": winner})

    def submit(self) -> None:
        item = self.panel.item
        if item is None:
            return
        if item.mode == "score":
            if not self.score.complete():
                self.message(f"Rate every criterion first: {', '.join(self.score.missing())}.")
                return
            self.panel.commit("score", {"scores": self.score.normalised()})
        elif item.mode == "rank":
            if not self.rank.complete():
                self.message("Pick the responses from best to worst first (1 – K).")
                return
            self.panel.commit("rank", {"order": [item.sample_ids[i] for i in self.rank.order]})

    def _flag(self, reason: str, sample_id: int | None) -> None:
        if self.panel.commit("flag", {"reason": reason, "sample_id": sample_id}) is not None:
            self.flag_bar.hide()

    def close_editors(self) -> None:
        self.flag_bar.hide()
        self.rewrite.hide()
        self.panel.setFocus()

    def scoring(self) -> bool:
        item = self.panel.item
        return item is not None and item.mode == "score" and not self.rewrite.isVisible()

    def toggle_guidelines(self) -> None:
        self.guidelines.setVisible(not self.guidelines.isVisible())

    def scroll(self, pages: int) -> None:
        self.responses.scroll_pages(pages)

    def open_settings(self) -> None:
        """The main window owns the settings dialog; ask it to open."""
        self.ctx.settings_requested.emit()

    def import_starter_prompts(self) -> None:
        """Import resources/starter_prompts.jsonl on a worker thread, then refill."""
        from core.prompts import import_prompts
        from gui.workers import Task

        ctx = self.ctx

        def work(cancel: threading.Event):
            store = ctx.open_worker_store()
            try:
                yield "importing"
                return import_prompts(store, STARTER_PROMPTS, source="starter_prompts.jsonl")
            finally:
                store.close()

        task = Task(work, name="import-starter", parent=self.panel)
        task.result.connect(
            lambda res: (
                ctx.status_message.emit(f"{res.added} starter prompts imported."),
                ctx.data_changed.emit(),
            )
        )
        task.failed.connect(lambda e, _tb: self.message(f"Import failed: {e}", error=True))
        self.import_button.setEnabled(False)
        task.finished.connect(lambda: self.import_button.setEnabled(True))
        task.start()
