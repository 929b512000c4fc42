"""Which items an annotator rates next: fair coverage, blind order, never the same comparison twice.

An *item* is what one rating judges: one response (score, thumbs), two responses to the same
prompt (pairwise) or up to K of them (rank). ``select_items`` picks items so that prompts with the
fewest live ratings come first, each annotator sees a given set of sample ids at most once (skips
and flags count as seen; undone ratings do not), and the order of responses on screen is random.
Human rewrites (``model = "human:NAME"``) are never shown as items. No Qt here: the rating panel
runs this on a worker thread and its tests run it with no thread at all.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.store import ProjectStore

MODES = ("score", "pairwise", "rank", "thumbs")
MAX_CANDIDATES = 40  # least-rated samples of one prompt considered for pairs / rank sets
MAX_RANK_SETS = 200  # rank sets tried per prompt before giving up on it


@dataclass(frozen=True)
class Response:
    """One response as the annotator sees it: no model name, so the rating stays blind."""

    sample_id: int
    text: str


@dataclass(frozen=True)
class Item:
    """What one rating judges, with ``responses`` in the (random) order shown: A, B, ..."""

    mode: str
    prompt_id: int
    prompt: str
    messages: tuple[tuple[str, str], ...] | None  # (role, content) turns of a chat prompt
    responses: tuple[Response, ...]
    selection: str = "coverage"  # how it was chosen; the rating records it (ratings.selection)

    @property
    def sample_ids(self) -> list[int]:
        return [r.sample_id for r in self.responses]

    @property
    def key(self) -> frozenset[int]:
        """The comparison this item makes; an annotator sees each key at most once."""
        return frozenset(self.sample_ids)


def seen_keys(store: ProjectStore, annotator: str) -> set[frozenset[int]]:
    """Sample-id sets this annotator has a live rating of (any kind, skips and flags included)."""
    judged = store.sample_ids_judged_by(annotator.strip(), except_kinds=("rewrite",))
    return {frozenset(ids) for ids in judged}


def samples_by_prompt(store: ProjectStore) -> dict[int, list[int]]:
    """Model samples of training prompts: evaluation prompts are rated only in the arena."""
    groups: dict[int, list[int]] = {}
    for sid, pid in store.train_model_samples():
        groups.setdefault(pid, []).append(sid)
    return groups


def _best_choice(
    mode: str,
    samples: list[int],
    k: int,
    uses: Counter[int],
    seen: set[frozenset[int]],
    rng: random.Random,
) -> tuple[int, ...] | None:
    """The least-rated unseen comparison among one prompt's samples, or None."""
    jitter = {s: rng.random() for s in samples}
    ordered = sorted(samples, key=lambda s: (uses[s], jitter[s]))[:MAX_CANDIDATES]
    if mode in ("score", "thumbs"):
        return next(((s,) for s in ordered if frozenset((s,)) not in seen), None)
    if mode == "pairwise":
        pairs = [p for p in itertools.combinations(ordered, 2) if frozenset(p) not in seen]
        if not pairs:
            return None
        return min(pairs, key=lambda p: (uses[p[0]] + uses[p[1]], jitter[p[0]] + jitter[p[1]]))
    size = min(max(2, k), len(ordered))
    if size < 2:
        return None
    # combinations() walks sets in order of the sorted list, so the least-rated come first.
    for combo in itertools.islice(itertools.combinations(ordered, size), MAX_RANK_SETS):
        if frozenset(combo) not in seen:
            return combo
    return None


