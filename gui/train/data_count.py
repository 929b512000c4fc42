"""The Train tab's count of training data, kept fresh off the GUI thread as the form changes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from core.training.needs import describe_training_data
from gui.context import AppContext
from gui.workers import Task, error_text, stop

DEBOUNCE_MS = 300


class DataCounter(QObject):
    """Counts in the background; a request while counting is answered by one more count after."""

    counted = Signal(str, bool)
    """(the line, whether there is anything to train on)."""

    def __init__(self, ctx: AppContext, values: Callable[[], dict[str, Any]], parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.values = values
        self.task: Task | None = None
        self._again = False
        self.closed = False
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self._count)

    def request(self) -> None:
        """Count soon (requests within DEBOUNCE_MS make one count)."""
        if not self.closed:
            self._timer.start()

    def _count(self) -> None:
        if self.closed:
            return
        if self.task is not None:
            self._again = True
            return
        self._again = False
        values, ctx = self.values(), self.ctx

        def work(cancel: threading.Event) -> Iterator[tuple[str, bool]]:
            store = ctx.open_worker_store()
            try:
                yield describe_training_data(store, values)
            finally:
                store.close()

        self.task = Task(work, name="training-data")
        self.task.progress.connect(lambda line: self.counted.emit(*line))
        self.task.failed.connect(lambda e, _tb: self.counted.emit(error_text(e), False))
        self.task.finished.connect(self._on_finished)
        self.task.start()

    def _on_finished(self) -> None:
        self.task = None
        if self._again:
            self._count()

    def busy(self) -> bool:
        return self.task is not None or self._timer.isActive()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """No more counts; cancel and wait for a running one."""
        self.closed = True
        self._timer.stop()
        if self.task is not None:
            stop([self.task], timeout_s)
