"""The Data tab's background work, as ``gui.workers.Task`` work functions, and what their results
say to people. No widgets here: gui/data_panel.py starts the Tasks and shows the lines.

Each work function opens its own connection to the project file when it starts (so on the worker
thread) and closes it when it ends, however it ends. Each yields ``JobProgress``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.errors import UserError
from core.exchange import (
    CheckpointExport,
    GGUFCheckpointExport,
    GGUFProgress,
    export_checkpoint,
    iter_export_checkpoint_gguf,
)
from core.exchange.merge import MergeProgress, MergeReport, iter_merge_projects
from core.exchange.ratings import ExportProgress, ExportResult, iter_export_ratings
from core.prompts import ImportResult, import_prompts
from core.stats import project_stats

T = TypeVar("T")
WorkFn = Callable[[threading.Event], Iterator[Any]]
NOTHING_DONE = {  # what a failed or cancelled job leaves behind
    "import": "Nothing was imported.",
    "export": "Nothing was written.",
    "checkpoint": "Nothing was written.",
    "merge": "Nothing was merged.",
}


@dataclass
class JobProgress:
    """What a job yields: a line of text and done / total (total ≤ 0: busy, no known end)."""

    text: str
    done: int = 0
    total: int = 0


@dataclass
class ExportOptions:
    fmt: str
    anonymize: bool = False
    include_superseded: bool = False
    plain: bool = False  # training formats: strings, not TRL's conversational form
    annotators: list[str] | None = None  # None: everyone
    min_agreement: float | None = None
    min_score: float | None = None  # sft: also responses scoring at least this (0–1)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def mapped(gen: Generator[Any, None, T], fn: Callable[[Any], JobProgress]) -> Generator:
    """Yield ``fn(item)`` for each item of ``gen`` and return its value. Closing this closes
    ``gen`` at once, so its cleanup (temp file removed, transaction rolled back) runs now."""
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield fn(item)
    finally:
        gen.close()


# ---- work functions -------------------------------------------------------------------------------
def import_work(ctx: Any, path: Path, source: str | None) -> WorkFn:
    def work(_cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            yield JobProgress(f"reading {path.name}…")
            return import_prompts(store, path, source)
        finally:
            store.close()

    return work


def export_work(ctx: Any, path: Path, o: ExportOptions) -> WorkFn:
    def work(cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            gen = iter_export_ratings(
                store,
                path,
                o.fmt,
                anonymize=o.anonymize,
                include_superseded=o.include_superseded,
                annotators=o.annotators,
                min_agreement=o.min_agreement,
                min_score=o.min_score,
                plain=o.plain,
                cancel=cancel,
            )
            return (yield from mapped(gen, _export_progress))
        finally:
            store.close()

    return work


def checkpoint_work(ctx: Any, checkpoint_id: int, out: Path, merged: bool) -> WorkFn:
    """core.exchange.export_checkpoint has no progress hook: one busy step, no cancel."""

    def work(_cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            what = "merging the adapter and writing" if merged else "writing"
            yield JobProgress(f"{what} checkpoint:{checkpoint_id}…")
            return export_checkpoint(store, checkpoint_id, out, merged=merged)
        finally:
            store.close()

    return work


def gguf_work(ctx: Any, checkpoint_id: int, out: Path, quant: str) -> WorkFn:
    """One GGUF file (an adapter merged first); cancellable between tensors."""

    def work(cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            gen = iter_export_checkpoint_gguf(store, checkpoint_id, out, quant, cancel=cancel)
            return (yield from mapped(gen, _gguf_progress))
        finally:
            store.close()

    return work


def merge_work(ctx: Any, paths: list[Path]) -> WorkFn:
    def work(cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            gen = iter_merge_projects(store, paths, cancel=cancel)
            return (yield from mapped(gen, _merge_progress))
        finally:
            store.close()

    return work


def stats_work(ctx: Any) -> WorkFn:
    def work(_cancel: threading.Event) -> Iterator[JobProgress]:
        store = ctx.open_worker_store()
        try:
            yield JobProgress("computing…")
            return project_stats(store)
        finally:
            store.close()

    return work


def _export_progress(p: ExportProgress) -> JobProgress:
    return JobProgress(f"{p.done:,} / {p.total:,} rows", p.done, p.total)


def _gguf_progress(p: GGUFProgress) -> JobProgress:
    if not p.total:  # the tokenizer, or an adapter being merged: no known end
        return JobProgress(f"{p.text}…")
    return JobProgress(f"{p.done} / {p.total} tensors", p.done, p.total)


def _merge_progress(p: MergeProgress) -> JobProgress:
    return JobProgress(f"{p.file}: {p.table} {p.done:,} / {p.total:,}", p.done, p.total)


# ---- what the results say -------------------------------------------------------------------------
def import_summary(res: ImportResult) -> str:
    dup = "duplicate" if res.skipped_duplicates == 1 else "duplicates"
    return (
        f"{res.added:,} added, {res.skipped_duplicates:,} {dup} skipped "
        f"({res.total:,} in {res.path.name})."
    )


def export_summary(res: ExportResult) -> str:
    form = f"{res.format}, conversational" if res.conversational else res.format
    text = f"{plural(res.rows, 'row')} written to {res.path} ({form}, {res.seconds:.1f} s)."
    if res.rows == 0:
        text += " No rating matched these options, so the file is empty."
    return text


def checkpoint_summary(res: CheckpointExport) -> str:
    text = f"checkpoint:{res.checkpoint_id} ({res.kind}, {res.form}) exported to {res.path}."
    return text + "".join(f"\nNote: {n}." for n in res.notes)


def gguf_summary(res: GGUFCheckpointExport) -> str:
    size = f"{res.size_bytes / 2**20:,.1f} MiB"
    return (
        f"checkpoint:{res.checkpoint_id} ({res.form}) exported to {res.path} as {res.quant} GGUF "
        f"({size}, {res.seconds:.1f} s). Model card beside it: {res.card.name if res.card else '—'}."
    )


def merge_lines(report: MergeReport) -> list[str]:
    """One line per merged file: what each table gained."""
    lines = []
    for f in report.files:
        parts = [plural(n, table.rstrip("s")) for table, n in f.added.items() if n]
        if f.prompts_matched_by_content:
            parts.append(f"{plural(f.prompts_matched_by_content, 'prompt')} matched by content")
        if f.ratings_undone:
            parts.append(f"{plural(f.ratings_undone, 'rating')} marked undone")
        if f.runs_updated:
            parts.append(f"{plural(f.runs_updated, 'run')} updated")
        lines.append(f"{f.path.name}: " + (", ".join(parts) or "nothing new (already merged)"))
    return lines


def failure_text(job: str, e: BaseException) -> str:
    """A job's error for people; it always says what was left behind."""
    if not isinstance(e, UserError):  # a bug: say so plainly (the traceback goes in details)
        return f"Unexpected error: {type(e).__name__}: {e}\n{NOTHING_DONE[job]}"
    text = str(e)
    if NOTHING_DONE[job].lower().rstrip(".") not in text.lower():
        text += f" {NOTHING_DONE[job]}"
    return text
