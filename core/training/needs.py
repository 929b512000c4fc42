"""One line on how much training data the project's ratings make for an algorithm.

"312 pairs from 4 annotators" for dpo and reward, desirable / undesirable examples for kto,
scored samples for reinforce, and for rloo (online) the prompts it samples from and what scores
them. What an algorithm trains on is its registry entry's ``trains_on``. Counting reads every
rating: the Train tab runs it off the GUI thread.
"""

from __future__ import annotations

from typing import Any

from core.checkpoints import latest_checkpoint
from core.data import data_summary, describe
from core.store import ProjectStore
from core.training.registry import algorithm
from core.training.rloo import split_prompts

HOW_TO_GET = {
    "pairs": "no preference pairs yet: rate pairwise, rank, or score several responses per prompt",
    "rewards": "no scored samples yet: rate with scores or thumbs",
    "unpaired": "no desirable / undesirable examples yet: rate with thumbs or scores",
}


def describe_training_data(store: ProjectStore, values: dict[str, Any]) -> tuple[str, bool]:
    """(the line, whether there is anything to train on) for the form's ``values``."""
    what = algorithm(values["algo"]).trains_on
    if what == "prompts":
        return _online(store, values)
    summary = data_summary(
        store,
        annotators=values.get("annotators") or None,
        criterion=values.get("criterion") or None,
        score_margin=float(values.get("score_margin", 0.25)),
        score_threshold=float(values.get("score_threshold", 0.5)),
    )
    if what == "unpaired":
        if not summary["unpaired"]:
            return HOW_TO_GET["unpaired"], False
        n = summary["annotators_by"]["unpaired"]
        return (
            f"{summary['desirable']} desirable and {summary['undesirable']} undesirable examples "
            f"from {n} annotator{'' if n == 1 else 's'}",
            True,
        )
    if not summary[what]:
        return HOW_TO_GET[what], False
    return describe(summary, what), True


def _online(store: ProjectStore, values: dict[str, Any]) -> tuple[str, bool]:
    prompts, _heldout = split_prompts(store, float(values.get("heldout_fraction") or 0.0))
    if values.get("rater"):
        source, ok = f"scored by the rater {values['rater']}", True
    elif values.get("reward_model"):
        source, ok = f"scored by the reward model {values['reward_model']}", True
    else:
        rec = latest_checkpoint(store, kind="reward")
        ok = rec is not None
        source = (
            f"scored by the newest reward model checkpoint:{rec['id']}"
            if rec
            else "but no reward model yet: train one (Reward model) or give a rater"
        )
    n = len(prompts)
    return f"{n} prompt{'' if n == 1 else 's'} to sample from, {source}", ok and n > 0
