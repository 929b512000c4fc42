"""The Data tab: bring prompts in, take ratings and checkpoints out, merge the other workstations'
project files, and see the project's statistics and the arena's leaderboard with plots.

Every slow step runs in a ``gui.workers.Task`` on its own connection to the project file, opened
and closed inside the work function (so on the worker thread). The buttons open a file dialog and
then call ``import_file``, ``export_to``, ``export_checkpoint_to`` or ``merge_files``; tests call
those directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.errors import UserError
from gui.context import AppContext
from gui.data import jobs
from gui.data.forms import CheckpointForm, ExportForm, JobBox, extension
from gui.data.jobs import NOTHING_DONE, JobProgress, plural
from gui.data.leaderboard import ArenaView
from gui.data.stats import StatsView
from gui.widgets import show_message
from gui.workers import Task, stop

PROMPT_FILTER = "Prompt files (*.txt *.jsonl *.json *.csv);;All files (*)"
PROJECT_FILTER = "Project files (*.db *.sqlite *.sqlite3);;All files (*)"
GGUF_FILTER = "GGUF model files (*.gguf)"
TITLES = {
    "import": "Import prompts",
    "export": "Export ratings",
    "checkpoint": "Export checkpoint",
    "merge": "Merge project files",
}


class DataPanel(QWidget):
    """Import, export, checkpoint export, merge, and statistics for the open project file."""

    job_finished = Signal(str, bool)
    """(job, ok) when a job ends; job ∈ import, export, checkpoint, merge; ok is False after an
    error or a cancel."""
    stats_updated = Signal(dict)
    """The statistics just shown (the dict of core.stats.project_stats)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.tasks: dict[str, Task] = {}
        self.last_error: QMessageBox | None = None
        self._outcome: dict[str, bool | None] = {}
        self._stats_task: Task | None = None
        self._stats_stale = False
        self._stats_loaded = False
        self._last_dir = ctx.db_path.resolve().parent

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_jobs())
        splitter.addWidget(self._build_stats())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 860])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        ctx.data_changed.connect(self._data_changed)
        self._refresh_checkpoints()

    # ---- layout -------------------------------------------------------------------------------
    def _build_jobs(self) -> QWidget:
        self.import_box = JobBox(TITLES["import"], "Import prompts…", self.choose_import_file)
        self.source = QLineEdit()
        self.source.setPlaceholderText("Source label (default: the file name)")
        self.import_box.controls.addWidget(self.source)
        self.import_box.button.setToolTip(
            '.txt: one prompt per line. .jsonl / .json: {"prompt": text} or {"messages": chat}. '
            ".csv: a 'prompt' column. Exact duplicates are skipped; a bad line imports nothing."
        )

        self.export_box = JobBox(TITLES["export"], "Export ratings…", self.choose_export_file)
        self.export_form = ExportForm()
        self.export_box.controls.addWidget(self.export_form)

        self.checkpoint_box = JobBox(
            TITLES["checkpoint"], "Export checkpoint…", self.choose_checkpoint_folder
        )
        self.checkpoint_form = CheckpointForm()
        self.checkpoint_box.controls.addWidget(self.checkpoint_form)
        self.checkpoint_box.button.setToolTip(
            "Write a Hugging Face folder with the tokenizer, generation config and a model card, "
            "or one GGUF file for llama.cpp, Ollama and LM Studio with its card beside it."
        )

        self.merge_box = JobBox(TITLES["merge"], "Merge project files…", self.choose_merge_files)
        self.merge_box.controls.addWidget(
            _hint(
                "Other workstations' project files; merging one again adds nothing, and the "
                "files are only read."
            )
        )

        column = QWidget()
        layout = QVBoxLayout(column)
        for box in (self.import_box, self.export_box, self.checkpoint_box, self.merge_box):
            layout.addWidget(box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(column)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(360)
        return scroll

    def _build_stats(self) -> QWidget:
        self.stats = StatsView()
        self.arena = ArenaView()
        views = QSplitter(Qt.Orientation.Vertical)
        views.setChildrenCollapsible(False)
        views.addWidget(self.stats)
        views.addWidget(self.arena)
        views.setStretchFactor(0, 3)
        views.setStretchFactor(1, 1)
        self.stats_status = QLabel()
        self.stats_status.setStyleSheet("color: palette(dark);")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Compute the statistics again from the project file.")
        self.refresh_button.clicked.connect(self.refresh)
        header = QHBoxLayout()
        header.addWidget(QLabel("<b>Statistics</b>"))
        header.addWidget(self.stats_status, 1)
        header.addWidget(self.refresh_button)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(8, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(views, 1)
        return box

    # ---- the dialogs (the buttons) ------------------------------------------------------------
    def choose_import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import prompts", str(self._last_dir), PROMPT_FILTER
        )
        if path:
            self._last_dir = Path(path).parent
            self.import_file(path)

    def choose_export_file(self) -> None:
        fmt = self.export_form.fmt()
        ext = extension(fmt)
        default = self._last_dir / f"{self.ctx.db_path.stem}-{fmt}{ext}"
        kind = {".csv": "CSV", ".parquet": "Parquet"}.get(ext, "JSON Lines")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export ratings", str(default), f"{kind} (*{ext})"
        )
        if path:
            target = Path(path)
            if target.suffix.lower() != ext:
                target = target.with_name(target.name + ext)
            self._last_dir = target.parent
            self.export_to(target)

    def choose_checkpoint_folder(self) -> None:
        rec = self.checkpoint_form.selected()
        if rec is None:
            return
        if self.checkpoint_form.fmt() == "gguf":
            quant = self.checkpoint_form.quant.currentData()
            name = f"{self.ctx.db_path.stem}-checkpoint-{rec['id']}-{quant}.gguf"
            path, _ = QFileDialog.getSaveFileName(
                self, "Export the checkpoint as GGUF", str(self._last_dir / name), GGUF_FILTER
            )
            if path:
                target = Path(path)
                target = target if target.suffix.lower() == ".gguf" else Path(path + ".gguf")
                self._last_dir = target.parent
                self.export_checkpoint_to(target)
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Export the checkpoint into a folder", str(self._last_dir)
        )
        if not folder:
            return
        chosen = Path(folder)
        self._last_dir = chosen
        if any(chosen.iterdir()):  # a folder of its own inside the chosen one
            merged = "-merged" if self.checkpoint_form.merged.isChecked() else ""
            chosen = chosen / f"{self.ctx.db_path.stem}-checkpoint-{rec['id']}{merged}"
        self.export_checkpoint_to(chosen)

    def choose_merge_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Merge project files", str(self._last_dir), PROJECT_FILTER
        )
        if paths:
            self._last_dir = Path(paths[0]).parent
            self.merge_files(paths)

    # ---- the jobs -----------------------------------------------------------------------------
    def import_file(self, path: str | Path, source: str | None = None) -> Task | None:
        """Import a prompt file (all or nothing); ``source`` defaults to the label field."""
        path = Path(path)
        source = source if source is not None else (self.source.text().strip() or None)

        def done(res: Any) -> bool:
            text = jobs.import_summary(res)
            self.import_box.show_result(text, "ok" if res.added else "note")
            self.ctx.status_message.emit(f"Prompts imported: {text}")
            self.ctx.data_changed.emit()
            return True

        work = jobs.import_work(self.ctx, path, source)
        return self._start("import", self.import_box, work, done, cancellable=False)

    def export_to(self, path: str | Path, fmt: str | None = None, **overrides: Any) -> Task | None:
        """Export ratings to ``path`` with the form's options; ``fmt`` sets the form's format
        first; ``overrides`` replace fields of ExportOptions (anonymize, annotators, ...)."""
        if fmt is not None:
            self.export_form.set_format(fmt)
        opts = replace(self.export_form.options(), **overrides)

        def done(res: Any) -> bool | None:
            if res.cancelled:
                return None
            text = jobs.export_summary(res)
            self.export_box.show_result(text, "ok" if res.rows else "note")
            self.ctx.status_message.emit(text)
            return True

        work = jobs.export_work(self.ctx, Path(path), opts)
        return self._start("export", self.export_box, work, done)

    def export_checkpoint_to(
        self,
        out: str | Path,
        checkpoint_id: int | None = None,
        merged: bool | None = None,
        fmt: str | None = None,
        quant: str | None = None,
    ) -> Task | None:
        """Export the chosen checkpoint (or ``checkpoint_id``) as the form says: a Hugging Face
        folder ``out``, or the GGUF file ``out``; ``fmt`` and ``quant`` set the form first."""
        form = self.checkpoint_form
        if checkpoint_id is not None:
            form.select(checkpoint_id)
        rec = form.selected()
        if rec is None or (checkpoint_id is not None and rec["id"] != checkpoint_id):
            self.checkpoint_box.show_result(f"checkpoint:{checkpoint_id} is not listed.", "error")
            return None
        if fmt is not None:
            form.set_format(fmt, quant)
        if merged is not None:
            form.merged.setChecked(merged)

        gguf = form.fmt() == "gguf"

        def done(res: Any) -> bool | None:
            if gguf and res.cancelled:
                return None
            text = jobs.gguf_summary(res) if gguf else jobs.checkpoint_summary(res)
            self.checkpoint_box.show_result(text, "note" if res.notes else "ok")
            self.ctx.status_message.emit(text.splitlines()[0])
            return True

        if gguf:
            work = jobs.gguf_work(self.ctx, rec["id"], Path(out), str(form.quant.currentData()))
            return self._start("checkpoint", self.checkpoint_box, work, done)
        work = jobs.checkpoint_work(self.ctx, rec["id"], Path(out), form.merged.isChecked())
        return self._start("checkpoint", self.checkpoint_box, work, done, cancellable=False)

    def merge_files(self, paths: Iterable[str | Path]) -> Task | None:
        """Merge other project files into this one (one transaction: all of them or nothing)."""

        def done(report: Any) -> bool | None:
            if report.cancelled:
                return None
            self.merge_box.show_result("\n".join(jobs.merge_lines(report)))
            added = sum(sum(f.added.values()) for f in report.files)
            self.ctx.status_message.emit(
                f"Merged {plural(len(report.files), 'file')}: {plural(added, 'row')} added."
            )
            if added or any(f.ratings_undone or f.runs_updated for f in report.files):
                self.ctx.data_changed.emit()
            return True

        work = jobs.merge_work(self.ctx, [Path(p) for p in paths])
        return self._start("merge", self.merge_box, work, done)

    # ---- running a job ------------------------------------------------------------------------
    def _start(
        self,
        job: str,
        box: JobBox,
        work: jobs.WorkFn,
        done: Callable[[Any], bool | None],
        cancellable: bool = True,
    ) -> Task | None:
        if job in self.tasks:
            self.ctx.status_message.emit(f"{TITLES[job]} is already running.")
            return None
        task = Task(work, name=f"data-{job}", parent=self)
        self.tasks[job] = task
        self._outcome[job] = None
        box.started(task.cancel if cancellable else None)
        self.ctx.background_progress.emit(TITLES[job], 0, -1)
        task.progress.connect(lambda p: self._progress(job, box, p))
        task.result.connect(lambda value: self._succeeded(job, done, value))
        task.failed.connect(lambda e, tb: self._failed(job, box, e, tb))
        task.finished.connect(lambda: self._finished(job, box))
        task.start()
        return task

    def _succeeded(self, job: str, done: Callable[[Any], bool | None], value: Any) -> None:
        self._outcome[job] = done(value)  # None: the work saw the cancel and stopped early

    def _progress(self, job: str, box: JobBox, p: JobProgress) -> None:
        box.show_progress(p)
        self.ctx.background_progress.emit(TITLES[job], p.done, p.total if p.total > 0 else -1)

    def _failed(self, job: str, box: JobBox, e: BaseException, tb: str) -> None:
        self._outcome[job] = False
        text = jobs.failure_text(job, e)
        box.show_result(text, "error")
        self.ctx.status_message.emit(f"{TITLES[job]} failed: {text.splitlines()[0]}")
        self.last_error = show_message(self, f"{TITLES[job]} failed", text)
        if not isinstance(e, UserError):
            self.last_error.setDetailedText(tb)

    def _finished(self, job: str, box: JobBox) -> None:
        box.stopped()
        self.ctx.background_progress.emit(TITLES[job], 0, 0)
        self.tasks.pop(job, None)
        ok = self._outcome.pop(job, None)
        if ok is None:
            box.show_result(f"Cancelled. {NOTHING_DONE[job]}", "note")
        self.job_finished.emit(job, bool(ok))

    # ---- statistics ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Compute the statistics on a worker thread; a refresh asked for meanwhile runs after."""
        self._refresh_checkpoints()
        if self._stats_task is not None:
            self._stats_stale = True
            return
        self._stats_stale = False
        task = Task(jobs.stats_work(self.ctx), name="data-stats", parent=self)
        task.result.connect(self._show_stats)
        task.failed.connect(self._stats_failed)
        task.finished.connect(self._stats_finished)
        self._stats_task = task
        self.stats_status.setStyleSheet("color: palette(dark);")
        self.stats_status.setText("computing…")
        task.start()

    def _show_stats(self, stats: dict[str, Any]) -> None:
        self.stats.show_stats(stats)
        self.arena.show_arena(stats.get("arena"), stats["prompts"], stats.get("eval_prompts", 0))
        self.export_form.set_annotators([(a, n) for a, n in stats["annotators"].items() if n])
        self.stats_status.setText("")
        self._stats_loaded = True
        self.stats_updated.emit(stats)

    def _stats_failed(self, e: BaseException, _tb: str) -> None:
        text = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        self.stats_status.setStyleSheet("color: #b00020;")
        self.stats_status.setText(f"The statistics could not be computed: {text}")

    def _stats_finished(self) -> None:
        self._stats_task = None
        if self._stats_stale and self.isVisible():
            self.refresh()

    def _refresh_checkpoints(self) -> None:
        """The checkpoint list (a small table, read on the GUI thread)."""
        rows = self.ctx.store.recent_checkpoints()
        self.checkpoint_form.set_checkpoints(rows)
        if not self.checkpoint_box.running():
            self.checkpoint_box.button.setEnabled(bool(rows))

    def _data_changed(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stats_stale = True  # computed when the tab is shown

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not event.spontaneous():  # ratings made in the Rate tab emit nothing: look again
            self.refresh()

    # ---- for the window and tests -------------------------------------------------------------
    def is_ready(self) -> bool:
        """The statistics are shown and nothing is computing (app screenshots wait for this)."""
        return self._stats_loaded and self._stats_task is None

    def running_tasks(self) -> list[Task]:
        return [t for t in (*self.tasks.values(), self._stats_task) if t is not None]

    def shutdown(self) -> None:
        """Cancel this tab's jobs and wait for their threads."""
        stop(self.running_tasks())


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(dark);")
    return label


__all__ = ["DataPanel"]
