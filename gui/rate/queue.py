"""The ready-item queue behind the rating panel, kept full by background Tasks.

Two kinds of Task (gui/workers.py) run here, never on the GUI thread: *load* (the generation model
named by the project setting, reloaded when ``ctx.model_spec_changed`` fires) and *refill* (choose
unseen items with core.items; when too few exist and a model is loaded, generate samples with
core.generation and choose again). Each opens its own project connection on its worker thread.
The panel only calls ``take()``, which pops an item that is already in memory. In Arena mode a
refill takes the arena's comparisons (core.evaluation.arena_items) and never loads or generates.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from core.evaluation import arena_items, arena_spec
from core.generation import (
    GenerationParams,
    GenerationPreview,
    GenerationProgress,
    generate_samples,
)
from core.items import Item, select_items
from core.selection import NoScorer, RewardCache, select_pairwise_items
from gui.context import AppContext
from gui.rate.texts import ARENA
from gui.workers import Task, error_text, stop

GENERATION_BATCH = 32  # sequences per forward pass once the annotator has items to rate
MAX_GENERATION_ROUNDS = 4  # a refill generates at most this many times over the prompts


class ItemFeeder(QObject):
    """Keeps ``queue_size`` items ready ahead of the annotator, for one rating mode at a time."""

    changed = Signal()
    """The queue or the feeder's state changed (an item arrived, a load started or failed, ...)."""
    model_status = Signal(str, str)
    """(model text, device text) for the status bar."""
    model_failed = Signal(str)
    """The generation model could not be loaded; the message says why and what to do."""

    def __init__(self, ctx: AppContext, mode: str, parent: QObject | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.mode = mode
        self.queue: deque[Item] = deque()
        self.prompt_count: int | None = None  # unknown until the first refill reports it
        self.model_error: str | None = None
        self.arena_state: str | None = None  # Arena mode: "none" (no arena) or "ok", once known
        self.loaded: Any = None  # core.models.LoadedModel, used only inside worker threads
        self.refill_task: Task | None = None
        self.load_task: Task | None = None
        self.last_refill_task: Task | None = None  # kept for tests and the benchmark
        self.last_load_task: Task | None = None
        self.eager_model = True  # load the model as soon as there are prompts, not on demand
        self._epoch = 0  # bumps on a mode or model change; results of older Tasks are dropped
        self._want_spec: str | None = None
        self._dirty = False
        self._dry = False  # the last refill could make nothing new: wait for a change
        self._recheck = False  # refill even with a full queue, to drop what may not be shown now
        self._shown: set[frozenset[int]] = set()  # keys on screen or rated this session
        self._closed = False
        self.settings = ctx.settings()  # cached: slots never query the project file
        # the newest model's rewards for uncertain selection; used only inside refill Tasks
        self.rewards = RewardCache(ctx.device, ctx.dtype)
        self.selection_note: str | None = None  # why uncertain selection fell back, if it did
        # (prompt, responses so far) while the first item is written for an annotator who waits
        self.preview: tuple[str, list[str]] | None = None
        self.load_stage: str | None = None  # what loading the model is doing now
        ctx.model_spec_changed.connect(self.reload_model)
        ctx.data_changed.connect(self.poke)
        ctx.settings_changed.connect(self._on_settings_changed)

    # ---- what the panel calls --------------------------------------------------------------
    def start(self) -> None:
        self.request()

    def take(self) -> Item | None:
        """The next ready item (instant), and a refill when the queue runs low."""
        item = self.queue.popleft() if self.queue else None
        if item is not None:
            self._shown.add(item.key)
            QTimer.singleShot(0, self.request)  # after the item is on screen, not before
        else:
            self.request()
        return item

    def give_back(self, item: Item) -> None:
        """An item returns to the front of the queue (the current one, when undo shows another)."""
        self._shown.discard(item.key)
        self.queue.appendleft(item)

    def hold(self, item: Item) -> None:
        """``item`` is on screen or rated (undo brought it back, redo took it away again)."""
        self._shown.add(item.key)
        self.queue = deque(i for i in self.queue if i.key != item.key)

    def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        self.arena_state = None
        self.preview = None
        self._epoch += 1
        self.queue.clear()
        self._shown.clear()
        if self.refill_task is not None:
            self.refill_task.cancel()
        self.poke()

    def poke(self) -> None:
        """Something changed outside (a rating, an import, new settings): try again, and look
        again at what is queued (a full queue too: its prompts may have been kept for evaluation)."""
        self._dry = False
        self._recheck = True
        self.request()

    def _on_settings_changed(self, settings: dict) -> None:
        self.settings = dict(settings)
        self.poke()

    @property
    def busy(self) -> bool:
        return self.refill_task is not None or self.load_task is not None

    @property
    def loading_model(self) -> bool:
        return self.load_task is not None

    def queue_size(self) -> int:
        return max(1, int(self.settings["queue_size"]))

    def shutdown(self) -> None:
        """Cancel and wait for this feeder's Tasks; signals still queued are ignored after it."""
        self._closed = True
        stop([t for t in (self.refill_task, self.load_task) if t is not None])

    # ---- refill ------------------------------------------------------------------------------
    def request(self) -> None:
        if self._closed:
            return
        if len(self.queue) >= self.queue_size() and not self._recheck or self._dry:
            return
        if self.refill_task is not None:
            self._dirty = True
            return
        self._dirty = self._recheck = False
        s = self.settings
        want = max(0, self.queue_size() - len(self.queue))
        exclude = {i.key for i in self.queue} | self._shown
        waiting = not self.queue
        k = int(s["per_prompt"])
        params = GenerationParams(
            per_prompt=max(2, k) if self.mode in ("pairwise", "rank") else k,
            max_new_tokens=int(s["max_new_tokens"]),
            temperature=float(s["temperature"]),
            top_p=float(s["top_p"]),
            batch_size=GENERATION_BATCH,
        )
        mode, epoch, loaded, annotator = self.mode, self._epoch, self.loaded, self.ctx.annotator
        how = (str(s.get("selection") or "coverage"), float(s.get("random_fraction", 0.2)))
        rewards = self.rewards

        def work(cancel: threading.Event) -> Iterator[tuple[str, Any]]:
            store = self.ctx.open_worker_store()
            try:
                if mode == ARENA:
                    yield from _arena_refill(store, annotator, want, exclude)
                else:
                    pick = _picker(store, mode, annotator, params.per_prompt, how, rewards)
                    first = _first_item_params(mode, params) if waiting else None
                    yield from _refill(
                        store, cancel, pick, want, exclude, loaded, params, first, task.report
                    )
            finally:
                store.close()

        task = Task(work, name="refill", parent=self)
        task.wanted, task.got = want, 0  # a refill that got fewer than it wanted ran dry
        self.last_refill_task = task
        task.progress.connect(lambda msg: self._on_refill_progress(task, epoch, msg))
        task.failed.connect(lambda e, _tb: self._on_refill_failed(epoch, e))
        task.finished.connect(lambda: self._on_refill_finished(task, epoch))
        self.refill_task = task
        task.start()
        self.changed.emit()

    def _on_refill_progress(self, task: Task, epoch: int, msg: tuple[str, Any]) -> None:
        if self._closed:
            return
        what, value = msg
        if what == "prompts":
            self.prompt_count = value
            if value and self.eager_model and self.mode != ARENA:
                self._ensure_model()
        elif what == "short":
            self._ensure_model()
        elif what == "arena" and epoch == self._epoch:
            self.arena_state = value
        elif what == "eval" and epoch == self._epoch:  # prompts just kept for evaluation leave
            self.queue = deque(i for i in self.queue if i.prompt_id not in value)
        elif what == "selection":
            if value != self.selection_note and value:
                self.ctx.status_message.emit(value)
            self.selection_note = value
        elif what == "generated":
            prog: GenerationProgress = value
            self.ctx.background_progress.emit("Generating responses", prog.done, prog.total)
        elif what == "preview":
            if epoch != self._epoch or self.queue:
                return  # an item is ready: what is still being written is no longer shown
            self.preview = value
        elif what == "items" and epoch == self._epoch:
            self.preview = None
            task.got += len(value)
            known = {i.key for i in self.queue} | self._shown
            self.queue.extend(i for i in value if i.key not in known)
        self.changed.emit()

    def _on_refill_failed(self, epoch: int, exc: BaseException) -> None:
        if self._closed:
            return
        self.ctx.status_message.emit(f"Could not prepare items: {error_text(exc)}")
        self._dry = True

    def _on_refill_finished(self, task: Task, epoch: int) -> None:
        if self._closed:
            return
        if self.refill_task is task:
            self.refill_task = None
            self.preview = None
        if self.load_task is None:
            self.ctx.background_progress.emit("", 0, 0)
        if self._dirty or epoch != self._epoch:
            self.request()
        elif task.got < task.wanted:
            # Everything that exists is queued and nothing more could be made; wait for a
            # change (a rating undone, an import, a model loaded, new settings) to try again.
            self._dry = True
        else:
            self.request()
        self.changed.emit()

    # ---- the generation model -----------------------------------------------------------------
    def _ensure_model(self) -> None:
        if self.loaded is None and self.load_task is None and self.model_error is None:
            self.reload_model(self.settings["model"])

    def reload_model(self, spec: str) -> None:
        """Load ``spec`` on a worker thread; items already made stay rateable meanwhile."""
        if self._closed:
            return
        self._want_spec = spec
        self.loaded = None
        self.model_error = None
        if self.mode == ARENA:  # the arena needs no model: load it when a mode needs one
            self._want_spec = None
            self.model_status.emit(f"{spec} (not loaded)", self.ctx.device or "auto")
            return
        self._epoch += 1  # a refill generating with the old model stops after its batch
        if self.refill_task is not None:
            self.refill_task.cancel()
        self.model_status.emit(f"{spec} (loading…)", self.ctx.device or "auto")
        self.ctx.background_progress.emit(f"Loading model {spec}…", 0, -1)
        if self.load_task is not None:
            return  # the running load finishes first; _on_loaded starts the wanted one
        ctx = self.ctx

        def work(cancel: threading.Event) -> Iterator[tuple[str, float | None]]:
            yield f"Loading model {spec}…", None
            store = ctx.open_worker_store()
            try:  # the stages (e.g. the first start's conversion) arrive as progress
                return ctx.load_model(spec, store, lambda text, frac: task.report((text, frac)))
            finally:
                store.close()

        task = Task(work, name="load-model", parent=self)
        task.progress.connect(lambda stage: self._on_load_progress(spec, stage))
        self.last_load_task = task
        task.result.connect(lambda loaded: self._on_loaded(spec, loaded))
        task.failed.connect(lambda e, _tb: self._on_load_failed(spec, e))
        task.finished.connect(lambda: self._on_load_finished(task))
        self.load_task = task
        task.start()
        self.changed.emit()

    def _on_load_progress(self, spec: str, stage: tuple[str, float | None]) -> None:
        if self._closed or spec != self._want_spec:
            return
        text, fraction = stage
        self.load_stage = text
        if fraction is None:
            self.ctx.background_progress.emit(text, 0, -1)
        else:
            self.ctx.background_progress.emit(text, int(100 * fraction), 100)
        self.changed.emit()

    def _on_loaded(self, spec: str, loaded: Any) -> None:
        if self._closed:
            return
        if spec != self._want_spec:
            return
        self.loaded = loaded
        self.model_status.emit(loaded.spec, loaded.device_label)

    def _on_load_failed(self, spec: str, exc: BaseException) -> None:
        if self._closed:
            return
        if spec != self._want_spec:
            return
        self.model_error = error_text(exc)
        self.model_status.emit(f"{spec} (failed to load)", self.ctx.device or "auto")
        self.model_failed.emit(self.model_error)

    def _on_load_finished(self, task: Task) -> None:
        if self._closed:
            return
        if self.load_task is task:
            self.load_task = None
            self.load_stage = None
        self.ctx.background_progress.emit("", 0, 0)
        if self._want_spec is not None and self.loaded is None and self.model_error is None:
            self.reload_model(self._want_spec)  # the spec changed while the old one loaded
            return
        self.poke()


def _arena_refill(store, annotator, want, exclude):
    """The Arena mode's refill (worker thread): the arena's unrated comparisons, nothing made."""
    yield "prompts", store.count("prompts")
    if arena_spec(store) is None:
        yield "arena", "none"
        return
    yield "arena", "ok"
    items = arena_items(store, annotator, want, exclude)
    if items:
        yield "items", items


def _picker(store, mode, annotator, k, how, rewards):
    """``pick(n, exclude) -> (items, note)``: the project's selection rule for pairwise items
    (core.selection), coverage otherwise; uncertain falls back to coverage, with a note saying
    why, while the project has no model to be uncertain with."""
    selection, random_fraction = how

    def pick(n: int, exclude: set) -> tuple[list[Item], str | None]:
        if mode == "pairwise" and selection in ("uncertain", "random"):
            try:
                return select_pairwise_items(
                    store,
                    annotator,
                    n,
                    selection,
                    exclude=exclude,
                    rewards=lambda ids: rewards.rewards(store, ids),
                    random_fraction=random_fraction,
                ), None
            except NoScorer as e:
                note = f"Items are picked by coverage for now: {e}"
                return select_items(
                    store, mode=mode, annotator=annotator, k=k, n=n, exclude=exclude
                ), note
        items = select_items(store, mode=mode, annotator=annotator, k=k, n=n, exclude=exclude)
        return items, None

    return pick


def _first_item_params(mode: str, params: GenerationParams) -> GenerationParams:
    """The smallest generation that makes one item of ``mode``: one prompt, as many responses
    as the item shows (one to score, two to compare, the whole set to rank)."""
    need = {"score": 1, "thumbs": 1, "pairwise": 2}.get(mode, params.per_prompt)
    return replace(params, per_prompt=need, batch_size=need)


def _refill(store, cancel, pick, want, exclude, loaded, params, first=None, report=None):
    """The refill work (worker thread): report the prompt count, then items as they are ready.

    Existing unseen items come first; when they are too few and a model is loaded, samples are
    generated for the prompts with the fewest samples, a few rounds at most, until enough exist.
    With ``first`` (the annotator has nothing to rate), one prompt with ``first``'s settings comes
    before the full batches, its text sent to ``report`` as ``("preview", (prompt, texts))`` while
    it is written.
    """
    yield "prompts", store.count("prompts")
    yield "eval", set(store.prompt_ids("eval"))
    exclude = set(exclude)
    items, note = pick(want, exclude)
    yield "selection", note
    if items:
        yield "items", items
    missing = want - len(items)
    if missing <= 0 or cancel.is_set() or store.count("prompts") == 0:
        return
    if loaded is None:
        yield "short", missing  # the GUI starts loading the model if it is not loading yet
        return
    exclude |= {i.key for i in items}
    if first is not None and not items:
        missing -= yield from _first_item(store, cancel, pick, exclude, loaded, first, report)
        if missing <= 0 or cancel.is_set():
            return
    for _round in range(MAX_GENERATION_ROUNDS):
        made = done = 0
        for prog in generate_samples(store, loaded, params, limit=missing, cancel=cancel):
            yield "generated", prog
            # At most one new item per prompt just generated: the queue spreads over prompts,
            # and what is left of those prompts stays in the project for later refills.
            fresh, done = prog.done - done, prog.done
            new, _note = pick(min(missing, fresh), exclude)
            if new:
                exclude |= {i.key for i in new}
                missing -= len(new)
                made += len(new)
                yield "items", new
            if missing <= 0:
                return
        if made == 0 or cancel.is_set():
            return


def _first_item(store, cancel, pick, exclude, loaded, params, report):
    """One prompt's responses for the first item, its text previewed as it is written; returns
    how many items it made (``exclude`` gains their keys)."""
    prompts: dict[int, str] = {}

    def preview(p: GenerationPreview) -> None:
        if report is not None and p.prompt_ids:
            pid = p.prompt_ids[0]
            if pid not in prompts:
                prompts[pid] = store.prompt(pid)["text"]
            report(("preview", (prompts[pid], p.texts[0])))

    made = 0
    for prog in generate_samples(store, loaded, params, limit=1, cancel=cancel, preview=preview):
        yield "generated", prog
        new, _note = pick(1, exclude)
        if new:
            exclude |= {i.key for i in new}
            made += len(new)
            yield "items", new
    return made
