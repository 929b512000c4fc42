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

    def sample_models(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """{sample id: the model spec that made it} of ``ids`` (every sample with None)."""
        if ids is None:
            return dict(self.conn.execute("SELECT id, model FROM samples"))
        return dict(self._by_id("samples", "model", ids))

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

    def samples_per_model(self) -> list[tuple[str, int | None, int]]:
        """(model spec, newest checkpoint id, samples) per model, oldest first: per-model stats."""
        return self.conn.execute(
            "SELECT model, MAX(checkpoint_id), COUNT(*) FROM samples "
            "GROUP BY model ORDER BY MIN(id)"
        ).fetchall()


class RatingQueries(_Rows):
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

    def rated_prompt_ids(self) -> set[int]:
        """Prompts any rating was ever made on (undone ones too): they may have trained a model."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT prompt_id FROM ratings")}

    def live_eval_pairwise_ratings(self) -> list[tuple[str, list[int], dict[str, Any]]]:
        """(annotator, sample ids, value) of live pairwise ratings of evaluation prompts."""
        cur = self.conn.execute(
            "SELECT r.annotator, r.sample_ids, r.value FROM ratings r JOIN prompts p "
            "ON p.id = r.prompt_id WHERE r.kind = 'pairwise' AND r.superseded = 0 "
            "AND p.split = 'eval' ORDER BY r.id"
        )
        return [(annotator, json.loads(ids), json.loads(value)) for annotator, ids, value in cur]
