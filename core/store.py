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
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.quiet_imports import import_without

# sqlite-utils imports pandas when it is installed (it comes with `datasets`) only to store
# pandas.Timestamp values as text, which this store never writes; pandas is ~0.4 s of every
# start-up (docs/benchmarks.md, cold start)
sqlite_utils = import_without("sqlite_utils", "pandas")

SCHEMA_VERSION = 1
SQLITE_NOTADB = 26  # sqlite3.DatabaseError.sqlite_errorcode of a file that is not a database
RATING_KINDS = ("score", "pairwise", "rank", "thumbs", "rewrite", "flag", "skip")
FLAG_REASONS = ("unsafe", "private data", "gibberish", "wrong language", "other")
PAIRWISE_CHOICES = ("a", "b", "tie", "both_bad")
DEFAULT_RUBRIC = ("overall", "fluency", "accuracy", "grammar")
DEFAULT_SETTINGS: dict[str, Any] = {
    "model": "default",
    "per_prompt": 4,
    "max_new_tokens": 128,
    "temperature": 0.8,
    "top_p": 0.95,
    "rubric": list(DEFAULT_RUBRIC),
    "queue_size": 8,
    "mode": "pairwise",
    "guidelines": None,  # None: the default text in resources/guidelines.md
}


class ProjectError(UserError):
    """A project file problem stated for a person: which file, what is wrong, what to do."""


def now() -> str:
    """UTC timestamp in ISO 8601 with milliseconds; sorts as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


# Each migration takes the database from version i to i + 1. Never edit one that has shipped:
# append a new function instead.
def _migrate_0_to_1(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db["annotators"].create(
        {"id": int, "name": str, "created_at": str}, pk="id", not_null={"name", "created_at"}
    )
    db["annotators"].create_index(["name"], unique=True)
    db["prompts"].create(
        {
            "id": int,
            "uuid": str,
            "text": str,  # plain prompt, or the last user turn of a chat (for display)
            "messages": str,  # JSON list of {"role", "content"} for chat prompts, else NULL
            "content_key": str,  # what "exact duplicate" means: text or canonical messages JSON
            "source": str,
            "created_at": str,
        },
        pk="id",
        not_null={"uuid", "text", "content_key", "created_at"},
    )
    db["prompts"].create_index(["uuid"], unique=True)
    db["prompts"].create_index(["content_key"])
    db["runs"].create(
        {
            "id": int,
            "uuid": str,
            "algo": str,
            "base_model": str,
            "config": str,  # JSON of the training config dataclass
            "status": str,  # created | running | paused | stopped | finished | failed
            "rating_ids": str,  # JSON list of ratings.id this run trained on
            "message": str,
            "created_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"uuid", "algo", "status", "created_at"},
    )
    db["runs"].create_index(["uuid"], unique=True)
    db["checkpoints"].create(
        {
            "id": int,
            "uuid": str,
            "run_id": int,
            "step": int,
            "kind": str,  # policy | reward
            "path": str,
            "sha256": str,
            "base_model": str,
            "adapter": int,  # 1: a peft adapter over base_model; 0: full weights
            "metrics": str,  # JSON of the last metrics at this step
            "created_at": str,
        },
        pk="id",
        not_null={"uuid", "step", "kind", "path", "created_at"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["checkpoints"].create_index(["uuid"], unique=True)
    db["samples"].create(
        {
            "id": int,
            "uuid": str,
            "prompt_id": int,
            "text": str,
            "model": str,  # the model spec that produced it, e.g. "default" or "checkpoint:3"
            "checkpoint_id": int,  # set when model is a checkpoint of this project
            "params": str,  # JSON sampling parameters incl. seed
            "n_tokens": int,
            "created_at": str,
        },
        pk="id",
        not_null={"uuid", "prompt_id", "text", "model", "created_at"},
        foreign_keys=[("prompt_id", "prompts", "id"), ("checkpoint_id", "checkpoints", "id")],
    )
    db["samples"].create_index(["uuid"], unique=True)
    db["samples"].create_index(["prompt_id"])
    db["ratings"].create(
        {
            "id": int,
            "uuid": str,
            "annotator": str,
            "kind": str,
            "prompt_id": int,
            "sample_ids": str,  # JSON list of samples.id in the order shown (A, B, ...)
            "value": str,  # JSON, shape per kind: see docs/schema.md
            "comment": str,
            "seconds": float,
            "superseded": int,  # 1 once undone; never deleted
            "created_at": str,
            "superseded_at": str,
        },
        pk="id",
        not_null={"uuid", "annotator", "kind", "prompt_id", "sample_ids", "value", "created_at"},
        defaults={"superseded": 0},
        foreign_keys=[("prompt_id", "prompts", "id")],
    )
    db["ratings"].create_index(["uuid"], unique=True)
    db["ratings"].create_index(["prompt_id"])
    db["ratings"].create_index(["annotator", "kind"])
    db["metrics"].create(
        {"run_id": int, "step": int, "name": str, "value": float, "created_at": str},
        pk=("run_id", "step", "name"),
        foreign_keys=[("run_id", "runs", "id")],
    )


MIGRATIONS = [_migrate_0_to_1]
assert len(MIGRATIONS) == SCHEMA_VERSION


def read_schema_version(path: Path) -> int | None:
    """The schema version of an existing project file, read without writing to it.

    None when the file is SQLite but has no RLHF Studio metadata (an empty file counts as 0).

    Only SQLite itself may open the file: a plain ``open()`` + ``close()`` of a database file
    drops every POSIX lock this process holds on it (fcntl locks belong to the process, not the
    descriptor). Then another process that closes its last connection takes the file for its
    own, checkpoints and deletes the write-ahead log under this process's open connections, and
    their later commits become invisible to everyone else or corrupt the file (it happened: a
    second store opened in one process while another process read the project).
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                return 0
            if "meta" not in tables:
                return None
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            return int(row[0]) if row else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        if getattr(e, "sqlite_errorcode", None) == SQLITE_NOTADB or "not a database" in str(e):
            raise ProjectError(
                f"{path} is not an RLHF Studio project file (not an SQLite database). "
                "Choose a .db project file, or a new file name to start a project."
            ) from e
        raise ProjectError(f"{path} cannot be read as a project file ({e}).") from e


