"""RLOO: online RL from a reward model or a scripted rater, with a KL penalty to the reference.

One *rollout*: take the next prompts, sample K responses each from the current policy, score them
(reward checkpoint or ``MODULE:FUNC`` rater), shape the reward with the KL to the reference
(``r − kl_coef · Σ_t (log π_old − log π_ref)``), and take the leave-one-out baseline per prompt.
Then ``ppo_epochs`` optimizer steps on that rollout with a clipped importance ratio against the
log-probs the samples were drawn with. A loop *step* is one optimizer step, so a rollout happens
every ``ppo_epochs`` steps. ``rollouts_per_sampling`` > 1 samples that many rollouts in one batched
pass (on a CPU a decoding step costs about the same for 32 rows as for 8); the later ones are then
used a few steps after they were drawn, which the clipped ratio corrects for. Log-probs use the
sampling temperature, and sampling uses no top-k / top-p, so the ratio compares the same
distributions that produced the samples.
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import torch

from core.errors import UserError
from core.losses import policy_gradient_loss, rloo_advantages
from core.models import detokenize
from core.models.batching import (
    CompletionLogps,
    Seq,
    Tokens,
    batch_schedule,
    fit,
    left_pad,
    policy_logps,
)
from core.store import ProjectStore
from core.training.context import Context, Tally
from core.training.objective import Objective, left_aligned, token_weighted_parts


def split_prompts(store: ProjectStore, heldout_fraction: float) -> tuple[list[int], list[int]]:
    """(train, held-out) ids of the project's training prompts (evaluation prompts are never
    sampled). A prompt's side depends only on its uuid, so it is stable across runs, machines and
    merged project files."""
    train, heldout = [], []
    for pid, uuid in store.train_prompt_uuids():
        u = int(hashlib.sha256(uuid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (heldout if u < heldout_fraction else train).append(pid)
    return train, heldout


def distinct_ngrams(sequences: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of ``sequences`` (token ids): 1 when no n-gram repeats,
    falling as rollouts repeat themselves or each other."""
    grams = [tuple(s[i : i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


class RLOOObjective(Objective):
    metric_names = (
        "reward",
        "reward_std",
        "kl",
        "entropy",
        "loss",
        "clip_ratio",
        "completions/mean_length",
        "completions/distinct_2",
    )

    def __init__(self, ctx: Context):
        cfg = ctx.config
        self.prompt_ids, _ = split_prompts(ctx.store, cfg.heldout_fraction)
        if not self.prompt_ids:
            raise UserError(
                "rloo samples responses to the project's prompts, and there are none to train on; "
                "import prompts first (or lower heldout_fraction)."
            )
        self.examples = self.prompt_ids
        self.k = cfg.num_samples
        self.per_rank = max(1, cfg.batch_size * cfg.grad_accum // self.k)  # prompts per rollout
        self.tokens = Tokens(ctx.store, ctx.tokenizer, cfg.max_length, eos=True)
        self.score = self._scorer(ctx)
        self.rollout_index = -1
        self.seqs: list[Seq] = []  # the current rollout: sequences, their sampling log-probs
        self.old: list[torch.Tensor] = []  # and advantages
        self.advantages = torch.zeros(0)
        self.rollout_stats: dict[str, float] = {}
        self.schedule: list[list[int]] = []
        self.ref_module: Any = None
        self.steps_per_rollout = cfg.ppo_epochs
        self.n_rollouts = 0
        self.pending: dict[int, Any] = {}  # rollouts sampled ahead (rollouts_per_sampling > 1)

    def describe(self) -> str:
        return f"{len(self.prompt_ids)} prompts × {self.k} samples, scored by {self.source}"

    def rating_ids(self) -> list[int]:
        return []  # rloo learns from a reward model or rater, not from ratings directly

    def _scorer(self, ctx: Context) -> Any:
        cfg = ctx.config
        if cfg.rater:
            from core.raters import load_rater

            rater = load_rater(cfg.rater)
            self.source = f"rater {cfg.rater}"
            return lambda pids, texts: [
                rater(ctx.store.prompt(p)["text"], t) for p, t in zip(pids, texts, strict=True)
            ]
        from core.models.reward import load_reward_model, score_texts

        rm = load_reward_model(
            ctx.store,
            cfg.reward_model,
            device=str(ctx.device),
            dtype="bf16" if cfg.bf16 else "fp32",
        )
        cfg.reward_model = f"checkpoint:{rm.checkpoint_id}"  # recorded in the run's config
        self.source = f"reward model {cfg.reward_model}"
        return lambda pids, texts: score_texts(
            rm, [ctx.store.prompt_messages(p) for p in pids], texts, cfg.batch_size
        )

    def steps_for(self, cfg: Any, world: int) -> int:
        rollouts = math.ceil(cfg.epochs * len(self.prompt_ids) / (self.per_rank * world))
        return max(1, rollouts) * self.steps_per_rollout

    def prepare(self, ctx: Context) -> None:
        if hasattr(ctx.model, "peft_config"):
            self.ref_module = None  # the adapter switched off is the reference
        else:  # full fine-tuning needs a frozen copy of the starting weights
            frozen = copy.deepcopy(ctx.model).eval()
            frozen.requires_grad_(False)
            self.ref_module = CompletionLogps(frozen)

    def plan(self, total_steps: int, ctx: Context) -> None:
        acc = ctx.accelerator
        self.n_rollouts = math.ceil(total_steps / self.steps_per_rollout)
        self.schedule = batch_schedule(
            [0] * len(self.prompt_ids),
            global_batch=self.per_rank * acc.num_processes,
            n_batches=self.n_rollouts,
            seed=ctx.config.seed,
        )

    def micro_batches(self, ctx: Context, step: int) -> list[list[int]]:
        rollout = step // self.steps_per_rollout
        if rollout != self.rollout_index:
            self._use_rollout(ctx, rollout)
        bs, n = ctx.config.batch_size, len(self.seqs)
        return [list(range(start, min(start + bs, n))) for start in range(0, n, bs)]

    def parts(self, ctx: Context, mb: list[int]) -> list[tuple[Any, float]]:
        completion = [len(s.completion) for s in self.seqs]
        return token_weighted_parts(ctx, mb, [len(s) for s in self.seqs], completion)

    def _use_rollout(self, ctx: Context, index: int) -> None:
        if index not in self.pending:  # sample this rollout and the next few in one pass
            last = min(index + ctx.config.rollouts_per_sampling, max(self.n_rollouts, index + 1))
            self.pending = self._rollouts(ctx, list(range(index, last)))
        self.seqs, self.old, self.advantages, self.rollout_stats = self.pending.pop(index)
        self.rollout_index = index

    @torch.no_grad()
    def _rollouts(self, ctx: Context, indices: list[int]) -> dict[int, Any]:
        """Sample, score and take the sampling log-probs of the rollouts ``indices`` in one pass:
        index -> (sequences, their log-probs, advantages, reward stats)."""
        cfg, acc = ctx.config, ctx.accelerator
        groups = []
        for index in indices:
            chosen = self.schedule[index % len(self.schedule)]
            groups.append(
                [self.prompt_ids[i] for i in chosen[acc.process_index :: acc.num_processes]]
            )
        pids = [p for g in groups for p in g]
        prompts = [self.tokens.prompt(p)[-(cfg.max_length - 1) :] for p in pids]
        torch.manual_seed(cfg.seed * 1_000_003 + indices[0] * acc.num_processes + acc.process_index)
        completions = self._sample(ctx, prompts, len(indices))  # P*K lists of token ids
        eos = ctx.tokenizer.eos_token_id
        texts = [
            detokenize(ctx.tokenizer, [t for t in c if t != eos], skip_special_tokens=True).strip()
            for c in completions
        ]
        scores = torch.tensor(
            self.score([p for p in pids for _ in range(self.k)], texts), dtype=torch.float32
        )
        seqs = [
            fit(prompts[i // self.k], c or [eos], cfg.max_length) for i, c in enumerate(completions)
        ]
        lengths = [len(s) for s in seqs]
        old: dict[int, torch.Tensor] = {}
        kl = torch.zeros(len(seqs))
        with acc.autocast():
            for part in ctx.parts(range(len(seqs)), lengths, 1, budget_factor=2):
                batch = ctx.collate([seqs[i] for i in part])
                flat, _ = policy_logps(CompletionLogps(ctx.model), batch, cfg.temperature)
                if self.ref_module is None:
                    with ctx.reference():
                        ref, _ = policy_logps(CompletionLogps(ctx.model), batch, cfg.temperature)
                else:
                    ref, _ = policy_logps(self.ref_module, batch, cfg.temperature)
                rows = batch.rows(flat).cpu()
                kl[part] = batch.sums(flat - ref).cpu()
                old.update({i: rows[k, : len(seqs[i].completion)] for k, i in enumerate(part)})
        out: dict[int, Any] = {}
        start = 0
        for index, group in zip(indices, groups, strict=True):
            end = start + len(group) * self.k
            score, drift = scores[start:end], kl[start:end]
            shaped = score - cfg.kl_coef * drift  # (P*K,)
            advantages = rloo_advantages(shaped.view(-1, self.k)).flatten()
            mine = [seqs[i].completion for i in range(start, end)]
            stats = {
                "reward": float(score.mean()),
                "reward_std": float(score.std()),
                "kl": float(drift.mean()),
                "completions/mean_length": sum(map(len, mine)) / len(mine),
                "completions/distinct_2": distinct_ngrams(mine, 2),
            }
            out[index] = (seqs[start:end], [old[i] for i in range(start, end)], advantages, stats)
            start = end
        return out

    def _sample(self, ctx: Context, prompts: list[list[int]], rollouts: int = 1) -> list[list[int]]:
        """K completions per prompt from the current policy at ``temperature``, each cut after
        its first end-of-sequence token; ``rollouts`` rollouts' worth of rows per forward."""
        from core.generation import PROCESSOR_DEFAULTS, lean_loop_can_drive, sample_continuations

        cfg, model = ctx.config, ctx.model
        eos, pad = ctx.tokenizer.eos_token_id, ctx.pad_id
        # a peft model's base model runs with its adapters in place
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        lean = lean_loop_can_drive(base)  # whatever the model's generation config says
        per_chunk = max(1, max(cfg.batch_size, self.k) * rollouts // self.k)  # prompts per forward
        gen = torch.Generator(device=ctx.device)
        gen.manual_seed(int(torch.randint(2**31, (1,))))  # from the rollout's seed
        out: list[list[int]] = []
        was_training = model.training
        model.eval()  # also turns gradient checkpointing off, so generation can use its cache
        try:
            for start in range(0, len(prompts), per_chunk):
                chunk = prompts[start : start + per_chunk]
                ids, mask = (t.to(ctx.device) for t in left_pad(chunk, pad))
                if lean:
                    rows = sample_continuations(
                        base,
                        ids,
                        mask,
                        k=self.k,
                        max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature,
                        top_k=0,
                        top_p=1.0,
                        stop_ids={eos},
                        pad_id=pad,
                        generator=gen,
                    )
                else:  # models the lean loop cannot drive; none of the config's processors
                    gen_ids = model.generate(
                        **PROCESSOR_DEFAULTS,
                        input_ids=ids.repeat_interleave(self.k, dim=0),
                        attention_mask=mask.repeat_interleave(self.k, dim=0),
                        do_sample=True,
                        temperature=cfg.temperature,
                        top_k=0,
                        top_p=1.0,
                        max_new_tokens=cfg.max_new_tokens,
                        pad_token_id=pad,
                        eos_token_id=eos,
                    )
                    rows = gen_ids[:, ids.shape[1] :].tolist()
                for row in rows:
                    cut = row.index(eos) + 1 if eos in row else len(row)
                    out.append(row[:cut])
        finally:
            model.train(was_training)
        return out

    def loss(self, ctx: Context, idx: list[int], tally: Tally, weight: float) -> tuple[Any, int]:
        cfg = ctx.config
        batch = ctx.collate([self.seqs[i] for i in idx])
        flat, entropy = policy_logps(ctx.module, batch, cfg.temperature, with_entropy=True)
        new, mask = batch.rows(flat), batch.layout_mask  # (B, L)
        old = left_aligned([self.old[i] for i in idx], new)
        adv = self.advantages[idx].to(new.device)
        loss, clip_ratio = policy_gradient_loss(new, old, adv, mask, cfg.clip_eps)
        tally.add("loss", loss, weight)
        tally.add("clip_ratio", clip_ratio, weight)
        tally.add("entropy", entropy)
        return loss, batch.n_tokens

    def end_step(self, tally: Tally) -> None:
        for name, value in self.rollout_stats.items():
            tally.add(name, value)
