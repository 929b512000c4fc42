"""The one way the app runs long work: a core generator on a QThread, each yield a signal.

    task = Task(lambda cancel: generate_samples(store, model, params, cancel=cancel))
    task.progress.connect(on_progress)   # every yielded value, on the GUI thread
    task.result.connect(on_done)         # the generator's return value (StopIteration.value)
    task.failed.connect(on_error)        # the exception, with a message for people
    task.start()
    ...
    task.report(value)                   # from inside the work: a progress value (callbacks)
    task.cancel()                        # sets the cancel flag; the generator stops between units
    stop([task])                         # cancel and wait, bounded: the one way to stop work

The work function receives a ``threading.Event`` (the cancel flag) and returns an iterator. It runs
entirely on the worker thread, so anything it opens there (an SQLite connection, a model) belongs
to that thread. The GUI thread only receives signals. ``error_text`` turns what ``failed`` carries
into one line for a person.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from core.errors import UserError

WorkFn = Callable[[threading.Event], Iterator[Any]]
STOP_TIMEOUT_S = 30.0  # a model load cannot be interrupted; anything else stops between yields
WAIT_SLICE_MS = 20  # a stop waits in slices, delivering the tasks' signals in between

_live_tasks: set[Task] = set()
_shutting_down = False


class _Worker(QObject):
    """Runs the work function on its thread and turns each yield into a signal."""

    progress = Signal(object)
    """Emitted with each value the generator yields."""
    result = Signal(object)
    """Emitted once with the generator's return value when it finishes without error."""
    failed = Signal(object, str)
    """Emitted once with the exception and its formatted traceback when the work raises."""
    finished = Signal()
    """Emitted last, always: after result, failed or a cancel."""

    def __init__(self, fn: WorkFn, cancel: threading.Event):
        super().__init__()
        self._fn = fn
        self._cancel = cancel
        self.thread_ident: int | None = None

    @Slot()
    def run(self) -> None:
        self.thread_ident = threading.get_ident()
        try:
            gen = self._fn(self._cancel)
            value = None
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    value = stop.value
                    break
                self.progress.emit(item)
                if self._cancel.is_set():
                    gen.close()
                    break
            if not self._cancel.is_set():
                self.result.emit(value)
        except BaseException as e:  # noqa: BLE001 - reported to the GUI, never lost
            self.failed.emit(e, traceback.format_exc())
        finally:
            self.finished.emit()


class Task(QObject):
    """A cancellable background job; signals arrive on the thread that created the Task."""

    progress = Signal(object)
    """Each value the work yields (e.g. GenerationProgress, StepMetrics)."""
    result = Signal(object)
    """The work's return value, after the last progress."""
    failed = Signal(object, str)
    """(exception, traceback text) when the work raised."""
    finished = Signal()
    """Always emitted last; the thread has stopped by the time slots run."""

    def __init__(self, fn: WorkFn, name: str = "task", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.cancel_event = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = _Worker(fn, self.cancel_event)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.result.connect(self.result)
        self._worker.failed.connect(self.failed)
        # Direct: quit the thread's loop from the worker thread itself, so Task.wait() on the GUI
        # thread returns as soon as the work ends instead of waiting for the GUI event loop.
        self._worker.finished.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)
        self._running = False

    @property
    def worker_thread_ident(self) -> int | None:
        """The Python thread id the work ran on (tests check it is not the GUI thread)."""
        return self._worker.thread_ident

    def start(self) -> Task:
        if _shutting_down:  # the app is closing: start nothing that could outlive it
            self.cancel_event.set()
            self._running = False
            return self
        _live_tasks.add(self)  # keep alive until the thread ends, even if the caller drops it
        self._running = True
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._running

    def report(self, value: Any) -> None:
        """From the work itself: deliver ``value`` as ``progress``, as a yield would. For core
        code that reports through a callback in the middle of a step (a preview of text being
        written); the signal is queued to the Task's thread like every other."""
        self._worker.progress.emit(value)

    def cancel(self) -> None:
        """Ask the work to stop at its next yield; returns at once."""
        self.cancel_event.set()

    def wait(self, ms: int = 30000) -> bool:
        """Block until the thread ends (shutdown only; never from a slot during normal use)."""
        return self._thread.wait(ms)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._running = False
        self.finished.emit()
        _live_tasks.discard(self)


def running_tasks() -> list[Task]:
    return [t for t in _live_tasks if t.is_running()]


def error_text(exc: BaseException) -> str:
    """A person-readable line for an exception from a Task."""
    return str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"


def stop(tasks: Iterable[Task], timeout_s: float = STOP_TIMEOUT_S) -> list[Task]:
    """Cancel ``tasks`` and wait until their threads end, at most ``timeout_s``; returns the tasks
    still running then (empty when all stopped). Their ``finished`` signals are delivered before
    it returns. Call it from the GUI thread."""
    tasks = [t for t in tasks if t.is_running()]
    for task in tasks:
        task.cancel()
    deadline = time.monotonic() + timeout_s
    left = tasks
    while left:
        left[0].wait(WAIT_SLICE_MS)  # a blocking wait, then the events that came meanwhile
        QCoreApplication.processEvents()
        left = [t for t in left if not t.wait(0)]
        if left and time.monotonic() > deadline:
            break
    QCoreApplication.processEvents()  # the finished signals of the last ones
    return left


def stop_all(timeout_s: float = STOP_TIMEOUT_S) -> list[Task]:
    """``stop`` every running task (the app is closing); while it waits no new Task starts, so a
    slot that runs meanwhile cannot leave a thread behind. Returns the tasks still running."""
    global _shutting_down
    _shutting_down = True
    try:
        return stop(running_tasks(), timeout_s)
    finally:
        _shutting_down = False