class ProjectStore:
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

    def rated_sample_ids(self, annotator: str, kinds: Iterable[str] | None = None) -> set[int]:
        """Samples this annotator has judged in a live (not undone) rating, skips included."""
        sql = "SELECT sample_ids FROM ratings WHERE annotator = ? AND superseded = 0"
        args: list[Any] = [annotator.strip()]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += kinds
        seen: set[int] = set()
        for (ids,) in self.conn.execute(sql, args):
            seen.update(json.loads(ids))
        return seen

    # ---- prompts ----------------------------------------------------------------------------
    def prompt(self, prompt_id: int) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
        row = cur.fetchone()
        if row is None:
            raise ProjectError(f"prompt {prompt_id} does not exist in {self.path}.")
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def prompt_messages(self, prompt_id: int) -> list[dict[str, str]]:
        """The prompt as chat messages (a plain prompt becomes one user turn)."""
        p = self.prompt(prompt_id)
        if p["messages"]:
            return json.loads(p["messages"])
        return [{"role": "user", "content": p["text"]}]

    # ---- samples ----------------------------------------------------------------------------
    def add_samples(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Insert samples in one transaction; returns their ids. Fills uuid/created_at."""
        ids = []
        with self.transaction():
            for r in rows:
                rec = {
                    "uuid": r.get("uuid") or new_uuid(),
                    "prompt_id": r["prompt_id"],
                    "text": r["text"],
                    "model": r["model"],
                    "checkpoint_id": r.get("checkpoint_id"),
                    "params": json.dumps(r.get("params") or {}, ensure_ascii=False),
                    "n_tokens": r.get("n_tokens"),
                    "created_at": r.get("created_at") or now(),
                }
                cur = self.conn.execute(
                    "INSERT INTO samples(uuid, prompt_id, text, model, checkpoint_id, params, "
                    "n_tokens, created_at) VALUES (:uuid, :prompt_id, :text, :model, "
                    ":checkpoint_id, :params, :n_tokens, :created_at)",
                    rec,
                )
                ids.append(cur.lastrowid)
        return ids

    def samples_for_prompt(self, prompt_id: int) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.db.query(
                "SELECT * FROM samples WHERE prompt_id = ? ORDER BY id", [prompt_id]
            )
        ]

    # ---- ratings ----------------------------------------------------------------------------
    def add_rating(
        self,
        *,
        annotator: str,
        kind: str,
        sample_ids: list[int],
        value: dict[str, Any],
        prompt_id: int | None = None,
        comment: str | None = None,
        seconds: float | None = None,
    ) -> int:
        """Commit one rating now (never batched: a rating on screen is a rating on disk)."""
        if kind not in RATING_KINDS:
            raise ValueError(f"rating kind {kind!r} is not one of {', '.join(RATING_KINDS)}")
        if not sample_ids:
            raise ValueError("a rating must judge at least one sample")
        with self.transaction():
            marks = ", ".join("?" * len(sample_ids))
            found = dict(
                self.conn.execute(
                    f"SELECT id, prompt_id FROM samples WHERE id IN ({marks})", list(sample_ids)
                ).fetchall()
            )
            missing = [i for i in sample_ids if i not in found]
            if missing:
                raise ValueError(f"sample {missing[0]} does not exist")
            if len(set(found.values())) > 1:
                raise ValueError("a rating must judge samples of one prompt")
            if prompt_id is None:
                prompt_id = next(iter(found.values()))
            self.ensure_annotator(annotator)
            cur = self.conn.execute(
                "INSERT INTO ratings(uuid, annotator, kind, prompt_id, sample_ids, value, comment,"
                " seconds, superseded, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    new_uuid(),
                    annotator.strip(),
                    kind,
                    prompt_id,
                    json.dumps(list(sample_ids)),
                    json.dumps(value, ensure_ascii=False),
                    comment or None,
                    seconds,
                    now(),
                ),
            )
            return int(cur.lastrowid)

    def set_superseded(self, rating_id: int, superseded: bool = True) -> None:
        """Undo (superseded=True) or redo a rating. The row stays: nothing a person made is deleted."""
        with self.transaction():
            self.conn.execute(
                "UPDATE ratings SET superseded = ?, superseded_at = ? WHERE id = ?",
                (1 if superseded else 0, now() if superseded else None, rating_id),
            )

    def rating(self, rating_id: int) -> dict[str, Any]:
        return decode_rating(dict(self.db["ratings"].get(rating_id)))

    def ratings(
        self, *, kinds: Iterable[str] | None = None, include_superseded: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Ratings with sample_ids and value decoded from JSON, oldest first (streams)."""
        where, args = [], []
        if not include_superseded:
            where.append("superseded = 0")
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        sql = "SELECT * FROM ratings" + (" WHERE " + " AND ".join(where) if where else "")
        for row in self.db.query(sql + " ORDER BY id", args):
            yield decode_rating(dict(row))

    # ---- runs, metrics, checkpoints -----------------------------------------------------------
    def create_run(
        self, algo: str, config: dict[str, Any], base_model: str, rating_ids: list[int]
    ) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs(uuid, algo, base_model, config, status, rating_ids, created_at)"
                " VALUES (?, ?, ?, ?, 'created', ?, ?)",
                (new_uuid(), algo, base_model, json.dumps(config), json.dumps(rating_ids), now()),
            )
            return int(cur.lastrowid)

    def set_run_status(self, run_id: int, status: str, message: str | None = None) -> None:
        finished = now() if status in ("stopped", "finished", "failed") else None
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET status = ?, message = COALESCE(?, message), finished_at = ? "
                "WHERE id = ?",
                (status, message, finished, run_id),
            )

    def log_metrics(self, run_id: int, step: int, metrics: dict[str, float]) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO metrics(run_id, step, name, value, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, k, float(v), now()) for k, v in metrics.items()],
            )

    def add_checkpoint(
        self,
        *,
        run_id: int | None,
        step: int,
        kind: str,
        path: str,
        sha256: str,
        base_model: str,
        adapter: bool,
        metrics: dict[str, float] | None = None,
    ) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO checkpoints(uuid, run_id, step, kind, path, sha256, base_model, "
                "adapter, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_uuid(),
                    run_id,
                    step,
                    kind,
                    str(path),
                    sha256,
                    base_model,
                    int(adapter),
                    json.dumps(metrics or {}),
                    now(),
                ),
            )
            return int(cur.lastrowid)

    def checkpoint(self, ref: str | int) -> dict[str, Any]:
        """Resolve ``ID``, ``checkpoint:ID`` or ``checkpoint:latest`` (newest *policy* checkpoint)."""
        ref = str(ref)
        if ref.startswith("checkpoint:"):
            ref = ref.split(":", 1)[1]
        if ref == "latest":
            row = self.conn.execute(
                "SELECT id FROM checkpoints WHERE kind = 'policy' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise ProjectError(
                    f"{self.path} has no policy checkpoint yet; train one first (Train tab or "
                    "the `train` command)."
                )
            ref = str(row[0])
        if not ref.isdigit():
            raise ProjectError(
                f"checkpoint:{ref} is not a checkpoint id; use checkpoint:ID or checkpoint:latest."
            )
        row = self.conn.execute("SELECT * FROM checkpoints WHERE id = ?", (int(ref),)).fetchone()
        if row is None:
            raise ProjectError(f"checkpoint:{ref} does not exist in {self.path}.")
        cols = [d[0] for d in self.conn.execute("SELECT * FROM checkpoints LIMIT 0").description]
        rec = dict(zip(cols, row, strict=True))
        rec["metrics"] = json.loads(rec["metrics"] or "{}")
        return rec

    # ---- counts -----------------------------------------------------------------------------
    def count(self, table: str, where: str = "", args: Iterable[Any] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return int(self.conn.execute(sql, list(args)).fetchone()[0])

    def basic_stats(self) -> dict[str, Any]:
        """The counts `stats --json` always prints (issue #5 adds agreement, speed, ...)."""
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
            "samples": self.count("samples"),
            "ratings": self.count("ratings", "superseded = 0 AND kind != 'skip'"),
            "ratings_by_kind": kinds,
            "superseded": self.count("ratings", "superseded = 1"),
            "annotators": annotators,
            "runs": self.count("runs"),
            "checkpoints": self.count("checkpoints"),
        }


def decode_rating(row: dict[str, Any]) -> dict[str, Any]:
    row["sample_ids"] = json.loads(row["sample_ids"])
    row["value"] = json.loads(row["value"])
    return row
