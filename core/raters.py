"""Scripted raters: plain functions ``f(prompt, response) -> float`` in [0, 1] that rate samples.

A rater is named by a spec, ``"module:function"`` or ``"/path/to/file.py:function"`` (or the bare
name of a built-in below), so a researcher can bootstrap preference data, or test the training
loop end to end, without a person at the keyboard. ``rate_auto`` writes the same rating rows a
person would, one commit each, with ``"rater"`` naming the spec in the value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import itertools
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from core.errors import UserError
from core.selection import check_selection, choose_pairs
from core.store import ProjectStore

RaterFunc = Callable[[str, str], float]
MODES = ("score", "thumbs", "pairwise", "rank")
TIE_MARGIN = 0.05
_WORD = re.compile(r"\w+", re.UNICODE)


class RaterError(UserError, ValueError):
    """A scripted-rating problem stated for a person: a spec that does not load, a bad score,
    or a bad argument to ``rate_auto``."""


# ---- built-in raters ------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def length(prompt: str, response: str) -> float:
    """Rewards longer responses: words / 100, saturating at 1 (a crude proxy for effort)."""
    return min(1.0, len(_words(response)) / 100)


def concise(prompt: str, response: str) -> float:
    """Rewards short answers: 1 up to 30 words, then 30 / words; an empty response scores 0."""
    n = len(_words(response))
    return 0.0 if n == 0 else min(1.0, 30 / n)


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(prompt: str, response: str) -> float:
    """Rewards positive tone: VADER's compound score c in [-1, 1] mapped to (c + 1) / 2."""
    c = _vader().polarity_scores(response)["compound"]
    return min(1.0, max(0.0, (c + 1) / 2))


def no_repetition(prompt: str, response: str) -> float:
    """Rewards text that does not loop: the fraction of word trigrams that are distinct.

    Small models often repeat a phrase until the token limit; this catches it. An empty response
    scores 0; one of fewer than three words cannot repeat a trigram and scores 1.
    """
    words = _words(response)
    if not words:
        return 0.0
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(trigrams)) / len(trigrams) if trigrams else 1.0


BUILTIN_RATERS: dict[str, RaterFunc] = {
    "length": length,
    "concise": concise,
    "sentiment": sentiment,
    "no_repetition": no_repetition,
}


# ---- loading ----------------------------------------------------------------------------------
class ScriptedRater:
    """A rater function plus its spec; calling it checks the score is a finite number in [0, 1]."""

    def __init__(self, func: Callable[..., Any], spec: str):
        self.func = func
        self.spec = spec

    def __call__(self, prompt: str, response: str) -> float:
        try:
            value = self.func(prompt, response)
        except Exception as e:
            raise RaterError(f"rater {self.spec} raised {type(e).__name__}: {e}") from e
        if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
            raise RaterError(
                f"rater {self.spec} returned {value!r}; a rater must return a number in [0, 1]."
            )
        score = float(value)
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise RaterError(
                f"rater {self.spec} returned {value!r}; a rater must return a finite number "
                "in [0, 1]. Clamp or rescale its output."
            )
        return score

    def __repr__(self) -> str:
        return f"ScriptedRater({self.spec!r})"


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _load_file(target: str, spec: str) -> Any:
    path = Path(target).expanduser()
    if not path.is_file():
        raise RaterError(f"rater {spec}: file {path} not found. Check the path before the colon.")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"rlhf_rater_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise RaterError(f"rater {spec}: {path} cannot be loaded as a Python file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise RaterError(f"rater {spec}: running {path} failed ({type(e).__name__}: {e}).") from e
    return module


def _load_module(target: str, spec: str) -> Any:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target != e.name and not target.startswith(e.name + "."):
            raise RaterError(f"rater {spec}: importing {target} failed ({e}).") from e
        raise RaterError(
            f"rater {spec}: module {target!r} not found. Install it, run from its folder, "
            "or give a file path instead (/path/to/file.py:function)."
        ) from e
    except Exception as e:
        raise RaterError(
            f"rater {spec}: importing {target} failed ({type(e).__name__}: {e})."
        ) from e


