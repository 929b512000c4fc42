"""The raters' promises: dev and test raters that never share a rater or a kind, and raters
that are deterministic, bounded, fast and point the right way."""

from __future__ import annotations

import itertools
import math
import time

import pytest

from bench.learning import preferences
from bench.learning.prompt_sets import SOURCES


def test_dev_and_test_raters_are_disjoint_in_name_function_and_kind():
    dev, test = preferences.raters("dev"), preferences.raters("test")
    assert len(dev) >= 3 and len(test) >= 3
    assert not set(dev) & set(test)
    assert not set(dev.values()) & set(test.values())
    kinds = {
        role: {s.kind for s in preferences.RATERS.values() if s.role == role}
        for role in ("dev", "test")
    }
    assert not kinds["dev"] & kinds["test"]
    assert {**dev, **test}.keys() == preferences.RATERS.keys()
    with pytest.raises(ValueError):
        preferences.raters("train")


def test_every_rater_is_documented_and_names_real_sources():
    for spec in preferences.RATERS.values():
        assert spec.rewards.startswith("Rewards "), spec.name
        assert spec.sources is None or set(spec.sources) <= set(SOURCES)


ODD_TEXTS = [
    "",
    "   ",
    "\n\n",
    "!!!",
    "?",
    "1.",
    "Yes.",
    "the the the",
    "我",
    "¿Qué?",
    "Ça va, Straße.",
    "- a\n- b\n- c",
    "I'm sure it's fine! 🙂",
    "word " * 500,
    "1 2 3 4 5 6 7 8 9 10",
    "You? You. You!",
    "天气很好。The weather is nice. El tiempo es bueno.",
]
PROMPTS = ["How do tides work?", "为什么猫喜欢晒太阳？", "¿Por qué el cielo es azul?", ""]


@pytest.mark.parametrize("name", list(preferences.RATERS))
def test_rater_returns_a_deterministic_float_in_0_1(name):
    func = preferences.RATERS[name].func
    for prompt, text in itertools.product(PROMPTS, ODD_TEXTS):
        score = func(prompt, text)
        assert isinstance(score, float) and math.isfinite(score) and 0.0 <= score <= 1.0
        assert func(prompt, text) == score
        if not text.strip():
            assert score == 0.0, "an empty response must score 0"


GOOD_BAD = {
    "sentiment": (
        "Describe a rainy day.",
        "What a wonderful, cosy day: I love the rain!",
        "A miserable, awful day; the rain ruined everything and I hate it.",
    ),
    "brevity": (
        "How do tides work?",
        "The moon's pull raises the sea.",
        "Tides are the regular rise and fall of the sea. " * 6,
    ),
    "structure": (
        "How do I boil an egg?",
        "1. Boil water.\n2. Add the egg for 9 minutes.\n3. Cool it.",
        "You put it in boiling water until it is done and then you let it cool down.",
    ),
    "avoid_the": (
        "How do tides work?",
        "Oceans bulge toward our moon, so coasts see water rise.",
        "The moon pulls the ocean toward the side of the Earth that faces the moon.",
    ),
    "formality": (
        "Explain photosynthesis.",
        "Photosynthesis converts atmospheric carbon dioxide into carbohydrates using light.",
        "Hey, it's super cool stuff! Plants just eat light, that's it!",
    ),
    "second_person": (
        "I want to start running.",
        "You could start small. Try ten minutes a day.",
        "Running is a popular sport. Many people run in parks.",
    ),
    "on_topic": (
        "How do tides work?",
        "Tides rise and fall because the moon pulls on the oceans.",
        "Bananas are yellow and full of potassium.",
    ),
}
LANGUAGE_GOOD_BAD = [
    (
        "¿Por qué el cielo es azul?",
        "El cielo es azul porque la luz del sol se dispersa en el aire.",
        "The sky is blue because sunlight scatters in the air.",
    ),
    (
        "为什么猫喜欢晒太阳？",
        "因为阳光让猫觉得温暖和舒服。",
        "Because the sun makes cats feel warm.",
    ),
    (
        "Comment fonctionne un moulin à vent ?",
        "Le vent fait tourner les ailes, qui entraînent une meule.",
        "The wind turns the sails, which drive a millstone.",
    ),
    (
        "Warum haben Zebras Streifen?",
        "Die Streifen verwirren Fliegen und helfen bei der Kühlung.",
        "The stripes confuse flies and help with cooling.",
    ),
]


@pytest.mark.parametrize("name", list(GOOD_BAD))
def test_rater_prefers_the_good_example(name):
    prompt, good, bad = GOOD_BAD[name]
    func = preferences.RATERS[name].func
    assert func(prompt, good) > func(prompt, bad) + 0.1


@pytest.mark.parametrize("prompt, good, bad", LANGUAGE_GOOD_BAD)
def test_language_match_prefers_the_prompts_language(prompt, good, bad):
    assert (
        preferences.language_match(prompt, good)
        > 0.9
        > 0.1
        > preferences.language_match(prompt, bad)
    )


def test_every_rater_has_good_and_bad_examples():
    assert set(GOOD_BAD) | {"language_match"} == set(preferences.RATERS)


def test_brevity_is_smooth_not_a_step():
    scores = [preferences.brevity("", "word " * n) for n in range(1, 80, 3)]
    steps = [a - b for a, b in itertools.pairwise(scores)]
    assert all(0 < s < 0.2 for s in steps), steps


@pytest.mark.parametrize("name", [n for n in preferences.RATERS if n != "sentiment"])
def test_rater_scores_a_thousand_responses_a_second(name):
    func = preferences.RATERS[name].func
    text = "Tides rise and fall twice a day because the moon's gravity pulls on the oceans. " * 4
    start = time.perf_counter()
    for _ in range(500):
        func("How do tides work?", text)
    assert time.perf_counter() - start < 0.5  # a shared machine: a tenth of the measured speed
