"""What the Rate tab says: the rating modes' titles, the choices' key labels, the guidelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
GUIDELINES = RESOURCES / "guidelines.md"
STARTER_PROMPTS = RESOURCES / "starter_prompts.jsonl"
ARENA = "arena"  # a mode of the Rate tab: the arena's blind comparisons, rated as pairwise
MODES = [
    ("score", "Score"),
    ("pairwise", "Pairwise"),
    ("rank", "Rank"),
    ("thumbs", "Thumbs"),
    (ARENA, "Arena"),
]
PAIRWISE = [
    ("a", "A is better (A)"),
    ("b", "B is better (B)"),
    ("tie", "Tie (T)"),
    ("both_bad", "Both bad (N)"),
]
THUMBS = [("up", "▲ Up (U)"), ("down", "▼ Down (D)")]
START_ARENA = (
    "Start one from the Train tab's checkpoint list (<i>Evaluate against its starting "
    "model</i>) or with <code>python main.py arena --models SPEC SPEC</code>; its comparisons "
    "then appear here."
)
ARENA_EMPTY = {
    "none": "<h3>No arena to rate</h3>An arena compares models blind on the evaluation prompts "
    "(prompts kept apart from training). " + START_ARENA,
    "done": "<h3>Nothing left to rate in the arena</h3>You have judged every comparison of "
    "this arena; the Data tab shows the leaderboard. To compare other models, start another "
    "arena. " + START_ARENA,
}


def rating_mode(mode: str, selection: str) -> str:
    """The Rate tab mode an item belongs to: arena items are pairwise items chosen by the arena."""
    return ARENA if selection == ARENA else mode


def guidelines_text(settings: dict[str, Any]) -> str:
    """The project's guidelines, else the default in resources/guidelines.md."""
    if (settings.get("guidelines") or "").strip():
        return settings["guidelines"]
    try:
        return GUIDELINES.read_text(encoding="utf-8")
    except OSError:
        return "# Guidelines\n\nRate what you would rather receive. When unsure, skip (S)."
