"""Ratings leave the project file: raw rows (jsonl, csv, parquet) or TRL-ready training data.

Raw formats stream from an SQL cursor (``ProjectStore.export_lines``), one row per rating;
``preference``, ``unpaired`` and ``sft`` are built by core.data with aggregation on, so what a file
holds is what a run would train on, in TRL's conversational form (``plain`` keeps strings), because
samples are generated through the model's chat template and TRL applies it only to conversational
rows.
Every export is written to a temp file beside the target and renamed into place: a cancelled or
failed export leaves the old file (or no file), never half of one. Rules: docs/exports.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import data
from core.exchange.files import Cancelled, ExportError, atomic_file, drain, file_target
from core.exchange.writers import WRITERS
from core.store import ProjectStore

RAW_FORMATS = ("jsonl", "csv", "parquet")
TRAINING_FORMATS = ("preference", "unpaired", "sft")
FORMATS = RAW_FORMATS + TRAINING_FORMATS
SALT_KEY = "anonymize_salt"
_BATCH = 2000  # rows per progress report and per parquet batch


@dataclass
class ExportProgress:
    done: int  # rows written
    total: int  # rows to write (0 while stage is "build")
    stage: str = "write"  # "build": core/data.py is building the training examples


@dataclass
class ExportResult:
    path: Path
    format: str
    rows: int
    seconds: float
    conversational: bool = False  # training formats: rows hold chat messages, not strings
    cancelled: bool = False


# ---- anonymisation --------------------------------------------------------------------------------
def anonymizer(store: ProjectStore) -> Callable[[str], str]:
    """name → ``annotator-<12 hex>``: a salted SHA-256, stable for this project file.

    The salt is made once and kept in meta ``anonymize_salt``, so the same person gets the same
    code in every export of this project, and nobody can recover a name by hashing guesses."""
    salt = store.get_meta(SALT_KEY)
    if salt is None:
        store.set_meta(SALT_KEY, secrets.token_hex(16))
        salt = store.get_meta(SALT_KEY)
    cache: dict[str, str] = {}

    def code(name: str) -> str:
        if name not in cache:
            digest = hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()[:12]
            cache[name] = f"annotator-{digest}"
        return cache[name]

    return code


# ---- the public entry points ----------------------------------------------------------------------
def export_ratings(
    store: ProjectStore,
    path: str | os.PathLike,
    fmt: str,
    *,
    anonymize: bool = False,
    include_superseded: bool = False,
    annotators: Iterable[str] | None = None,
    min_agreement: float | None = None,
    min_score: float | None = None,
    plain: bool = False,
    progress: Callable[[ExportProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExportResult:
    """Write ratings to ``path`` in ``fmt`` (see FORMATS); ``progress`` gets each ExportProgress.
    ``plain``: training rows as strings rather than chat messages (a chat prompt still a chat)."""
    gen = iter_export_ratings(
        store,
        path,
        fmt,
        anonymize=anonymize,
        include_superseded=include_superseded,
        annotators=annotators,
        min_agreement=min_agreement,
        min_score=min_score,
        plain=plain,
        cancel=cancel,
    )
    return drain(gen, progress)


def iter_export_ratings(
    store: ProjectStore,
    path: str | os.PathLike,
    fmt: str,
    *,
    anonymize: bool = False,
    include_superseded: bool = False,
    annotators: Iterable[str] | None = None,
    min_agreement: float | None = None,
    min_score: float | None = None,
    plain: bool = False,
    cancel: threading.Event | None = None,
) -> Generator[ExportProgress, None, ExportResult]:
    """The export as a generator (for gui/workers.py): yields progress, returns the ExportResult.

    Closing it or setting ``cancel`` removes the temp file and leaves the target as it was."""
    start = time.perf_counter()
    names = _check_options(
        store, fmt, include_superseded, annotators, min_agreement, min_score, plain
    )
    target = file_target(path)
    code = anonymizer(store) if anonymize else None
    cancel = cancel or threading.Event()
    if fmt in RAW_FORMATS:
        total = store.export_count(include_superseded, names)
        criteria = _criteria(store)
        rows = store.export_lines(fmt, include_superseded, names, code, criteria, _BATCH)
        conversational = False
    else:
        yield ExportProgress(0, 0, "build")
        criteria = None
        rows, total, conversational = _training_rows(
            store, fmt, names, min_agreement, min_score, plain
        )
    done = 0
    try:
        with atomic_file(target, binary=fmt == "parquet") as f:
            writer = WRITERS[fmt](f, criteria)
            try:
                for batch in _batches(rows, _BATCH):
                    if cancel.is_set():
                        raise Cancelled
                    writer.write(batch)
                    done += len(batch)
                    yield ExportProgress(done, total)
            finally:
                writer.close()
    except Cancelled:
        return ExportResult(target, fmt, done, time.perf_counter() - start, cancelled=True)
    return ExportResult(target, fmt, done, time.perf_counter() - start, conversational)


# ---- checks ---------------------------------------------------------------------------------------
def _check_options(
    store: ProjectStore,
    fmt: str,
    include_superseded: bool,
    annotators: Iterable[str] | None,
    min_agreement: float | None,
    min_score: float | None,
    plain: bool = False,
) -> list[str] | None:
    if fmt not in FORMATS:
        raise ExportError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}.")
    if plain and fmt in RAW_FORMATS:
        raise ExportError(
            f"--plain applies to {', '.join(TRAINING_FORMATS)}: a raw export keeps prompts as "
            "they were imported. Drop the option or choose a training format."
        )
    if fmt in TRAINING_FORMATS and include_superseded:
        raise ExportError(
            f"--include-superseded applies to the raw formats ({', '.join(RAW_FORMATS)}); undone "
            f"ratings never train, so a {fmt} export cannot include them. Drop the option."
        )
    if min_agreement is not None:
        if fmt in RAW_FORMATS:
            raise ExportError(
                f"--min-agreement applies to {', '.join(TRAINING_FORMATS)}: a raw export keeps "
                "every rating as it was made. Drop the option or choose a training format."
            )
        if not 0.0 <= min_agreement <= 1.0:
            raise ExportError(f"--min-agreement must be a fraction in [0, 1], got {min_agreement}.")
    if min_score is not None and fmt != "sft":
        raise ExportError("min_score (top-rated responses as demonstrations) applies to sft only.")
    names = sorted({a.strip() for a in annotators or [] if a.strip()}) or None
    if names:
        known = store.rating_annotators()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ExportError(
                f"{store.path} has no ratings by {', '.join(unknown)}; annotators with ratings: "
                f"{', '.join(sorted(known)) or 'none'}. Check the names after --annotator."
            )
    return names


# ---- raw rows -------------------------------------------------------------------------------------
def _criteria(store: ProjectStore) -> list[str]:
    """Every criterion any score rating used: the project rubric's order, then the others A–Z."""
    used = store.score_criteria()
    rubric = [c for c in store.settings().get("rubric") or [] if c in used]
    return rubric + sorted(used - set(rubric))


