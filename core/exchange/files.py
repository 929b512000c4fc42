"""Where an export goes: targets checked with one clear message, and files written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.errors import UserError


class ExportError(UserError):
    """An export that cannot be written as asked; the message says which option and what to do."""


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
def atomic_file(target: Path, *, binary: bool) -> Iterator[IO[Any]]:
    """A temp file beside ``target``, fsynced and renamed over it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        mode = "wb" if binary else "w"
        kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
