"""Reward model: a Bradley–Terry loss on preference pairs, chosen and rejected in one forward pass."""

from __future__ import annotations

import random
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
    EVAL_EVERY = 5  # steps between held-out accuracies (and always at the last step)
    MIN_PAIRS_TO_HOLD_OUT = 20

    def __init__(self, ctx: Context):
        cfg = ctx.config
        pairs = preference_pairs(ctx)
        held = 0
        if len(pairs) >= self.MIN_PAIRS_TO_HOLD_OUT:
            held = round(cfg.heldout_fraction * len(pairs))
        order = list(range(len(pairs)))
        random.Random(cfg.seed).shuffle(order)
        self.heldout = [pairs[i] for i in sorted(order[:held])]
        self.examples = [pairs[i] for i in sorted(order[held:])]
        self.seqs = pair_seqs(ctx, self.examples, eos=False)
        self.heldout_seqs = pair_seqs(ctx, self.heldout, eos=False)
        self.item_lengths = [max(len(c), len(r)) for c, r in self.seqs]
        self.margins = torch.tensor([p.margin for p in self.examples], dtype=torch.float32)

    def describe(self) -> str:
        kept = f" ({len(self.heldout)} more held out)" if self.heldout else ""
        return f"{len(self.examples)} preference pairs{kept}"

    def watch_config(self) -> dict[str, Any]:
        return {"eval_pairs": len(self.heldout)}

    def after_step(self, ctx: Context, step: int, total: int) -> dict[str, float]:
        """Accuracy on the held-out pairs every few steps: training accuracy far above it means
        the model memorises its pairs."""
        if not self.heldout_seqs or (step % self.EVAL_EVERY and step != total):
            return {}
        right = 0
        lengths = [max(len(c), len(r)) for c, r in self.heldout_seqs]
        ctx.module.eval()
        try:
            with torch.no_grad(), ctx.accelerator.autocast():
                for part in ctx.parts(range(len(lengths)), lengths, 2):
                    seqs = [self.heldout_seqs[i][0] for i in part]
                    seqs += [self.heldout_seqs[i][1] for i in part]
                    batch = ctx.collate(seqs)
                    r = ctx.module(batch.input_ids, batch.attention_mask, batch.completion_mask)
                    right += int((r[: len(part)] > r[len(part) :]).sum())
        finally:
            ctx.module.train()
        return {"eval/accuracy": right / len(self.heldout_seqs)}

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
