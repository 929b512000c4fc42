"""What the Rate tab says: the rating modes' titles, the choices' key labels, the guidelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
GUIDELINES = RESOURCES / "guidelines.md"
STARTER_PROMPTS = RESOURCES / "starter_prompts.jsonl"
MODES = [("score", "Score"), ("pairwise", "Pairwise"), ("rank", "Rank"), ("thumbs", "Thumbs")]
PAIRWISE = [
    ("a", "A is better (A)"),
    ("b", "B is better (B)"),
    ("tie", "Tie (T)"),
    ("both_bad", "Both bad (N)"),
]
THUMBS = [("up", "▲ Up (U)"), ("down", "▼ Down (D)")]


def guidelines_text(settings: dict[str, Any]) -> str:
    """The project's guidelines, else the default in resources/guidelines.md."""
    if (settings.get("guidelines") or "").strip():
        return settings["guidelines"]
    try:
        return GUIDELINES.read_text(encoding="utf-8")
    except OSError:
        return "# Guidelines\n\nRate what you would rather receive. When unsure, skip (S)."
