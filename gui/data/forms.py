"""The Data tab's forms: a box per background job (import, export, checkpoint export, merge), the
export options and the checkpoint chooser. They hold no logic beyond reading what the user set;
gui/data_panel.py runs the jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.exchange.ratings import RAW_FORMATS
from gui.data.jobs import ExportOptions, JobProgress

FORMATS = (  # (format, label, what the file holds)
    (
        "jsonl",
        "jsonl — every rating, raw",
        "One JSON object per rating: prompt, the responses judged, the model of each, kind, value, "
        "comment, seconds, annotator, timestamps.",
    ),
    ("csv", "csv — every rating, raw", "The raw rows as a spreadsheet; lists and objects as JSON."),
    ("parquet", "parquet — every rating, raw", "The raw rows as typed Parquet columns."),
    (
        "preference",
        "preference — TRL prompt / chosen / rejected",
        "The pairs training would use (DPO, reward model), several annotators aggregated.",
    ),
    (
        "unpaired",
        "unpaired — TRL KTO prompt / completion / label",
        "Single responses labelled good or bad (KTO).",
    ),
    ("sft", "sft — demonstrations", "Rewrites (and optionally top-rated responses) to imitate."),
)
CHECKPOINT_FORMATS = (
    (
        "hf",
        "Hugging Face folder",
        "The weights as saved, the tokenizer, a generation config and a model card (README.md).",
    ),
    (
        "gguf",
        "GGUF file (llama.cpp, Ollama, LM Studio)",
        "One file with the weights, tokenizer and chat template, for Llama-family models; an "
        "adapter is merged first. The model card goes beside it as NAME.README.md.",
    ),
)
QUANTS = (
    ("f16", "f16 — full quality", "16-bit weights: what the checkpoint predicts, at half of fp32."),
    ("q8_0", "q8_0 — half of f16", "8-bit blocks: about half the size of f16, close to it."),
    ("q4_0", "q4_0 — smallest, lossy", "4-bit blocks: the smallest file; lossy on small models."),
)
EXTENSIONS = {"csv": ".csv", "parquet": ".parquet"}  # everything else is JSON Lines
TONES = {
    "ok": "color: #1b5e20;",
    "note": "color: #8a5a00;",
    "error": "color: #b00020; font-weight: bold;",
}


def extension(fmt: str) -> str:
    return EXTENSIONS.get(fmt, ".jsonl")


class JobBox(QGroupBox):
    """One kind of background job: its controls, a button that becomes Cancel while the job runs,
    a progress bar and a line saying how it went."""

    def __init__(self, title: str, button_text: str, on_start: Callable[[], Any]):
        super().__init__(title)
        self.button_text = button_text
        self._on_start = on_start
        self._cancel: Callable[[], None] | None = None
        self.controls = QVBoxLayout()
        self.button = QPushButton(button_text)
        self.button.clicked.connect(self._clicked)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result.hide()
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(self.controls)
        layout.addLayout(row)
        layout.addWidget(self.result)

    def running(self) -> bool:
        return self.progress.isVisible()

    def _clicked(self) -> None:
        if not self.running():
            self._on_start()
        elif self._cancel is not None:
            self._cancel()
            self.button.setEnabled(False)
            self.button.setText("Cancelling…")

    def started(self, cancel: Callable[[], None] | None) -> None:
        """The job runs: show a busy bar; the button cancels it (disabled when it cannot)."""
        self._cancel = cancel
        self.button.setText("Cancel")
        self.button.setEnabled(cancel is not None)
        self.result.hide()
        self.show_progress(JobProgress("starting…"))
        self.progress.show()

    def show_progress(self, p: JobProgress) -> None:
        if p.total <= 0:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, p.total)
            self.progress.setValue(min(p.done, p.total))
        self.progress.setFormat(p.text)
        self.progress.setToolTip(p.text)

    def stopped(self) -> None:
        self._cancel = None
        self.progress.hide()
        self.progress.setRange(0, 1)  # a busy bar animates even while hidden
        self.button.setText(self.button_text)
        self.button.setEnabled(True)

    def show_result(self, text: str, tone: str = "ok") -> None:
        self.result.setStyleSheet(TONES[tone])
        self.result.setText(text)
        self.result.show()


class ExportForm(QWidget):
    """Format, anonymisation, undone ratings, annotators, and the training formats' thresholds."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.format = _choices(FORMATS)
        self.format.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.format.setMinimumContentsLength(16)
        self.anonymize = QCheckBox("Anonymise annotator names")
        self.anonymize.setToolTip(
            "Replace each name by a stable salted code (the salt stays in the project file), "
            "so the same person has the same code in every export of this project."
        )
        self.include_superseded = QCheckBox("Include undone (superseded) ratings")
        self.plain = QCheckBox("Plain strings instead of chat messages")
        self.plain.setToolTip(
            "Rows are TRL's conversational form by default, because the responses were generated "
            "through the model's chat template and TRL applies it only to chat messages. Plain "
            "strings train without the template (a chat prompt stays a chat)."
        )
        self.annotators = QListWidget()
        self.annotators.setMaximumHeight(66)
        self.annotators.setToolTip("Tick annotators to export only their ratings; none: everyone.")
        self.min_agreement_on = QCheckBox("Min agreement")
        self.min_agreement = _spin(0.0, 1.0, 0.05, 0.75, 2)
        self.min_agreement_on.setToolTip(
            "Drop items where fewer than this share of the annotators agree (training formats)."
        )
        self.min_score_on = QCheckBox("Top-rated too")
        self.min_score = _spin(1.0, 5.0, 0.5, 4.5, 1)
        self.min_score.setSuffix(" / 5")
        self.min_score_on.setToolTip(
            "sft: besides rewrites, use responses whose mean overall score is at least this."
        )
        self.form = form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Format", self.format)
        form.addRow(self.anonymize)
        form.addRow(self.include_superseded)
        form.addRow(self.plain)
        form.addRow("Annotators", self.annotators)
        form.addRow(self.min_agreement_on, self.min_agreement)
        form.addRow(self.min_score_on, self.min_score)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.min_agreement_on.toggled.connect(self._format_changed)
        self.min_score_on.toggled.connect(self._format_changed)
        self._format_changed()

    def fmt(self) -> str:
        return str(self.format.currentData())

    def set_format(self, fmt: str) -> None:
        self.format.setCurrentIndex(self.format.findData(fmt))

    def _format_changed(self) -> None:
        """Show only the options that apply: training rows hold no annotator names and never
        undone ratings; agreement thresholds apply to training formats only."""
        raw, sft = self.fmt() in RAW_FORMATS, self.fmt() == "sft"
        self.format.setToolTip(dict((f, tip) for f, _, tip in FORMATS)[self.fmt()])
        for widget, shown in (
            (self.anonymize, raw),
            (self.include_superseded, raw),
            (self.plain, not raw),
            (self.min_agreement_on, not raw),
            (self.min_score_on, sft),
        ):
            self.form.setRowVisible(widget, shown)
        self.min_agreement.setEnabled(self.min_agreement_on.isChecked())
        self.min_score.setEnabled(self.min_score_on.isChecked())

    def set_annotators(self, counts: list[tuple[str, int]]) -> None:
        """(name, live ratings) of everyone with ratings; keeps what was ticked."""
        ticked = set(self.ticked_annotators())
        self.annotators.clear()
        for name, n in counts:
            item = QListWidgetItem(f"{name}  ({n})")
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            checked = Qt.CheckState.Checked if name in ticked else Qt.CheckState.Unchecked
            item.setCheckState(checked)
            self.annotators.addItem(item)

    def ticked_annotators(self) -> list[str]:
        items = (self.annotators.item(i) for i in range(self.annotators.count()))
        return [
            str(it.data(Qt.ItemDataRole.UserRole))
            for it in items
            if it.checkState() == Qt.CheckState.Checked
        ]

    def tick(self, names: list[str]) -> None:
        for i in range(self.annotators.count()):
            item = self.annotators.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in names
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def options(self) -> ExportOptions:
        """What the form says, without the options hidden for this format."""
        raw, fmt = self.fmt() in RAW_FORMATS, self.fmt()
        score = self.min_score.value()
        agreement = not raw and self.min_agreement_on.isChecked()
        top_rated = fmt == "sft" and self.min_score_on.isChecked()
        return ExportOptions(
            fmt=fmt,
            anonymize=raw and self.anonymize.isChecked(),
            include_superseded=raw and self.include_superseded.isChecked(),
            plain=not raw and self.plain.isChecked(),
            annotators=self.ticked_annotators() or None,
            min_agreement=self.min_agreement.value() if agreement else None,
            min_score=(score - 1) / 4 if top_rated else None,
        )


