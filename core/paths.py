"""Where the app keeps its files: the user data dir (projects, the converted default model)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "rlhf-studio"


def data_dir() -> Path:
    """Where projects and the converted default model live (``RLHF_STUDIO_HOME`` overrides)."""
    override = os.environ.get("RLHF_STUDIO_HOME")
    path = (
        Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_project_path() -> Path:
    return data_dir() / "projects" / "default.db"