def load_rater(spec: str) -> ScriptedRater:
    """Resolve ``module:function``, ``path/to/file.py:function`` or a built-in name to a rater.

    The result validates every score it returns, so a buggy rater fails loudly on the first bad
    value instead of writing it into the project file.
    """
    spec = spec.strip()
    if spec in BUILTIN_RATERS:
        return ScriptedRater(BUILTIN_RATERS[spec], spec)
    if ":" not in spec:
        raise RaterError(
            f"rater {spec!r} is not a rater spec. Use module:function, /path/to/file.py:function, "
            f"or a built-in: {', '.join(BUILTIN_RATERS)}."
        )
    target, attr = spec.rsplit(":", 1)  # rsplit: a Windows path keeps its drive colon
    if not target or not attr:
        raise RaterError(f"rater {spec!r}: give both parts, module:function.")
    module = _load_file(target, spec) if _is_file(target) else _load_module(target, spec)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RaterError(f"rater {spec}: {target} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RaterError(
            f"rater {spec}: {attr} is a {type(obj).__name__}, not a function f(prompt, response)."
        )
    return ScriptedRater(obj, spec)


# ---- rating samples -------------------------------------------------------------------------
@dataclass(frozen=True)
class RateProgress:
    """``done`` of ``total`` ratings written; ``rating_id`` is the last one (None at the start)."""

    done: int
    total: int
    rating_id: int | None = None

    @property
    def written(self) -> int:
        """Ratings written so far (each unit of work writes exactly one)."""
        return self.done


class _Sample(NamedTuple):
    id: int
    prompt_id: int
    prompt: str  # the prompt text (for a chat, its last user turn)
    text: str


def _unrated(store: ProjectStore, annotator: str) -> dict[int, list[_Sample]]:
    """Per training prompt id, in id order, the samples this annotator has no live rating of
    (evaluation prompts are judged only in the arena)."""
    rated = {i for ids in store.sample_ids_judged_by(annotator) for i in ids}
    groups: dict[int, list[_Sample]] = {}
    for row in store.train_samples():
        sample = _Sample(*row)
        if sample.id not in rated:
            groups.setdefault(sample.prompt_id, []).append(sample)
    return groups


def _units(mode: str, groups: dict[int, list[_Sample]], rng: random.Random) -> list[list[_Sample]]:
    """The items one rating each judges, in the order shown: samples, pairs or whole groups."""
    if mode in ("score", "thumbs"):
        return [[s] for g in groups.values() for s in g]
    if mode == "pairwise":
        pairs = [g[i : i + 2] for g in groups.values() for i in range(0, len(g) - 1, 2)]
        for p in pairs:
            rng.shuffle(p)
        return pairs
    units = [list(g) for g in groups.values() if len(g) >= 2]
    for u in units:
        rng.shuffle(u)
    return units


def _value(mode: str, ids: list[int], scores: list[float], spec: str) -> dict[str, Any]:
    if mode == "score":
        return {"scores": {"overall": scores[0]}, "rater": spec}
    if mode == "thumbs":
        return {"up": scores[0] >= 0.5, "scores": scores, "rater": spec}
    if mode == "pairwise":
        sa, sb = scores
        choice = "tie" if abs(sa - sb) < TIE_MARGIN else ("a" if sa > sb else "b")
        winner = {"a": ids[0], "b": ids[1]}.get(choice)
        return {"choice": choice, "winner": winner, "scores": scores, "rater": spec}
    order = [i for i, _ in sorted(zip(ids, scores, strict=True), key=lambda t: -t[1])]
    return {"order": order, "scores": scores, "rater": spec}


