"""One writer per file format of a rating export: jsonl, csv, parquet and the TRL jsonl forms."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import IO, Any

to_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False)
# without building a new encoder per call (a tenth of a raw export's time)

# The raw columns, in file order; one `score_<criterion>` column per criterion follows `value`.
RAW_COLUMNS = (
    "rating_id",
    "rating_uuid",
    "annotator",
    "kind",
    "prompt_id",
    "prompt_uuid",
    "prompt",
    "prompt_messages",
    "prompt_split",
    "sample_ids",
    "responses",
    "value",
)
RAW_TAIL = ("comment", "seconds", "created_at", "superseded", "superseded_at", "selection")


class JsonlWriter:
    """Training rows (dicts) as one JSON object per line."""

    def __init__(self, f: IO[str], _criteria: None):
        self.f = f

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.f.writelines(to_json(r) + "\n" for r in rows)

    def close(self) -> None:
        pass


class LineWriter:
    """Raw rows that SQLite already made into JSON lines."""

    def __init__(self, f: IO[str], _criteria: list[str]):
        self.f = f

    def write(self, rows: list[tuple[str]]) -> None:
        self.f.writelines(r[0] + "\n" for r in rows)

    def close(self) -> None:
        pass


class CsvWriter:
    """A header, then the records SQLite made: text quoted, lists and objects as JSON text,
    an empty cell for null."""

    def __init__(self, f: IO[str], criteria: list[str]):
        self.f = f
        csv.writer(f, lineterminator="\n").writerow(_raw_columns(criteria))

    def write(self, rows: list[tuple[str]]) -> None:
        self.f.writelines(r[0] + "\n" for r in rows)

    def close(self) -> None:
        pass


class ParquetWriter:
    """Typed columns, parsed from SQLite's JSON lines by Arrow's JSON reader one batch at a time;
    ``value`` stays JSON text because its shape differs by kind."""

    def __init__(self, f: IO[bytes], criteria: list[str]):
        import pyarrow as pa
        import pyarrow.json as pj
        import pyarrow.parquet as pq

        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        response = pa.struct(
            [
                ("sample_id", pa.int64()),
                ("sample_uuid", pa.string()),
                ("text", pa.string()),
                ("model", pa.string()),
                ("checkpoint_id", pa.int64()),
            ]
        )
        types = {
            "rating_id": pa.int64(),
            "prompt_id": pa.int64(),
            "prompt_messages": pa.list_(message),
            "sample_ids": pa.list_(pa.int64()),
            "responses": pa.list_(response),
            "seconds": pa.float64(),
            "superseded": pa.bool_(),
            **{f"score_{c}": pa.float64() for c in criteria},
        }
        self.schema = pa.schema([(c, types.get(c, pa.string())) for c in _raw_columns(criteria)])
        self.options = pj.ParseOptions(
            explicit_schema=self.schema, unexpected_field_behavior="ignore"
        )
        self.read_json, self.pa = pj.read_json, pa
        self.writer = pq.ParquetWriter(f, self.schema, compression="zstd")

    def write(self, rows: list[tuple[str]]) -> None:
        lines = "\n".join(r[0] for r in rows).encode("utf-8")
        table = self.read_json(self.pa.BufferReader(lines), parse_options=self.options)
        self.writer.write_table(table.select(self.schema.names).cast(self.schema))

    def close(self) -> None:
        self.writer.close()


def _raw_columns(criteria: list[str]) -> list[str]:
    return [*RAW_COLUMNS, *(f"score_{c}" for c in criteria), *RAW_TAIL]


WRITERS: dict[str, Callable[[Any, Any], Any]] = {
    "jsonl": LineWriter,
    "csv": CsvWriter,
    "parquet": ParquetWriter,
    "preference": JsonlWriter,
    "unpaired": JsonlWriter,
    "sft": JsonlWriter,
}


# ---- helpers --------------------------------------------------------------------------------------
