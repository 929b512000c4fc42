"""Project settings: generation model and parameters, rubric, queue size, default mode, guidelines.

They live in the project file (meta.settings) so every workstation rating a copy of the project
uses the same rubric and guidelines; saving goes through AppContext.update_settings, which tells
the panels (a new model spec makes the Rate tab's generator reload it).
"""

from __future__ import annotations

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

from gui.context import AppContext
from gui.rate.texts import MODES, guidelines_text

MODEL_HINT = (
    "default (the embedded SmolLM2-135M-Instruct), a model folder, a .gguf file, a hub id, "
    "or checkpoint:ID / checkpoint:latest"
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
        self.rubric = QPlainTextEdit("\n".join(s["rubric"]))
        self.rubric.setFixedHeight(90)
        self.guidelines = QPlainTextEdit(guidelines_text(s))
        self.guidelines.setMinimumHeight(180)
        self._default_guidelines = guidelines_text({})
        reset = QPushButton("Use the default guidelines")
        reset.clicked.connect(lambda: self.guidelines.setPlainText(self._default_guidelines))
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Generation model", model_row)
        form.addRow("", _hint(MODEL_HINT))
        form.addRow("Responses per prompt (K)", self.per_prompt)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Ready items kept ahead", self.queue_size)
        form.addRow("Default rating mode", self.mode)
        form.addRow("Rubric (one criterion a line)", self.rubric)
        form.addRow("Guidelines (Markdown)", self.guidelines)
        form.addRow("", reset)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(640, 720)

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
            "rubric": parse_rubric(self.rubric.toPlainText()),
            "guidelines": guidelines,
        }

    def accept(self) -> None:
        try:
            values = self.values()
        except ValueError as e:
            self.error.setText(str(e))
            return
        current = self.ctx.settings()
        changes = {k: v for k, v in values.items() if current.get(k) != v}
        try:
            if changes:
                self.ctx.update_settings(**changes)
        except Exception as e:  # noqa: BLE001 - a locked or read-only file, said in the dialog
            self.error.setText(f"The settings could not be saved: {e}")
            return
        super().accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (with config.json)")
        if folder:
            self.model.setText(folder)


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
