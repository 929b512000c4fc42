"""The arena: models answer the project's evaluation prompts, and blind pairwise judgments of those
answers say which model is better, with a confidence interval.

An arena is a list of model specs and the generation settings they answer with (kept in the
project settings as ``arena``, so the Rate tab's Arena mode knows what to show). A model's answer
to an evaluation prompt is reused whenever the project already has one from that model with the
same settings. Comparisons pair the k-th answer of one model with the k-th answer of another on the
same prompt, for every pair of models; which side each is shown on is drawn at random, and the
names are never shown. People rate them in the Rate tab's Arena mode (kind ``pairwise``, selection
``arena``); a scripted judge rates them as annotator ``judge:SPEC``. The leaderboard counts every
live pairwise rating of two different arena models' answers to an evaluation prompt.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import UserError
from core.evaluation.bradley_terry import leaderboard
from core.evaluation.head_to_head import describe_pair
from core.generation import GenerationParams, generate_samples
from core.items import Item, build_item
from core.models import LoadedModel, parse_spec
from core.raters import TIE_MARGIN, ScriptedRater
from core.store import ProjectStore

GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p")  # what makes two answers comparable


@dataclass
class ArenaSpec:
    """Which models answer, and how: ``per_prompt`` answers per evaluation prompt each."""

    models: list[str]
    per_prompt: int = 2
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        if len(self.models) < 2 or len(set(self.models)) != len(self.models):
            raise UserError(
                f"an arena needs at least two different models, got {', '.join(self.models)}."
            )
        GenerationParams(
            self.per_prompt, self.max_new_tokens, self.temperature, self.top_p
        ).validate()

    def generation(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in GENERATION_KEYS}


@dataclass
class ArenaProgress:
    stage: str  # generate | judge
    model: str | None
    done: int
    total: int
    written: list[int] = field(default_factory=list)  # sample or rating ids of this step


def canonical_spec(store: ProjectStore, spec: str) -> str:
    """The spec as samples record it: ``checkpoint:latest`` becomes the id it means now."""
    parsed = parse_spec(spec)
    if parsed.kind == "checkpoint":
        return f"checkpoint:{store.checkpoint(spec)['id']}"
    return parsed.text


def arena_spec(store: ProjectStore) -> ArenaSpec | None:
    """The project's current arena, or None."""
    data = store.settings().get("arena")
    return ArenaSpec(**data) if data else None


def save_arena(store: ProjectStore, spec: ArenaSpec) -> None:
    spec.validate()
    store.update_settings(arena=asdict(spec))


def eval_prompts(store: ProjectStore) -> list[int]:
    ids = store.prompt_ids("eval")
    if not ids:
        raise UserError(
            f"{store.path} has no evaluation prompts; keep some apart first "
            "(prompts split --eval 50, or prompts import FILE --split eval)."
        )
    return ids


def answers(store: ProjectStore, spec: ArenaSpec, model: str) -> dict[int, list[int]]:
    """{evaluation prompt id: ids of ``model``'s answers made with the arena's settings}."""
    wanted = spec.generation()
    out: dict[int, list[int]] = {}
    for sid, pid, recorded in store.eval_answers_of(model):
        if all(recorded.get(k) == v for k, v in wanted.items()):
            out.setdefault(pid, []).append(sid)
    return out


def missing_answers(store: ProjectStore, spec: ArenaSpec, model: str) -> dict[int, int]:
    """{evaluation prompt id: how many more answers ``model`` needs}."""
    have = answers(store, spec, model)
    need = {p: spec.per_prompt - len(have.get(p, [])) for p in eval_prompts(store)}
    return {p: n for p, n in need.items() if n > 0}


