"""One line on how much training data the project's ratings make for an algorithm.

"312 pairs from 4 annotators" for dpo and reward, desirable / undesirable examples for kto,
scored samples for reinforce, and for rloo (online) the prompts it samples from and what scores
them. Counting reads every rating, so ``DataCounter`` runs it in a Task, edits coalesced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from core.checkpoints import latest_checkpoint
from core.data import data_summary, describe
from core.store import ProjectStore
from core.trainers.rloo import split_prompts
from gui.context import AppContext
from gui.queue import error_text, stop_tasks
from gui.workers import Task

DEBOUNCE_MS = 300
WHAT = {"reward": "pairs", "dpo": "pairs", "reinforce": "rewards"}
HOW_TO_GET = {
    "pairs": "no preference pairs yet: rate pairwise, rank, or score several responses per prompt",
    "rewards": "no scored samples yet: rate with scores or thumbs",
    "unpaired": "no desirable / undesirable examples yet: rate with thumbs or scores",
}


def describe_training_data(store: ProjectStore, values: dict[str, Any]) -> tuple[str, bool]:
    """(the line, whether there is anything to train on) for the form's ``values``."""
    algo = values["algo"]
    if algo == "rloo":
        return _online(store, values)
    summary = data_summary(
        store,
        annotators=values.get("annotators") or None,
        criterion=values.get("criterion") or None,
        score_margin=float(values.get("score_margin", 0.25)),
        score_threshold=float(values.get("score_threshold", 0.5)),
    )
    if algo == "kto":
        if not summary["unpaired"]:
            return HOW_TO_GET["unpaired"], False
        n = summary["annotators_by"]["unpaired"]
        return (
            f"{summary['desirable']} desirable and {summary['undesirable']} undesirable examples "
            f"from {n} annotator{'' if n == 1 else 's'}",
            True,
        )
    what = WHAT.get(algo)
    if what is None:
        return describe(summary), any(summary[k] for k in ("pairs", "unpaired", "rewards"))
    if not summary[what]:
        return HOW_TO_GET[what], False
    return describe(summary, what), True


def _online(store: ProjectStore, values: dict[str, Any]) -> tuple[str, bool]:
    prompts, _heldout = split_prompts(store, float(values.get("heldout_fraction") or 0.0))
    if values.get("rater"):
        source, ok = f"scored by the rater {values['rater']}", True
    elif values.get("reward_model"):
        source, ok = f"scored by the reward model {values['reward_model']}", True
    else:
        rec = latest_checkpoint(store, kind="reward")
        ok = rec is not None
        source = (
            f"scored by the newest reward model checkpoint:{rec['id']}"
            if rec
            else "but no reward model yet: train one (Reward model) or give a rater"
        )
    n = len(prompts)
    return f"{n} prompt{'' if n == 1 else 's'} to sample from, {source}", ok and n > 0


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
            stop_tasks([self.task], timeout_s)
