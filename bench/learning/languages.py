"""Cheap language identification for the language-match preference: scripts and stopwords.

Good enough to tell which of English, Spanish, French, German and Chinese a prompt is in, and
what share of a response is in that language, at thousands of texts a second. Only words that
belong to one language's list count, so a word such as "de" or "on" never decides anything.
"""

from __future__ import annotations

import re
from collections import Counter

_STOPWORDS = {
    "en": """the and is are of to in that it you this with for was be have not can your they will
        from or by at an but what how which there their about would should also more when if we
        has do because these very into some my why does who just than them its were been""",
    "es": """el la los las del que y es un una por para con no se su sus lo como más pero muy
        también está están son hay puede cuando porque esto este esta al sobre ser tiene todo ya
        mi tu qué cómo cuál cuáles dónde entre hacer desde hasta donde otro otra nos le les eso
        escribe cuéntame explícame dame""",
    "fr": """le la les des du et est une que qui pour dans pas sur au aux avec ce cette il elle
        nous vous ne plus sont mais ou par comme être avoir très aussi un son sa ses leur tout fait
        peut pourquoi comment quels quelle quel où je tu mon ma mes ton ces été quand écris
        décris raconte donne explique""",
    "de": """der die das und ist ein eine nicht zu den dem mit sich auf für von in im es auch sie ich
        du wir ihr sind werden wird kann aber oder wie wenn noch nach bei aus einen einem einer
        sehr dass nur über hat haben mehr diese warum was welche wo mein dein schreib
        beschreibe erkläre erzähl gib""",
}
# A word in two lists (es/fr "la", en/fr "on") identifies neither language: drop it from all.
_COUNTS = Counter(w for words in _STOPWORDS.values() for w in set(words.split()))
STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(w for w in words.split() if _COUNTS[w] == 1)
    for lang, words in _STOPWORDS.items()
}
_ACCENTS = {"es": "ñ¿¡áíóú", "fr": "çèêàâîôûœë", "de": "äöüß"}
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)  # letters only: digits and underscores are no word
LANGUAGES = ("en", "es", "fr", "de", "zh")


def han_chars(text: str) -> int:
    """How many Chinese characters (CJK unified ideographs) ``text`` holds."""
    return len(_HAN.findall(text))


def latin_words(text: str) -> list[str]:
    """The lower-cased words of ``text`` written in Latin letters (Chinese characters left out)."""
    return [w for w in _WORD.findall(_HAN.sub(" ", text.lower())) if _LATIN.match(w)]


def stopword_hits(text: str) -> dict[str, int]:
    """Per Latin-script language, how many of the words of ``text`` are its own stopwords."""
    words = latin_words(text)
    return {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}


def detect(text: str) -> str:
    """The language of a prompt: Chinese if Chinese characters outnumber Latin letters, else
    the language with the most stopwords (accented letters break ties), English by default."""
    if han_chars(text) > len(_LATIN.findall(text)):
        return "zh"
    hits = stopword_hits(text)
    lower = text.lower()
    for lang, marks in _ACCENTS.items():
        hits[lang] += 0.5 * any(c in lower for c in marks)  # half a word: stopwords come first
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] > 0 else "en"


def share_in(text: str, lang: str) -> float:
    """The share of ``text`` that is in ``lang``: for Chinese, Chinese characters among
    Chinese characters and Latin letters; otherwise ``lang``'s stopwords among all identifying
    stopwords, where two Chinese characters count as one word of another language."""
    han = han_chars(text)
    if lang == "zh":
        latin = len(_LATIN.findall(_HAN.sub(" ", text)))
        return han / (han + latin) if han + latin else 0.0
    hits = stopword_hits(text)
    total = sum(hits.values()) + han / 2
    return hits[lang] / total if total else 0.0
