"""The reads other modules need, by table: prompts and samples, ratings, runs and checkpoints.

Mixed into ``ProjectStore`` (core/store/project.py) beside the row methods of ``records``, so
callers ask for what they need ("the samples of training prompts", "what this annotator has
seen") instead of writing SQL of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.store.records import _Rows

_MAX_PARAMS = 500  # ids per IN (...): stays under SQLite's bound-parameter limit
# The ratings that cover an item: live, and neither a skip nor a rewrite (which has no item).
_COVERING = "r.superseded = 0 AND r.kind NOT IN ('skip', 'rewrite')"


class SampleQueries(_Rows):
    def _by_id(self, table: str, columns: str, ids: Iterable[int]) -> list[tuple]:
        """``SELECT id, columns FROM table`` for the given ids, a few hundred per query."""
        todo = sorted(set(ids))
        rows = []
        for i in range(0, len(todo), _MAX_PARAMS):
            part = todo[i : i + _MAX_PARAMS]
            sql = f"SELECT id, {columns} FROM {table} WHERE id IN ({', '.join('?' * len(part))})"
            rows += self.conn.execute(sql, part).fetchall()
        return rows

    def sample_texts(self, ids: Iterable[int]) -> dict[int, str]:
        """{sample id: response text} of ``ids`` that exist: what an item or a batch shows."""
        return dict(self._by_id("samples", "text", ids))

    def sample_prompt_ids(self, ids: Iterable[int]) -> dict[int, int]:
        """{sample id: its prompt's id} of ``ids`` that exist: the prompt to score a response on."""
        return dict(self._by_id("samples", "prompt_id", ids))

    def sample_rows(self, ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        """{sample id: (its prompt's id, response text)} of ``ids`` that exist, in one read."""
        return {
            sid: (pid, text) for sid, pid, text in self._by_id("samples", "prompt_id, text", ids)
        }

    def sample_models(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """{sample id: the model spec that made it} of ``ids`` (every sample with None)."""
        if ids is None:
            return dict(self.conn.execute("SELECT id, model FROM samples"))
        return dict(self._by_id("samples", "model", ids))

    def prompts_as_messages(self, ids: Iterable[int]) -> dict[int, list[dict[str, str]]]:
        """{prompt id: chat messages} of ``ids`` that exist: ``prompt_messages`` for a batch."""
        return {
            pid: json.loads(messages) if messages else [{"role": "user", "content": text}]
            for pid, text, messages in self._by_id("prompts", "text, messages", ids)
        }

    def eval_prompt_count(self) -> int:
        """Prompts kept for evaluation: none means there is nothing to hold an arena on."""
        sql = "SELECT COUNT(*) FROM prompts WHERE split = 'eval'"
        return int(self.conn.execute(sql).fetchone()[0])

    def chat_prompt_ids(self) -> set[int]:
        """The prompts imported as chats (messages) rather than plain text."""
        sql = "SELECT id FROM prompts WHERE messages IS NOT NULL"
        return {r[0] for r in self.conn.execute(sql)}

    def train_prompt_uuids(self) -> list[tuple[int, str]]:
        """(id, uuid) of each training prompt, oldest first: a uuid is the same in every file."""
        sql = "SELECT id, uuid FROM prompts WHERE split = 'train' ORDER BY id"
        return self.conn.execute(sql).fetchall()

    def least_sampled_prompts(self, split: str, limit: int | None = None) -> list[int]:
        """Prompts of ``split``, fewest model samples first, then oldest: what to generate for."""
        sql = (
            "SELECT p.id FROM prompts p LEFT JOIN samples s ON s.prompt_id = p.id "
            "AND s.model NOT LIKE 'human:%' WHERE p.split = ? "
            "GROUP BY p.id ORDER BY COUNT(s.id), p.id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [r[0] for r in self.conn.execute(sql, (split,))]

    def eval_answers_of(self, model: str) -> list[tuple[int, int, dict[str, Any]]]:
        """(sample id, prompt id, params) of ``model``'s answers to evaluation prompts."""
        cur = self.conn.execute(
            "SELECT s.id, s.prompt_id, s.params FROM samples s JOIN prompts p "
            "ON p.id = s.prompt_id WHERE p.split = 'eval' AND s.model = ? ORDER BY s.id",
            (model,),
        )
        return [(sid, pid, json.loads(params or "{}")) for sid, pid, params in cur]

    def train_samples(self) -> list[tuple[int, int, str, str]]:
        """(sample id, prompt id, prompt, response) of training prompts' samples: to rate."""
        return self.conn.execute(
            "SELECT s.id, s.prompt_id, p.text, s.text FROM samples s JOIN prompts p "
            "ON p.id = s.prompt_id WHERE p.split = 'train' ORDER BY s.prompt_id, s.id"
        ).fetchall()

    def train_model_samples(self) -> list[tuple[int, int]]:
        """(sample id, prompt id) of training prompts' model-made samples: what may be shown."""
        return self.conn.execute(
            "SELECT s.id, s.prompt_id FROM samples s JOIN prompts p ON p.id = s.prompt_id "
            "WHERE s.model NOT LIKE 'human:%' AND p.split = 'train' ORDER BY s.prompt_id, s.id"
        ).fetchall()

    def samples_per_model(self) -> list[tuple[str, int | None, int]]:
        """(model spec, newest checkpoint id, samples) per model, oldest first: per-model stats."""
        return self.conn.execute(
            "SELECT model, MAX(checkpoint_id), COUNT(*) FROM samples "
            "GROUP BY model ORDER BY MIN(id)"
        ).fetchall()

    def generated_tokens(self) -> int:
        """Response tokens over every sample (0 when none were counted): a throughput figure."""
        return int(self.conn.execute("SELECT SUM(n_tokens) FROM samples").fetchone()[0] or 0)


class RatingQueries(_Rows):
    def live_rating_count(self, annotator: str | None = None) -> int:
        """Live ratings (skips not counted), of one annotator or of everyone: work done so far."""
        sql = "SELECT COUNT(*) FROM ratings WHERE superseded = 0 AND kind != 'skip'"
        args = [] if annotator is None else [annotator]
        if annotator is not None:
            sql += " AND annotator = ?"
        return int(self.conn.execute(sql, args).fetchone()[0])

    def sample_ids_judged_by(
        self, annotator: str, kinds: Iterable[str] = (), except_kinds: Iterable[str] = ()
    ) -> list[list[int]]:
        """Sample ids of each of ``annotator``'s live ratings (of ``kinds``): the items they saw."""
        sql = "SELECT sample_ids FROM ratings WHERE annotator = ? AND superseded = 0"
        kinds, except_kinds = list(kinds), list(except_kinds)
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
        if except_kinds:
            sql += f" AND kind NOT IN ({', '.join('?' * len(except_kinds))})"
        args = [annotator, *kinds, *except_kinds]
        return [json.loads(ids) for (ids,) in self.conn.execute(sql, args)]

    def last_live_rating_id(self, annotator: str, exclude_ids: Iterable[int] = ()) -> int | None:
        """``annotator``'s newest live rating id not in ``exclude_ids``: what undo reaches."""
        excluded = list(exclude_ids)
        sql = "SELECT id FROM ratings WHERE annotator = ? AND superseded = 0"
        if excluded:
            sql += f" AND id NOT IN ({', '.join('?' * len(excluded))})"
        row = self.conn.execute(sql + " ORDER BY id DESC LIMIT 1", [annotator, *excluded])
        found = row.fetchone()
        return found[0] if found else None

    def live_ratings_per_prompt(self) -> dict[int, int]:
        """{prompt id: live ratings of it}, skips and rewrites aside: how well each is covered."""
        sql = f"SELECT r.prompt_id, COUNT(*) FROM ratings r WHERE {_COVERING} GROUP BY r.prompt_id"
        return dict(self.conn.execute(sql).fetchall())

    def live_ratings_per_sample(self) -> dict[int, int]:
        """{sample id: live ratings judging it}, skips and rewrites aside: its coverage."""
        sql = (
            "SELECT j.value, COUNT(*) FROM ratings r, json_each(r.sample_ids) j "
            f"WHERE {_COVERING} GROUP BY j.value"
        )
        return dict(self.conn.execute(sql).fetchall())

    def rated_prompt_ids(self) -> set[int]:
        """Prompts any rating was ever made on (undone ones too): they may have trained a model."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT prompt_id FROM ratings")}

    def rating_annotators(self) -> set[str]:
        """Everyone with a rating in the file (undone ones too), to check names a user typed."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT annotator FROM ratings")}

    def live_eval_pairwise_ratings(self) -> list[tuple[str, list[int], dict[str, Any]]]:
        """(annotator, sample ids, value) of live pairwise ratings of evaluation prompts."""
        cur = self.conn.execute(
            "SELECT r.annotator, r.sample_ids, r.value FROM ratings r JOIN prompts p "
            "ON p.id = r.prompt_id WHERE r.kind = 'pairwise' AND r.superseded = 0 "
            "AND p.split = 'eval' ORDER BY r.id"
        )
        return [(annotator, json.loads(ids), json.loads(value)) for annotator, ids, value in cur]

    def trainable_rating_rows(self) -> list[tuple]:
        """(id, annotator, kind, prompt id, sample_ids, value, both valid JSON): what may train."""
        # Evaluation prompts never train: an arena is a clean comparison only on unseen prompts.
        return self.conn.execute(
            "SELECT id, annotator, kind, prompt_id, sample_ids, value, "
            "json_valid(sample_ids) AND json_valid(value) "
            "FROM ratings WHERE superseded = 0 "
            "AND prompt_id NOT IN (SELECT id FROM prompts WHERE split = 'eval') ORDER BY id"
        ).fetchall()

    def ratings_breakdown(
        self, rating_ids: Iterable[int]
    ) -> tuple[tuple[int, int, int], list[tuple[str, int, int, int]]]:
        """(ratings, annotators, prompts) of ``rating_ids``, and the same by kind: a card's data."""
        ids = json.dumps(list(rating_ids))
        rows = self.conn.execute(
            "SELECT kind, COUNT(*), COUNT(DISTINCT annotator), COUNT(DISTINCT prompt_id) FROM "
            "ratings WHERE id IN (SELECT value FROM json_each(?)) GROUP BY kind ORDER BY kind",
            (ids,),
        ).fetchall()
        totals = self.conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT annotator), COUNT(DISTINCT prompt_id) FROM ratings "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        ).fetchone()
        return totals, rows


class RunQueries(_Rows):
    def furthest_checkpoint_id(
        self, run_id: int | None = None, kind: str | None = None
    ) -> int | None:
        """The id of the checkpoint at the highest step (of a run, a kind), or None: to resume."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT id FROM checkpoints" + (" WHERE " + " AND ".join(where) if where else "")
        row = self.conn.execute(sql + " ORDER BY step DESC, id DESC LIMIT 1", args).fetchone()
        return row[0] if row else None

    def metrics_up_to(self, run_id: int, step: int) -> list[tuple[int, str, float]]:
        """(step, name, value) of a run's metrics up to ``step``: a checkpoint's history."""
        return self.conn.execute(
            "SELECT step, name, value FROM metrics WHERE run_id = ? AND step <= ? "
            "ORDER BY step, name",
            (run_id, step),
        ).fetchall()

    def final_metrics(self, run_id: int, step: int) -> dict[str, float]:
        """{name: value} at a run's last logged step up to ``step``: a checkpoint's metrics."""
        rows = self.conn.execute(
            "SELECT name, value FROM metrics WHERE run_id = ?1 AND step = (SELECT MAX(step) FROM "
            "metrics WHERE run_id = ?1 AND step <= ?2) ORDER BY name",
            (run_id, step),
        )
        return dict(rows.fetchall())