# ---- training rows --------------------------------------------------------------------------------
def _training_rows(
    store: ProjectStore,
    fmt: str,
    names: list[str] | None,
    min_agreement: float | None,
    min_score: float | None,
    plain: bool = False,
) -> tuple[Iterator[dict[str, Any]], int, bool]:
    """The examples core/data.py builds (aggregated), as TRL rows; and whether they are chats.

    Conversational unless ``plain``: samples were generated through the model's chat template, and
    TRL applies the template only to conversational rows. ``plain`` keeps strings, except where a
    prompt is a chat, which a string cannot hold."""
    rules = {"annotators": names, "aggregate": True, "min_agreement": min_agreement or 0.0}
    if fmt == "preference":
        examples: list[Any] = data.preference_pairs(store, **rules)
    elif fmt == "unpaired":
        examples = data.unpaired_examples(store, **rules)
    else:
        examples = data.demonstrations(store, min_score=min_score, **rules)
    chats = store.chat_prompt_ids()
    conversational = not plain or any(e.prompt_id in chats for e in examples)
    return _trl_rows(store, fmt, examples, conversational), len(examples), conversational


def _trl_rows(
    store: ProjectStore, fmt: str, examples: list[Any], conversational: bool
) -> Iterator[dict[str, Any]]:
    """data.materialize's rows cut to exactly TRL's columns; strings unless ``conversational``."""
    for row in data.materialize(store, examples, conversational=conversational):
        prompt = row["prompt"] if conversational else row["prompt"][-1]["content"]
        if fmt == "preference":
            yield {"prompt": prompt, "chosen": row["chosen"], "rejected": row["rejected"]}
        elif fmt == "unpaired":
            yield {"prompt": prompt, "completion": row["completion"], "label": bool(row["label"])}
        elif conversational:
            yield {"messages": prompt + row["completion"]}
        else:
            yield {"prompt": prompt, "completion": row["completion"]}


# ---- writers --------------------------------------------------------------------------------------
def _batches(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
