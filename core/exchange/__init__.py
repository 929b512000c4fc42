"""Data leaving and joining a project (rules: docs/exports.md).

- ``ratings``: rating exports, raw rows (jsonl, csv, parquet) or TRL-ready training data, through
  the format ``writers``;
- ``checkpoint``: a checkpoint as a Hugging Face folder with its model ``card``;
- ``merge``: other project files merged in by uuid;
- ``files``: output paths checked with one clear message, files written atomically.
"""

from core.exchange.checkpoint import CheckpointExport, export_checkpoint
from core.exchange.files import ExportError
from core.exchange.merge import MergeProgress, MergeReport, iter_merge_projects, merge_projects
from core.exchange.ratings import (
    FORMATS,
    RAW_FORMATS,
    TRAINING_FORMATS,
    ExportProgress,
    ExportResult,
    export_ratings,
    iter_export_ratings,
)

__all__ = [
    "FORMATS",
    "RAW_FORMATS",
    "TRAINING_FORMATS",
    "CheckpointExport",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "MergeProgress",
    "MergeReport",
    "export_checkpoint",
    "export_ratings",
    "iter_export_ratings",
    "iter_merge_projects",
    "merge_projects",
]
