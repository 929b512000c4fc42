"""Prompt sets for the learning benchmark, each split once and for all into train, dev and test.

The prompts live in ``prompts/<source>.jsonl``, one ``{"prompt", "source", "lang"}`` object a
line, written by hand in five styles (see ``SOURCES``). Each source (and each language) is split
50/25/25 in an order fixed by a salted hash of the normalised prompt text: no random state, no
dependence on file order, the same split on every machine and run. Adding a prompt to a source
can move prompts at its cut points (a test pins the split), so new prompts go into a new source
file. Train prompts feed training, dev prompts are for tuning, test prompts are only for
reporting (docs/learning-protocol.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompts"
SOURCES = {
    "writing": "short everyday writing tasks: notes, emails, poems, reviews, each on its own topic",
    "explain": "factual and explanatory questions (how and why)",
    "advice": "advice and chat requests in the first and second person",
    "format": "instructions with a format constraint (a list, a word count, a number of sentences)",
    "multilingual": "requests in Chinese, Spanish, French and German",
}
SPLITS = ("train", "dev", "test")
_SHARES = (0.50, 0.25)  # train, dev; test takes the rest
# Changing the salt reshuffles every split: old dev prompts, looked at while tuning, would turn up
# in the test set.
_SALT = "rlhf-studio learning protocol v1"


@dataclass(frozen=True)
class Prompt:
    """One prompt with where it came from, its language (ISO 639-1) and its split."""

    text: str
    source: str
    lang: str
    split: str


def normalise(text: str) -> str:
    """Lower case, punctuation and symbols removed, whitespace collapsed: two prompts that are
    equal after this count as the same prompt (near-duplicates must not straddle splits)."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    return re.sub(r"\s+", " ", kept).strip()


def _rank_key(text: str) -> bytes:
    """Where a prompt falls in its stratum's fixed order: a salted SHA-256 of its normalised
    text, so the order depends on no file order and no random state."""
    return hashlib.sha256((_SALT + "\n" + normalise(text)).encode()).digest()


def _assign(texts: list[str]) -> dict[str, str]:
    """Split one stratum: sorted by ``_rank_key``, the first half train, the next quarter dev,
    the rest test (rounded), so every stratum is split in the same proportions."""
    order = sorted(texts, key=_rank_key)
    n_train, n_dev = round(_SHARES[0] * len(order)), round(_SHARES[1] * len(order))
    names = ["train"] * n_train + ["dev"] * n_dev
    return {t: names[i] if i < len(names) else "test" for i, t in enumerate(order)}


@functools.cache
def all_prompts() -> tuple[Prompt, ...]:
    """Every prompt of every source file, in file order, with its split.

    Each source, and within the multilingual source each language, is split separately, so
    the test set holds every language in the same share as training does.
    """
    rows = [row for source in SOURCES for row in _read(source)]
    strata: dict[tuple[str, str], list[str]] = {}
    for text, source, lang in rows:
        strata.setdefault((source, lang), []).append(text)
    split = {key: _assign(texts) for key, texts in strata.items()}
    return tuple(Prompt(t, s, lang, split[(s, lang)][t]) for t, s, lang in rows)


def _read(source: str) -> list[tuple[str, str, str]]:
    """(text, source, lang) for each line of ``prompts/<source>.jsonl``."""
    path = PROMPT_DIR / f"{source}.jsonl"
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, lang = row["prompt"].strip(), row.get("lang", "en")
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(
                f"{path}:{line_no}: expected a JSON object with a 'prompt' string ({e}); "
                "fix or remove the line."
            ) from e
        if row.get("source", source) != source:
            raise ValueError(
                f"{path}:{line_no}: source {row['source']!r} in the file of source {source!r}; "
                f"move the line to prompts/{row['source']}.jsonl."
            )
        out.append((text, source, lang))
    return out


def split_of(text: str) -> str | None:
    """The split of a prompt of the sets (compared after ``normalise``), None for any other text."""
    return _split_by_key().get(normalise(text))


@functools.cache
def _split_by_key() -> dict[str, str]:
    return {normalise(p.text): p.split for p in all_prompts()}


def records(split: str, sources: list[str] | tuple[str, ...] | None = None) -> list[Prompt]:
    """The prompts of one split (from ``sources``, default all), in file order."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    chosen = _check_sources(sources)
    return [p for p in all_prompts() if p.split == split and p.source in chosen]


def prompts(
    split: str,
    sources: list[str] | tuple[str, ...] | None = None,
    n: int | None = None,
    seed: int = 0,
) -> list[str]:
    """``n`` prompt texts of ``split`` (default: all of them), balanced across ``sources``.

    Each source's prompts are shuffled with ``seed`` (its languages taken in turn), then the
    sources are taken in turn, so any prefix of the list holds the sources, and the languages,
    in equal numbers until a small one runs out. The same arguments always give the same list.
    """
    chosen = _check_sources(sources)
    rng = random.Random(f"{seed}:{split}")
    pools = []
    for source in chosen:
        by_lang: dict[str, list[str]] = {}
        for p in records(split, [source]):
            by_lang.setdefault(p.lang, []).append(p.text)
        for texts in by_lang.values():
            rng.shuffle(texts)
        pools.append(_interleave(list(by_lang.values())))
    mixed = _interleave(pools)
    if n is None:
        return mixed
    if not 0 <= n <= len(mixed):
        raise ValueError(
            f"asked for {n} {split} prompts from {', '.join(chosen)}, but there are "
            f"{len(mixed)}; ask for fewer or add prompts to prompts/*.jsonl."
        )
    return mixed[:n]


def _interleave(pools: list[list[str]]) -> list[str]:
    """The first of each pool, then the second of each, and so on."""
    width = max(map(len, pools), default=0)
    return [pool[i] for i in range(width) for pool in pools if i < len(pool)]


def _check_sources(sources: list[str] | tuple[str, ...] | None) -> list[str]:
    chosen = list(SOURCES) if sources is None else list(sources)
    unknown = [s for s in chosen if s not in SOURCES]
    if unknown or not chosen:
        raise ValueError(f"prompt sources {unknown or chosen} unknown; use some of {list(SOURCES)}")
    return chosen