class CheckpointForm(QWidget):
    """Which checkpoint to export, as what (a Hugging Face folder or one GGUF file), whether to
    merge an adapter into its base model (a GGUF file always does), and the GGUF quantization."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.choice = QComboBox()
        self.choice.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.choice.setMinimumContentsLength(16)
        self.format = _choices(CHECKPOINT_FORMATS)
        self.quant = _choices(QUANTS)
        self.merged = QCheckBox("Merge the adapter into the base model")
        self.merged.setToolTip(
            "Merged: loads with AutoModelForCausalLM.from_pretrained. Not merged: an adapter "
            "folder for PeftModel.from_pretrained over the base model."
        )
        self.form = form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.choice)
        form.addRow("As", self.format)
        form.addRow("Quantization", self.quant)
        form.addRow(self.merged)
        self.choice.currentIndexChanged.connect(self._changed)
        self.format.currentIndexChanged.connect(self._changed)
        self.set_checkpoints([])

    def fmt(self) -> str:
        return str(self.format.currentData())

    def set_format(self, fmt: str, quant: str | None = None) -> None:
        self.format.setCurrentIndex(self.format.findData(fmt))
        if quant is not None:
            self.quant.setCurrentIndex(self.quant.findData(quant))

    def set_checkpoints(self, rows: list[dict[str, Any]]) -> None:
        """Rows of the checkpoints table (id, kind, step, run_id, adapter, created_at), newest
        first; keeps the current choice when it is still there."""
        keep = self.selected()
        self.choice.clear()
        for r in rows:
            form = "adapter" if r["adapter"] else "full weights"
            run = f"run {r['run_id']}, " if r["run_id"] is not None else ""
            text = (
                f"checkpoint:{r['id']} — {r['kind']}, {form}, {run}step {r['step']} "
                f"({r['created_at'][:16].replace('T', ' ')})"
            )
            self.choice.addItem(text, r)
        if not rows:
            self.choice.addItem("No checkpoints yet: train one in the Train tab", None)
        self.choice.setEnabled(bool(rows))
        if keep is not None:
            index = next((i for i, r in enumerate(rows) if r["id"] == keep["id"]), 0)
            self.choice.setCurrentIndex(index)
        self._changed()

    def selected(self) -> dict[str, Any] | None:
        return self.choice.currentData()

    def select(self, checkpoint_id: int) -> None:
        for i in range(self.choice.count()):
            data = self.choice.itemData(i)
            if data is not None and data["id"] == checkpoint_id:
                self.choice.setCurrentIndex(i)

    def _changed(self) -> None:
        """GGUF is for policies, and always holds full weights; the quantization is GGUF's."""
        r = self.selected()
        policy = r is not None and r["kind"] == "policy"
        if not policy:
            self.set_format("hf")
        self.format.setEnabled(policy)
        gguf = self.fmt() == "gguf"
        self.form.setRowVisible(self.quant, gguf)
        self.form.setRowVisible(self.merged, not gguf)
        mergeable = policy and bool(r["adapter"])
        self.merged.setEnabled(mergeable)
        if not mergeable:
            self.merged.setChecked(False)


def _choices(items: tuple[tuple[str, str, str], ...]) -> QComboBox:
    """A combo box of (value, label, tooltip) items."""
    box = QComboBox()
    for value, label, tip in items:
        box.addItem(label, value)
        box.setItemData(box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
    return box


def _spin(low: float, high: float, step: float, value: float, decimals: int) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setValue(value)
    return spin
