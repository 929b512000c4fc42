"""The prompt sets' promises: three splits that never share a prompt or a near-duplicate, each
source and language split in the same shares, the split pinned, and balanced, repeatable lists."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import pytest

from bench.learning import languages, prompt_sets
from bench.learning.prompt_sets import SOURCES, SPLITS, all_prompts, normalise

# The split, pinned: a changed prompt file or split rule changes this. Update it only before any
# test figure has been reported, and say so in docs/learning-protocol.md; afterwards add a new
# source instead.
EXPECTED_SPLIT_DIGEST = "e17b6e02fa44c087eaf6ec493c528bb0e30f456d73258ff7a2e7644d2e8f7fd4"
NEAR_DUPLICATE_JACCARD = 0.7  # word sets this alike across splits would be one prompt twice


def split_digest() -> str:
    rows = sorted(f"{p.split}\t{p.source}\t{normalise(p.text)}" for p in all_prompts())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def test_every_source_has_at_least_60_distinct_prompts():
    counts = Counter(p.source for p in all_prompts())
    assert set(counts) == set(SOURCES)
    assert min(counts.values()) >= 60, counts
    assert len({normalise(p.text) for p in all_prompts()}) == len(all_prompts())


def test_splits_share_no_prompt_even_after_normalising():
    seen: dict[str, str] = {}
    for p in all_prompts():
        key = normalise(p.text)
        assert seen.setdefault(key, p.split) == p.split, f"{p.text!r} is in two splits"


def test_no_near_duplicate_straddles_two_splits():
    words = [(p, set(normalise(p.text).split())) for p in all_prompts()]
    for (a, wa), (b, wb) in itertools.combinations(words, 2):
        if a.split != b.split:
            jaccard = len(wa & wb) / len(wa | wb)
            assert jaccard < NEAR_DUPLICATE_JACCARD, (a.text, a.split, b.text, b.split)


def test_each_source_and_language_is_split_half_quarter_quarter():
    strata = Counter((p.source, p.lang) for p in all_prompts())
    for (source, lang), n in strata.items():
        got = Counter(p.split for p in all_prompts() if (p.source, p.lang) == (source, lang))
        assert abs(got["train"] - n / 2) <= 1 and abs(got["dev"] - n / 4) <= 1, (source, lang, got)
        assert got["test"] >= n / 4 - 1


def test_split_is_stable():
    before = [(p.text, p.split) for p in all_prompts()]
    all_prompts.cache_clear()
    assert [(p.text, p.split) for p in all_prompts()] == before
    assert split_digest() == EXPECTED_SPLIT_DIGEST, (
        "the train/dev/test split changed: a prompt file or the split rule was edited"
    )


def test_prompts_are_balanced_deterministic_and_from_their_split():
    for split in SPLITS:
        first = prompt_sets.prompts(split, n=20)
        assert first == prompt_sets.prompts(split, n=20)
        assert Counter(prompt_sets.split_of(t) for t in first) == {split: 20}
        assert Counter(p.source for t in first for p in all_prompts() if p.text == t) == {
            s: 4 for s in SOURCES
        }
        everything = prompt_sets.prompts(split)
        assert sorted(everything) == sorted(p.text for p in prompt_sets.records(split))
    assert prompt_sets.prompts("train", n=20, seed=1) != prompt_sets.prompts("train", n=20)
    langs = Counter(languages.detect(t) for t in prompt_sets.prompts("dev", ["multilingual"], 8))
    assert langs == {"zh": 2, "es": 2, "fr": 2, "de": 2}


def test_prompts_refuses_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        prompt_sets.prompts("validation")
    with pytest.raises(ValueError, match="sources"):
        prompt_sets.prompts("train", sources=["poems"])
    with pytest.raises(ValueError, match="there are"):
        prompt_sets.prompts("test", n=10_000)


def test_language_detector_knows_every_prompt():
    wrong = [(p.text, p.lang) for p in all_prompts() if languages.detect(p.text) != p.lang]
    assert not wrong
