"""KTO on desirable / undesirable examples (thumbs, scores), in TRL's formulation."""

from __future__ import annotations

import random
from typing import Any

import torch

from core import data
from core.losses import kto_loss
from core.models.batching import CompletionLogps, Seq, Tokens, policy_logps
from core.training.context import Context, Tally
from core.training.objective import Objective, data_options, need
from core.training.reference import ReferenceLogps


class KTOObjective(Objective):
    """KTO (TRL's formulation): the reference point is the KL of mismatched prompt/completion
    pairs, each example paired once per run with another example's completion."""

    metric_names = ("loss", "rewards/chosen", "rewards/rejected", "kl")

    def __init__(self, ctx: Context):
        cfg = ctx.config
        self.examples = data.unpaired_examples(
            ctx.store, score_threshold=cfg.score_threshold, **data_options(cfg, ctx)
        )
        need(
            self.examples,
            "desirable/undesirable examples",
            "rate with thumbs up/down or scores first.",
        )
        tokens = Tokens(ctx.store, ctx.tokenizer, cfg.max_length, eos=True)
        n = len(self.examples)
        order = list(range(n))
        random.Random(cfg.seed).shuffle(order)
        partner = {order[k]: order[(k + 1) % n] for k in range(n)}
        self.seqs = [tokens.seq(e.prompt_id, e.sample_id) for e in self.examples]
        self.kl_seqs = [
            tokens.seq(e.prompt_id, self.examples[partner[i]].sample_id)
            for i, e in enumerate(self.examples)
        ]
        self.item_lengths = [
            max(len(s), len(k)) for s, k in zip(self.seqs, self.kl_seqs, strict=True)
        ]
        self.labels = torch.tensor([e.label for e in self.examples], dtype=torch.bool)

    def describe(self) -> str:
        up = int(self.labels.sum())
        return f"{up} desirable and {len(self.examples) - up} undesirable examples"

    def _logps(self, ctx: Context, module: Any, seqs: list[Seq]) -> tuple[torch.Tensor, int]:
        batch = ctx.collate(seqs)
        flat, _ = policy_logps(module, batch)
        return batch.sums(flat), batch.n_tokens

    def prepare(self, ctx: Context) -> None:
        raw = CompletionLogps(ctx.model)

        def ref(idx: list[int]) -> list[torch.Tensor]:
            seq, _ = self._logps(ctx, raw, [self.seqs[i] for i in idx])
            kl, _ = self._logps(ctx, raw, [self.kl_seqs[i] for i in idx])
            return list(torch.stack([seq, kl], dim=1))

        self.reference = ReferenceLogps(ref, self.item_lengths)

    def parts(self, ctx: Context, mb: list[int]) -> list[tuple[Any, float]]:
        # The reference point z is one number for the whole micro-batch: the policy's KL
        # log-probs are computed first (no gradient: z is detached) and shared by every part.
        raw, kl, tokens = CompletionLogps(ctx.model), {}, 0
        with torch.no_grad(), ctx.accelerator.autocast():
            for p in ctx.parts(mb, self.item_lengths, 1, budget_factor=2):
                logps, n = self._logps(ctx, raw, [self.kl_seqs[i] for i in p])
                kl.update(zip(p, logps, strict=True))
                tokens += n
        policy_kl = torch.stack([kl[i] for i in mb])
        shared = (policy_kl, self.reference.stacked(mb)[:, 1].to(policy_kl.device))
        parts = super().parts(ctx, mb)
        return [((p, shared, tokens if k == 0 else 0), w) for k, (p, w) in enumerate(parts)]

    def loss(self, ctx: Context, part: Any, tally: Tally, weight: float) -> tuple[Any, int]:
        cfg = ctx.config
        idx, (policy_kl, ref_kl), kl_tokens = part
        logps, n_tokens = self._logps(ctx, ctx.module, [self.seqs[i] for i in idx])
        ref = self.reference.stacked(idx).to(logps.device)
        up = self.labels[idx].to(logps.device)
        losses, rc, rr, kl = kto_loss(
            logps[up],
            logps[~up],
            policy_kl,
            ref[up, 0],
            ref[~up, 0],
            ref_kl,
            cfg.beta,
            cfg.desirable_weight,
            cfg.undesirable_weight,
        )
        loss = losses.mean()
        tally.add("loss", loss, weight)
        tally.add("rewards/chosen", rc)
        tally.add("rewards/rejected", rr)
        tally.add("kl", kl, weight)
        return loss, n_tokens + kl_tokens
