"""The project file's rows by table: prompts and samples, ratings, runs and checkpoints.

Mixed into ``ProjectStore`` (core/store/project.py), which owns the connection and
``transaction()``; callers use these methods instead of SQL of their own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from core.store.schema import (
    RATING_KINDS,
    SELECTIONS,
    SPLITS,
    ProjectError,
    new_uuid,
    now,
    sqlite_utils,
)


class _Rows:
    """What the row methods need from ``ProjectStore``."""

    path: Path
    db: sqlite_utils.Database

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def ensure_annotator(self, name: str) -> None:
        raise NotImplementedError

    def pragmas(self, **values: int) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _one(self, sql: str, args: Iterable[Any]) -> dict[str, Any] | None:
        """The first row of ``sql`` as {column: value}, None when there is none."""
        cur = self.conn.execute(sql, tuple(args))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def content_key(text: str, messages: list[dict[str, str]] | None) -> str:
    """What "exact duplicate" means: the stripped text, or the chat as canonical JSON."""
    if messages is not None:
        return json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text.strip()


class PromptRows(_Rows):
    def add_prompts(
        self,
        prompts: Iterable[dict[str, Any]],
        *,
        source: str | None = None,
        split: str = "train",
    ) -> tuple[list[int], int]:
        """Insert prompts in one transaction, skipping exact duplicates (in ``prompts`` or the
        project); returns (the new ids, how many were skipped).

        Each prompt is ``{"text": ..., "messages": [...] or None, "source": ..., "split": ...}``;
        ``source`` and ``split`` are the defaults for prompts that name none."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        ids: list[int] = []
        seen: set[str] = set()
        skipped = 0
        with self.transaction() as conn:
            for p in prompts:
                messages = p.get("messages")
                key = content_key(p["text"], messages)
                exists = "SELECT 1 FROM prompts WHERE content_key = ? LIMIT 1"
                if key in seen or conn.execute(exists, (key,)).fetchone():
                    skipped += 1
                    continue
                seen.add(key)
                cur = conn.execute(
                    "INSERT INTO prompts(uuid, text, messages, content_key, source, created_at, "
                    "split) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        p.get("uuid") or new_uuid(),
                        p["text"],
                        None if messages is None else json.dumps(messages, ensure_ascii=False),
                        key,
                        p.get("source", source),
                        p.get("created_at") or now(),
                        p.get("split", split),
                    ),
                )
                ids.append(int(cur.lastrowid))
        return ids, skipped

    def prompt(self, prompt_id: int) -> dict[str, Any]:
        row = self._one("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
        if row is None:
            raise ProjectError(f"prompt {prompt_id} does not exist in {self.path}.")
        return row

    def prompt_messages(self, prompt_id: int) -> list[dict[str, str]]:
        """The prompt as chat messages (a plain prompt becomes one user turn)."""
        p = self.prompt(prompt_id)
        if p["messages"]:
            return json.loads(p["messages"])
        return [{"role": "user", "content": p["text"]}]

    def prompt_ids(self, split: str | None = None) -> list[int]:
        """Every prompt's id (of one split: train or eval), oldest first."""
        if split is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM prompts ORDER BY id")]
        sql = "SELECT id FROM prompts WHERE split = ? ORDER BY id"
        return [r[0] for r in self.conn.execute(sql, (split,))]

    def set_split(self, prompt_ids: Iterable[int], split: str) -> None:
        """Move prompts to ``split`` (one transaction)."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE prompts SET split = ? WHERE id = ?", [(split, i) for i in prompt_ids]
            )

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


class RatingRows(_Rows):
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
        selection: str | None = None,
    ) -> int:
        """Commit one rating now (never batched: a rating on screen is a rating on disk).

        ``selection`` says how the item was chosen (coverage, uncertain, random, arena)."""
        if selection is not None and selection not in SELECTIONS:
            raise ValueError(f"selection {selection!r} is not one of {', '.join(SELECTIONS)}")
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
                " seconds, superseded, created_at, selection) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
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
                    selection,
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

    def live_rating_ids(self) -> list[int]:
        """The ids of every rating not undone or replaced, oldest first."""
        sql = "SELECT id FROM ratings WHERE superseded = 0 ORDER BY id"
        return [r[0] for r in self.conn.execute(sql)]


class RunRows(_Rows):
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

    def run_row(self, run_id: int | None) -> dict[str, Any] | None:
        """A run's row as stored (JSON columns as text), None when there is no such run."""
        return self._one("SELECT * FROM runs WHERE id = ?", (run_id,))

    def run(self, run_id: int) -> dict[str, Any] | None:
        """A run's row with its config and rating ids decoded; None when there is no such run."""
        rec = self.run_row(run_id)
        if rec is None:
            return None
        rec["config"] = json.loads(rec["config"] or "{}")
        rec["rating_ids"] = json.loads(rec["rating_ids"] or "[]")
        return rec

    def add_alert(self, run_id: int, step: int, rule: str, message: str) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO alerts(uuid, run_id, step, rule, message, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (new_uuid(), run_id, step, rule, message, now()),
            )
            return int(cur.lastrowid)

    def alerts(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Training alerts (of one run), oldest first: run_id, step, rule, message, created_at."""
        cols = ("run_id", "step", "rule", "message", "created_at")
        sql = f"SELECT {', '.join(cols)} FROM alerts"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            sql, args = sql + " WHERE run_id = ?", (run_id,)
        return [
            dict(zip(cols, r, strict=True)) for r in self.conn.execute(sql + " ORDER BY id", args)
        ]

    def last_run_id(self) -> int:
        """The newest run's id (0 when there is none)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0])

    def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        """The newest runs first: id, algo, status, created_at, message, last_step (logged)."""
        cols = ("id", "algo", "status", "created_at", "message", "last_step")
        cur = self.conn.execute(
            "SELECT r.id, r.algo, r.status, r.created_at, r.message, "
            "(SELECT MAX(step) FROM metrics m WHERE m.run_id = r.id) "
            "FROM runs r ORDER BY r.id DESC LIMIT ?",
            (limit,),
        )
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def recent_checkpoints(self, limit: int = -1) -> list[dict[str, Any]]:
        """The newest checkpoints first (all with ``limit`` -1), metrics decoded."""
        cols = ("id", "run_id", "step", "kind", "path", "metrics", "created_at", "adapter")
        cur = self.conn.execute(
            f"SELECT {', '.join(cols)} FROM checkpoints ORDER BY id DESC LIMIT ?", (limit,)
        )
        rows = [dict(zip(cols, r, strict=True)) for r in cur]
        for row in rows:
            row["metrics"] = json.loads(row["metrics"] or "{}")
        return rows

    def metric_history(
        self, run_id: int, names: Iterable[str]
    ) -> list[tuple[int, dict[str, float]]]:
        """[(step, {name: value})] of a run for the metric ``names`` (primary-key lookups)."""
        names = tuple(names)
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value in self.conn.execute(
            f"SELECT step, name, value FROM metrics WHERE run_id = ? AND name IN "
            f"({', '.join('?' * len(names))}) ORDER BY step",
            (run_id, *names),
        ):
            by_step.setdefault(step, {})[name] = value
        return sorted(by_step.items())

    def checkpoints_of(self, run_id: int) -> list[dict[str, Any]]:
        """A run's checkpoint rows (id, step, kind, path), oldest first."""
        cur = self.conn.execute(
            "SELECT id, step, kind, path FROM checkpoints WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [dict(zip(("id", "step", "kind", "path"), r, strict=True)) for r in cur]

    def run_uuid(self, run_id: int) -> str | None:
        row = self.conn.execute("SELECT uuid FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else None

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

    def newest_checkpoint_id(self, kind: str | None = None) -> int | None:
        """The id of the newest checkpoint (of ``kind``: policy or reward), None when there is none."""
        sql, args = "SELECT id FROM checkpoints", ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        row = self.conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return None if row is None else int(row[0])

    def find_checkpoint(self, checkpoint_id: int | None) -> dict[str, Any] | None:
        """A checkpoint's row as stored (metrics as JSON text), None when there is no such one."""
        return self._one("SELECT * FROM checkpoints WHERE id = ?", (checkpoint_id,))

    def checkpoint(self, ref: str | int) -> dict[str, Any]:
        """Resolve ``ID``, ``checkpoint:ID`` or ``checkpoint:latest`` (newest *policy* checkpoint)."""
        ref = str(ref)
        if ref.startswith("checkpoint:"):
            ref = ref.split(":", 1)[1]
        if ref == "latest":
            newest = self.newest_checkpoint_id("policy")
            if newest is None:
                raise ProjectError(
                    f"{self.path} has no policy checkpoint yet; train one first (Train tab or "
                    "the `train` command)."
                )
            ref = str(newest)
        if not ref.isdigit():
            raise ProjectError(
                f"checkpoint:{ref} is not a checkpoint id; use checkpoint:ID or checkpoint:latest."
            )
        rec = self.find_checkpoint(int(ref))
        if rec is None:
            raise ProjectError(f"checkpoint:{ref} does not exist in {self.path}.")
        rec["metrics"] = json.loads(rec["metrics"] or "{}")
        return rec


def decode_rating(row: dict[str, Any]) -> dict[str, Any]:
    row["sample_ids"] = json.loads(row["sample_ids"])
    row["value"] = json.loads(row["value"])
    return row
