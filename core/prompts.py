"""Prompt import: read .txt, .jsonl, .json and .csv files of plain or chat prompts into a project.

A file is parsed and validated completely before anything is written, then inserted in one
transaction, so an import either adds every new prompt or nothing. Errors name the file and the
line a text editor would show, because the person fixing them has the file open in one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.store import ProjectStore
from core.store.records import content_key

FORMATS = (".txt", ".jsonl", ".json", ".csv")
ROLES = ("system", "user", "assistant")
_FIX_LINE = "Fix the line and import again; nothing was imported."


class PromptImportError(UserError, ValueError):
    """A prompt file that cannot be imported, stated for a person: file, line, problem, remedy."""

    def __init__(
        self, path: str | os.PathLike, problem: str, line: int | None = None, hint: str = _FIX_LINE
    ):
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path.name} line {line}" if line is not None else self.path.name
        self.hint = hint
        super().__init__(f"{where}: {problem}. {hint}")

    def __reduce__(self) -> tuple[Any, ...]:  # keeps the error picklable across processes
        return (type(self), (self.path, self.problem, self.line, self.hint))


@dataclass(frozen=True)
class ParsedPrompt:
    """One prompt read from a file. ``messages`` is None for plain prompts; ``line`` is 1-based."""

    text: str
    messages: list[dict[str, str]] | None
    line: int

    @property
    def content_key(self) -> str:
        return content_key(self.text, self.messages)


@dataclass
class ImportResult:
    """What an import did: ``added`` new prompts, ``skipped_duplicates`` already present."""

    added: int
    skipped_duplicates: int
    total: int
    path: Path
    prompt_ids: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        skipped = (
            f" ({self.skipped_duplicates} exact duplicates skipped)"
            if self.skipped_duplicates
            else ""
        )
        return f"Imported {self.added} of {self.total} prompts from {self.path.name}{skipped}."


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 (BOM optional) to text; a bad byte is reported at its line and column."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        line_start = data.rfind(b"\n", 0, e.start) + 1
        column = len(data[line_start : e.start].decode("utf-8")) + 1  # in characters, as editors
        raise PromptImportError(
            path,
            f"not valid UTF-8 (byte 0x{data[e.start]:02x} at column {column})",
            line,
            "Save the file as UTF-8 and import again; nothing was imported.",
        ) from e


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) pairs split only on LF, so numbers match an editor; CR is dropped."""
    return [(i, s.rstrip("\r")) for i, s in enumerate(text.split("\n"), start=1)]


def _messages(path: Path, line: int, raw: Any) -> tuple[str, list[dict[str, str]]]:
    if not isinstance(raw, list) or not raw:
        raise PromptImportError(
            path, '"messages" must be a non-empty list of {"role", "content"}', line
        )
    messages = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise PromptImportError(
                path, f'message {i} must be an object with "role" and "content"', line
            )
        if m["role"] not in ROLES:
            raise PromptImportError(
                path,
                f"message {i} has role {m['role']!r}; expected one of {', '.join(ROLES)}",
                line,
            )
        if not isinstance(m["content"], str):
            raise PromptImportError(path, f'message {i} "content" must be a string', line)
        messages.append({"role": m["role"], "content": m["content"].strip()})
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise PromptImportError(
            path, 'the chat has no user turn; add a message with role "user"', line
        )
    if not users[-1]:
        raise PromptImportError(path, "the last user turn is empty", line)
    return users[-1], messages


def _record(path: Path, line: int, obj: Any) -> ParsedPrompt:
    """Validate one JSON record: {"prompt": str} or {"messages": [...]}; extra keys are ignored.

    A "prompt" that is a list of messages (TRL's conversational prompt format) counts as a chat.
    """
    if not isinstance(obj, dict):
        raise PromptImportError(path, f"expected a JSON object, found {type(obj).__name__}", line)
    if "prompt" in obj and "messages" in obj:
        raise PromptImportError(path, 'has both "prompt" and "messages"; keep one of them', line)
    if "messages" in obj or isinstance(obj.get("prompt"), list):
        text, messages = _messages(path, line, obj.get("messages", obj.get("prompt")))
        return ParsedPrompt(text, messages, line)
    if "prompt" not in obj:
        raise PromptImportError(path, 'needs a "prompt" (text) or "messages" (chat) field', line)
    prompt = obj["prompt"]
    if not isinstance(prompt, str):
        raise PromptImportError(
            path, f'"prompt" must be a string, found {type(prompt).__name__}', line
        )
    if not prompt.strip():
        raise PromptImportError(path, '"prompt" is empty', line)
    return ParsedPrompt(prompt.strip(), None, line)


def _json_error(path: Path, e: json.JSONDecodeError) -> PromptImportError:
    return PromptImportError(path, f"invalid JSON ({e.msg} at column {e.colno})", e.lineno)


def _read_txt(path: Path, text: str) -> list[ParsedPrompt]:
    return [ParsedPrompt(s.strip(), None, n) for n, s in _lines(text) if s.strip()]


def _read_jsonl(path: Path, text: str) -> list[ParsedPrompt]:
    out = []
    for n, s in _lines(text):
        if not s.strip():
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise PromptImportError(path, f"invalid JSON ({e.msg} at column {e.colno})", n) from e
        out.append(_record(path, n, obj))
    return out


