"""Synthetic metric traces for the diagnostics tests: one healthy run per algorithm, and runs
that show each failure. Seeded noise on every metric, sized like real runs' step-to-step noise
(batches of 8 pairs or 4 prompts x 4 samples); the healthy shapes follow the learning bench's
default runs (docs/benchmarks.md): KL to the base 3 nats after 100 RLOO steps, mean length
54 -> 58 tokens, distinct-2 0.72 -> 0.68."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Trace = list[tuple[int, dict[str, float]]]


def _ramp(step: int, n: int, start: float, end: float) -> float:
    """Linear from ``start`` at step 1 to ``end`` at step ``n``."""
    return start + (end - start) * (step - 1) / max(1, n - 1)


def _batch_accuracy(rng: random.Random, p: float, pairs: int = 8) -> float:
    return sum(rng.random() < p for _ in range(pairs)) / pairs


def dpo(
    n: int = 40,
    seed: int = 0,
    chosen_end: float = -0.02,
    rejected_end: float = -0.1,
    acc_end: float = 0.8,
    loss_end: float = 0.45,
    tokens: int = 100,
    beta: float = 0.1,
) -> Trace:
    """DPO: per-token log-probs drift by ``*_end`` nats (plus the noise of which pairs a batch
    holds); implicit rewards are β x tokens x that drift, so margins follow from the drifts."""
    rng, out = random.Random(seed), []
    for s in range(1, n + 1):
        dc, dr = _ramp(s, n, 0.0, chosen_end), _ramp(s, n, 0.0, rejected_end)
        rc = beta * tokens * dc + rng.gauss(0, 0.05 + 0.1 * abs(dc))
        rr = beta * tokens * dr + rng.gauss(0, 0.05 + 0.1 * abs(dr))
        out.append(
            (
                s,
                {
                    "loss": max(0.0, _ramp(s, n, 0.693, loss_end) + rng.gauss(0, 0.06)),
                    "rewards/chosen": rc,
                    "rewards/rejected": rr,
                    "rewards/margins": rc - rr,
                    "rewards/accuracies": _batch_accuracy(rng, _ramp(s, n, 0.5, acc_end)),
                    "logps/chosen_per_token": -1.4 + dc + rng.gauss(0, 0.15),
                    "logps/rejected_per_token": -1.3 + dr + rng.gauss(0, 0.15),
                    "grad_norm": 3.0 * math.exp(rng.gauss(0, 0.35)),
                    "learning_rate": 3e-4,
                },
            )
        )
    return out


def kto(
    n: int = 40,
    seed: int = 0,
    chosen_end: float = 0.4,
    rejected_end: float = -0.6,
    kl_end: float = 2.0,
) -> Trace:
    rng = random.Random(seed)
    return [
        (
            s,
            {
                "loss": _ramp(s, n, 0.5, 0.4) + rng.gauss(0, 0.03),
                "rewards/chosen": _ramp(s, n, 0.0, chosen_end) + rng.gauss(0, 0.15),
                "rewards/rejected": _ramp(s, n, 0.0, rejected_end) + rng.gauss(0, 0.15),
                "kl": max(0.0, _ramp(s, n, 0.0, kl_end) + rng.gauss(0, 0.3)),
                "grad_norm": 3.0 * math.exp(rng.gauss(0, 0.35)),
            },
        )
        for s in range(1, n + 1)
    ]


def rloo(
    n: int = 100,
    seed: int = 0,
    kl_end: float = 3.0,
    entropy_end: float = 1.9,
    length_start: float = 54.0,
    length_end: float = 58.0,
    distinct_end: float = 0.68,
    reward_end: float = 0.85,
    kl: Callable[[int], float] | None = None,
) -> Trace:
    """RLOO with ppo_epochs 2: every rollout's reward, KL and text stats serve two steps."""
    rng, out, rollout = random.Random(seed), [], {}
    for s in range(1, n + 1):
        if s % 2 == 1:  # a new rollout
            rollout = {
                "reward": _ramp(s, n, 0.74, reward_end) + rng.gauss(0, 0.04),
                "reward_std": 0.2 + rng.gauss(0, 0.02),
                "kl": kl(s) if kl else max(0.0, _ramp(s, n, 0.0, kl_end)) + rng.gauss(0, 0.3),
                "completions/mean_length": _ramp(s, n, length_start, length_end) + rng.gauss(0, 4),
                "completions/distinct_2": _ramp(s, n, 0.72, distinct_end) + rng.gauss(0, 0.03),
            }
        out.append(
            (
                s,
                {
                    **rollout,
                    "loss": rng.gauss(0, 0.05),
                    "entropy": _ramp(s, n, 2.2, entropy_end) + rng.gauss(0, 0.1),
                    "clip_ratio": abs(rng.gauss(0.02, 0.02)),
                    "grad_norm": 1.5 * math.exp(rng.gauss(0, 0.4)),
                },
            )
        )
    return out


def reinforce(n: int = 50, seed: int = 0) -> Trace:
    """REINFORCE on stored samples: its "kl" is the log-ratio on those samples, often < 0."""
    rng = random.Random(seed)
    return [
        (
            s,
            {
                "reward": 0.6 + rng.gauss(0, 0.08),
                "kl": _ramp(s, n, 0.0, -1.4) + rng.gauss(0, 0.3),
                "loss": rng.gauss(0, 0.05),
                "grad_norm": 2.0 * math.exp(rng.gauss(0, 0.35)),
            },
        )
        for s in range(1, n + 1)
    ]


def reward(
    n: int = 40, seed: int = 0, train_end: float = 0.78, eval_end: float = 0.74, every: int = 5
) -> Trace:
    """Reward model: held-out accuracy logged every ``every`` steps."""
    rng, out = random.Random(seed), []
    for s in range(1, n + 1):
        m = {
            "loss": _ramp(s, n, 0.70, 0.5) + rng.gauss(0, 0.06),
            "accuracy": _batch_accuracy(rng, _ramp(s, n, 0.5, train_end)),
            "margin": _ramp(s, n, 0.0, 1.0) + rng.gauss(0, 0.2),
            "grad_norm": 6.0 * math.exp(rng.gauss(0, 0.35)),
        }
        if s % every == 0:
            m["eval/accuracy"] = _ramp(s, n, 0.5, eval_end) + rng.gauss(0, 0.03)
        out.append((s, m))
    return out


HEALTHY: dict[str, Callable[[], Trace]] = {
    "dpo": dpo,
    "kto": kto,
    "rloo": rloo,
    "reinforce": reinforce,
    "reward": reward,
}


def with_spike(trace: Trace, name: str, step: int, factor: float) -> Trace:
    """The trace with one step's ``name`` multiplied by ``factor`` (a single noisy step)."""
    return [(s, {**m, name: m[name] * factor} if s == step and name in m else m) for s, m in trace]
