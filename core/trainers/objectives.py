"""The offline objectives: reward model, DPO, KTO and REINFORCE on human scores.

Each objective turns the run's ratings into token sequences once, computes whatever the
reference model contributes once (``prepare``: reference log-probs never change, so they are not
recomputed every step), and then gives the loss of a *part*: a micro-batch of example indices is
cut into forward passes of at most ``forward_tokens`` tokens (``parts``), each weighted by its
share, so memory stays bounded and the gradient is that of the whole micro-batch. The loop in
core/training.py owns everything else (batches, optimizer, checkpoints).
"""

from __future__ import annotations

import random
from typing import Any

import torch

from core import data
from core.errors import UserError
from core.losses import (
    bradley_terry_loss,
    dpo_loss,
    group_baseline,
    kl_penalty,
    kto_loss,
    masked_mean,
    policy_gradient_loss,
)
from core.trainers.batching import (
    CompletionLogps,
    Seq,
    Tokens,
    batch_schedule,
    policy_logps,
    steps_for,
)
from core.trainers.config import MAX_EPOCHS
from core.trainers.context import Context, Tally


def _need(examples: list[Any], what: str, how: str) -> None:
    if not examples:
        raise UserError(f"no {what} in the project's ratings yet; {how}")


def _data_options(cfg: Any, ctx: Context) -> dict[str, Any]:
    return {"annotators": cfg.annotators or None, "rating_ids": ctx.rating_ids,
            "criterion": cfg.criterion or None}  # fmt: skip


class Objective:
    kind = "policy"  # the kind of checkpoint it saves
    metric_names: tuple[str, ...] = ()
    seqs_per_item = 1  # sequences one example puts into a forward pass
    examples: list[Any]
    item_lengths: list[int]  # the longest sequence of each example (for batching)
    schedule: list[list[int]]

    def rating_ids(self) -> list[int]:
        return data.used_rating_ids(self.examples)

    def describe(self) -> str:
        return f"{len(self.examples)} examples"

    def prepare(self, ctx: Context) -> None:
        """Anything computed once per run before training (reference log-probs)."""

    def steps_for(self, cfg: Any, world: int) -> int:
        """Optimizer steps for ``cfg.epochs`` passes over the examples, but at least
        ``cfg.min_steps`` where that takes no more than ``MAX_EPOCHS`` passes."""
        per_step = cfg.batch_size * cfg.grad_accum * world
        steps = steps_for(len(self.examples), cfg.epochs, per_step)
        return max(steps, min(cfg.min_steps, steps_for(len(self.examples), MAX_EPOCHS, per_step)))

    def plan(self, total_steps: int, ctx: Context) -> None:
        """Fix the order of all micro-batches of the run (a resumed run replans and skips)."""
        cfg = ctx.config
        self.schedule = batch_schedule(
            self.item_lengths, global_batch=cfg.batch_size * ctx.accelerator.num_processes,
            n_batches=total_steps * cfg.grad_accum, seed=cfg.seed,
        )  # fmt: skip

    def micro_batches(self, ctx: Context, step: int) -> list[list[int]]:
        """This rank's micro-batches of (0-based) optimizer step ``step``."""
        bs, ga, rank = ctx.config.batch_size, ctx.config.grad_accum, ctx.accelerator.process_index
        return [b[rank * bs : (rank + 1) * bs] for b in self.schedule[step * ga : (step + 1) * ga]]

    def parts(self, ctx: Context, mb: list[int]) -> list[tuple[Any, float]]:
        """A micro-batch as forward passes of bounded size, each with its share of the loss.

        The losses here are means over examples, so a part of n examples weighs n / len(mb):
        the summed gradients equal those of one pass over the whole micro-batch.
        """
        parts = ctx.parts(mb, self.item_lengths, self.seqs_per_item)
        return [(p, len(p) / len(mb)) for p in parts]

    def loss(
        self, ctx: Context, part: Any, tally: Tally, weight: float
    ) -> tuple[torch.Tensor, int]:
        """(mean loss of one part, its real token count); adds the metrics to ``tally``."""
        raise NotImplementedError

    def end_step(self, tally: Tally) -> None:
        """Metrics that belong to the whole step rather than to a part."""


