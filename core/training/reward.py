"""Reward model: a Bradley–Terry loss on preference pairs, chosen and rejected in one forward pass."""

from __future__ import annotations

from typing import Any

import torch

from core.losses import bradley_terry_loss
from core.training.context import Context, Tally
from core.training.objective import Objective, pair_seqs, preference_pairs


class RewardObjective(Objective):
    """Bradley-Terry: ``-logsigmoid(r_c - r_r - margin)``; chosen and rejected in one forward."""

    kind = "reward"
    metric_names = ("loss", "accuracy", "margin", "mean_reward")
    seqs_per_item = 2

    def __init__(self, ctx: Context):
        self.examples = preference_pairs(ctx)
        self.seqs = pair_seqs(ctx, self.examples, eos=False)
        self.item_lengths = [max(len(c), len(r)) for c, r in self.seqs]
        self.margins = torch.tensor([p.margin for p in self.examples], dtype=torch.float32)

    def describe(self) -> str:
        return f"{len(self.examples)} preference pairs"

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        batch = ctx.collate([self.seqs[i][0] for i in idx] + [self.seqs[i][1] for i in idx])
        rewards = ctx.module(batch.input_ids, batch.attention_mask, batch.completion_mask)  # (2B,)
        rc, rr = rewards[: len(idx)], rewards[len(idx) :]
        margin = self.margins[idx].to(rc.device) if ctx.config.use_margin else None
        loss, _ = bradley_terry_loss(rc, rr, margin)
        tally.add("loss", loss, weight)
        tally.add("accuracy", (rc > rr).float())
        tally.add("margin", rc - rr)
        tally.add("mean_reward", rewards)
        return loss, batch.n_tokens
