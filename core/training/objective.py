"""What every objective is: examples in, the loss of one bounded forward pass out.

An objective turns the run's ratings into token sequences once, says how the reference model
contributes (``prepare``: reference log-probs never change, so each example's are computed once,
when a step first uses it, and kept; core/training/reference.py), and then gives the loss of a
*part*: a micro-batch of example indices is cut into forward passes of at most ``forward_tokens``
tokens (``parts``), each weighted by its share, so memory stays bounded and the gradient is that
of the whole micro-batch. The loop in core/training/loop.py owns everything else (batches,
optimizer, checkpoints). One module per objective: reward, dpo, kto, reinforce, rloo;
core/training/registry.py lists them.
"""

from __future__ import annotations

from typing import Any

import torch

from core import data
from core.errors import UserError
from core.models.batching import Seq, Tokens, batch_schedule, steps_for
from core.training.config import MAX_EPOCHS
from core.training.context import Context, Tally
from core.training.reference import ReferenceLogps


def need(examples: list[Any], what: str, how: str) -> None:
    if not examples:
        raise UserError(f"no {what} in the project's ratings yet; {how}")


def data_options(cfg: Any, ctx: Context) -> dict[str, Any]:
    return {
        "annotators": cfg.annotators or None,
        "rating_ids": ctx.rating_ids,
        "criterion": cfg.criterion or None,
    }


class Objective:
    kind = "policy"  # the kind of checkpoint it saves
    metric_names: tuple[str, ...] = ()
    seqs_per_item = 1  # sequences one example puts into a forward pass
    examples: list[Any]
    item_lengths: list[int]  # the longest sequence of each example (for batching)
    schedule: list[list[int]]
    reference: ReferenceLogps | None = None  # set by ``prepare`` where the loss needs it

    def rating_ids(self) -> list[int]:
        return data.used_rating_ids(self.examples)

    def describe(self) -> str:
        return f"{len(self.examples)} examples"

    def prepare(self, ctx: Context) -> None:
        """Anything set up once per run before training, after ``plan`` (e.g. ``reference``,
        which computes each example's reference log-probs when a step first needs them)."""

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
            self.item_lengths,
            global_batch=cfg.batch_size * ctx.accelerator.num_processes,
            n_batches=total_steps * cfg.grad_accum,
            seed=cfg.seed,
        )

    def micro_batches(self, ctx: Context, step: int) -> list[list[int]]:
        """This rank's micro-batches of (0-based) optimizer step ``step``, with the reference
        log-probs of the examples no earlier step used computed (one pass for the whole step)."""
        batches = self._rank_batches(ctx, step)
        if self.reference is not None:
            self.reference.ensure(ctx, [i for b in batches for i in b])
        return batches

    def planned(self, ctx: Context) -> list[int]:
        """The examples this rank's micro-batches of the whole run use."""
        steps = len(self.schedule) // ctx.config.grad_accum
        return sorted({i for s in range(steps) for b in self._rank_batches(ctx, s) for i in b})

    def _rank_batches(self, ctx: Context, step: int) -> list[list[int]]:
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

    def after_step(self, ctx: Context, step: int, total: int) -> dict[str, float]:
        """Metrics measured after optimizer step ``step`` (1-based), e.g. on held-out data."""
        return {}

    def watch_config(self) -> dict[str, Any]:
        """What the diagnostics need to know beyond the config (core.training.diagnostics)."""
        return {}


def token_weighted_parts(
    ctx: Context, mb: list[int], lengths: list[int], completion: list[int]
) -> list[tuple[Any, float]]:
    """Parts weighted by completion tokens: for losses that are means over tokens."""
    total = max(1, sum(completion[i] for i in mb))
    return [(p, sum(completion[i] for i in p) / total) for p in ctx.parts(mb, lengths, 1)]


def pair_seqs(ctx: Context, pairs: list[Any], eos: bool) -> list[tuple[Seq, Seq]]:
    tokens = Tokens(ctx.store, ctx.tokenizer, ctx.config.max_length, eos=eos)
    return [
        (tokens.seq(p.prompt_id, p.chosen_id), tokens.seq(p.prompt_id, p.rejected_id))
        for p in pairs
    ]


def preference_pairs(ctx: Context) -> list[Any]:
    cfg = ctx.config
    pairs = data.preference_pairs(
        ctx.store, score_margin=cfg.score_margin, **data_options(cfg, ctx)
    )
    need(pairs, "preference pairs", "rate pairs (pairwise), rankings or scores first.")
    return pairs


def left_aligned(rows: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence 1-D tensors as a (B, L) tensor shaped like ``like``, zero-padded."""
    out = torch.zeros_like(like, dtype=torch.float32)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row.to(out.device)
    return out