def rate_auto(
    store: ProjectStore,
    rater: RaterFunc | str,
    *,
    mode: str,
    annotator: str,
    limit: int | None = None,
    rater_spec: str = "",
    cancel: threading.Event | None = None,
    seed: int = 0,
    select: str = "coverage",
    scores: Callable[[list[int]], dict[int, float]] | None = None,
    random_fraction: float = 0.2,
) -> Iterator[RateProgress]:
    """Rate every sample ``annotator`` has not rated yet; yields progress after each rating.

    ``mode`` is score, thumbs, pairwise (consecutive unrated samples of a prompt, sides shuffled
    with ``seed``) or rank (all unrated samples of a prompt, at least two). ``limit`` caps the
    ratings written; ``cancel`` is checked between ratings. Each rating is its own commit, so a
    stopped run keeps what it wrote and a second run continues where it stopped.

    ``select`` (pairwise only; core.selection) picks which pairs of a prompt's unrated samples are
    judged first: ``uncertain`` by the rewards ``scores`` gives (with a ``random_fraction``
    control slice) or ``random``; each rating records how its pair was picked.
    """
    check_selection(select)
    if select != "coverage" and mode != "pairwise":
        raise RaterError(f"--select {select} picks pairs: use it with --mode pairwise.")
    if select == "uncertain" and scores is None:
        raise RaterError("uncertain selection needs a model's rewards to be uncertain about.")
    if mode not in MODES:
        raise RaterError(f"rating mode {mode!r} is not one of {', '.join(MODES)}")
    if not annotator.strip():
        raise RaterError("the annotator name is empty; give the scripted rater a name")
    if limit is not None and limit < 0:
        raise RaterError(f"limit must be 0 or more, not {limit}")
    if isinstance(rater, str):
        rater_spec = rater_spec or rater
        rater = load_rater(rater)
    elif not isinstance(rater, ScriptedRater):
        rater = ScriptedRater(rater, rater_spec or getattr(rater, "__name__", repr(rater)))
    spec = rater_spec or rater.spec
    how = (select, scores, random_fraction)
    return _rate(store, rater, mode, annotator.strip(), limit, spec, cancel, seed, how)


def _rate(
    store: ProjectStore,
    rater: ScriptedRater,
    mode: str,
    annotator: str,
    limit: int | None,
    spec: str,
    cancel: threading.Event | None,
    seed: int,
    how: tuple[str, Any, float],
) -> Iterator[RateProgress]:
    rng = random.Random(seed)
    groups = _unrated(store, annotator)
    if how[0] == "coverage":
        units = [(u, "coverage") for u in _units(mode, groups, rng)]
    else:
        units = _selected_pairs(groups, limit, how, rng)
    if limit is not None:
        units = units[:limit]
    yield RateProgress(0, len(units))
    for done, (unit, selection) in enumerate(units, start=1):
        if cancel is not None and cancel.is_set():
            return
        ids = [s.id for s in unit]
        start = time.perf_counter()
        scores = [rater(s.prompt, s.text) for s in unit]
        seconds = time.perf_counter() - start
        rating_id = store.add_rating(
            annotator=annotator,
            kind=mode,
            sample_ids=ids,
            prompt_id=unit[0].prompt_id,
            value=_value(mode, ids, scores, spec),
            seconds=seconds,
            selection=selection,
        )
        yield RateProgress(done, len(units), rating_id)


def _selected_pairs(
    groups: dict[int, list[_Sample]],
    limit: int | None,
    how: tuple[str, Any, float],
    rng: random.Random,
) -> list[tuple[list[_Sample], str]]:
    """Pairs of a prompt's unrated samples picked by uncertainty or at random, each sample in one
    pair at most (as the coverage rule does), sides shuffled."""
    select, scores, random_fraction = how
    by_id = {s.id: s for g in groups.values() for s in g}
    candidates = [
        (pid, a.id, b.id) for pid, g in groups.items() for a, b in itertools.combinations(g, 2)
    ]
    rewards = (
        scores(sorted({i for c in candidates for i in c[1:]})) if select == "uncertain" else None
    )
    n = len(by_id) // 2 if limit is None else limit
    pairs = choose_pairs(candidates, n, select, rewards, random_fraction, rng, disjoint=True)
    out = []
    for p in pairs:
        unit = [by_id[p.first], by_id[p.second]]
        rng.shuffle(unit)
        out.append((unit, p.selection))
    return out
