"""The per-mode controls of the rating panel, each a row of buttons mirroring a key.

They hold what the annotator has entered for the current item (scores, rank picks) until the
rating is committed, so a failed write leaves it all on screen. They never write to the project
file themselves: they emit signals and the panel commits.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.store import FLAG_REASONS

NOFOCUS = Qt.FocusPolicy.NoFocus


def key_button(text: str, parent: QWidget | None = None) -> QPushButton:
    """A button that never takes keyboard focus, so keys keep going to the panel."""
    b = QPushButton(text, parent)
    b.setFocusPolicy(NOFOCUS)
    return b


class ScoreControls(QWidget):
    """One row per rubric criterion with buttons 1-5; the focused criterion takes the next key."""

    submit = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.criteria: list[str] = []
        self.values: dict[str, int] = {}
        self.focus_index = 0
        self._rows: list[tuple[QLabel, QButtonGroup]] = []
        self.submit_button = key_button("Submit (Enter)")
        self.submit_button.clicked.connect(self.submit)

    def set_rubric(self, criteria: list[str]) -> None:
        if criteria == self.criteria:
            self.clear()
            return
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None and w is not self.submit_button:
                w.deleteLater()
        self.criteria, self._rows = list(criteria), []
        for row, name in enumerate(self.criteria):
            label = QLabel(name)
            self.grid.addWidget(label, row, 0)
            group = QButtonGroup(self)
            for r in range(1, 6):
                b = key_button(str(r))
                b.setCheckable(True)
                b.clicked.connect(lambda _c=False, i=row, v=r: self.set_score(v, i))
                group.addButton(b, r)
                self.grid.addWidget(b, row, r)
            self._rows.append((label, group))
        self.grid.addWidget(self.submit_button, len(self.criteria), 1, 1, 5)
        self.clear()

    def clear(self) -> None:
        self.values = {}
        for _label, group in self._rows:
            group.setExclusive(False)
            for b in group.buttons():
                b.setChecked(False)
            group.setExclusive(True)
        self.set_focus(0)

    def set_focus(self, index: int) -> None:
        self.focus_index = max(0, min(index, len(self.criteria) - 1))
        for i, (label, _group) in enumerate(self._rows):
            focused = i == self.focus_index
            label.setText(("▶ " if focused else "   ") + self.criteria[i])
            label.setStyleSheet("font-weight: bold;" if focused else "")

    def move(self, delta: int) -> None:
        if self.criteria:
            self.set_focus((self.focus_index + delta) % len(self.criteria))

    def set_score(self, r: int, index: int | None = None) -> None:
        """Rate a criterion 1-5 (the focused one by default) and focus the next."""
        index = self.focus_index if index is None else index
        name = self.criteria[index]
        self.values[name] = r
        self._rows[index][1].button(r).setChecked(True)
        if index < len(self.criteria) - 1:
            self.set_focus(index + 1)

    def complete(self) -> bool:
        return all(c in self.values for c in self.criteria)

    def missing(self) -> list[str]:
        return [c for c in self.criteria if c not in self.values]

    def normalised(self) -> dict[str, float]:
        """Each 1-5 rating r stored as (r - 1) / 4 (docs/schema.md)."""
        return {c: (self.values[c] - 1) / 4 for c in self.criteria}


class ChoiceControls(QWidget):
    """A row of buttons that each commit a choice at once (pairwise, thumbs)."""

    chosen = Signal(str)

    def __init__(self, choices: list[tuple[str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.buttons: dict[str, QPushButton] = {}
        for value, text in choices:
            b = key_button(text)
            b.setMinimumHeight(34)
            b.clicked.connect(lambda _c=False, v=value: self.chosen.emit(v))
            lay.addWidget(b)
            self.buttons[value] = b


class RankControls(QWidget):
    """Pick responses best-first by their number; the last one is placed automatically."""

    changed = Signal()
    submit = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.n = 0
        self.order: list[int] = []  # indices into the shown responses, best first
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.picks = QHBoxLayout()
        self.summary = QLabel()
        self.back = key_button("Take back (Backspace)")
        self.back.clicked.connect(self.take_back)
        self.submit_button = key_button("Submit (Enter)")
        self.submit_button.clicked.connect(self.submit)
        lay.addLayout(self.picks)
        lay.addWidget(self.summary, 1)
        lay.addWidget(self.back)
        lay.addWidget(self.submit_button)
        self._buttons: list[QPushButton] = []

    def reset(self, n: int) -> None:
        self.n, self.order = n, []
        for b in self._buttons:
            b.deleteLater()
        self._buttons = []
        for i in range(n):
            b = key_button(f"Next best: {i + 1}")
            b.clicked.connect(lambda _c=False, i=i: self.pick(i))
            self.picks.addWidget(b)
            self._buttons.append(b)
        self._update()

    def pick(self, index: int) -> None:
        if index >= self.n or index in self.order:
            return
        self.order.append(index)
        if len(self.order) == self.n - 1:  # the one left is the worst
            self.order += [i for i in range(self.n) if i not in self.order]
        self._update()

    def take_back(self) -> None:
        if self.order:
            self.order.pop()
            if len(self.order) == self.n - 1:
                self.order.pop()  # the automatic last place goes with its pick
        self._update()

    def complete(self) -> bool:
        return self.n > 0 and len(self.order) == self.n

    def _update(self) -> None:
        for i, b in enumerate(self._buttons):
            b.setEnabled(i not in self.order)
        names = " > ".join(str(i + 1) for i in self.order)
        self.summary.setText(
            f"Best to worst: {names}" + ("  — Enter to submit" if self.complete() else "")
            if self.order
            else "Press the number of the best response, then the next best, …"
        )
        self.changed.emit()


class FlagBar(QWidget):
    """Pick a flag reason (1-5) and, for several responses, which one it is about."""

    flagged = Signal(str, object)  # reason, sample id or None (all shown)
    cancelled = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("<b>Flag because:</b>"))
        for i, reason in enumerate(FLAG_REASONS, start=1):
            b = key_button(f"{i} {reason}")
            b.clicked.connect(lambda _c=False, r=reason: self.choose(r))
            lay.addWidget(b)
        self.target = QComboBox()
        self.target.setFocusPolicy(NOFOCUS)
        lay.addWidget(QLabel("about"))
        lay.addWidget(self.target)
        cancel = key_button("Cancel (Esc)")
        cancel.clicked.connect(self.cancelled)
        lay.addWidget(cancel)
        lay.addStretch(1)

    def open_for(self, labels: list[str], sample_ids: list[int]) -> None:
        self.target.clear()
        if len(sample_ids) > 1:
            self.target.addItem("all shown", None)
        for label, sid in zip(labels, sample_ids, strict=True):
            self.target.addItem(f"response {label}", sid)
        self.show()

    def choose(self, reason: str) -> None:
        self.flagged.emit(reason, self.target.currentData())

    def choose_number(self, n: int) -> bool:
        if 1 <= n <= len(FLAG_REASONS):
            self.choose(FLAG_REASONS[n - 1])
            return True
        return False


class RewriteEdit(QPlainTextEdit):
    """The rewrite text box: Ctrl+Enter saves, Esc cancels."""

    save = Signal()
    cancel = Signal()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
            e.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self.save.emit()
        elif e.key() == Qt.Key.Key_Escape:
            self.cancel.emit()
        else:
            super().keyPressEvent(e)


class RewriteEditor(QWidget):
    """Edit one of the shown responses into a better one."""

    saved = Signal(int, str)  # original sample id, rewritten text
    cancelled = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.setFocusPolicy(NOFOCUS)
        self.source.currentIndexChanged.connect(self._load_source)
        self.edit = RewriteEdit()
        self.edit.save.connect(self._save)
        self.edit.cancel.connect(self.cancelled)
        save, cancel = key_button("Save rewrite (Ctrl+Enter)"), key_button("Cancel (Esc)")
        save.clicked.connect(self._save)
        cancel.clicked.connect(self.cancelled)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Rewrite</b> response"))
        top.addWidget(self.source)
        top.addStretch(1)
        top.addWidget(save)
        top.addWidget(cancel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.edit, 1)
        self._texts: list[str] = []

    def open_for(self, labels: list[str], sample_ids: list[int], texts: list[str]) -> None:
        self._texts = list(texts)
        self.source.blockSignals(True)
        self.source.clear()
        for label, sid in zip(labels, sample_ids, strict=True):
            self.source.addItem(label, sid)
        self.source.blockSignals(False)
        self._load_source(0)
        self.show()
        self.edit.setFocus()

    def original_text(self) -> str:
        return self._texts[self.source.currentIndex()] if self._texts else ""

    def _load_source(self, index: int) -> None:
        if 0 <= index < len(self._texts):
            self.edit.setPlainText(self._texts[index])

    def _save(self) -> None:
        self.saved.emit(self.source.currentData(), self.edit.toPlainText())


class CommentBox(QLineEdit):
    """The comment for the current item; Enter or Esc hands the keys back to the panel."""

    done = Signal()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape):
            self.done.emit()
        else:
            super().keyPressEvent(e)
