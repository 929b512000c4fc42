"""Spending scarce judgments where they teach most: which pair of responses an annotator sees next.

Three ways to pick a pairwise item (the project setting ``selection``, and ``rate --auto
--select``); the rating records which one picked it (``ratings.selection``):

- ``coverage`` (the default): spread over prompts, least-rated samples first (core.items).
- ``uncertain``: the pairs the newest model is least sure of. The newest reward model scores
  each response, or, when the project has none, the newest policy checkpoint's implicit DPO reward
  ``log π(y|x) − log π_ref(y|x)`` against the model it started from; a pair is uncertain when
  the two rewards are close (Bradley–Terry: P(a ≻ b) = σ(r_a − r_b) near ½). A share of the items
  (``random_fraction``, 20 % by default) is still drawn at random and recorded as ``random``: a
  control slice, so what uncertainty sampling gained can be measured on the same project.
- ``random``: every pair at random (the baseline of such measurements).

Only pairwise items are chosen this way: for one response (score, thumbs) a reward difference
has no meaning, and rank sets keep the coverage rule.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from core.errors import UserError
from core.items import Item, build_item, samples_by_prompt, seen_keys
from core.models import load_model
from core.models.batching import CompletionLogps, Tokens, collate, policy_logps
from core.models.reward import load_reward_model, score_texts
from core.store import ProjectStore

SELECTIONS = ("coverage", "uncertain", "random")
Scores = dict[int, float]  # sample id -> reward


@dataclass(frozen=True)
class Pair:
    prompt_id: int
    first: int
    second: int
    selection: str  # uncertain | random


class NoScorer(UserError):
    """Uncertain selection was asked for but the project has no model to be uncertain."""


def choose_pairs(
    candidates: Iterable[tuple[int, int, int]],
    n: int,
    selection: str,
    scores: Scores | None = None,
    random_fraction: float = 0.2,
    rng: random.Random | None = None,
    disjoint: bool = False,
) -> list[Pair]:
    """``n`` pairs out of ``candidates`` (prompt id, sample, sample) by ``selection``.

    ``uncertain`` takes the pairs with the smallest reward difference first, except that each pick
    is random with probability ``random_fraction`` (recorded as such); ``random`` takes all at
    random. With ``disjoint`` no sample is in two chosen pairs."""
    if selection not in ("uncertain", "random"):
        raise ValueError(f"selection {selection!r} is not uncertain or random")
    if selection == "uncertain" and scores is None:
        raise ValueError("uncertain selection needs reward scores")
    rng = rng or random.Random()
    pool = list(candidates)
    rng.shuffle(pool)  # ties in uncertainty are broken at random
    ranked = pool
    if selection == "uncertain":
        ranked = sorted(pool, key=lambda c: abs(scores[c[1]] - scores[c[2]]))
    used: set[int] = set()
    taken: set[tuple[int, int, int]] = set()

    def first_free(source: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
        return next(
            (c for c in source if c not in taken and not (disjoint and used & {c[1], c[2]})), None
        )

    out: list[Pair] = []
    while len(out) < n:
        how = selection
        if selection == "uncertain" and rng.random() < random_fraction:
            how = "random"
        pick = first_free(pool if how == "random" else ranked)
        if pick is None:
            break  # the pool has no free pair left, in either order
        taken.add(pick)
        used.update(pick[1:])
        out.append(Pair(pick[0], pick[1], pick[2], how))
    return out


# ---- what is uncertain: the newest model's rewards ----------------------------------------------
def newest_scorer(
    store: ProjectStore, device: str | None = None, dtype: str | None = None
) -> tuple[str, Callable[[list[int]], Scores]]:
    """(what scores, a function sample ids -> rewards): the newest reward checkpoint, else the
    newest policy checkpoint's implicit reward against its starting model."""
    reward = store.newest_checkpoint_id("reward")
    if reward is not None:
        rm = load_reward_model(store, reward, device=device, dtype=dtype)

        def by_reward_model(ids: list[int]) -> Scores:
            prompts, texts = _texts(store, ids)
            return dict(zip(ids, score_texts(rm, prompts, texts), strict=True))

        return f"reward model checkpoint:{reward}", by_reward_model
    policy = store.newest_checkpoint_id("policy")
    if policy is None:
        raise NoScorer(
            f"{store.path} has no reward model or trained policy to be uncertain with; train one "
            "first (train --algo reward, or dpo), or select by coverage or at random."
        )
    base = store.checkpoint(policy)["base_model"]
    tuned = load_model(f"checkpoint:{policy}", store=store, device=device, dtype=dtype)
    start = load_model(base, store=store, device=device, dtype=dtype)

    def by_implicit_reward(ids: list[int]) -> Scores:
        prompt_of = store.sample_prompt_ids(ids)
        mine, ref = _logps(store, tuned, ids, prompt_of), _logps(store, start, ids, prompt_of)
        return {i: mine[i] - ref[i] for i in ids}

    return f"policy checkpoint:{policy} against {base}", by_implicit_reward


