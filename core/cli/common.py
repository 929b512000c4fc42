"""What every headless command shares: the project file it opens, quiet libraries, progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.paths import default_project_path
from core.store import ProjectStore


def project_path(args: argparse.Namespace) -> Path:
    return Path(args.db).expanduser() if getattr(args, "db", None) else default_project_path()


def open_store(args: argparse.Namespace, *, create: bool = True) -> ProjectStore:
    return ProjectStore(project_path(args), create=create)


def quiet_libraries() -> None:
    """transformers' progress bars and warnings off: a command prints its own progress."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def say(message: str, _fraction: float | None = None) -> None:
    """A progress message on stderr (stdout carries the command's result)."""
    print(message, file=sys.stderr)


@contextmanager
def progress_bar(unit: str, desc: str, *, leave: bool = True) -> Iterator[Any]:
    """A tqdm bar on stderr, made on first use; ``bar.to(done, total)`` moves it."""
    from tqdm import tqdm

    class Bar:
        bar: Any = None

        def to(
            self, done: int, total: int | None, label: str | None = None, **postfix: Any
        ) -> None:
            if self.bar is None:
                self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=leave)
            if label is not None:
                self.bar.set_description(label)
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix(postfix)

    holder = Bar()
    try:
        yield holder
    finally:
        if holder.bar is not None:
            holder.bar.close()
