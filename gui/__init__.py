"""The desktop app: PySide6 widgets over core/ (which has no Qt)."""

from __future__ import annotations

import builtins

import shiboken6  # noqa: F401  (PySide6's first import installs the hook released below)


def release_feature_import_hook() -> bool:
    """Give imports back the function PySide6's ``__feature__`` hook wrapped; True if it did.

    The hook serves ``from __feature__ import snake_case``, which the app never uses, and on every
    later import it reads the new module's source to see whether it mentions PySide6: a model's
    code, peft or accelerate imported on a worker pays for thousands of file reads, held in
    linecache for the rest of the session. Any other replacement of ``__import__`` is left alone.
    """
    hook = getattr(builtins, "__feature_import__", None)
    wrapped = getattr(builtins, "__orig_import__", None)
    if hook is None or wrapped is None or builtins.__import__ is not hook:
        return False
    builtins.__import__ = wrapped
    return True


release_feature_import_hook()
