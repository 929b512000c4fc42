"""The project file: one SQLite database holding prompts, samples, ratings, runs and checkpoints.

- ``schema``: the tables (docs/schema.md), their migrations, a file's version read safely;
- ``project``: ``ProjectStore``, one connection per thread, WAL, transactions, settings;
- ``records``: the row methods by table, mixed into ``ProjectStore``;
- ``queries``: the reads other modules need, by table (an item's texts, what an annotator has seen,
  a run's metrics), mixed into ``ProjectStore`` so that no caller writes SQL;
- ``export``: ratings as the lines of a raw export, made by SQLite, mixed into ``ProjectStore``;
- ``merge_rows``: another project file's rows copied in, ids remapped (core.exchange.merge
  drives it).
"""

from core.store.project import ProjectStore
from core.store.records import decode_rating
from core.store.schema import (
    DEFAULT_RUBRIC,
    DEFAULT_SETTINGS,
    FLAG_REASONS,
    PAIRWISE_CHOICES,
    RATING_KINDS,
    SCHEMA_VERSION,
    ProjectError,
    new_uuid,
    now,
    read_schema_version,
)

__all__ = [
    "DEFAULT_RUBRIC",
    "DEFAULT_SETTINGS",
    "FLAG_REASONS",
    "PAIRWISE_CHOICES",
    "RATING_KINDS",
    "SCHEMA_VERSION",
    "ProjectError",
    "ProjectStore",
    "decode_rating",
    "new_uuid",
    "now",
    "read_schema_version",
]
