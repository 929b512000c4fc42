"""Knowing whether training helped: blind arenas judged by people or a scripted judge.

- ``arena``: which models answer the evaluation prompts, their answers, the comparisons, the
  scripted judge, and the report ``stats --json`` and the Data tab show;
- ``bradley_terry``: ratings on an Elo scale with bootstrap intervals, and the leaderboard;
- ``head_to_head``: a pair's win rate with its interval, and how many more comparisons would
  separate two models.
"""

from core.evaluation.arena import (
    ArenaProgress,
    ArenaSpec,
    arena_items,
    arena_report,
    arena_spec,
    canonical_spec,
    comparisons,
    judge_arena,
    run_arena,
    save_arena,
    unrated_comparisons,
)
from core.evaluation.bradley_terry import bootstrap, bradley_terry, leaderboard
from core.evaluation.head_to_head import comparisons_to_separate, describe_pair, head_to_head

__all__ = [
    "ArenaProgress",
    "ArenaSpec",
    "arena_items",
    "arena_report",
    "arena_spec",
    "bootstrap",
    "bradley_terry",
    "canonical_spec",
    "comparisons",
    "comparisons_to_separate",
    "describe_pair",
    "head_to_head",
    "judge_arena",
    "leaderboard",
    "run_arena",
    "save_arena",
    "unrated_comparisons",
]
