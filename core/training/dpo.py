"""DPO (sigmoid, cDPO label smoothing, IPO) on preference pairs; reference log-probs once per pair."""

from __future__ import annotations

from typing import Any

import torch

from core.losses import dpo_loss
from core.models.batching import CompletionLogps, policy_logps
from core.training.context import Context, Tally
from core.training.objective import Objective, pair_seqs, preference_pairs
from core.training.reference import ReferenceLogps


class DPOObjective(Objective):
    """DPO (sigmoid / cDPO / IPO); reference log-probs once per pair; chosen+rejected in one pass."""

    metric_names = (
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "logps/chosen_per_token",
        "logps/rejected_per_token",
    )
    seqs_per_item = 2

    def __init__(self, ctx: Context):
        self.examples = preference_pairs(ctx)
        self.seqs = pair_seqs(ctx, self.examples, eos=True)
        self.item_lengths = [max(len(c), len(r)) for c, r in self.seqs]
        # completion tokens of (chosen, rejected): per-token log-probs are comparable across
        # lengths, which the diagnostics need to see both responses lose likelihood
        self.completion_lengths = torch.tensor(
            [[max(1, len(c.completion)), max(1, len(r.completion))] for c, r in self.seqs],
            dtype=torch.float32,
        )

    def describe(self) -> str:
        return f"{len(self.examples)} preference pairs"

    def _logps(self, ctx: Context, module: Any, idx: list[int]) -> tuple[Any, Any, int]:
        batch = ctx.collate([self.seqs[i][0] for i in idx] + [self.seqs[i][1] for i in idx])
        flat, _ = policy_logps(module, batch)
        per_seq = batch.sums(flat)  # (2B,)
        if ctx.config.loss_type == "ipo":  # IPO is defined on length-averaged log-probs
            per_seq = per_seq / batch.lengths.clamp(min=1)
        return per_seq[: len(idx)], per_seq[len(idx) :], batch.n_tokens

    def prepare(self, ctx: Context) -> None:
        raw = CompletionLogps(ctx.model)

        def ref(idx: list[int]) -> list[torch.Tensor]:
            c, r, _ = self._logps(ctx, raw, idx)
            return list(torch.stack([c, r], dim=1))

        self.reference = ReferenceLogps(ref, self.item_lengths, self.seqs_per_item)

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        cfg = ctx.config
        pc, pr, n_tokens = self._logps(ctx, ctx.module, idx)
        ref = self.reference.stacked(idx).to(pc.device)
        losses, rc, rr = dpo_loss(
            pc, pr, ref[:, 0], ref[:, 1], cfg.beta, cfg.label_smoothing, cfg.loss_type
        )
        loss = losses.mean()
        tally.add("loss", loss, weight)
        tally.add("rewards/chosen", rc)
        tally.add("rewards/rejected", rr)
        tally.add("rewards/margins", rc - rr)
        tally.add("rewards/accuracies", (rc > rr).float())
        tally.add("logps/chosen", pc)
        tally.add("logps/rejected", pr)
        # IPO's log-probs are length-averaged already
        lengths = self.completion_lengths[idx].to(pc.device)  # (B, 2)
        if cfg.loss_type == "ipo":
            lengths = torch.ones_like(lengths)
        tally.add("logps/chosen_per_token", pc.detach() / lengths[:, 0])
        tally.add("logps/rejected_per_token", pr.detach() / lengths[:, 1])
        return loss, n_tokens
