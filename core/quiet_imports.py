"""Imports that do not make the garbage collector stop every thread.

CPython's cyclic collector runs a full collection when the objects it tracks have grown by a
quarter since the last one, and a full collection walks every tracked object while it holds the
GIL. Once torch and transformers are imported that is hundreds of thousands of objects, a
collection long enough to freeze the GUI thread. Importing a model's code, peft or accelerate on a
background thread grows the heap enough for several such collections in a row (docs/design.md).

So heavy imports run with the collector paused, and what they created (modules, classes,
functions: alive as long as the process) then moves to the permanent generation with
``gc.freeze()``, which later collections never walk. The app also freezes what its own start-up
imported (``freeze_imported``), before any model exists.

Only imports belong in here. An object frozen while it is already garbage in a reference cycle is
never collected, so models, tensors and anything that holds them are built outside, with the
collector running as usual. (Other threads' cyclic garbage of that moment is frozen too; that
happens only when something new is imported, a few times in a session, and objects that are freed
by reference counting, as models and tensors are, are freed whether frozen or not.)
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_lock = threading.Lock()
_depth = 0  # threads inside collector_paused() right now
_was_enabled = True


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause automatic collection; when the last thread leaves, freeze what exists and resume.

    Safe to nest and to enter from several threads at once.
    """
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.freeze()
                if _was_enabled:
                    gc.enable()


def quiet_import(*names: str, optional: bool = False) -> None:
    """Import ``names`` with the collector paused, then freeze them (see the module docstring).

    Modules already imported cost nothing. ``optional``: a module that is not installed is
    skipped instead of raising (its user raises the error a person can act on).
    """
    missing = [n for n in names if n not in sys.modules]
    if not missing:
        return
    with collector_paused():
        for name in missing:
            try:
                importlib.import_module(name)
            except ImportError:
                if not optional:
                    raise


def import_without(name: str, *unwanted: str) -> ModuleType:
    """Import ``name`` while the modules ``unwanted`` (optional dependencies it would load for a
    feature we never use) cannot be imported; they stay importable afterwards.

    For imports at start-up: another thread importing one of ``unwanted`` at the same moment
    would get an ImportError.
    """
    blocked = [u for u in unwanted if u not in sys.modules]
    for u in blocked:
        sys.modules[u] = None  # type: ignore[assignment]  # `import u` raises ImportError
    try:
        return importlib.import_module(name)
    finally:
        for u in blocked:
            if u in sys.modules and sys.modules[u] is None:
                del sys.modules[u]


def freeze_imported() -> None:
    """Move every object that exists now to the permanent generation. For a program's start-up,
    after its imports and before it builds models."""
    gc.freeze()
