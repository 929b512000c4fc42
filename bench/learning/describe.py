"""The learning bench's protocol in a few lines for docs/benchmarks.md, built from the rater and
prompt registries so that it cannot drift from them (the full text: docs/learning-protocol.md)."""

from __future__ import annotations

from collections import Counter

from bench.learning import preferences, prompt_sets
from bench.learning.plan import EASY_RULE, MIN_REPORT_SEEDS

USE = {
    "dev": "tuning: every default, setting and design choice is decided on these figures",
    "test": "the reported figures (README) only: no tuning decision may look at them",
}
RUN = {
    "dev": "`python -m bench.learning.run`",
    "test": "`python -m bench.learning.run --role test --report`",
}


def _raters(role: str) -> str:
    return "; ".join(
        f"{s.name}: {s.kind}{'' if s.sources is None else ', on ' + _sources(s.sources)}"
        for s in preferences.RATERS.values()
        if s.role == role
    )


def _sources(sources: tuple[str, ...]) -> str:
    return "English prompts" if sources == preferences.ENGLISH else ", ".join(sources) + " prompts"


def protocol_section() -> list[str]:
    splits = Counter(p.split for p in prompt_sets.all_prompts())
    rows = [
        f"| {role} | {_raters(role)} | {role} ({splits[role]}) | {USE[role]} | {RUN[role]} |"
        for role in ("dev", "test")
    ]
    return [
        "## The learning bench's protocol",
        "",
        "The learning bench asks whether training on scripted ratings, with default settings, "
        "makes the model better by the rater on prompts it never trained on. It keeps apart the "
        "data a run trains on, the figures tuning looks at and the figures that are reported "
        "([docs/learning-protocol.md](learning-protocol.md) has the rules and the reasons):",
        "",
        "| role | raters: what they reward | held-out prompts | may be used for | run |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"- Prompts: {len(prompt_sets.all_prompts())} hand-written prompts from "
        f"{len(prompt_sets.SOURCES)} sources ({', '.join(prompt_sets.SOURCES)}), each source and "
        f"language split by a salted hash into train ({splits['train']}), dev and test; a test "
        "keeps the splits, and the dev and test raters, disjoint. Every run trains on train "
        "prompts only, each rater on the prompts of its sources, and is measured on the role's "
        "held-out prompts of the same sources (evaluation prompts of the project, which the app "
        "never trains on).",
        f"- Every figure is the mean over the training seeds (at least {MIN_REPORT_SEEDS} in a "
        "reporting run), each seed's value in its note. Gain / SE: the mean per-prompt gain "
        "over the base model divided by the standard error of those paired differences; when "
        "they do not vary (a policy that answers as the base does) it is 0, no gain. Beside it, "
        "the policy's arena win rate against the base model judged by the same rater, with a "
        "95% CI.",
        "- Tuning runs (`--set RUN:FIELD=VALUE`) are development runs: a run on the test raters "
        "needs `--report`, which also asks for committed code, every test rater and "
        f"{MIN_REPORT_SEEDS} seeds. The reward model's 80% target applies to the easy rule of "
        f"each role, fixed beforehand ({EASY_RULE['dev']} and {EASY_RULE['test']}: most room "
        "to move on the base model's answers).",
        '- "Learning proof, old protocol" below predates this: one rater (VADER sentiment, '
        "now a development rater), 32 templated held-out prompts on which the defaults were "
        "tuned, one seed. Its figures are development-set numbers.",
        "",
    ]
