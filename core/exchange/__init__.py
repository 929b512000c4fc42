"""Data leaving and joining a project (rules: docs/exports.md).

- ``ratings``: rating exports, raw rows (jsonl, csv, parquet) or TRL-ready training data, through
  the format ``writers``;
- ``checkpoint``: a checkpoint as a Hugging Face folder with its model ``card``, or as one GGUF
  file (``gguf``, with ``gguf_tokenizer``) with a card on running it (``gguf_card``);
- ``merge``: other project files merged in by uuid;
- ``files``: output paths checked with one clear message, files written atomically.
"""

from core.exchange.checkpoint import (
    CheckpointExport,
    GGUFCheckpointExport,
    export_checkpoint,
    export_checkpoint_gguf,
    iter_export_checkpoint_gguf,
)
from core.exchange.files import ExportError
from core.exchange.gguf import QUANTS, GGUFExportError, GGUFProgress, export_gguf
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
    "QUANTS",
    "RAW_FORMATS",
    "TRAINING_FORMATS",
    "CheckpointExport",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "GGUFCheckpointExport",
    "GGUFExportError",
    "GGUFProgress",
    "MergeProgress",
    "MergeReport",
    "export_checkpoint",
    "export_checkpoint_gguf",
    "export_gguf",
    "export_ratings",
    "iter_export_checkpoint_gguf",
    "iter_export_ratings",
    "iter_merge_projects",
    "merge_projects",
]
