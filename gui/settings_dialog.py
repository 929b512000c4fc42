"""Project settings: generation model and parameters, rubric, queue size, default mode, guidelines,
the arena's judge; and the evaluation prompts (kept apart from training).

They live in the project file (meta.settings) so every workstation rating a copy of the project
uses the same rubric and guidelines; saving goes through AppContext.update_settings, which tells
the panels (a new model spec makes the Rate tab's generator reload it). Keeping prompts for
evaluation is not a setting but a change to the prompts: its button does it at once, on a Task.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.errors import UserError
from core.prompts import SplitResult, split_for_evaluation
from core.raters import load_rater
from gui.context import AppContext
from gui.rate.texts import MODES, guidelines_text
from gui.workers import Task, error_text, stop

MODEL_HINT = (
    "default (the embedded SmolLM2-135M-Instruct), a model folder, a .gguf file, a hub id, "
    "or checkpoint:ID / checkpoint:latest"
)
JUDGE_HINT = (
    "A scripted judge for arenas, MODULE:FUNC or path/to/file.py:FUNC returning a score in "
    "[0, 1] (e.g. core.raters:sentiment); empty: people judge in the Rate tab's Arena mode."
)
SELECTION_CHOICES = (
    ("coverage", "Coverage: spread over prompts"),
    ("uncertain", "Uncertain: what the newest model is least sure of"),
    ("random", "Random"),
)
SELECTION_HINT = (
    "How pairwise items are picked. Uncertain asks the newest reward model (or trained policy) "
    "which pairs it is least sure of and keeps a random share as a control; each rating records "
    "how its item was picked."
)
EVAL_HINT = (
    "Evaluation prompts are never trained on and never shown in the normal rating modes; arenas "
    "compare models on them. Only prompts nobody has rated yet can be kept."
)


def parse_rubric(text: str) -> list[str]:
    """One criterion per line (or comma-separated); blank lines dropped, duplicates refused."""
    raw = [c.strip() for line in text.splitlines() for c in line.split(",")]
    criteria = [c for c in raw if c]
    if not criteria:
        raise ValueError("The rubric needs at least one criterion (e.g. overall).")
    dupes = sorted({c for c in criteria if criteria.count(c) > 1})
    if dupes:
        raise ValueError(f"The rubric lists {', '.join(dupes)} more than once.")
    return criteria


class SettingsDialog(QDialog):
    """Edit the project settings; OK saves them to the project file at once."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Project settings")
        s = ctx.settings()
        self.model = QLineEdit(s["model"])
        self.model.setToolTip(MODEL_HINT)
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        self.per_prompt = _spin(1, 64, s["per_prompt"])
        self.max_new_tokens = _spin(1, 8192, s["max_new_tokens"])
        self.temperature = _dspin(0.0, 5.0, s["temperature"], 0.05)
        self.top_p = _dspin(0.01, 1.0, s["top_p"], 0.01)
        self.queue_size = _spin(1, 256, s["queue_size"])
        self.mode = QComboBox()
        for value, text in MODES:
            self.mode.addItem(text, value)
        self.mode.setCurrentIndex(max(0, self.mode.findData(s["mode"])))
        self.selection = QComboBox()
        for value, text in SELECTION_CHOICES:
            self.selection.addItem(text, value)
        self.selection.setCurrentIndex(max(0, self.selection.findData(s.get("selection"))))
        self.selection.setToolTip(SELECTION_HINT)
        self.random_fraction = _dspin(0.0, 1.0, float(s.get("random_fraction", 0.2)), 0.05)
        self.random_fraction.setToolTip("With uncertain: the share of items picked at random.")
        self.rubric = QPlainTextEdit("\n".join(s["rubric"]))
        self.rubric.setFixedHeight(90)
        self.guidelines = QPlainTextEdit(guidelines_text(s))
        self.guidelines.setMinimumHeight(150)
        self._default_guidelines = guidelines_text({})
        reset = QPushButton("Use the default guidelines")
        reset.clicked.connect(lambda: self.guidelines.setPlainText(self._default_guidelines))
        self.judge = QLineEdit(s.get("judge") or "")
        self.judge.setPlaceholderText("MODULE:FUNC (empty: people judge)")
        self.judge.setToolTip(JUDGE_HINT)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        self.eval_row = EvalPromptsRow(ctx, self.error)

        form = QFormLayout()
        form.addRow("Generation model", model_row)
        form.addRow("", _hint(MODEL_HINT))
        form.addRow("Responses per prompt (K)", self.per_prompt)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Ready items kept ahead", self.queue_size)
        form.addRow("Default rating mode", self.mode)
        form.addRow("Pairwise items picked by", self.selection)
        form.addRow("Random share (control)", self.random_fraction)
        form.addRow("Rubric (one criterion a line)", self.rubric)
        form.addRow("Guidelines (Markdown)", self.guidelines)
        form.addRow("", reset)
        form.addRow("Evaluation prompts", self.eval_row)
        form.addRow("", _hint(EVAL_HINT))
        form.addRow("Arena judge", self.judge)
        form.addRow("", _hint(JUDGE_HINT))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(660, 820)

    def values(self) -> dict[str, Any]:
        """The settings as entered; raises ValueError with a message for people."""
        spec = self.model.text().strip()
        if not spec:
            raise ValueError(f"Give a generation model: {MODEL_HINT}.")
        guidelines = self.guidelines.toPlainText()
        if guidelines.strip() == self._default_guidelines.strip() or not guidelines.strip():
            guidelines = None  # follow the shipped default, including its future updates
        return {
            "model": spec,
            "per_prompt": self.per_prompt.value(),
            "max_new_tokens": self.max_new_tokens.value(),
            "temperature": round(self.temperature.value(), 4),
            "top_p": round(self.top_p.value(), 4),
            "queue_size": self.queue_size.value(),
            "mode": self.mode.currentData(),
            "selection": self.selection.currentData(),
            "random_fraction": round(self.random_fraction.value(), 4),
            "rubric": parse_rubric(self.rubric.toPlainText()),
            "guidelines": guidelines,
            "judge": self.judge.text().strip() or None,
        }

    def accept(self) -> None:
        try:
            values = self.values()
        except ValueError as e:
            self.error.setText(str(e))
            return
        current = self.ctx.settings()
        changes = {k: v for k, v in values.items() if current.get(k) != v}
        if changes.get("judge"):
            try:
                load_rater(changes["judge"])
            except UserError as e:
                self.error.setText(f"The judge does not load, so nothing was saved: {e}")
                return
        try:
            if changes:
                self.ctx.update_settings(**changes)
        except Exception as e:  # noqa: BLE001 - a locked or read-only file, said in the dialog
            self.error.setText(f"The settings could not be saved: {e}")
            return
        super().accept()

    def done(self, result: int) -> None:  # noqa: D401 - Qt override
        """Closing stops keeping prompts for evaluation if it still runs (it is one transaction:
        all of them or none)."""
        self.eval_row.stop()
        super().done(result)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with config.json)")
        if folder:
            self.model.setText(folder)


