"""The checkpoint list's "Evaluate against its starting model": did this checkpoint get better?

It sets the project's arena to [the model the checkpoint's run started from, the checkpoint] with
the project's generation settings and runs ``core.evaluation.run_arena`` in a Task: each model
answers the evaluation prompts it has not answered yet (one model in memory at a time, loaded with
the window's device and precision: ``AppContext.load_model``), then the project's judge, when Settings names one, judges
every comparison. Without a judge the comparisons wait for people in the Rate tab's Arena mode.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from core.evaluation import (
    ArenaProgress,
    ArenaSpec,
    arena_report,
    canonical_spec,
    run_arena,
    unrated_comparisons,
)
from core.evaluation.arena import judge_name
from core.raters import load_rater
from gui.context import AppContext
from gui.widgets import show_message
from gui.workers import Task, error_text

NO_EVAL_PROMPTS = (
    "This project keeps no prompts for evaluation, so there is nothing to compare the two models "
    "on. Keep some apart first: Project → Settings → Evaluation prompts, or "
    "python main.py --db FILE prompts split --eval 50. Evaluation prompts are never trained on "
    "and never shown in the normal rating modes."
)


def arena_work(ctx: AppContext, checkpoint_id: int, start: str, settings: dict[str, Any]):
    """The Task's work: the arena of ``start`` and ``checkpoint:ID``; returns a line for people."""
    judge_spec = settings.get("judge")

    def work(cancel: threading.Event) -> Iterator[ArenaProgress]:
        store = ctx.open_worker_store()
        try:
            judge = load_rater(judge_spec) if judge_spec else None
            spec = ArenaSpec(
                [canonical_spec(store, start), f"checkpoint:{checkpoint_id}"],
                max_new_tokens=int(settings["max_new_tokens"]),
                temperature=float(settings["temperature"]),
                top_p=float(settings["top_p"]),
            )
            yield from run_arena(store, spec, lambda m: ctx.load_model(m, store), judge, cancel)
            if cancel.is_set():
                return None
            if judge is None:
                waiting = len(unrated_comparisons(store, spec, ctx.annotator))
                return (
                    f"Arena of {spec.models[1]} against {spec.models[0]} is ready: {waiting} "
                    "comparisons wait for you in the Rate tab's Arena mode."
                )
            board = arena_report(store, spec.models, annotators=[judge_name(judge)])
            lines = [a["line"] for a in (board or {}).get("against_start") or []]
            return f"Judged by {judge.spec}: " + (lines[0] if lines else "no comparison made.")
        finally:
            store.close()

    return work


def progress_label(p: ArenaProgress) -> str:
    return f"Arena: {p.model} answers" if p.stage == "generate" else "Arena: judging"


class Evaluation(QObject):
    """One evaluation at a time; its progress goes to the status bar."""

    changed = Signal()
    """An evaluation started or ended."""
    done = Signal(bool, str)
    """(ok, the line for people) when an evaluation ends; ok is False after an error or a stop."""

    def __init__(self, ctx: AppContext, parent: QWidget):
        super().__init__(parent)
        self.ctx = ctx
        self.widget = parent
        self.task: Task | None = None
        self.last_message = None  # the last message box shown (tests close it)
        self._outcome: tuple[bool, str] = (False, "")

    @property
    def running(self) -> bool:
        return self.task is not None

    def start(self, checkpoint_id: int) -> Task | None:
        """Evaluate ``checkpoint:ID`` against its starting model; None when it cannot start (a
        message says why)."""
        if self.task is not None:
            return None
        store = self.ctx.store
        start = store.checkpoint(checkpoint_id).get("base_model")
        if not start:
            return self._refuse(
                f"checkpoint:{checkpoint_id} does not record the model its run started from, so "
                "there is nothing to compare it with. Use python main.py arena --models SPEC "
                f"checkpoint:{checkpoint_id} and name the model yourself."
            )
        if store.eval_prompt_count() == 0:
            return self._refuse(NO_EVAL_PROMPTS)
        work = arena_work(self.ctx, checkpoint_id, start, self.ctx.settings())
        task = Task(work, name="arena", parent=self)
        task.progress.connect(self._progress)
        task.result.connect(lambda text: self._set_outcome(text is not None, text or "Stopped."))
        task.failed.connect(lambda e, _tb: self._set_outcome(False, error_text(e), failed=True))
        task.finished.connect(self._finished)
        self.task, self._outcome = task, (False, "Stopped.")
        self.ctx.background_progress.emit(f"Evaluating checkpoint:{checkpoint_id}…", 0, -1)
        task.start()
        self.changed.emit()
        return task

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _refuse(self, text: str) -> None:
        self.last_message = show_message(self.widget, "Cannot evaluate yet", text)
        self.ctx.status_message.emit(text.split(". ")[0] + ".")
        return None

    def _progress(self, p: ArenaProgress) -> None:
        self.ctx.background_progress.emit(progress_label(p), p.done, p.total or -1)

    def _set_outcome(self, ok: bool, text: str, failed: bool = False) -> None:
        self._outcome = (ok, text)
        if failed:
            self.last_message = show_message(
                self.widget,
                "Evaluation failed",
                f"{text}\n\nAnswers and judgments made before the error are kept.",
            )

    def _finished(self) -> None:
        self.task = None
        ok, text = self._outcome
        self.ctx.background_progress.emit("", 0, 0)
        self.ctx.status_message.emit(text if ok else f"Evaluation: {text}")
        # the arena is a project setting now, and answers and judgments were added
        self.ctx.settings_changed.emit(self.ctx.settings())
        self.ctx.data_changed.emit()
        self.changed.emit()
        self.done.emit(ok, text)
