"""A family of scripted preferences, each a rater ``f(prompt, response) -> float`` in [0, 1].

One rater says little about whether training generalises: it may reward something the defaults
happen to suit. These raters reward different kinds of things (tone, length, layout, an arbitrary
word constraint, register, language, addressing the user, relevance), are deterministic, and,
but for VADER, score thousands of responses a second. Each is either a *dev* rater, which tuning may look at, or a *test* rater,
which only reports (docs/learning-protocol.md). Every rater gives an empty response 0, so saying nothing never
wins a comparison.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.learning import languages

RaterFunc = Callable[[str, str], float]
ENGLISH = ("writing", "explain", "advice", "format")  # the sources whose prompts are in English

_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)]|[a-z][.)])\s+\S", re.MULTILINE)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_CONTRACTION = re.compile(
    r"\b(?:\w+n't|(?:i|you|we|they|he|she|it|that|there|here|what|who|let)"
    r"'(?:m|re|ve|ll|d|s))\b|\b(?:gonna|wanna|gotta|kinda|sorta|ain't|y'all)\b",
    re.IGNORECASE,
)
_CASUAL = frozenset(
    """hey hi hello wow awesome cool super totally stuff okay ok yeah yep nope lol guys folks
    amazing fantastic pretty really basically literally huge bunch tons lots kids cheers oh
    thanks buddy dude""".split()
)


# ---- helpers -----------------------------------------------------------------------------------
def _plain(text: str) -> str:
    """Typographic apostrophes made plain, so "don’t" and "don't" count alike."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _length_in_words(text: str) -> float:
    """Words in Latin script plus Chinese characters at two to a word: a length in any of the
    prompt languages, in the same unit."""
    return len(languages.latin_words(text)) + languages.han_chars(text) / 2


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


# ---- the raters --------------------------------------------------------------------------------
def sentiment(prompt: str, response: str) -> float:
    """Rewards a positive tone: VADER's compound score c in [-1, 1], mapped to (c + 1) / 2."""
    if not response.strip():
        return 0.0
    c = _vader().polarity_scores(response)["compound"]
    return min(1.0, max(0.0, (c + 1) / 2))


BREVITY_HALF_WORDS = 20.0  # the length, in words, that scores one half


def brevity(prompt: str, response: str) -> float:
    """Rewards short answers smoothly: 0.5 ** (words / 20), so every word less helps a little;
    an empty response scores 0."""
    n = _length_in_words(response)
    return 0.5 ** (n / BREVITY_HALF_WORDS) if n > 0 else 0.0


def structure(prompt: str, response: str) -> float:
    """Rewards laid-out, concrete answers: 1 - 0.5 ** (list items + numbers / 2 + line breaks
    / 4), a list item being a line opening with a bullet or "1." and a number a run of digits."""
    items = len(_LIST_ITEM.findall(response))
    numbers = len(_NUMBER.findall(_LIST_ITEM.sub("", response)))  # an item's "1." is no number
    breaks = max(0, sum(1 for line in response.splitlines() if line.strip()) - 1)
    return 1.0 - 0.5 ** (items + numbers / 2 + breaks / 4)


def avoid_the(prompt: str, response: str) -> float:
    """Rewards not using the word "the": exp(-10 * its share of the words), an arbitrary
    constraint that no instruction asks for and that competes with fluent English."""
    words = languages.latin_words(response)
    if not words:
        return 0.0
    return math.exp(-10.0 * sum(w == "the" for w in words) / len(words))


FORMAL_LONG_SHARE = 0.4  # the share of long words that scores full marks


def formality(prompt: str, response: str) -> float:
    """Rewards a formal register: the share of long words (seven letters or more, full marks
    at 40%), divided by 1 + 10 * informal marks per word, a mark being a contraction, an
    exclamation mark, an emoji or a casual word ("awesome", "stuff", "hey")."""
    text = _plain(response)
    words = languages.latin_words(text)
    if not words:
        return 0.0
    marks = (
        len(_CONTRACTION.findall(text))
        + text.count("!")
        + len(_EMOJI.findall(text))
        + sum(w in _CASUAL for w in words)
    )
    long_share = sum(len(w) >= 7 for w in words) / len(words)
    return min(1.0, long_share / FORMAL_LONG_SHARE) / (1.0 + 10.0 * marks / len(words))


def language_match(prompt: str, response: str) -> float:
    """Rewards answering in the prompt's language: the share of the response in the language
    ``languages.detect`` finds in the prompt (script for Chinese, stopwords otherwise)."""
    return languages.share_in(response, languages.detect(prompt))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_YOU = re.compile(r"\b(?:you|your|yours|yourself|yourselves)\b", re.IGNORECASE)


def second_person(prompt: str, response: str) -> float:
    """Rewards talking to the user: the share of sentences that address them as "you"."""
    sentences = [s for s in _SENTENCE_END.split(response) if s.strip()]
    if not sentences:
        return 0.0
    return sum(bool(_YOU.search(s)) for s in sentences) / len(sentences)


_STOP = languages.STOPWORDS["en"] | {"write", "short", "give", "tell", "please", "describe"}


def on_topic(prompt: str, response: str) -> float:
    """Rewards staying on the prompt's subject: the share of the prompt's content words
    (four letters or more, not stopwords) that the response uses, matched on their first five
    letters so that "tides" matches "tide"."""
    keys = {w[:5] for w in languages.latin_words(prompt) if len(w) >= 4 and w not in _STOP}
    said = {w[:5] for w in languages.latin_words(response)}
    if not keys or not said:
        return 0.0
    return len(keys & said) / len(keys)


# ---- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RaterSpec:
    """A rater with its role, the kind of thing it rewards and the prompt sources it is for
    (None: all); ``sources`` leaves out prompts on which the rater is blind or constant."""

    name: str
    func: RaterFunc
    role: str  # "dev" or "test"
    kind: str
    sources: tuple[str, ...] | None = None

    @property
    def rewards(self) -> str:
        """What the rater rewards, in one sentence (the first of its docstring)."""
        doc = (self.func.__doc__ or "").strip().replace("\n", " ")
        return re.sub(r"\s+", " ", doc.split(": ")[0] if ": " in doc else doc)


RATERS: dict[str, RaterSpec] = {
    spec.name: spec
    for spec in (
        RaterSpec("sentiment", sentiment, "dev", "tone (lexicon model)", ENGLISH),
        RaterSpec("brevity", brevity, "dev", "length"),
        RaterSpec("structure", structure, "dev", "layout (lists, numbers, lines)"),
        RaterSpec("avoid_the", avoid_the, "dev", "arbitrary word constraint", ENGLISH),
        RaterSpec("formality", formality, "test", "register (word choice)", ENGLISH),
        RaterSpec("language_match", language_match, "test", "language", ("multilingual",)),
        RaterSpec("second_person", second_person, "test", "addressing the user", ENGLISH),
        RaterSpec("on_topic", on_topic, "test", "relevance to the prompt", ENGLISH),
    )
}


def raters(role: str) -> dict[str, RaterFunc]:
    """The rater functions of one role, "dev" (tuning may use them) or "test" (report only)."""
    if role not in ("dev", "test"):
        raise ValueError(f"rater role {role!r} is not 'dev' or 'test'")
    return {name: spec.func for name, spec in RATERS.items() if spec.role == role}
