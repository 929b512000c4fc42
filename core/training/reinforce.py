"""REINFORCE on human scores of already-rated samples, with a baseline and a KL penalty."""

from __future__ import annotations

from typing import Any

import torch

from core import data
from core.losses import group_baseline, kl_penalty, masked_mean, policy_gradient_loss
from core.models.batching import CompletionLogps, Tokens, policy_logps
from core.training.context import Context, Tally
from core.training.objective import (
    Objective,
    data_options,
    left_aligned,
    need,
    token_weighted_parts,
)
from core.training.reference import ReferenceLogps


class ReinforceObjective(Objective):
    """REINFORCE on rated samples: advantage = human score − baseline, plus a per-token KL penalty
    (k3) to the reference in the loss. The baseline (``cfg.baseline``) is the mean of all scores,
    or per prompt the mean of its other scored samples (leave-one-out, as RLOO does).

    The samples were drawn earlier (often from the base model), so the KL is a regulariser on
    them rather than a reward term: it pulls every rated sample's log-probs back toward the
    reference and keeps a low-scored sample from being pushed toward -inf."""

    metric_names = ("reward", "kl", "loss", "entropy")

    def __init__(self, ctx: Context):
        cfg = ctx.config
        self.examples = data.scalar_rewards(ctx.store, **data_options(cfg, ctx))
        need(self.examples, "scored samples", "rate with scores or thumbs first.")
        tokens = Tokens(ctx.store, ctx.tokenizer, cfg.max_length, eos=True)
        self.seqs = [tokens.seq(e.prompt_id, e.sample_id) for e in self.examples]
        self.item_lengths = [len(s) for s in self.seqs]
        self.rewards = torch.tensor([e.reward for e in self.examples], dtype=torch.float32)
        self.mean = float(self.rewards.mean())
        if cfg.baseline == "prompt":
            prompts = torch.tensor([e.prompt_id for e in self.examples], dtype=torch.long)
            self.advantages = self.rewards - group_baseline(self.rewards, prompts)
        else:
            self.advantages = self.rewards - self.mean

    def describe(self) -> str:
        return f"{len(self.examples)} scored samples (mean score {self.mean:.2f})"

    def prepare(self, ctx: Context) -> None:
        raw = CompletionLogps(ctx.model)

        def ref(idx: list[int]) -> list[torch.Tensor]:
            batch = ctx.collate([self.seqs[i] for i in idx])
            flat, _ = policy_logps(raw, batch)
            rows = batch.rows(flat)
            return [rows[k, : int(n)] for k, n in enumerate(batch.lengths)]

        self.reference = ReferenceLogps(ref, self.item_lengths)

    def parts(self, ctx: Context, mb: list[int]) -> list[tuple[Any, float]]:
        completion = [len(s.completion) for s in self.seqs]
        return token_weighted_parts(ctx, mb, self.item_lengths, completion)

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        batch = ctx.collate([self.seqs[i] for i in idx])
        flat, entropy = policy_logps(ctx.module, batch, with_entropy=True)
        logps, mask = batch.rows(flat), batch.layout_mask  # (B, L)
        ref = left_aligned(self.reference.rows(idx), logps)
        rewards = self.rewards[idx].to(logps.device)
        advantages = self.advantages[idx].to(logps.device)
        pg, _ = policy_gradient_loss(logps, logps.detach(), advantages, mask)
        loss = pg + ctx.config.kl_coef * masked_mean(kl_penalty(logps, ref, "k3"), mask)
        tally.add("loss", loss, weight)
        tally.add("reward", rewards)
        tally.add("kl", ((logps - ref) * mask).sum(dim=-1))
        tally.add("entropy", entropy)
        return loss, batch.n_tokens
