"""Merging one source project file into the target, table by table, every id remapped.

The row-level half of core.exchange.merge, which opens and checks the files and reports (import
from there; the rules are in its docstring). It lives with the schema: its column lists are the
tables' columns, and it reads and writes both files' rows in bulk.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.store.project import ProjectStore
from core.store.schema import ProjectError

_to_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps without a new encoder per call
TABLES = (
    "annotators",
    "prompts",
    "runs",
    "checkpoints",
    "samples",
    "ratings",
    "metrics",
    "alerts",
)

_SAMPLE_KEYS = ("winner", "original", "rewrite", "sample_id")  # rating values holding a sample id
_CHECKPOINT_SPEC = re.compile(r"^checkpoint:(\d+)$")
_EVERY = 5000  # rows between progress reports


@dataclass
class MergeProgress:
    file: str
    table: str
    done: int
    total: int


@dataclass
class FileReport:
    path: Path
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    prompts_matched_by_content: int = 0  # new uuids mapped onto an existing prompt
    ratings_undone: int = 0  # ratings undone in the source after an earlier merge
    runs_updated: int = 0  # runs that finished in the source after an earlier merge

    def summary(self) -> str:
        parts = [f"{n} {table}" for table, n in self.added.items() if n]
        if parts and self.prompts_matched_by_content:
            parts.append(f"{self.prompts_matched_by_content} prompts matched by content")
        if self.ratings_undone:
            parts.append(f"{self.ratings_undone} ratings marked undone")
        if self.runs_updated:
            parts.append(f"{self.runs_updated} runs updated")
        return f"{self.path}: " + (", ".join(parts) if parts else "nothing new")


class MergeCancelled(Exception):
    """Raised inside the transaction so that it rolls back."""


def _int_list(text: str) -> list[Any]:
    """A JSON list of sample ids, read without the JSON parser (a third of the time)."""
    try:
        inner = text.strip()[1:-1]
        return [int(x) for x in inner.split(",")] if inner.strip() else []
    except ValueError:
        return json.loads(text)


def _insert(table: str, cols: str, *, with_id: bool = False) -> str:
    """INSERT for ``cols``; without ``with_id`` the target assigns the ids."""
    names = [c.strip() for c in cols.split(",") if with_id or c.strip() != "id"]
    return f"INSERT INTO {table}({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


class RowMerger:
    """Merges one source into the target inside the caller's transaction."""

    def __init__(self, store: ProjectStore, src: ProjectStore, report: FileReport, cancel: Any):
        self.tgt, self.src, self.report, self.cancel = store.conn, src.conn, report, cancel
        self.ids: dict[str, dict[int, int]] = {t: {} for t in TABLES}  # source id → target id
        self.new_runs: list[tuple[int, int]] = []  # (source id, target id), fixed up at the end
        self.new_checkpoints: list[tuple[int, int]] = []

    def run(self) -> Generator[MergeProgress, None, None]:
        try:
            for step in (
                self._annotators,
                self._prompts,
                self._runs,
                self._checkpoints,
                self._samples,
                self._ratings,
                self._metrics,
                self._alerts,
            ):
                yield from step()
            self._fix_references()
        except sqlite3.DatabaseError as e:
            raise ProjectError(
                f"merging {self.report.path} failed ({e}); the file may be damaged. "
                "Nothing was merged."
            ) from e
        except KeyError as e:
            raise ProjectError(
                f"{self.report.path} refers to a row it does not contain (id {e}); the file is "
                "inconsistent. Nothing was merged."
            ) from e

    # ---- helpers ----
    def _read(self, table: str, cols: str) -> Iterator[tuple[list[tuple], MergeProgress]]:
        """Source rows in chunks, each with the progress to report after it (checks cancel)."""
        total = int(self.src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        order = "ORDER BY id" if table != "metrics" else ""
        cur = self.src.execute(f"SELECT {cols} FROM {table} {order}")
        done = 0
        while chunk := cur.fetchmany(_EVERY):
            if self.cancel.is_set():
                raise MergeCancelled
            done += len(chunk)
            yield chunk, MergeProgress(self.report.path.name, table, done, total)

    def _target_ids(self, table: str) -> dict[str, int]:
        return dict(self.tgt.execute(f"SELECT uuid, id FROM {table}"))

    def _added(self, table: str) -> None:
        self.report.added[table] += 1

    def _spec(self, spec: str | None) -> str | None:
        """``checkpoint:N`` of the source → the same checkpoint's id here."""
        m = _CHECKPOINT_SPEC.match(spec or "")
        if m and int(m.group(1)) in self.ids["checkpoints"]:
            return f"checkpoint:{self.ids['checkpoints'][int(m.group(1))]}"
        return spec

    def _specs_in(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self._spec(obj)
        if isinstance(obj, list):
            return [self._specs_in(v) for v in obj]
        if isinstance(obj, dict):
            return {k: self._specs_in(v) for k, v in obj.items()}
        return obj

    def _sample(self, sid: Any, rating_uuid: str) -> int:
        try:
            return self.ids["samples"][sid]
        except (KeyError, TypeError):
            raise ProjectError(
                f"{self.report.path}: rating {rating_uuid} refers to sample {sid!r}, which is not "
                "in that file; the file is inconsistent. Nothing was merged."
            ) from None

    # ---- tables, in dependency order ----
    def _annotators(self) -> Iterator[MergeProgress]:
        have = {r[0] for r in self.tgt.execute("SELECT name FROM annotators")}
        names = self.src.execute(
            "SELECT name, created_at FROM annotators UNION ALL "
            "SELECT DISTINCT annotator, MIN(created_at) FROM ratings GROUP BY annotator"
        ).fetchall()
        for name, created in names:
            if name not in have:
                have.add(name)
                self.tgt.execute(
                    "INSERT INTO annotators(name, created_at) VALUES (?, ?)", (name, created)
                )
                self._added("annotators")
        yield MergeProgress(self.report.path.name, "annotators", len(names), len(names))

    def _prompts(self) -> Iterator[MergeProgress]:
        by_uuid = self._target_ids("prompts")
        by_content: dict[str, int] = {}
        for key, pid in self.tgt.execute("SELECT content_key, id FROM prompts ORDER BY id DESC"):
            by_content[key] = pid  # the oldest prompt with this content wins
        # a prompt both files have keeps the target's split: the target may have trained on it
        cols = "id, uuid, text, messages, content_key, source, created_at, split"
        for chunk, prog in self._read("prompts", cols):
            for sid, uuid, *rest in chunk:
                key = rest[2]
                if uuid in by_uuid:
                    self.ids["prompts"][sid] = by_uuid[uuid]
                elif key in by_content:
                    self.ids["prompts"][sid] = by_content[key]
                    self.report.prompts_matched_by_content += 1
                else:
                    new = self.tgt.execute(_insert("prompts", cols), (uuid, *rest)).lastrowid
                    self.ids["prompts"][sid] = by_uuid[uuid] = by_content[key] = new
                    self._added("prompts")
            yield prog

    def _runs(self) -> Iterator[MergeProgress]:
        by_uuid = self._target_ids("runs")
        cols = "id, uuid, algo, base_model, config, status, rating_ids, message, created_at, finished_at"
        for chunk, prog in self._read("runs", cols):
            for sid, uuid, *rest in chunk:
                if uuid not in by_uuid:
                    new = self.tgt.execute(_insert("runs", cols), (uuid, *rest)).lastrowid
                    self.ids["runs"][sid] = new
                    self.new_runs.append((sid, new))
                    self._added("runs")
                    continue
                tid = self.ids["runs"][sid] = by_uuid[uuid]
                status, message, finished = rest[3], rest[5], rest[7]
                cur = self.tgt.execute(
                    "UPDATE runs SET status = ?, message = ?, finished_at = ? "
                    "WHERE id = ? AND finished_at IS NULL AND ? IS NOT NULL",
                    (status, message, finished, tid, finished),
                )  # a run that finished on the workstation after an earlier merge
                self.report.runs_updated += cur.rowcount
            yield prog

    def _checkpoints(self) -> Iterator[MergeProgress]:
        by_uuid = self._target_ids("checkpoints")
        cols = (
            "id, uuid, run_id, step, kind, path, sha256, base_model, adapter, metrics, created_at"
        )
        folder = self.report.path.resolve().parent
        for chunk, prog in self._read("checkpoints", cols):
            for sid, uuid, run_id, step, kind, path, *rest in chunk:
                if uuid in by_uuid:
                    self.ids["checkpoints"][sid] = by_uuid[uuid]
                    continue
                if path and not Path(path).is_absolute():  # relative to the source's folder
                    path = str(folder / path)
                new = self.tgt.execute(
                    _insert("checkpoints", cols),
                    (uuid, self.ids["runs"].get(run_id), step, kind, path, *rest),
                ).lastrowid
                self.ids["checkpoints"][sid] = new
                self.new_checkpoints.append((sid, new))
                self._added("checkpoints")
            yield prog

    def _next_id(self, table: str) -> int:
        """Ids for new rows, assigned here so rows go in with executemany (the transaction holds
        the write lock, so nobody else takes them meanwhile)."""
        return int(self.tgt.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0])

    def _samples(self) -> Iterator[MergeProgress]:
        by_uuid, ids, next_id = self._target_ids("samples"), self.ids["samples"], None
        cols = "id, uuid, prompt_id, text, model, checkpoint_id, params, n_tokens, created_at"
        sql = _insert("samples", cols, with_id=True)
        for chunk, prog in self._read("samples", cols):
            new = []
            for sid, uuid, prompt_id, text, model, ckpt, *rest in chunk:
                if uuid in by_uuid:
                    ids[sid] = by_uuid[uuid]
                    continue
                next_id = next_id or self._next_id("samples")
                new.append(
                    (
                        next_id,
                        uuid,
                        self.ids["prompts"][prompt_id],
                        text,
                        self._spec(model),
                        self.ids["checkpoints"].get(ckpt),
                        *rest,
                    )
                )
                ids[sid], next_id = next_id, next_id + 1
            self.tgt.executemany(sql, new)
            self.report.added["samples"] += len(new)
            yield prog

    def _ratings(self) -> Iterator[MergeProgress]:
        by_uuid, next_id = self._target_ids("ratings"), None
        cols = (
            "id, uuid, annotator, kind, prompt_id, sample_ids, value, comment, seconds, "
            "superseded, created_at, superseded_at, selection"
        )
        sql = _insert("ratings", cols, with_id=True)
        for chunk, prog in self._read("ratings", cols):
            new, undone = [], []
            for sid, uuid, annotator, kind, prompt_id, sample_ids, value, *rest in chunk:
                if uuid in by_uuid:
                    self.ids["ratings"][sid] = by_uuid[uuid]
                    if rest[2]:  # superseded: an undo made on the workstation after a merge
                        undone.append((rest[4], by_uuid[uuid]))
                    continue
                next_id = next_id or self._next_id("ratings")
                shown = [self._sample(i, uuid) for i in _int_list(sample_ids)]
                new.append(
                    (
                        next_id,
                        uuid,
                        annotator,
                        kind,
                        self.ids["prompts"][prompt_id],
                        f"[{', '.join(map(str, shown))}]",
                        self._value(kind, value, uuid),
                        *rest,
                    )
                )
                self.ids["ratings"][sid], next_id = next_id, next_id + 1
            self.tgt.executemany(sql, new)
            self.report.added["ratings"] += len(new)
            before = self.tgt.total_changes
            self.tgt.executemany(
                "UPDATE ratings SET superseded = 1, superseded_at = ? WHERE id = ? AND superseded = 0",
                undone,
            )
            self.report.ratings_undone += self.tgt.total_changes - before
            yield prog

    def _value(self, kind: str, text: str, rating_uuid: str) -> str:
        """The value JSON with its sample ids remapped (score and thumbs values hold none)."""
        if kind in ("score", "thumbs", "skip"):
            return text
        value = json.loads(text)
        if isinstance(value, dict):
            for key in _SAMPLE_KEYS:
                if value.get(key) is not None:
                    value[key] = self._sample(value[key], rating_uuid)
            if isinstance(value.get("order"), list):
                value["order"] = [self._sample(i, rating_uuid) for i in value["order"]]
        return _to_json(value)

    def _metrics(self) -> Iterator[MergeProgress]:
        before = self.tgt.total_changes
        for chunk, prog in self._read("metrics", "run_id, step, name, value, created_at"):
            self.tgt.executemany(
                "INSERT OR IGNORE INTO metrics(run_id, step, name, value, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(self.ids["runs"][r[0]], *r[1:]) for r in chunk if r[0] in self.ids["runs"]],
            )
            yield prog
        self.report.added["metrics"] += self.tgt.total_changes - before

    def _alerts(self) -> Iterator[MergeProgress]:
        by_uuid = self._target_ids("alerts")
        cols = "id, uuid, run_id, step, rule, message, created_at"
        for chunk, prog in self._read("alerts", cols):
            for _sid, uuid, run_id, *rest in chunk:
                if uuid not in by_uuid and run_id in self.ids["runs"]:
                    self.tgt.execute(
                        _insert("alerts", cols), (uuid, self.ids["runs"][run_id], *rest)
                    )
                    by_uuid[uuid] = 0
                    self._added("alerts")
            yield prog

    def _fix_references(self) -> None:
        """New runs and checkpoints may name checkpoints and ratings by source ids: remap them."""
        for sid, tid in self.new_runs:
            base, config, rating_ids = self.src.execute(
                "SELECT base_model, config, rating_ids FROM runs WHERE id = ?", (sid,)
            ).fetchone()
            ids = [
                self.ids["ratings"][i]
                for i in json.loads(rating_ids or "[]")
                if i in self.ids["ratings"]
            ]
            config = json.dumps(self._specs_in(json.loads(config))) if config else config
            self.tgt.execute(
                "UPDATE runs SET base_model = ?, config = ?, rating_ids = ? WHERE id = ?",
                (self._spec(base), config, json.dumps(ids), tid),
            )
        for sid, tid in self.new_checkpoints:
            (base,) = self.src.execute(
                "SELECT base_model FROM checkpoints WHERE id = ?", (sid,)
            ).fetchone()
            self.tgt.execute(
                "UPDATE checkpoints SET base_model = ? WHERE id = ?", (self._spec(base), tid)
            )