def _read_json(path: Path, text: str) -> list[ParsedPrompt]:
    """A JSON list of records; each record's line is where its object starts."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(0)
    if text[i : i + 1] != "[":
        raise PromptImportError(path, "expected a JSON list of prompt objects", line_of(i))
    out: list[ParsedPrompt] = []
    i = skip(i + 1)
    if text[i : i + 1] == "]":
        return out
    while True:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise _json_error(path, e) from e
        out.append(_record(path, line_of(i), obj))
        i = skip(end)
        if text[i : i + 1] == ",":
            i = skip(i + 1)
        elif text[i : i + 1] == "]":
            break
        else:
            raise PromptImportError(
                path, "invalid JSON (expected ',' or ']' after an item)", line_of(i)
            )
    if skip(i + 1) != len(text):
        raise PromptImportError(
            path, "invalid JSON (extra data after the list)", line_of(skip(i + 1))
        )
    return out


def _read_csv(path: Path, text: str) -> list[ParsedPrompt]:
    """A header row with a ``prompt`` column; quoted cells may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[ParsedPrompt] = []
    column: int | None = None
    start = 1
    try:
        for row in reader:
            if column is None:
                names = [c.strip().lower() for c in row]
                if "prompt" not in names:
                    raise PromptImportError(
                        path,
                        f"the header row has no 'prompt' column (found: {', '.join(row) or 'nothing'})",
                        start,
                        "Name the column holding the prompts 'prompt' and import again; "
                        "nothing was imported.",
                    )
                column = names.index("prompt")
            elif any(c.strip() for c in row):
                cell = row[column].strip() if column < len(row) else ""
                if not cell:
                    raise PromptImportError(path, "the 'prompt' cell is empty", start)
                out.append(ParsedPrompt(cell, None, start))
            start = reader.line_num + 1
    except csv.Error as e:
        raise PromptImportError(path, f"invalid CSV ({e})", start) from e
    return out


_READERS = {".txt": _read_txt, ".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}


def read_prompts(path: str | os.PathLike) -> list[ParsedPrompt]:
    """Parse and validate a whole prompt file; raises PromptImportError at the first bad record."""
    path = Path(path).expanduser()
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise PromptImportError(
            path,
            f"unknown prompt file type {path.suffix or '(no extension)'!r}",
            hint=f"Use one of {', '.join(FORMATS)}; nothing was imported.",
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PromptImportError(
            path,
            f"cannot be read ({e.strerror or e})",
            hint="Check the path; nothing was imported.",
        ) from e
    prompts = reader(path, _decode(path, data))
    if not prompts:
        raise PromptImportError(
            path,
            "no prompts found (the file is empty or has only blank lines)",
            hint="Add prompts and import again; nothing was imported.",
        )
    return prompts


def import_prompts(
    store: ProjectStore, path: str | os.PathLike, source: str | None = None, split: str = "train"
) -> ImportResult:
    """Import a prompt file atomically, skipping exact duplicates (in the file or the project).

    ``source`` is recorded on each prompt (default: the file name) so a researcher can later
    select or count prompts by where they came from.
    """
    path = Path(path).expanduser()
    parsed = read_prompts(path)
    source = source if source is not None else path.name
    ids, skipped = store.add_prompts(
        ({"text": p.text, "messages": p.messages} for p in parsed), source=source, split=split
    )
    return ImportResult(len(ids), skipped, len(parsed), path, ids)


@dataclass
class SplitResult:
    marked: list[int]  # prompts moved to the evaluation split now
    eval_prompts: int  # evaluation prompts in the project after the change
    train_prompts: int

    def __str__(self) -> str:
        return (
            f"{len(self.marked)} prompts marked for evaluation; the project has "
            f"{self.eval_prompts} evaluation and {self.train_prompts} training prompts."
        )


def parse_eval_amount(text: str) -> int | float:
    """``--eval``: a count of prompts (``50``) or a fraction of them (``0.2``)."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(
            f"--eval {text!r}: give a number of prompts (50) or a fraction (0.2)."
        ) from None
    if value <= 0 or (value >= 1 and not value.is_integer()):
        raise UserError(
            f"--eval {text}: give a whole number of prompts (50) or a fraction in (0, 1) (0.2)."
        )
    return value if value < 1 else int(value)


def split_for_evaluation(store: ProjectStore, amount: int | float, seed: int = 0) -> SplitResult:
    """Mark prompts as evaluation prompts until ``amount`` of them are (a count, or a fraction of
    all prompts); running it again with the same amount changes nothing.

    Only prompts without any rating are eligible, so no evaluation prompt was ever trained on;
    which of them is drawn at random with ``seed``. Evaluation prompts stay evaluation prompts.
    """
    total = store.count("prompts")
    target = round(amount * total) if isinstance(amount, float) else int(amount)
    have = len(store.prompt_ids("eval"))
    need = target - have
    if need <= 0:
        return SplitResult([], have, total - have)
    rated = store.rated_prompt_ids()
    eligible = [p for p in store.prompt_ids("train") if p not in rated]
    if len(eligible) < need:
        raise UserError(
            f"{need} more evaluation prompts are needed but only {len(eligible)} prompts have no "
            f"ratings yet (a rated prompt may already have trained a model). Import more prompts "
            f"(prompts import FILE --split eval) or ask for fewer; nothing was changed."
        )
    marked = sorted(random.Random(seed).sample(eligible, need))
    store.set_split(marked, "eval")
    return SplitResult(marked, have + need, total - have - need)