def token_weighted_parts(
    ctx: Context, mb: list[int], lengths: list[int], completion: list[int]
) -> list[tuple[Any, float]]:
    """Parts weighted by completion tokens: for losses that are means over tokens."""
    total = max(1, sum(completion[i] for i in mb))
    return [(p, sum(completion[i] for i in p) / total) for p in ctx.parts(mb, lengths, 1)]


def _pair_seqs(ctx: Context, pairs: list[Any], eos: bool) -> list[tuple[Seq, Seq]]:
    tokens = Tokens(ctx.store, ctx.tokenizer, ctx.config.max_length, eos=eos)
    return [(tokens.seq(p.prompt_id, p.chosen_id), tokens.seq(p.prompt_id, p.rejected_id))
            for p in pairs]  # fmt: skip


def _pairs(ctx: Context) -> list[Any]:
    cfg = ctx.config
    pairs = data.preference_pairs(ctx.store, score_margin=cfg.score_margin,
                                  **_data_options(cfg, ctx))  # fmt: skip
    _need(pairs, "preference pairs", "rate pairs (pairwise), rankings or scores first.")
    return pairs


class RewardObjective(Objective):
    """Bradley-Terry: ``-logsigmoid(r_c - r_r - margin)``; chosen and rejected in one forward."""

    kind = "reward"
    metric_names = ("loss", "accuracy", "margin", "mean_reward")
    seqs_per_item = 2

    def __init__(self, ctx: Context):
        self.examples = _pairs(ctx)
        self.seqs = _pair_seqs(ctx, self.examples, eos=False)
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


class DPOObjective(Objective):
    """DPO (sigmoid / cDPO / IPO); reference log-probs once per run; chosen+rejected in one pass."""

    metric_names = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                    "rewards/accuracies", "logps/chosen", "logps/rejected")  # fmt: skip
    seqs_per_item = 2

    def __init__(self, ctx: Context):
        self.examples = _pairs(ctx)
        self.seqs = _pair_seqs(ctx, self.examples, eos=True)
        self.item_lengths = [max(len(c), len(r)) for c, r in self.seqs]
        self.ref = torch.zeros(len(self.seqs), 2)

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

        self.ref = torch.stack(ctx.reference_pass(self.item_lengths, ref, self.seqs_per_item))

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        cfg = ctx.config
        pc, pr, n_tokens = self._logps(ctx, ctx.module, idx)
        ref = self.ref[idx].to(pc.device)
        losses, rc, rr = dpo_loss(pc, pr, ref[:, 0], ref[:, 1], cfg.beta, cfg.label_smoothing,
                                  cfg.loss_type)  # fmt: skip
        loss = losses.mean()
        tally.add("loss", loss, weight)
        tally.add("rewards/chosen", rc)
        tally.add("rewards/rejected", rr)
        tally.add("rewards/margins", rc - rr)
        tally.add("rewards/accuracies", (rc > rr).float())
        tally.add("logps/chosen", pc)
        tally.add("logps/rejected", pr)
        return loss, n_tokens


