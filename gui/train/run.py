"""One training run at a time, off the GUI thread: start, pause, resume, stop, and what it reports.

``core.training.train`` runs in a ``gui.workers.Task``; each optimizer step arrives as a
``StepMetrics`` on the GUI thread. Pause is a ``threading.Event`` the loop waits on between
steps; Stop is the Task's cancel flag (``gui.workers.stop_all`` sets it too when the app
closes). ``train``'s progress lines come from the worker thread through a queued signal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from PySide6.QtCore import QObject, Qt, Signal, Slot

from core.training import StepMetrics, train
from core.training.config import TrainConfig
from gui.context import AppContext
from gui.workers import Task, stop

STATES = ("idle", "starting", "running", "paused", "stopping")


def training_steps(
    ctx: AppContext,
    config: TrainConfig | None,
    resume_run_id: int | None,
    cancel: threading.Event,
    pause: threading.Event,
    say: Callable[[str, float | None], None],
) -> Iterator[StepMetrics]:
    """``train`` on the worker thread's own connection to the project, closed when it ends.

    The Task closes this generator right after a yield once Stop is pressed. Before letting go,
    ``train`` gets one more turn, in which it sees the cancel flag, saves a checkpoint at the step
    reached and marks the run stopped, so a stopped run resumes where it stopped.
    """
    store = ctx.open_worker_store()
    steps = train(
        store, config, cancel=cancel, pause=pause, resume_run_id=resume_run_id, progress=say
    )
    try:
        for m in steps:
            try:
                yield m
            except GeneratorExit:
                if cancel.is_set():
                    for _ in steps:  # train's stop path: checkpoint, status "stopped", return
                        pass
                raise
    finally:
        steps.close()
        store.close()


class TrainingRun(QObject):
    """Drives ``train`` in a Task; the Train tab shows what it reports."""

    state_changed = Signal(str)
    """idle, starting (loading the model, reference pass), running, paused or stopping."""
    step = Signal(object)
    """A ``StepMetrics`` after each optimizer step."""
    message = Signal(str)
    """A progress line from ``train`` ("Loading model …", "Saved checkpoint:4 at step 20.")."""
    failed = Signal(object, str)
    """(exception, traceback): the run could not start, diverged, ran out of memory, or broke."""
    ended = Signal(object, str, str)
    """(run id or None, status, the run's message) once the Task has finished, however it ended."""

    _from_worker = Signal(str)

    def __init__(self, ctx: AppContext, parent: QObject | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.task: Task | None = None
        self.pause_event = threading.Event()
        self.state = "idle"
        self.run_id: int | None = None
        self.interrupted = False  # the last run was cancelled from outside (the app closing)
        self._stop_requested = False
        self._runs_before = 0
        # queued: the slot runs on this object's (the GUI) thread whichever thread emits
        self._from_worker.connect(self._relay, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        return self.task is not None

    def start(self, config: TrainConfig | None, resume_run_id: int | None = None) -> None:
        """Train ``config`` (a new run) or continue run ``resume_run_id`` from its last checkpoint."""
        if self.task is not None:
            raise RuntimeError("a training run is already in progress")
        ctx, say = self.ctx, self._say
        pause = self.pause_event = threading.Event()
        self.run_id = resume_run_id
        self.interrupted = self._stop_requested = False
        self._runs_before = ctx.store.last_run_id()

        def work(cancel: threading.Event) -> Iterator[StepMetrics]:
            return training_steps(ctx, config, resume_run_id, cancel, pause, say)

        self.task = Task(work, name="training")
        self.task.progress.connect(self._on_step)
        self.task.failed.connect(self.failed)
        self.task.finished.connect(self._on_finished)
        self._set_state("starting")
        self.task.start()

    def pause(self) -> None:
        """The loop waits after its current step (the model stays loaded)."""
        if self.task is not None and self.state in ("starting", "running"):
            self.pause_event.set()
            self._set_state("paused")

    def resume(self) -> None:
        if self.task is not None and self.state == "paused":
            self.pause_event.clear()
            self._set_state("running")

    def stop(self) -> None:
        """End after the current step; ``train`` saves a checkpoint there and marks it stopped."""
        if self.task is not None and self.state != "stopping":
            self._stop_requested = True
            self.task.cancel()  # also ends a pause: the loop looks at both flags
            self._set_state("stopping")

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        """Cancel the run and wait for it (a checkpoint is saved first); True when it ended."""
        if self.task is None:
            return True
        return not stop([self.task], timeout_s)

    # ---- from the worker -------------------------------------------------------------------------
    def _say(self, text: str, _fraction: float | None = None) -> None:
        """``train``'s progress callback; runs on the worker thread."""
        try:
            self._from_worker.emit(str(text))
        except RuntimeError:  # this object is gone (the app is closing); the run still stops
            pass

    @Slot(str)
    def _relay(self, text: str) -> None:
        self.message.emit(text)

    def _on_step(self, m: StepMetrics) -> None:
        self.run_id = m.run_id
        if self.state == "starting":
            self._set_state("running")
        self.step.emit(m)

    def _on_finished(self) -> None:
        self.interrupted = self.task.cancel_event.is_set() and not self._stop_requested
        self.task = None
        self.pause_event.clear()
        run_id = self.run_id
        if run_id is None:  # it ended before its first step; did it make a run row?
            last = self.ctx.store.last_run_id()
            run_id = last if last > self._runs_before else None
        run = self.ctx.store.run(run_id) if run_id is not None else None
        status, message = (run["status"], run["message"] or "") if run else ("not started", "")
        self.run_id = run_id
        self._set_state("idle")
        self.ended.emit(run_id, status, message)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)
