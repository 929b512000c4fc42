"""Ratings as the lines of a raw export (jsonl, csv, parquet), made by SQLite.

Mixed into ``ProjectStore`` (core/store/project.py); core.exchange.ratings writes the lines to a
file. SQLite's JSON and string functions build each line several times faster than decoding and
re-encoding every value in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from core.store.records import _Rows

# Each response: the sample as shown, with the model spec / checkpoint that made it.
RESPONSE_FIELDS = ("sample_id", "sample_uuid", "text", "model", "checkpoint_id")
# The samples are looked up in random order: a big page cache and mmap keep that from re-reading
# pages.
_READ_PRAGMAS = {"cache_size": -262144, "mmap_size": 1 << 30}  # 256 MiB cache, 1 GiB mmap


def _where(include_superseded: bool, annotators: list[str] | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if not include_superseded:
        clauses.append("r.superseded = 0")
    if annotators:
        clauses.append(f"r.annotator IN ({', '.join('?' * len(annotators))})")
        args += annotators
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


class RatingExport(_Rows):
    def export_count(self, include_superseded: bool, annotators: list[str] | None) -> int:
        """How many ratings ``export_lines`` yields with these filters: an export's total."""
        where, args = _where(include_superseded, annotators)
        return int(self.conn.execute(f"SELECT COUNT(*) FROM ratings r{where}", args).fetchone()[0])

    def score_criteria(self) -> set[str]:
        """Every criterion any score rating scored: the score columns of a raw export."""
        return {
            row[0]
            for row in self.conn.execute(
                "SELECT DISTINCT j.key FROM ratings r, json_each(r.value, '$.scores') j "
                "WHERE r.kind = 'score'"
            )
        }

    def export_lines(
        self,
        fmt: str,
        include_superseded: bool,
        annotators: list[str] | None,
        anonymize: Callable[[str], str] | None,
        criteria: Iterable[str],
        batch: int,
    ) -> Iterator[tuple[str]]:
        """A raw export streamed, one line per rating, oldest first: JSON objects, or CSV records."""
        criteria = list(criteria)
        annotator, model = "r.annotator", "s.model"
        if anonymize is not None:
            self.conn.create_function("rlhf_anon", 1, anonymize, deterministic=True)
            annotator = "rlhf_anon(r.annotator)"
            model = "CASE WHEN s.model LIKE 'human:%' THEN 'human:' || rlhf_anon(substr(s.model, 7)) ELSE s.model END"

        fields = ("j.value", "s.uuid", "s.text", model, "s.checkpoint_id")
        response = ", ".join(f"'{k}', {e}" for k, e in zip(RESPONSE_FIELDS, fields, strict=True))
        responses = (
            f"(SELECT json_group_array(json_object({response})) FROM json_each(r.sample_ids) j "
            "LEFT JOIN samples s ON s.id = j.value)"
        )  # in the order shown

        score = "CASE WHEN r.kind = 'score' THEN (SELECT value FROM json_each(r.value, '$.scores') WHERE key = ?) END"
        superseded = "CASE WHEN r.superseded THEN 'true' ELSE 'false' END"
        # (column, SQL expression, kind of value: text | number | json | bool)
        columns = [
            ("rating_id", "r.id", "number"),
            ("rating_uuid", "r.uuid", "text"),
            ("annotator", annotator, "text"),
            ("kind", "r.kind", "text"),
            ("prompt_id", "r.prompt_id", "number"),
            ("prompt_uuid", "p.uuid", "text"),
            ("prompt", "p.text", "text"),
            ("prompt_messages", "p.messages", "json"),
            ("prompt_split", "p.split", "text"),
            ("sample_ids", "r.sample_ids", "json"),
            ("responses", responses, "json"),
            ("value", "r.value", "text" if fmt == "parquet" else "json"),  # parquet: JSON text
            *((f"score_{c}", score, "number") for c in criteria),
            ("comment", "r.comment", "text"),
            ("seconds", "r.seconds", "number"),
            ("created_at", "r.created_at", "text"),
            ("superseded", superseded, "bool"),
            ("superseded_at", "r.superseded_at", "text"),
            ("selection", "r.selection", "text"),
        ]
        if fmt == "csv":  # quote text, double its quotes; an empty cell is null
            cells = (
                f"""COALESCE('"' || replace({e}, '"', '""') || '"', '')"""
                if kind in ("text", "json")
                else f"COALESCE({e}, '')"
                for _, e, kind in columns
            )
            line = " || ',' || ".join(cells)
        else:
            pairs = (
                f"'{name}', " + {"json": f"json({e})", "bool": f"json({e})"}.get(kind, e)
                for name, e, kind in columns
            )
            line = f"json_object({', '.join(pairs)})"
        where, args = _where(include_superseded, annotators)
        sql = f"SELECT {line} FROM ratings r LEFT JOIN prompts p ON p.id = r.prompt_id{where} ORDER BY r.id"
        with self.pragmas(**_READ_PRAGMAS):
            cursor = self.conn.execute(sql, [*criteria, *args])
            try:
                while chunk := cursor.fetchmany(batch):
                    yield from chunk
            finally:
                cursor.close()