def _texts(store: ProjectStore, ids: list[int]) -> tuple[list[list[dict[str, str]]], list[str]]:
    rows = store.sample_rows(ids)
    messages = store.prompts_as_messages({pid for pid, _ in rows.values()})
    return [messages[rows[i][0]] for i in ids], [rows[i][1] for i in ids]


@torch.inference_mode()
def _logps(
    store: ProjectStore, loaded, ids: list[int], prompt_of: dict[int, int], batch_size: int = 8
) -> Scores:
    """Summed log-prob of each sample's response under ``loaded``, given its prompt."""
    tokens = Tokens(store, loaded.tokenizer, 1024, eos=True)
    module = CompletionLogps(loaded.model)
    pad = loaded.tokenizer.pad_token_id or 0
    out: Scores = {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        batch = collate([tokens.seq(prompt_of[i], i) for i in chunk], pad, loaded.device)
        flat, _ = policy_logps(module, batch)
        out.update(zip(chunk, batch.sums(flat).tolist(), strict=True))
    return out


def check_selection(selection: str) -> str:
    if selection not in SELECTIONS:
        raise UserError(f"selection {selection!r} is not one of {', '.join(SELECTIONS)}.")
    return selection


class RewardCache:
    """The newest model's reward of each sample, computed once per sample and rebuilt when a newer
    checkpoint appears: the Rate tab's refills ask again and again. Use from one thread at a time
    (the refill Task)."""

    def __init__(self, device: str | None = None, dtype: str | None = None):
        self.device, self.dtype = device, dtype
        self.key: tuple[str, int] | None = None
        self.label = ""
        self._score: Callable[[list[int]], Scores] | None = None
        self._known: Scores = {}

    def rewards(self, store: ProjectStore, ids: list[int]) -> Scores:
        """Rewards of ``ids``; raises NoScorer when the project has no model to ask."""
        newest = store.newest_checkpoint_id() or 0
        key = (str(store.path), int(newest))
        if key != self.key:
            self.label, self._score = newest_scorer(store, self.device, self.dtype)
            self.key, self._known = key, {}
        missing = [i for i in ids if i not in self._known]
        if missing:
            self._known.update(self._score(missing))
        return {i: self._known[i] for i in ids}


def select_pairwise_items(
    store: ProjectStore,
    annotator: str,
    n: int,
    selection: str,
    *,
    exclude: Iterable[frozenset[int]] = (),
    rewards: Callable[[list[int]], Scores] | None = None,
    random_fraction: float = 0.2,
    rng: random.Random | None = None,
) -> list[Item]:
    """The next ``n`` pairwise items for ``annotator`` by ``selection`` (uncertain or random):
    pairs of a training prompt's model samples the annotator has not judged, nor has queued."""
    seen = seen_keys(store, annotator) | set(exclude)
    candidates = [
        (pid, a, b)
        for pid, ids in samples_by_prompt(store).items()
        for a, b in itertools.combinations(ids, 2)
        if frozenset((a, b)) not in seen
    ]
    scores = None
    if selection == "uncertain":
        scores = rewards(sorted({i for c in candidates for i in c[1:]})) if rewards else None
    rng = rng or random.Random()
    items = []
    for p in choose_pairs(candidates, n, selection, scores, random_fraction, rng):
        shown = [p.first, p.second]
        rng.shuffle(shown)
        items.append(build_item(store, "pairwise", p.prompt_id, shown, selection=p.selection))
    return items