def generate_answers(
    store: ProjectStore,
    spec: ArenaSpec,
    loaded: LoadedModel,
    cancel: threading.Event | None = None,
) -> Iterator[ArenaProgress]:
    """Generate what ``loaded`` (one of the arena's models) still lacks; yields after each batch."""
    missing = missing_answers(store, spec, loaded.spec)
    total, done = sum(missing.values()), 0
    yield ArenaProgress("generate", loaded.spec, 0, total)
    by_count: dict[int, list[int]] = {}
    for pid, n in missing.items():
        by_count.setdefault(n, []).append(pid)
    for n, prompt_ids in sorted(by_count.items()):
        params = GenerationParams(per_prompt=n, seed=spec.seed, **spec.generation())
        for prog in generate_samples(store, loaded, params, prompt_ids=prompt_ids, cancel=cancel):
            done += len(prog.sample_ids)
            yield ArenaProgress("generate", loaded.spec, done, total, list(prog.sample_ids))


def comparisons_planned(store: ProjectStore, spec: ArenaSpec) -> list[tuple[int, int, int]]:
    """(prompt id, answer of one model, answer of another): the k-th answers of every pair of
    models on each evaluation prompt, listed model order first (sides are drawn when shown)."""
    per_model = {m: answers(store, spec, m) for m in spec.models}
    out = []
    for pid in store.prompt_ids("eval"):
        for a, b in itertools.combinations(spec.models, 2):
            first, second = per_model[a].get(pid, []), per_model[b].get(pid, [])
            for k in range(min(len(first), len(second), spec.per_prompt)):
                out.append((pid, first[k], second[k]))
    return out


def unrated_comparisons(
    store: ProjectStore, spec: ArenaSpec, annotator: str
) -> list[tuple[int, int, int]]:
    """The planned comparisons ``annotator`` has not judged, skipped or flagged yet."""
    judged = store.sample_ids_judged_by(annotator, kinds=("pairwise", "skip", "flag"))
    seen = {frozenset(ids) for ids in judged}
    return [c for c in comparisons_planned(store, spec) if frozenset(c[1:]) not in seen]


def arena_items(
    store: ProjectStore,
    annotator: str,
    n: int,
    exclude: Iterable[frozenset[int]] = (),
    rng: random.Random | None = None,
) -> list[Item]:
    """The next ``n`` comparisons of the project's arena for ``annotator`` (Arena mode of the
    Rate tab): pairwise items, sides drawn at random, spread over prompts."""
    spec = arena_spec(store)
    if spec is None or n <= 0:
        return []
    rng = rng or random.Random()
    excluded = set(exclude)
    todo = [
        c for c in unrated_comparisons(store, spec, annotator) if frozenset(c[1:]) not in excluded
    ]
    rng.shuffle(todo)  # spread over prompts and pairs of models
    items = []
    for pid, first, second in todo[:n]:
        shown = [first, second]
        rng.shuffle(shown)
        items.append(build_item(store, "pairwise", pid, shown, selection="arena"))
    return items


def judge_name(judge: ScriptedRater) -> str:
    return f"judge:{judge.spec}"


def judge_arena(
    store: ProjectStore,
    spec: ArenaSpec,
    judge: ScriptedRater,
    *,
    cancel: threading.Event | None = None,
) -> Iterator[ArenaProgress]:
    """A scripted judge rates every comparison it has not rated: the higher score wins, scores
    within the scripted raters' tie margin tie. One commit per rating, as a person's."""
    annotator = judge_name(judge)
    todo = unrated_comparisons(store, spec, annotator)
    rng = random.Random(spec.seed)
    yield ArenaProgress("judge", None, 0, len(todo))
    for done, (pid, first, second) in enumerate(todo, start=1):
        if cancel is not None and cancel.is_set():
            return
        shown = [first, second]
        rng.shuffle(shown)  # the side is drawn, as a person would see it
        prompt = store.prompt(pid)["text"]
        texts = store.sample_texts((first, second))
        scores = [judge(prompt, texts[s]) for s in shown]
        choice = "tie" if abs(scores[0] - scores[1]) < TIE_MARGIN else "ab"[scores[1] > scores[0]]
        value = {
            "choice": choice,
            "winner": {"a": shown[0], "b": shown[1]}.get(choice),
            "scores": scores,
            "rater": judge.spec,
        }
        rid = store.add_rating(
            annotator=annotator,
            kind="pairwise",
            sample_ids=shown,
            prompt_id=pid,
            value=value,
            selection="arena",
        )
        yield ArenaProgress("judge", None, done, len(todo), [rid])


