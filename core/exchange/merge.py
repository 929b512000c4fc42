"""Merge other project files (annotators' workstations) into this one, matching rows by uuid.

Each source is opened read-only and never written. Everything is merged in one transaction on the
target: a bad source (not a project, an unknown or newer schema, a corrupt page) stops the merge
with a message and nothing is merged. Integer ids are local to a file, so every reference is
remapped: sample.prompt_id/checkpoint_id, rating.prompt_id/sample_ids and the sample ids inside its
value, checkpoint.run_id, metrics.run_id, runs.rating_ids, and `checkpoint:N` model specs.
Merging the same file again adds nothing. Rules: docs/exports.md.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

from core.exchange.files import drain
from core.store import SCHEMA_VERSION, ProjectError, ProjectStore
from core.store.merge_rows import FileReport, MergeCancelled, MergeProgress, RowMerger

_REQUIRED = {
    "annotators": ("name", "created_at"),
    "prompts": ("id", "uuid", "text", "messages", "content_key", "source", "created_at", "split"),
    "runs": (
        "id",
        "uuid",
        "algo",
        "base_model",
        "config",
        "status",
        "rating_ids",
        "message",
        "created_at",
        "finished_at",
    ),
    "checkpoints": (
        "id",
        "uuid",
        "run_id",
        "step",
        "kind",
        "path",
        "sha256",
        "base_model",
        "adapter",
        "metrics",
        "created_at",
    ),
    "samples": (
        "id",
        "uuid",
        "prompt_id",
        "text",
        "model",
        "checkpoint_id",
        "params",
        "n_tokens",
        "created_at",
    ),
    "ratings": (
        "id",
        "uuid",
        "annotator",
        "kind",
        "prompt_id",
        "sample_ids",
        "value",
        "comment",
        "seconds",
        "superseded",
        "created_at",
        "superseded_at",
        "selection",
    ),
    "metrics": ("run_id", "step", "name", "value", "created_at"),
    "alerts": ("id", "uuid", "run_id", "step", "rule", "message", "created_at"),
}
# SQLite page cache while merging: 256 MiB (negative: KiB). Inserts into the random-uuid indexes
# otherwise spill and re-read pages all the time.
_CACHE_KIB = -262144


@dataclass
class MergeReport:
    files: list[FileReport]
    seconds: float = 0.0
    cancelled: bool = False

    def added(self, table: str) -> int:
        return sum(f.added[table] for f in self.files)

    def summary(self) -> str:
        if self.cancelled:
            return "merge cancelled; nothing was merged."
        return "\n".join(f.summary() for f in self.files)


# ---- the public entry points ----------------------------------------------------------------------
def merge_projects(
    store: ProjectStore,
    others: Iterable[str | os.PathLike],
    progress: Callable[[MergeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> MergeReport:
    """Merge ``others`` into ``store`` (one transaction); ``progress`` gets each MergeProgress."""
    return drain(iter_merge_projects(store, others, cancel=cancel), progress)


def iter_merge_projects(
    store: ProjectStore,
    others: Iterable[str | os.PathLike],
    cancel: threading.Event | None = None,
) -> Generator[MergeProgress, None, MergeReport]:
    """The merge as a generator (for gui/workers.py). Cancelling or closing it rolls back."""
    start = time.perf_counter()
    cancel = cancel or threading.Event()
    sources: list[ProjectStore] = []
    try:
        for p in others:  # check every file before merging any
            sources.append(_open_source(Path(p).expanduser(), store))
        reports = [FileReport(src.path) for src in sources]
        with store.pragmas(cache_size=_CACHE_KIB), store.transaction():
            for src, report in zip(sources, reports, strict=True):
                yield from RowMerger(store, src, report, cancel).run()
    except MergeCancelled:
        return MergeReport([], time.perf_counter() - start, cancelled=True)
    finally:
        for src in sources:
            src.close()
    return MergeReport(reports, time.perf_counter() - start)


def _open_source(path: Path, target: ProjectStore) -> ProjectStore:
    """Open a source read-only after checking it is a project file this build can read."""
    if path.exists() and target.path.exists() and os.path.samefile(path, target.path):
        raise ProjectError(f"{path} is the open project itself; choose another project file.")
    src = ProjectStore(path, readonly=True)  # not SQLite / no schema / newer: ProjectError
    try:
        if src.schema_version != SCHEMA_VERSION:
            raise ProjectError(
                f"{path} is not an RLHF Studio project file of schema version {SCHEMA_VERSION} "
                f"(found {src.schema_version or 'an empty database'}). Open it once in RLHF Studio "
                "to upgrade it, then merge; nothing was merged."
            )
        for table, cols in _REQUIRED.items():
            have = set(src.column_names(table))
            missing = [c for c in cols if c not in have]
            if missing:
                raise ProjectError(
                    f"{path} has an unknown schema: table {table!r} lacks {', '.join(missing)}. "
                    "It was not written by this version of RLHF Studio; nothing was merged."
                )
    except sqlite3.DatabaseError as e:
        src.close()
        raise ProjectError(
            f"{path} cannot be read as a project file ({e}); nothing was merged."
        ) from e
    except BaseException:
        src.close()
        raise
    return src