class KTOObjective(Objective):
    """KTO (TRL's formulation): the reference point is the KL of mismatched prompt/completion
    pairs, each example paired once per run with another example's completion."""

    metric_names = ("loss", "rewards/chosen", "rewards/rejected", "kl")

    def __init__(self, ctx: Context):
        cfg = ctx.config
        self.examples = data.unpaired_examples(
            ctx.store, score_threshold=cfg.score_threshold, **_data_options(cfg, ctx)
        )
        _need(self.examples, "desirable/undesirable examples",
              "rate with thumbs up/down or scores first.")  # fmt: skip
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
        self.ref = torch.zeros(n, 2)

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

        self.ref = torch.stack(ctx.reference_pass(self.item_lengths, ref))

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
        shared = (policy_kl, self.ref[mb, 1].to(policy_kl.device))
        parts = super().parts(ctx, mb)
        return [((p, shared, tokens if k == 0 else 0), w) for k, (p, w) in enumerate(parts)]

    def loss(self, ctx: Context, part: Any, tally: Tally, weight: float) -> tuple[Any, int]:
        cfg = ctx.config
        idx, (policy_kl, ref_kl), kl_tokens = part
        logps, n_tokens = self._logps(ctx, ctx.module, [self.seqs[i] for i in idx])
        ref = self.ref[idx].to(logps.device)
        up = self.labels[idx].to(logps.device)
        losses, rc, rr, kl = kto_loss(
            logps[up], logps[~up], policy_kl, ref[up, 0], ref[~up, 0], ref_kl, cfg.beta,
            cfg.desirable_weight, cfg.undesirable_weight,
        )  # fmt: skip
        loss = losses.mean()
        tally.add("loss", loss, weight)
        tally.add("rewards/chosen", rc)
        tally.add("rewards/rejected", rr)
        tally.add("kl", kl, weight)
        return loss, n_tokens + kl_tokens


class ReinforceObjective(Objective):
    """REINFORCE on rated samples: advantage = human score − baseline, plus a per-token KL penalty
    (k3) to the reference in the loss. The baseline (``cfg.baseline``) is the mean of all scores,
    or per prompt the mean of its other scored samples (leave-one-out, as RLOO does).

    The samples were drawn earlier (often from the base model), so the KL is a regulariser on
    them rather than a reward term: it pulls every rated sample's log-probs back toward the
    reference and keeps a low-scored sample from being pushed toward -inf."""

    metric_names = ("reward", "kl", "loss")

    def __init__(self, ctx: Context):
        cfg = ctx.config
        self.examples = data.scalar_rewards(ctx.store, **_data_options(cfg, ctx))
        _need(self.examples, "scored samples", "rate with scores or thumbs first.")
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
        self.ref: list[torch.Tensor] = []

    def describe(self) -> str:
        return f"{len(self.examples)} scored samples (mean score {self.mean:.2f})"

    def prepare(self, ctx: Context) -> None:
        raw = CompletionLogps(ctx.model)

        def ref(idx: list[int]) -> list[torch.Tensor]:
            batch = ctx.collate([self.seqs[i] for i in idx])
            flat, _ = policy_logps(raw, batch)
            rows = batch.rows(flat)
            return [rows[k, : int(n)] for k, n in enumerate(batch.lengths)]

        self.ref = ctx.reference_pass(self.item_lengths, ref)

    def parts(self, ctx: Context, mb: list[int]) -> list[tuple[Any, float]]:
        completion = [len(s.completion) for s in self.seqs]
        return token_weighted_parts(ctx, mb, self.item_lengths, completion)

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        batch = ctx.collate([self.seqs[i] for i in idx])
        flat, _ = policy_logps(ctx.module, batch)
        logps, mask = batch.rows(flat), batch.layout_mask  # (B, L)
        ref = left_aligned([self.ref[i] for i in idx], logps)
        rewards = self.rewards[idx].to(logps.device)
        advantages = self.advantages[idx].to(logps.device)
        pg, _ = policy_gradient_loss(logps, logps.detach(), advantages, mask)
        loss = pg + ctx.config.kl_coef * masked_mean(kl_penalty(logps, ref, "k3"), mask)
        tally.add("loss", loss, weight)
        tally.add("reward", rewards)
        tally.add("kl", ((logps - ref) * mask).sum(dim=-1))
        return loss, batch.n_tokens


def left_aligned(rows: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence 1-D tensors as a (B, L) tensor shaped like ``like``, zero-padded."""
    out = torch.zeros_like(like, dtype=torch.float32)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row.to(out.device)
    return out
