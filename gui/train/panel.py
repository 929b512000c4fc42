"""The Train tab: pick an algorithm and its settings, train in the background, watch it live.

Start hands the form's config to ``gui.train.run.TrainingRun``, which runs ``core.training.train``
in a ``gui.workers.Task``. Every optimizer step arrives here as a ``StepMetrics`` on the GUI
thread and feeds the plots (gui/plots.py), the log, the status bar's progress and, when one was
saved, the checkpoint list. Nothing here runs model code or a slow query.
"""

from __future__ import annotations

import dataclasses
import html
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import UserError
from core.training import StepMetrics
from gui.context import AppContext
from gui.plots import PLOTTED_METRICS, MetricPlots
from gui.train.data_count import DataCounter
from gui.train.form import TrainControls
from gui.train.history import CheckpointsTable, RunsTable
from gui.train.run import TrainingRun
from gui.workers import error_text

LOG_LINES = 5000
ALERT_STYLE = "background: #fdecea; color: #8e1b1b; border: 1px solid #e0a09a; padding: 4px;"
STEP_SUMMARY = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "accuracy",
    "reward",
    "kl",
    "entropy",
    "grad_norm",
    "learning_rate",
    "tokens_per_second",
)


class TrainPanel(QWidget):
    """Settings, Start / Pause / Resume / Stop, live plots, log, runs and checkpoints."""

    step_done = Signal(object)
    """A ``StepMetrics`` from the running run, after the panel showed it."""
    run_ended = Signal(object, str)
    """(run id or None, status: finished, stopped, failed or "not started") once a run ends."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.error_box: QMessageBox | None = None
        self._t_first: tuple[float, int] | None = None
        self._alerts: list[str] = []  # the live run's, newest first
        self._counted = False
        self.run = TrainingRun(ctx, self)
        self._build()
        self.counter = DataCounter(ctx, self.form.values, self)
        self.counter.counted.connect(self._show_data_line)
        self.run.state_changed.connect(self._on_state)
        self.run.step.connect(self._on_step)
        self.run.message.connect(self._on_message)
        self.run.failed.connect(self._on_failed)
        self.run.ended.connect(self._on_ended)
        self.form.algo_changed.connect(lambda _a: self.request_data_line())
        self.form.changed.connect(self._on_form_changed)
        self.runs.overlay_toggled.connect(self._on_overlay)
        self.runs.resume_requested.connect(self.resume_run)
        self.checkpoints.reward_model_chosen.connect(self._use_reward_model)
        ctx.data_changed.connect(self._on_data_changed)
        ctx.model_spec_changed.connect(self._show_project_model)
        self._show_project_model(ctx.settings()["model"])
        self._offer_reward_checkpoints()
        self._on_state("idle")
        newest = next((r for r in self.runs.rows if r["last_step"]), None)
        if newest is not None:  # a returning researcher sees where the last run ended
            self.runs.set_compared(newest["id"], True)
            self.progress_label.setText(
                f"Run {newest['id']} ({newest['algo']}, {newest['status']}) is shown dashed; "
                "press Start to train again."
            )

    @property
    def task(self):
        """The running training Task, if any."""
        return self.run.task

    def _build(self) -> None:
        self.controls = TrainControls(self.ctx.device)
        self.form, self.data_label = self.controls.form, self.controls.data_label
        self.start_button, self.pause_button = (
            self.controls.start_button,
            self.controls.pause_button,
        )
        self.resume_button, self.stop_button = (
            self.controls.resume_button,
            self.controls.stop_button,
        )
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)

        self.plots = MetricPlots()
        self.alert_banner = QLabel(wordWrap=True)
        self.alert_banner.setStyleSheet(ALERT_STYLE)
        self.alert_banner.setToolTip("What the training diagnostics noticed (docs/diagnostics.md)")
        self.alert_banner.hide()
        self.progress_label = QLabel("No run yet: pick an algorithm and press Start.")
        self.save_button = QPushButton("Save plots as PNG…")
        self.save_button.clicked.connect(lambda: self.save_plots())
        header = QHBoxLayout()
        header.addWidget(self.progress_label, 1)
        header.addWidget(self.save_button)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(header)
        top_layout.addWidget(self.alert_banner)
        top_layout.addWidget(self.plots, 1)

        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.runs = RunsTable(self.ctx)
        self.checkpoints = CheckpointsTable(self.ctx)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log, "Log")
        self.tabs.addTab(self.runs, "Runs")
        self.tabs.addTab(self.checkpoints, "Checkpoints")

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(top)
        right.addWidget(self.tabs)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.controls)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

    # ---- starting and steering a run -------------------------------------------------------------
    def start(self) -> None:
        """Train with the form's settings (a new run)."""
        if self.run.busy:
            return
        try:
            config = self.form.config()
        except (UserError, TypeError, ValueError) as e:
            self._show_error("These settings cannot train", e)
            return
        self.plots.start_run(f"new {config.algo} run")
        self._log(f"Starting {config.algo}…")
        self._launch(dataclasses.replace(config), None)

    def resume_run(self, run_id: int) -> None:
        """Continue run ``run_id`` from its last checkpoint (its own settings and ratings)."""
        if self.run.busy:
            return
        run = self.ctx.store.run(run_id)
        if run is None:
            return
        if run["status"] in ("running", "paused"):
            answer = QMessageBox.question(
                self,
                "Resume run",
                f"Run {run_id} is marked {run['status']}. If another program (the train command) is "
                "still training it, resuming here makes two writers. Resume anyway?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.runs.set_compared(run_id, False)
        self.plots.start_run(f"run {run_id} ({run['algo']})")
        done = self.ctx.store.metric_history(run_id, PLOTTED_METRICS)
        for step, metrics in done:  # the curve continues where the run stopped
            self.plots.add_step(step, metrics)
        self._log(f"Resuming run {run_id} from its last checkpoint…")
        self._launch(None, run_id)
        for alert in self.ctx.store.alerts(run_id):  # raised before it stopped
            self.show_alert(alert["step"], alert["rule"], alert["message"])

    def _launch(self, config, resume_run_id: int | None) -> None:
        self._t_first = None
        self._alerts = []
        self.alert_banner.hide()
        shown_before = self.runs.live_run_id
        self.runs.busy = True
        self.runs.live_run_id = resume_run_id
        self.runs.refresh()
        if shown_before is not None and shown_before != resume_run_id:
            self.runs.set_compared(shown_before, True)  # the last run stays on screen, dashed
        self.ctx.background_progress.emit("Preparing training…", 0, -1)
        self.run.start(config, resume_run_id)

    def pause(self) -> None:
        if self.run.state in ("starting", "running"):
            self.run.pause()
            self._log("Pausing: the run waits after its current step.")

    def resume(self) -> None:
        if self.run.state == "paused":
            self.run.resume()
            self._log("Resumed.")

    def stop(self) -> None:
        if self.run.busy and self.run.state != "stopping":
            self.run.stop()
            self._log("Stopping after the current step; a checkpoint is saved so it can resume.")

    def shutdown(self) -> None:
        """Stop this panel's background work and wait for it (a run saves a checkpoint first)."""
        self.counter.shutdown()
        self.run.shutdown()
        self.plots.shutdown()

    # ---- what the run reports --------------------------------------------------------------------
    def _on_message(self, text: str) -> None:
        self._log(text)
        if self.run.state == "starting":
            self.ctx.background_progress.emit(text[:60], 0, -1)

    def _on_step(self, m: StepMetrics) -> None:
        if self.runs.live_run_id != m.run_id:  # the first step of a new run
            self.runs.live_run_id = m.run_id
            self.plots.set_live_label(f"run {m.run_id} (live)")
            self.runs.refresh()
        if self._t_first is None:
            self._t_first = (time.monotonic(), m.step)
        self.plots.add_step(m.step, m.metrics)
        for alert in m.alerts:
            self.show_alert(alert.step, alert.rule, alert.message)
        shown = "  ".join(f"{k}={m.metrics[k]:.4g}" for k in STEP_SUMMARY if k in m.metrics)
        self._log(f"step {m.step}/{m.total_steps}  {shown}")
        self.progress_label.setText(self._progress_text(m))
        self.ctx.background_progress.emit(f"Training run {m.run_id}", m.step, m.total_steps)
        if m.checkpoint_id is not None:
            self.checkpoints.refresh()
            self.checkpoints.select_checkpoint(m.checkpoint_id)
            self._offer_reward_checkpoints()
        self.step_done.emit(m)

    def show_alert(self, step: int, rule: str, message: str) -> None:
        """A diagnostic alert: the banner (newest first, at most three), a mark on the plots."""
        self._alerts = [f"⚠ {message}", *self._alerts][:3]
        self.alert_banner.setText("<br>".join(html.escape(a) for a in self._alerts))
        self.alert_banner.show()
        self.plots.mark_alert(step, rule)
        self._log(f"alert: [{rule}] {message}")

    def _progress_text(self, m: StepMetrics) -> str:
        text = f"Run {m.run_id} · step {m.step} / {m.total_steps}"
        t0, first = self._t_first or (0.0, m.step)
        if first < m.step < m.total_steps:
            per_step = (time.monotonic() - t0) / (m.step - first)
            text += f" · {per_step:.2f} s/step · about {_duration(per_step * (m.total_steps - m.step))} left"
        return text

    def _on_failed(self, exc: BaseException, tb: str) -> None:
        self._log(f"Error: {error_text(exc)}")
        if not isinstance(exc, UserError):
            self._log(tb.rstrip())
        self._show_error("Training stopped", exc, tb)

    def _on_ended(self, run_id: int | None, status: str, message: str) -> None:
        self.plots.flush()
        if run_id is not None:
            self._log(f"Run {run_id} {status}" + (f": {message}" if message else "."))
            self.progress_label.setText(
                f"Run {run_id} {status}" + (f" ({message})" if message else "")
            )
            self.ctx.status_message.emit(f"Training run {run_id} {status}.")
        else:
            self.progress_label.setText("The run did not start; the log says why.")
        self.runs.busy = False
        self.runs.live_run_id = run_id
        self.ctx.background_progress.emit("", 0, 0)
        if self.run.interrupted:  # the app is closing (gui.workers cancelled every Task)
            self.counter.shutdown()  # start no new work while the window waits to close
        else:
            self.plots.set_live_label(f"run {run_id}" if run_id is not None else "this run")
            self.ctx.data_changed.emit()  # runs, metrics and checkpoints were added
        self.run_ended.emit(run_id, status)

    # ---- plots, runs, checkpoints ----------------------------------------------------------------
    def _on_overlay(self, run_id: int, shown: bool) -> None:
        if not shown:
            self.plots.remove_overlay(run_id)
            return
        algo = next((r["algo"] for r in self.runs.rows if r["id"] == run_id), "")
        history = self.ctx.store.metric_history(run_id, PLOTTED_METRICS)
        self.plots.set_overlay(run_id, f"run {run_id} ({algo})", history)

    def save_plots(self, path: str | None = None) -> str | None:
        """Save the four plots as one PNG (asks where when no path is given)."""
        if path is None:
            run_id = self.run.run_id
            name = f"run-{run_id}-plots.png" if run_id is not None else "training-plots.png"
            path, _filter = QFileDialog.getSaveFileName(
                self, "Save plots as PNG", str(self.ctx.db_path.parent / name), "PNG (*.png)"
            )
            if not path:
                return None
        saved = str(self.plots.save_png(path))
        self.ctx.status_message.emit(f"Saved {saved}")
        return saved

    def _use_reward_model(self, spec: str) -> None:
        """A reward checkpoint was chosen in the list: set it up as rloo's reward model."""
        self.form.set_algo("rloo")
        self.form.set_value("reward_model", spec)
        self.form.set_value("rater", None)
        self._log(f"rloo will score its samples with the reward model {spec}.")

    def _offer_reward_checkpoints(self) -> None:
        self.form.set_reward_checkpoints(
            [
                (f"checkpoint:{c['id']}", f"run {c['run_id']}, step {c['step']}")
                for c in self.checkpoints.rows
                if c["kind"] == "reward"
            ]
        )

    def _show_project_model(self, spec: str) -> None:
        self.form.set_placeholder("model", f"the project's model: {spec}")

    def _on_data_changed(self) -> None:
        self.runs.refresh()
        self.checkpoints.refresh()
        self._offer_reward_checkpoints()
        self.request_data_line()

    # ---- how much data the algorithm has ---------------------------------------------------------
    def _on_form_changed(self, name: str) -> None:
        if name in (
            "annotators",
            "criterion",
            "score_margin",
            "score_threshold",
            "rater",
            "reward_model",
            "heldout_fraction",
        ):
            self.request_data_line()

    def request_data_line(self) -> None:
        """Recount the training data (in the background; a hidden tab counts when shown)."""
        if self.isVisible():
            self.counter.request()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.request_data_line()  # ratings made in the Rate tab meanwhile count too

    def is_ready(self) -> bool:
        """The data line is counted (the window's --screenshot waits for this)."""
        return self._counted and not self.counter.busy()

    def _show_data_line(self, text: str, enough: bool) -> None:
        self._counted = True
        self.controls.show_data_line(text, enough)

    # ---- small things ----------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        self.controls.set_state(state)
        self.runs.update_buttons()
        if state == "stopping":
            self.progress_label.setText(self.progress_label.text().split(" · ")[0] + " · stopping…")

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def _show_error(self, title: str, exc: BaseException, tb: str | None = None) -> None:
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, error_text(exc), parent=self)
        if tb and not isinstance(exc, UserError):
            box.setDetailedText(tb)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: setattr(self, "error_box", None))
        self.error_box = box
        box.open()  # not exec(): the app keeps running behind it


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["TrainPanel"]
