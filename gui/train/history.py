"""The Train tab's history: earlier runs (overlay their curves, resume one) and the checkpoints
(make one the generation model, copy its folder's path, evaluate it against its starting model).

Both tables read the project file through the GUI thread's connection with small, indexed
queries (at most ``LIMIT`` rows); they never load weights.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.checkpoints import checkpoint_path
from gui.context import AppContext
from gui.train.evaluate import Evaluation
from gui.workers import Task

LIMIT = 500
EVALUATE = "Evaluate against its starting model"
RESUMABLE = ("stopped", "failed", "running", "paused", "created")
HEADLINE = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "accuracy",
    "reward",
    "kl",
    "mean_reward",
)


def local_time(iso: str | None) -> str:
    """'2026-11-29T08:01:02.345+00:00' → '2026-11-29 09:01' in the computer's time zone."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def headline_metrics(metrics: dict[str, float], n: int = 3) -> str:
    """'loss 0.693 · margins 0.012 · accuracies 0.5': the few numbers that say how a step went."""
    shown = [k for k in HEADLINE if k in metrics][:n]
    return " · ".join(f"{k.split('/')[-1]} {metrics[k]:.3g}" for k in shown)


def _table(columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().hide()
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _cell(text: Any, data: Any = None) -> QTableWidgetItem:
    item = QTableWidgetItem("" if text is None else str(text))
    if data is not None:
        item.setData(Qt.ItemDataRole.UserRole, data)
    return item


class RunsTable(QWidget):
    """Every run in the project: tick one to overlay its curves; resume a stopped or failed one."""

    COLUMNS = ("Compare", "Run", "Algorithm", "Status", "Steps", "Started", "Message")
    overlay_toggled = Signal(int, bool)
    """(run id, shown): the user ticked or unticked a run's Compare box."""
    resume_requested = Signal(int)
    """The user asked to resume this run from its last checkpoint."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.live_run_id: int | None = None
        self.busy = False  # a run is training: no second one may start
        self.rows: list[dict[str, Any]] = []
        self.table = _table(self.COLUMNS)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.resume_button = QPushButton("Resume run")
        self.resume_button.setToolTip(
            "Continue the selected stopped or failed run from its last checkpoint, with its own "
            "settings, ratings, optimizer and schedule."
        )
        self.resume_button.clicked.connect(self._resume)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Tick runs to compare their curves with this one."))
        buttons.addStretch(1)
        buttons.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self._checked: set[int] = set()
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_run()
        self.rows = self.ctx.store.recent_runs(LIMIT)
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        for i, run in enumerate(self.rows):
            live = run["id"] == self.live_run_id  # its curve is the solid one
            check = _cell("shown" if live else "", run["id"])
            flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
            if not live:
                flags |= Qt.ItemFlag.ItemIsUserCheckable
                on = run["id"] in self._checked
                check.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            check.setFlags(flags)
            self.table.setItem(i, 0, check)
            cells = (
                run["id"],
                run["algo"],
                run["status"],
                run["last_step"] or 0,
                local_time(run["created_at"]),
                run["message"] or "",
            )
            for j, text in enumerate(cells, start=1):
                self.table.setItem(i, j, _cell(text, run["id"]))
            if selected and run["id"] == selected["id"]:
                self.table.selectRow(i)
        self.table.blockSignals(False)
        self.update_buttons()

    def selected_run(self) -> dict[str, Any] | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return self.rows[rows.pop()] if len(rows) == 1 and self.rows else None

    def select_run(self, run_id: int) -> None:
        for i, run in enumerate(self.rows):
            if run["id"] == run_id:
                self.table.selectRow(i)

    def set_compared(self, run_id: int, shown: bool) -> None:
        """Tick or untick a run's Compare box as if the user had (emits ``overlay_toggled``)."""
        for i, run in enumerate(self.rows):
            item = self.table.item(i, 0)
            if run["id"] == run_id and item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)

    def compared(self) -> set[int]:
        return set(self._checked)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0 or not item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
            return
        run_id, shown = (
            int(item.data(Qt.ItemDataRole.UserRole)),
            item.checkState() == Qt.CheckState.Checked,
        )
        if shown == (run_id in self._checked):
            return
        (self._checked.add if shown else self._checked.discard)(run_id)
        self.overlay_toggled.emit(run_id, shown)

    def update_buttons(self) -> None:
        run = self.selected_run()
        ok = bool(run) and not self.busy and run["status"] in RESUMABLE
        self.resume_button.setEnabled(ok)

    def _resume(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.resume_requested.emit(run["id"])


class CheckpointsTable(QWidget):
    """The project's checkpoints, newest first: one click makes a policy checkpoint the generator,
    another compares it blind with the model its run started from (an arena)."""

    COLUMNS = ("Checkpoint", "Run", "Step", "Kind", "Metrics", "Created")
    reward_model_chosen = Signal(str)
    """A reward checkpoint was chosen for rloo (its spec, ``checkpoint:ID``)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.rows: list[dict[str, Any]] = []
        self.table = _table(self.COLUMNS)
        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.table.doubleClicked.connect(lambda _i: self.use_selected())
        self.use_button = QPushButton("Use as generator")
        self.use_button.clicked.connect(self.use_selected)
        self.copy_button = QPushButton("Copy path")
        self.copy_button.setToolTip(
            "Copy the checkpoint folder's path (it loads with transformers or peft)."
        )
        self.copy_button.clicked.connect(self.copy_path)
        self.evaluation = Evaluation(ctx, self)
        self.evaluation.changed.connect(self.update_buttons)
        self.evaluate_button = QPushButton(EVALUATE)
        self.evaluate_button.clicked.connect(self.evaluate_selected)
        self.hint = QLabel()
        self.hint.setStyleSheet("color: #555")
        buttons = QHBoxLayout()
        buttons.addWidget(self.hint, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.evaluate_button)
        buttons.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        ctx.model_spec_changed.connect(lambda _spec: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        self.rows = self.ctx.store.recent_checkpoints(LIMIT)
        generator = self._generator_id()
        bold = QFont(self.table.font())
        bold.setBold(True)
        self.table.setRowCount(len(self.rows))
        for i, c in enumerate(self.rows):
            kind = c["kind"] + (" (adapter)" if c["adapter"] else "")
            if c["id"] == generator:
                kind += " · generator"
            metrics = c["metrics"]
            cells = (
                f"checkpoint:{c['id']}",
                c["run_id"],
                c["step"],
                kind,
                headline_metrics(metrics),
                local_time(c["created_at"]),
            )
            for j, text in enumerate(cells):
                item = _cell(text, c["id"])
                if c["id"] == generator:
                    item.setFont(bold)
                self.table.setItem(i, j, item)
            self.table.item(i, 4).setToolTip(
                "\n".join(f"{k}: {v:.4g}" for k, v in sorted(metrics.items()))
            )
            if selected and c["id"] == selected["id"]:
                self.table.selectRow(i)
        self.update_buttons()

    def _generator_id(self) -> int | None:
        spec = str(self.ctx.settings().get("model") or "")
        if not spec.startswith("checkpoint:"):
            return None
        ref = spec.split(":", 1)[1]
        if ref == "latest":
            return next((c["id"] for c in self.rows if c["kind"] == "policy"), None)
        return int(ref) if ref.isdigit() else None

    def selected(self) -> dict[str, Any] | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return self.rows[rows.pop()] if len(rows) == 1 and self.rows else None

    def select_checkpoint(self, ckpt_id: int) -> None:
        for i, c in enumerate(self.rows):
            if c["id"] == ckpt_id:
                self.table.selectRow(i)

    def update_buttons(self) -> None:
        c = self.selected()
        self.copy_button.setEnabled(c is not None)
        self.use_button.setEnabled(c is not None)
        running = self.evaluation.running
        self.evaluate_button.setText("Stop evaluating" if running else EVALUATE)
        self.evaluate_button.setEnabled(running or (c is not None and c["kind"] == "policy"))
        self.evaluate_button.setToolTip(
            "Stop the arena now; the answers and judgments made so far are kept."
            if running
            else "Compare this checkpoint blind with the model its run started from on the "
            "evaluation prompts: both answer them, then the project's judge (Settings) or you, "
            "in the Rate tab's Arena mode, pick the better answer. The Data tab shows who won."
        )
        if c is not None and c["kind"] == "reward":
            self.use_button.setText("Use for rloo")
            self.use_button.setToolTip(
                "A reward model scores samples; it does not write them. Use it as rloo's reward "
                "model (online RL), or to score responses."
            )
            self.hint.setText(
                f"checkpoint:{c['id']} is a reward model: it is for rloo and scoring."
            )
        else:
            self.use_button.setText("Use as generator")
            self.use_button.setToolTip(
                "Make this checkpoint the generation model: the next samples come from it and "
                "carry its id, so their ratings tell whether training helped."
            )
            self.hint.setText("")

    def use_selected(self) -> None:
        c = self.selected()
        if c is None:
            return
        spec = f"checkpoint:{c['id']}"
        if c["kind"] == "reward":
            self.reward_model_chosen.emit(spec)
            return
        self.ctx.use_model(spec)
        self.ctx.status_message.emit(
            f"New samples now come from {spec} (run {c['run_id']}, step {c['step']})."
        )

    def evaluate_selected(self) -> Task | None:
        """Start the arena of the selected policy checkpoint and its starting model (or stop the
        one running); returns the Task started."""
        if self.evaluation.running:
            self.evaluation.stop()
            return None
        c = self.selected()
        if c is None or c["kind"] != "policy":
            return None
        return self.evaluation.start(c["id"])

    def copy_path(self) -> None:
        c = self.selected()
        if c is None:
            return
        path = str(checkpoint_path(self.ctx.store, c))
        QGuiApplication.clipboard().setText(path)
        self.ctx.status_message.emit(f"Copied {path}")
