"""Training and held-out prompts for the sentiment task, built from disjoint topic lists.

The topics lean toward everyday nuisances and neutral subjects, so the base model's answers are
not already upbeat: the rater (VADER positivity) has room to move. Held-out prompts use topics
that no training prompt mentions, so the evaluation measures what generalises.
"""

from __future__ import annotations

TEMPLATES = (
    "Write two sentences about {}.",
    "Describe {} in a few sentences.",
    "Tell me what you think about {}.",
    "Write a short note to a friend about {}.",
)
TRAIN_TOPICS = (
    "a rainy Monday morning",
    "waiting at the airport",
    "your first day at a new job",
    "a crowded bus",
    "a broken phone screen",
    "a long queue at the bank",
    "the city in winter",
    "a job interview",
    "a traffic jam",
    "moving to a new apartment",
    "an old laptop",
    "doing your taxes",
    "a delayed train",
    "cleaning the kitchen",
    "a cold cup of coffee",
    "a visit to the dentist",
    "a power outage",
    "homework on a Sunday",
    "a noisy neighbour",
    "a flat bicycle tyre",
    "a missed bus",
    "a burnt dinner",
    "a lost umbrella",
    "a software update",
    "an empty fridge",
    "a parking ticket",
    "a long meeting",
    "a hot summer afternoon",
    "a foggy road",
    "a group project",
    "a slow internet connection",
    "a hospital waiting room",
    "an exam week",
    "a leaking roof",
    "the last day of holidays",
    "a cancelled concert",
    "a strict teacher",
    "a wet dog",
    "a crowded supermarket",
    "a late pizza delivery",
    "learning to drive",
    "a phone call from the bank",
    "the night shift",
    "an alarm clock",
    "a tax office",
    "a dusty attic",
    "a grey sky",
    "a sore throat",
    "a long flight",
    "a stuck zipper",
)
HELDOUT_TOPICS = (
    "a rainy weekend",
    "a broken washing machine",
    "the morning commute",
    "a small apartment",
    "a busy train station",
    "a winter evening",
    "a hard week at work",
    "a dentist appointment",
    "a flooded street",
    "an overdue library book",
    "a cold office",
    "a long drive home",
    "a crowded beach",
    "a late flight",
    "a noisy cafe",
    "a difficult exam",
    "a quiet village",
    "an empty classroom",
    "a slow computer",
    "a windy day",
    "a hospital corridor",
    "a missed deadline",
    "a chilly morning",
    "a broken elevator",
)


def prompts_for(topics: tuple[str, ...], n: int) -> list[str]:
    """``n`` prompts: every topic once (templates rotating), then every topic again, and so on."""
    out = [
        TEMPLATES[(j + r) % len(TEMPLATES)].format(topic)
        for r in range(len(TEMPLATES))
        for j, topic in enumerate(topics)
    ]
    return out[:n]


def train_prompts(n: int) -> list[str]:
    return prompts_for(TRAIN_TOPICS, n)


def heldout_prompts(n: int) -> list[str]:
    return prompts_for(HELDOUT_TOPICS, n)
