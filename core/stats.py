"""Project statistics: counts now; agreement, speed and per-checkpoint figures (issue #5) extend it."""

from __future__ import annotations

from typing import Any

from core.store import ProjectStore


def project_stats(store: ProjectStore) -> dict[str, Any]:
    """Everything `stats --json` prints, under stable keys."""
    return store.basic_stats()


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable summary of ``project_stats``."""
    lines = [
        f"project     {stats['project']} (schema {stats['schema_version']})",
        f"prompts     {stats['prompts']}",
        f"samples     {stats['samples']}",
        f"ratings     {stats['ratings']} ({stats['superseded']} undone)",
    ]
    for kind, n in stats.get("ratings_by_kind", {}).items():
        lines.append(f"  {kind:<10}{n}")
    lines.append(f"annotators  {len(stats['annotators'])}")
    for name, n in stats["annotators"].items():
        lines.append(f"  {name:<20}{n}")
    lines += [f"runs        {stats['runs']}", f"checkpoints {stats['checkpoints']}"]
    return "\n".join(lines)
