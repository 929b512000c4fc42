"""The project file: one SQLite database holding prompts, samples, ratings, runs and checkpoints.

Every arrow of the RLHF loop is a row here, so any question about a project ("which checkpoint made
this sample, who rated it, which ratings trained run 3?") is a query on this one file. See
docs/schema.md for the tables. One ``ProjectStore`` per thread (SQLite connections must not be
shared across threads); WAL mode lets annotators write while training reads.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.store.export import RatingExport
from core.store.queries import RatingQueries, RunQueries, SampleQueries
from core.store.records import PromptRows, RatingRows, RunRows
from core.store.schema import (
    DEFAULT_SETTINGS,
    MIGRATIONS,
    SCHEMA_VERSION,
    ProjectError,
    new_uuid,
    now,
    read_schema_version,
    sqlite_utils,
)


class ProjectStore(
    PromptRows, RatingRows, RunRows, SampleQueries, RatingQueries, RunQueries, RatingExport
):
    """One connection to a project file. Create one per thread; close it when done."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, create: bool = True):
        self.path = Path(path).expanduser()
        self.readonly = readonly
        if not self.path.exists() and (readonly or not create):
            raise ProjectError(f"{self.path} does not exist. Check the path to the project file.")
        version = read_schema_version(self.path)
        if version is None:
            raise ProjectError(
                f"{self.path} is an SQLite database but not an RLHF Studio project file "
                "(it has no schema version). Choose a project file or a new file name."
            )
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path} uses project schema version {version}, newer than this build "
                f"of RLHF Studio understands ({SCHEMA_VERSION}). Update RLHF Studio to open it; "
                "the file was left untouched."
            )
        if readonly:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=10, isolation_level=None
            )
        else:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise ProjectError(
                    f"{self.path} is read-only. Make it writable (or copy it) to rate or import; "
                    "nothing was written."
                )
            # Autocommit mode: only our explicit BEGIN IMMEDIATE opens a transaction, so no write
            # is ever left in an implicit, uncommitted one.
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(version)
            except sqlite3.OperationalError as e:
                conn.close()
                raise ProjectError(
                    f"{self.path} cannot be written ({e}). If another program holds it locked, "
                    "close that program; if the disk or folder is read-only, choose another place."
                ) from e
        self.schema_version = SCHEMA_VERSION if not readonly else version

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, version: int) -> None:
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            for step in MIGRATIONS[version:]:
                step(self.db)
            self._set_meta("schema_version", str(SCHEMA_VERSION))
            if self.get_meta("project_uuid") is None:
                self._set_meta("project_uuid", new_uuid())
                self._set_meta("created_at", now())

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: commit on success, roll back on any exception."""
        conn = self.conn
        if conn.in_transaction:  # nested: the outer block owns the commit
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    @contextmanager
    def pragmas(self, **values: int) -> Iterator[None]:
        """Set SQLite pragmas for the block, then restore them: a bigger cache for a bulk job."""
        saved = {p: self.conn.execute(f"PRAGMA {p}").fetchone()[0] for p in values}
        for pragma, value in values.items():
            self.conn.execute(f"PRAGMA {pragma} = {int(value)}")
        try:
            yield
        finally:
            for pragma, value in saved.items():
                self.conn.execute(f"PRAGMA {pragma} = {int(value)}")

    def set_busy_timeout(self, ms: int) -> None:
        """Wait at most ``ms`` for another writer's lock: the GUI reports a locked file sooner."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def column_names(self, table: str) -> list[str]:
        """The columns ``table`` has in this file: what a file from another build can be read for."""
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    # ---- meta and settings ------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._set_meta(key, value)

    def settings(self) -> dict[str, Any]:
        """Project settings (model spec, generation settings, rubric, ...) with defaults filled."""
        stored = json.loads(self.get_meta("settings", "{}") or "{}")
        return {**DEFAULT_SETTINGS, **stored}

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        unknown = set(changes) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ValueError(f"unknown project settings: {', '.join(sorted(unknown))}")
        stored = json.loads(self.get_meta("settings", "{}") or "{}")
        stored.update(changes)
        self.set_meta("settings", json.dumps(stored, ensure_ascii=False))
        return self.settings()

    # ---- annotators -------------------------------------------------------------------------
    def ensure_annotator(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("the annotator name is empty; give a name (e.g. --annotator alice)")
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO annotators(name, created_at) VALUES (?, ?)", (name, now())
            )

    # ---- counts -----------------------------------------------------------------------------
    def count(self, table: str, where: str = "", args: Iterable[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.conn.execute(sql, list(args)).fetchone()[0])

    def basic_stats(self) -> dict[str, Any]:
        """The counts `stats --json` always prints (core.stats adds agreement, speed, ...)."""
        annotators = {
            name: n
            for name, n in self.conn.execute(
                "SELECT a.name, COUNT(r.id) FROM annotators a LEFT JOIN ratings r "
                "ON r.annotator = a.name AND r.superseded = 0 AND r.kind != 'skip' "
                "GROUP BY a.name ORDER BY a.name"
            )
        }
        kinds = dict(
            self.conn.execute(
                "SELECT kind, COUNT(*) FROM ratings WHERE superseded = 0 GROUP BY kind ORDER BY kind"
            ).fetchall()
        )
        return {
            "project": str(self.path),
            "schema_version": self.schema_version,
            "prompts": self.count("prompts"),
            "eval_prompts": self.eval_prompt_count(),
            "samples": self.count("samples"),
            "ratings": self.live_rating_count(),
            "ratings_by_kind": kinds,
            "superseded": self.count("ratings", "superseded = 1"),
            "annotators": annotators,
            "runs": self.count("runs"),
            "checkpoints": self.count("checkpoints"),
        }
