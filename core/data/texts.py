"""Training examples with their texts: prompt messages and sample texts, in TRL's column names.

Part of core.data (import from there).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from core.data.rules import Example, PreferencePair, ScalarReward, UnpairedExample
from core.store import ProjectError, ProjectStore


def materialize(
    store: ProjectStore,
    examples: Iterable[Example],
    *,
    conversational: bool = False,
    chunk_size: int = 256,
) -> Iterator[dict[str, Any]]:
    """Yield each example as a dict with its prompt messages and sample texts, in TRL's column names.

    The prompt is always ``prompt``: a list of ``{"role", "content"}`` messages (a plain prompt is
    one user turn, as ``store.prompt_messages`` gives it). Completions are strings, or with
    ``conversational`` one-message assistant lists (TRL's conversational format). Per kind:

    - PreferencePair → ``prompt, chosen, rejected, margin``
    - UnpairedExample → ``prompt, completion, label``
    - ScalarReward → ``prompt, completion, reward``
    - Demonstration → ``prompt, completion``

    plus the ids (``prompt_id``, ``chosen_id``/``rejected_id`` or ``sample_id``, ``rating_ids``).
    Streams: ``chunk_size`` examples at a time, with one query for their prompts and one for their
    sample texts. Every row gets its own copy of the prompt messages.
    """

    def completion(text: str) -> str | list[dict[str, str]]:
        return [{"role": "assistant", "content": text}] if conversational else text

    examples = iter(examples)
    while chunk := list(islice(examples, chunk_size)):
        prompts = _prompt_messages(store, chunk)
        texts = _sample_texts(store, chunk)
        for e in chunk:
            row: dict[str, Any] = {"prompt": [dict(m) for m in prompts[e.prompt_id]]}
            if isinstance(e, PreferencePair):
                row["chosen"] = completion(texts[e.chosen_id])
                row["rejected"] = completion(texts[e.rejected_id])
                row.update(margin=e.margin, chosen_id=e.chosen_id, rejected_id=e.rejected_id)
            else:
                row["completion"] = completion(texts[e.sample_id])
                if isinstance(e, UnpairedExample):
                    row["label"] = e.label
                elif isinstance(e, ScalarReward):
                    row["reward"] = e.reward
                row["sample_id"] = e.sample_id
            row.update(prompt_id=e.prompt_id, rating_ids=list(e.rating_ids))
            yield row


def _sample_ids(e: Example) -> tuple[int, ...]:
    if isinstance(e, PreferencePair):
        return (e.chosen_id, e.rejected_id)
    return (e.sample_id,)


def _prompt_messages(store: ProjectStore, chunk: list[Example]) -> dict[int, list[dict[str, str]]]:
    """{prompt id: messages} for the chunk's prompts; a plain prompt becomes one user turn."""
    found = store.prompts_as_messages({e.prompt_id for e in chunk})
    missing = {e.prompt_id for e in chunk} - found.keys()
    if missing:
        _inconsistent(store, "prompts", missing, [e for e in chunk if e.prompt_id in missing])
    return found


def _sample_texts(store: ProjectStore, chunk: list[Example]) -> dict[int, str]:
    ids = {s for e in chunk for s in _sample_ids(e)}
    found = store.sample_texts(ids)
    missing = ids - found.keys()
    if missing:
        _inconsistent(
            store, "samples", missing, [e for e in chunk if missing.intersection(_sample_ids(e))]
        )
    return found


def _inconsistent(
    store: ProjectStore, table: str, missing: set[int], examples: list[Example]
) -> None:
    ratings = sorted({rid for e in examples for rid in e.rating_ids})
    fix = "Restore it from a backup"
    if ratings:
        undo = f"UPDATE ratings SET superseded = 1 WHERE id IN ({', '.join(map(str, ratings))})"
        fix += (
            ", or set those ratings aside as undone with sqlite-utils query "
            f"{shlex.quote(str(store.path))} {shlex.quote(undo)}"
        )
    used_by = f"ratings {_some(ratings)}" if ratings else "the examples given"
    raise ProjectError(
        f"{store.path}: {used_by} use {table} {_some(sorted(missing))}, which are missing "
        f"from the {table} table: the file is inconsistent (was it edited outside RLHF "
        f"Studio?). {fix}."
    )


def _some(ids: list[int], n: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")