def choose_sample_sets(
    mode: str,
    samples_by_prompt: dict[int, list[int]],
    *,
    k: int,
    n: int,
    seen: set[frozenset[int]],
    prompt_counts: Counter[int] | None = None,
    sample_counts: Counter[int] | None = None,
    rng: random.Random | None = None,
) -> list[tuple[int, list[int]]]:
    """Pure selection: up to ``n`` (prompt id, sample ids in shown order), fewest-rated prompts first.

    Round-robin over prompts by their rating count (each pick counts as a rating), so a queue of
    eight items spans eight prompts when it can. Sample order is shuffled: the side a response
    appears on is random and is what the rating stores.
    """
    if mode not in MODES:
        raise ValueError(f"rating mode {mode!r} is not one of {', '.join(MODES)}")
    rng = rng or random.Random()
    prompt_counts = Counter(prompt_counts or {})
    uses = Counter(sample_counts or {})
    seen = set(seen)
    heap = [(prompt_counts[p], p) for p, s in samples_by_prompt.items() if s]
    heapq.heapify(heap)
    out: list[tuple[int, list[int]]] = []
    while heap and len(out) < n:
        count, pid = heapq.heappop(heap)
        choice = _best_choice(mode, samples_by_prompt[pid], k, uses, seen, rng)
        if choice is None:
            continue  # this prompt has nothing new for this annotator
        ids = list(choice)
        rng.shuffle(ids)
        out.append((pid, ids))
        seen.add(frozenset(ids))
        uses.update(ids)
        heapq.heappush(heap, (count + 1, pid))
    return out


def select_items(
    store: ProjectStore,
    *,
    mode: str,
    annotator: str,
    k: int,
    n: int,
    exclude: Iterable[frozenset[int]] = (),
    rng: random.Random | None = None,
) -> list[Item]:
    """The next ``n`` items for ``annotator`` in ``mode``; ``exclude`` holds keys already queued."""
    if n <= 0:
        return []
    seen = seen_keys(store, annotator) | set(exclude)
    chosen = choose_sample_sets(
        mode,
        samples_by_prompt(store),
        k=k,
        n=n,
        seen=seen,
        prompt_counts=Counter(store.live_ratings_per_prompt()),
        sample_counts=Counter(store.live_ratings_per_sample()),
        rng=rng,
    )
    return [build_item(store, mode, pid, ids) for pid, ids in chosen]


def build_item(
    store: ProjectStore,
    mode: str,
    prompt_id: int,
    sample_ids: list[int],
    selection: str = "coverage",
) -> Item:
    """Read the texts of one item (a few rows by primary key)."""
    texts = store.sample_texts(sample_ids)
    prompt = store.prompt(prompt_id)
    messages = None
    if prompt["messages"]:
        messages = tuple((m["role"], m["content"]) for m in json.loads(prompt["messages"]))
    return Item(
        mode=mode,
        prompt_id=prompt_id,
        prompt=prompt["text"],
        messages=messages,
        responses=tuple(Response(s, texts[s]) for s in sample_ids),
        selection=selection,
    )


def mode_for_rating(rating: dict[str, Any], current_mode: str) -> str | None:
    """The mode an item was shown in, from its rating (None for a rewrite: it has no item)."""
    kind, n = rating["kind"], len(rating["sample_ids"])
    if kind in MODES:
        return kind
    if kind == "rewrite":
        return None
    if n == 1:
        return current_mode if current_mode in ("score", "thumbs") else "thumbs"
    return "pairwise" if n == 2 else "rank"


def item_for_rating(store: ProjectStore, rating: dict[str, Any], current_mode: str) -> Item | None:
    """Rebuild the item a rating judged, in the order it was shown (for undo across sessions)."""
    mode = mode_for_rating(rating, current_mode)
    if mode is None:
        return None
    how = rating.get("selection") or "coverage"  # rated again, it keeps how it was chosen
    return build_item(store, mode, rating["prompt_id"], list(rating["sample_ids"]), how)


def last_live_rating(
    store: ProjectStore, annotator: str, exclude_ids: Iterable[int] = ()
) -> dict[str, Any] | None:
    """This annotator's newest live rating not in ``exclude_ids`` (undo beyond this session)."""
    found = store.last_live_rating_id(annotator.strip(), exclude_ids)
    return store.rating(found) if found is not None else None