class EvalPromptsRow(QWidget):
    """How many prompts are kept for evaluation, and a button to keep more (a Task: it reads
    which prompts have ratings)."""

    def __init__(self, ctx: AppContext, error: QLabel, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx, self.error = ctx, error
        self.task: Task | None = None
        self.count = QLabel()
        self.amount = QSpinBox()
        self.amount.setToolTip("How many evaluation prompts the project should have in all.")
        self.keep_button = QPushButton("Keep for evaluation")
        self.keep_button.clicked.connect(self.keep)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.count, 1)
        lay.addWidget(self.amount)
        lay.addWidget(self.keep_button)
        self.show_counts()
        total, kept = self._counts()
        self.amount.setValue(kept or min(total, max(1, total // 10)))

    def _counts(self) -> tuple[int, int]:
        store = self.ctx.store
        return store.count("prompts"), store.eval_prompt_count()

    def show_counts(self) -> None:
        total, kept = self._counts()
        self.count.setText(f"{kept:,} of {total:,} prompts kept for evaluation")
        self.amount.setRange(0, total)
        self.keep_button.setEnabled(self.task is None and total > 0)

    def keep(self) -> Task | None:
        """Mark prompts as evaluation prompts until the project has the amount chosen."""
        if self.task is not None:
            return None
        amount, ctx = self.amount.value(), self.ctx

        def work(_cancel: threading.Event) -> Iterator[str]:
            store = ctx.open_worker_store()
            try:
                yield "splitting"
                return split_for_evaluation(store, amount)
            finally:
                store.close()

        task = Task(work, name="eval-split", parent=self)
        task.result.connect(self._kept)
        task.failed.connect(lambda e, _tb: self.error.setText(error_text(e)))
        task.finished.connect(self._finished)
        self.task = task
        self.keep_button.setEnabled(False)
        task.start()
        return task

    def _kept(self, res: SplitResult) -> None:
        self.error.setText("")
        self.ctx.status_message.emit(str(res))
        if res.marked:
            self.ctx.data_changed.emit()

    def _finished(self) -> None:
        self.task = None
        self.show_counts()

    def stop(self) -> None:
        if self.task is not None:
            stop([self.task])


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(int(value))
    return w


def _dspin(lo: float, hi: float, value: float, step: float) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setDecimals(2 if step >= 0.01 else 3)
    w.setSingleStep(step)
    w.setValue(float(value))
    return w


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(dark); font-size: small;")
    return label
