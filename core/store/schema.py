"""The project file's schema: its tables, their migrations, and reading a file's version safely.

docs/schema.md describes the tables. Each migration takes the database from version i to i + 1.
"""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.quiet_imports import import_without

# sqlite-utils imports pandas when it is installed (it comes with `datasets`) only to store
# pandas.Timestamp values as text, which this store never writes; pandas would slow every start
sqlite_utils = import_without("sqlite_utils", "pandas")

SCHEMA_VERSION = 2
SQLITE_NOTADB = 26  # sqlite3.DatabaseError.sqlite_errorcode of a file that is not a database
RATING_KINDS = ("score", "pairwise", "rank", "thumbs", "rewrite", "flag", "skip")
FLAG_REASONS = ("unsafe", "private data", "gibberish", "wrong language", "other")
PAIRWISE_CHOICES = ("a", "b", "tie", "both_bad")
DEFAULT_RUBRIC = ("overall", "fluency", "accuracy", "grammar")
SPLITS = ("train", "eval")  # eval prompts never reach training data
SELECTIONS = ("coverage", "uncertain", "random", "arena")  # how a rated item was chosen
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
    "selection": "coverage",  # how the Rate tab picks items: coverage, uncertain or random
    "random_fraction": 0.2,  # with uncertain: the share of items picked at random, as a control
    "judge": None,  # MODULE:FUNC that judges arena comparisons when no person does
    "arena": None,  # the arena being rated: {"models": [...], generation settings}
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


def _migrate_1_to_2(db: sqlite_utils.Database) -> None:
    """Evaluation prompts, how each rated item was selected, and training alerts."""
    db.execute("ALTER TABLE prompts ADD COLUMN split TEXT NOT NULL DEFAULT 'train'")
    db["prompts"].create_index(["split"])
    db.execute("ALTER TABLE ratings ADD COLUMN selection TEXT")  # NULL: rated before it was kept
    db["alerts"].create(
        {
            "id": int,
            "uuid": str,
            "run_id": int,
            "step": int,
            "rule": str,  # core.training.diagnostics RULES
            "message": str,
            "created_at": str,
        },
        pk="id",
        not_null={"uuid", "run_id", "step", "rule", "message", "created_at"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["alerts"].create_index(["uuid"], unique=True)
    db["alerts"].create_index(["run_id"])


MIGRATIONS = [_migrate_0_to_1, _migrate_1_to_2]
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
