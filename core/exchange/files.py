"""Where an export goes: targets checked with one clear message, and files written atomically."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from core.checkpoints import fsync_path
from core.errors import UserError

P = TypeVar("P")
R = TypeVar("R")


class ExportError(UserError):
    """An export that cannot be written as asked; the message says which option and what to do."""


class Cancelled(Exception):
    """Raised inside an atomic write when the cancel flag is set, so the temp file goes with it."""


def check_parent(target: Path) -> None:
    """An existing *file* where ``target``'s folder should be gets a message, not a traceback.
    Nothing is created here: the writer creates the folder when it writes."""
    for folder in (target.parent, *target.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ExportError(
                    f"cannot write {target}: {folder} is a file, not a folder; choose another "
                    "output path (-o)."
                )
            return


def file_target(path: str | os.PathLike) -> Path:
    """The file an export writes, checked before any work starts."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ExportError(f"{target} is a folder; give a file name to export to (-o FILE).")
    check_parent(target)
    return target


def folder_target(path: str | os.PathLike) -> Path:
    """A new (or empty) folder an export fills; an existing non-empty one is never overwritten."""
    out = Path(path).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not empty; choose a new folder (-o DIR).")
    check_parent(out)
    return out


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temp file path beside ``target`` for a writer that opens the file itself; fsynced and
    renamed over ``target`` only if the block succeeds, removed otherwise (a cancel included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    # made like any new file (the umask applies), not private as mkstemp's are
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)  # the rename itself survives a crash


@contextmanager
def atomic_file(target: Path, *, binary: bool) -> Iterator[IO[Any]]:
    """A temp file beside ``target``, fsynced and renamed over it only if the block succeeds."""
    mode = "wb" if binary else "w"
    kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def drain(gen: Generator[P, None, R], progress: Callable[[P], None] | None) -> R:
    """Run an export generator to its end, handing each progress report to ``progress``."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(step)