def comparisons(
    store: ProjectStore, models: Iterable[str], annotators: Iterable[str] | None = None
) -> list[tuple[str, str, str]]:
    """(model shown as A, model shown as B, outcome) of every live pairwise rating of two
    different ``models``' answers to an evaluation prompt; both_bad counts as a tie."""
    return [c[1:] for c in judged_comparisons(store, models, annotators)]


def judged_comparisons(
    store: ProjectStore, models: Iterable[str], annotators: Iterable[str] | None = None
) -> list[tuple[str, str, str, str]]:
    """``comparisons`` with who judged each: (annotator, model A, model B, outcome)."""
    models = set(models)
    names = None if annotators is None else set(annotators)
    out = []
    for annotator, ids, value in store.live_eval_pairwise_ratings():
        if names is not None and annotator not in names:
            continue
        a, b = ids
        made = store.sample_models((a, b))
        ma, mb = made.get(a), made.get(b)
        if ma in models and mb in models and ma != mb:
            choice = value.get("choice")
            out.append((annotator, ma, mb, {"a": "a", "b": "b"}.get(choice, "tie")))
    return out


def arena_report(
    store: ProjectStore,
    models: list[str] | None = None,
    annotators: Iterable[str] | None = None,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The leaderboard of ``models`` (default: the project's arena) as ``stats --json`` shows it,
    plus ``annotators`` (who judged), ``summary`` (one line per pair for people) and
    ``against_start`` (each checkpoint against the model its run started from)."""
    if models is None:
        spec = arena_spec(store)
        if spec is None:
            return None
        models = spec.models
    names = None if annotators is None else list(annotators)
    judged = judged_comparisons(store, models, names)
    board = leaderboard([c[1:] for c in judged], models, rounds=rounds, seed=seed)
    # who judged these comparisons, not everyone who rated anything in the project
    board["annotators"] = names if names is not None else sorted({c[0] for c in judged})
    by_pair = {frozenset((p["a"], p["b"])): p for p in board["pairs"]}
    board["summary"] = [describe_pair(p) for p in board["pairs"]]
    board["against_start"] = [
        {"checkpoint": c, "start": s, "line": describe_pair(by_pair[frozenset((c, s))])}
        for c, s in starting_points(store, models)
        if frozenset((c, s)) in by_pair
    ]
    return board


def starting_points(store: ProjectStore, models: Iterable[str]) -> list[tuple[str, str]]:
    """(checkpoint spec, the spec its run started from) for each checkpoint among ``models``."""
    out = []
    for model in models:
        if model.startswith("checkpoint:") and model.split(":", 1)[1].isdigit():
            row = store.find_checkpoint(int(model.split(":")[1]))
            if row and row["base_model"]:
                out.append((model, row["base_model"]))
    return out


def run_arena(
    store: ProjectStore,
    spec: ArenaSpec,
    load: Callable[[str], LoadedModel],
    judge: ScriptedRater | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[ArenaProgress]:
    """The whole arena: save it as the project's arena, generate what each model lacks (loading
    one model at a time with ``load``), then let ``judge`` rate the comparisons when given."""
    eval_prompts(store)
    save_arena(store, spec)
    for model in spec.models:
        if cancel is not None and cancel.is_set():
            return
        if not missing_answers(store, spec, model):
            continue
        loaded = load(model)
        yield from generate_answers(store, spec, loaded, cancel)
        del loaded  # one model in memory at a time
    if judge is not None:
        yield from judge_arena(store, spec, judge, cancel=cancel)
