"""Held-out evaluation of one policy: its answers to the evaluation prompts, scored by the rater,
its arena win rate against the base model, and the sanity measures.

Every policy answers the project's evaluation prompts through the app's arena (``arena --models
BASE checkpoint:N --judge RATER``), with the same sampling settings and seed, so the base model's
answers are made once and reused. The rater scores each answer; scores are compared per prompt
(paired), so the standard error of a gain is that of the per-prompt differences. The arena's judge
is the same rater, comparing the k-th answers of the two models on each prompt blind.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.common import mean_ci, t975


@dataclass
class PolicyEval:
    name: str
    spec: str
    sample_ids: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # per sample
    prompt_ids: list[int] = field(default_factory=list)  # per sample
    texts: list[str] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    kl: float | None = None

    def per_prompt(self) -> dict[int, float]:
        groups: dict[int, list[float]] = {}
        for pid, s in zip(self.prompt_ids, self.scores, strict=True):
            groups.setdefault(pid, []).append(s)
        return {pid: statistics.fmean(v) for pid, v in groups.items()}

    def summary(self) -> dict[str, Any]:
        ci = mean_ci(list(self.per_prompt().values()))
        return {
            "mean": ci["mean"],
            "ci_lo": ci["lo"],
            "ci_hi": ci["hi"],
            "se": ci["se"],
            "prompts": ci["n"],
            "responses": len(self.scores),
            "mean_tokens": statistics.fmean(self.n_tokens) if self.n_tokens else float("nan"),
            "distinct_1": distinct_n(self.texts, 1),
            "distinct_2": distinct_n(self.texts, 2),
            "kl_to_base": self.kl,
        }


def heldout_spec(store, models: list[str], per_prompt: int, max_new_tokens: int, seed: int):
    """The arena settings every policy answers with: as the ``arena`` command builds them."""
    from core.evaluation import ArenaSpec, canonical_spec

    s = store.settings()
    return ArenaSpec(
        models=[canonical_spec(store, m) for m in models],
        per_prompt=per_prompt,
        max_new_tokens=max_new_tokens,
        temperature=s["temperature"],
        top_p=s["top_p"],
        seed=seed,
    )


def ensure_answers(store, spec, loaded) -> None:
    """``loaded``'s answers to the evaluation prompts, made by the arena's own generator where
    missing (the base model's, before any arena runs: the reward model is checked on them)."""
    from core.evaluation.arena import generate_answers

    for _ in generate_answers(store, spec, loaded):
        pass


def answers_eval(store, spec, model: str, name: str, score) -> PolicyEval:
    """``model``'s arena answers to the evaluation prompts, each scored by ``score(prompt,
    response)``, in prompt order."""
    from core.evaluation.arena import answers

    ev = PolicyEval(name, model)
    for pid, ids in sorted(answers(store, spec, model).items()):
        prompt = store.prompt(pid)["text"]
        rows = {r["id"]: r for r in store.samples_for_prompt(pid)}
        for sid in ids[: spec.per_prompt]:
            ev.sample_ids.append(sid)
            ev.prompt_ids.append(pid)
            ev.prompts.append(prompt)
            ev.texts.append(rows[sid]["text"])
            ev.n_tokens.append(rows[sid]["n_tokens"] or 0)
            ev.scores.append(score(prompt, rows[sid]["text"]))
    return ev


def win_rate(board: dict[str, Any], policy: str, base: str) -> dict[str, Any]:
    """``policy``'s win rate against ``base`` (ties half) with its 95% interval, from the arena
    leaderboard (``arena --json``), whose pairs are listed from the higher-rated side."""
    for pair in board.get("pairs", []):
        if {pair["a"], pair["b"]} == {policy, base}:
            rate, (lo, hi) = pair["win_rate"], pair["ci95"]
            if pair["a"] != policy:
                rate, lo, hi = 1 - rate, 1 - hi, 1 - lo
            return {"win_rate": rate, "lo": lo, "hi": hi, "n": pair["n"]}
    return {"win_rate": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}


def paired_gain(before: PolicyEval, after: PolicyEval) -> dict[str, Any]:
    """Mean per-prompt gain, its standard error, 95% CI and gain / SE (paired by prompt).

    When every per-prompt difference is the same (se = 0: typically a policy whose answers equal
    the base model's) there is no evidence of a gain: z is 0 and ``no_spread`` says why."""
    a, b = before.per_prompt(), after.per_prompt()
    diffs = [b[p] - a[p] for p in a if p in b]
    n = len(diffs)
    if n < 2:
        nan = float("nan")
        return {"gain": nan, "se": nan, "lo": nan, "hi": nan, "z": nan, "no_spread": False}
    gain = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(n)
    half = t975(n - 1) * se
    return {
        "gain": gain,
        "se": se,
        "lo": gain - half,
        "hi": gain + half,
        "z": gain / se if se > 0 else 0.0,
        "no_spread": se == 0,
    }


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over all responses (word level): 1 = no repetition."""
    grams = [
        tuple(w[i : i + n])
        for t in texts
        for w in [t.lower().split()]
        for i in range(len(w) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else float("nan")


@torch.inference_mode()
def kl_to_base(
    policy, base, tokenizer, prompts: list[str], texts: list[str], batch: int = 4
) -> float:
    """Mean over responses of sum_t KL(policy(.|y<t) || base(.|y<t)) along the policy's own
    held-out responses: the exact per-position KL over the vocabulary, in nats per response."""
    from core.models import format_prompt

    device = next(policy.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = []
    for prompt, text in zip(prompts, texts, strict=True):
        p = tokenizer(
            format_prompt(tokenizer, [{"role": "user", "content": prompt}]),
            add_special_tokens=False,
        )["input_ids"]
        r = tokenizer(text, add_special_tokens=False)["input_ids"]
        seqs.append((p, r))
    total = []
    for i in range(0, len(seqs), batch):
        chunk = seqs[i : i + batch]
        width = max(len(p) + len(r) for p, r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, (p, r) in enumerate(chunk):
            ids[j, : len(p) + len(r)] = torch.tensor(p + r)
            mask[j, : len(p) + len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        lp = policy(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)  # (B, T, V)
        lq = base(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        kl_pos = (lp.exp() * (lp - lq)).sum(-1)  # (B, T): KL of the next-token distributions
        for j, (p, r) in enumerate(chunk):
            # positions len(p)-1 .. len(p)+len(r)-2 predict the response tokens
            total.append(float(kl_pos[j, len(p) - 1 : len(p) + len(r) - 1].sum()))
    return statistics.fmean(total) if total else float("nan")


def reward_accuracy(rm, ev: PolicyEval, tie_margin: float) -> dict[str, float]:
    """Held-out accuracy of a reward model: consecutive responses of a prompt form a pair, the
    rater decides which is better (ties left out), the model must rank them the same way."""
    from core.models.reward import score_texts

    pairs = []
    by_prompt: dict[int, list[int]] = {}
    for i, pid in enumerate(ev.prompt_ids):
        by_prompt.setdefault(pid, []).append(i)
    for idx in by_prompt.values():
        for a, b in zip(idx[::2], idx[1::2], strict=False):
            if abs(ev.scores[a] - ev.scores[b]) >= tie_margin:
                pairs.append((a, b) if ev.scores[a] > ev.scores[b] else (b, a))
    if not pairs:
        return {"pairs": 0, "accuracy": float("nan"), "lo": float("nan"), "hi": float("nan")}
    flat = [i for pair in pairs for i in pair]
    rewards = score_texts(rm, [ev.prompts[i] for i in flat], [ev.texts[i] for i in flat])
    right = sum(rewards[2 * k] > rewards[2 * k + 1] for k in range(len(pairs)))
    acc = right / len(pairs)
    lo, hi = wilson(right, len(pairs))
    return {"pairs": len(pairs), "accuracy": acc, "lo": lo, "hi": hi}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half
