"""What every panel of the window shares: the project file, the annotator, the generation model.

Panels receive one ``AppContext``. It owns the GUI thread's own connection to the project file
(for small, fast queries only); worker threads open their own ``ProjectStore`` on ``db_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from core.models import LoadedModel, load_model
from core.store import ProjectStore


class AppContext(QObject):
    model_spec_changed = Signal(str)
    """The generation model changed (e.g. a checkpoint was made the generator)."""
    settings_changed = Signal(dict)
    """Project settings were edited (rubric, generation settings, guidelines, ...)."""
    data_changed = Signal()
    """Rows were added from outside the Rate tab (import, merge, a finished training run)."""
    settings_requested = Signal()
    """Someone asked for the project settings dialog (the main window opens it)."""
    status_message = Signal(str)
    """A short line for the status bar."""
    background_progress = Signal(str, int, int)
    """(label, done, total) for the status bar's progress bar; total 0 hides it."""

    def __init__(
        self,
        db_path: Path,
        annotator: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.db_path = Path(db_path)
        self.annotator = annotator
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.store = ProjectStore(self.db_path)  # GUI thread only

    def open_worker_store(self) -> ProjectStore:
        """A new connection for a worker thread; the worker closes it."""
        return ProjectStore(self.db_path)

    def load_model(self, spec: str, store: ProjectStore, progress=None) -> LoadedModel:
        """Load ``spec`` with the window's device, precision and trust setting (worker threads
        only: it is model code); ``progress(message, fraction)`` hears each stage."""
        return load_model(
            spec,
            store=store,
            device=self.device,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            progress=progress,
        )

    def settings(self) -> dict[str, Any]:
        return self.store.settings()

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        old_model = self.store.settings()["model"]
        new = self.store.update_settings(**changes)
        self.settings_changed.emit(new)
        if new["model"] != old_model:
            self.model_spec_changed.emit(new["model"])
        return new

    def use_model(self, spec: str) -> None:
        """Make ``spec`` (e.g. ``checkpoint:7``) the generation model for new samples."""
        self.update_settings(model=spec)

    def close(self) -> None:
        self.store.close()
