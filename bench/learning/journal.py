"""What a long learning-bench run has finished, kept beside its project files so that ``--resume``
carries on where an interrupted run stopped (a full label-efficiency run takes about a day on a
2-core CPU; a reboot, a closed laptop or a killed job must not cost what was done).

``journal.json`` in the run's work folder (or the file ``--journal`` names) holds the run's
identity (role, size, model, raters, seeds, a digest of the measuring code), each sitting's start
and CPU, and one JSON value per finished step, written atomically when the step ends. A step that
was interrupted left no value, so a resumed run does it again from its start; each step is written
so that redoing it is safe (it rates only up to its budget, and its training run is the newest
one). Resuming with another plan or with other measuring code is refused: the figures of one result
must come from one plan and one version of the code that measures them.

A journal kept outside the work folder can carry a run to another machine whose work folder is
empty: the bench then forgets the steps whose project files are gone (``forget``) and keeps the
units it can report without them (a rater and seed whose rounds all finished).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, cpu_model

FILE = "journal.json"
# The code a learning figure depends on: the app's core and CLI, the bench's data, raters, rounds
# and evaluation. The modules that only render results (summaries, plots) may change while a run
# is interrupted: a resumed run renders its figures with the new ones.
MEASURING = (
    "core",
    "main.py",
    "bench/common.py",
    "bench/learning",
    "pyproject.toml",
    "constraints.txt",
)
RENDERING = {"summary.py", "efficiency_summary.py", "plots.py", "describe.py", "journal.py"}


def identity(plan: Any) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (a bench.learning.plan.Plan)."""
    return {
        "role": plan.role,
        "mode": plan.mode,
        "model": plan.model,
        "seeds": plan.seeds,
        "runs": plan.runs,
        "raters": [r.name for r in plan.raters],
        "settings": plan.settings,
        "report": plan.report,
        "dtype": plan.dtype,
        "code": measuring_code(),
    }


def measuring_code(root: Path = REPO) -> str:
    """A digest of the files in ``MEASURING`` as they are on disk (committed or not), rendering
    modules aside: equal digests measure alike."""
    digest = hashlib.sha256()
    for entry in MEASURING:
        path = root / entry
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if (
                f.is_file()
                and f.suffix in (".py", ".jsonl", ".toml", ".txt")
                and f.name not in RENDERING
            ):
                digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


class JournalMismatch(Exception):
    """``--resume`` on a work folder whose run had another plan or code; the message says which."""


class Journal:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def open(
        cls, folder: Path, identity: dict[str, Any], resume: bool, path: Path | None = None
    ) -> Journal:
        """A new journal in ``folder`` (forgetting an earlier run's), or with ``resume`` the one
        there, which must be of the same ``identity``; a missing one starts afresh. ``path``:
        the journal's file when it is not ``folder``'s own."""
        path = path or folder / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        sitting = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu_model()}
        if resume and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise JournalMismatch(
                    f"{path}: unreadable ({e}); start afresh without --resume"
                ) from e
            differs = [
                f"{k} {data['identity'].get(k)!r} (now {v!r})"
                for k, v in identity.items()
                if data["identity"].get(k) != v
            ]
            if differs:
                raise JournalMismatch(
                    f"{path}: the interrupted run had {'; '.join(differs)}. Resume it with the "
                    "same arguments and code, or start afresh without --resume (another "
                    "--workdir keeps its files)."
                )
            data["sittings"].append(sitting)
        else:
            data = {"identity": identity, "sittings": [sitting], "steps": {}}
        journal = cls(path, data)
        journal._write()
        return journal

    @property
    def sittings(self) -> int:
        """How many times the run was started: 1 for a run that was never interrupted."""
        return len(self.data["sittings"])

    def resumed_note(self) -> str:
        """What a result says when its run was resumed."""
        first, last = self.data["sittings"][0]["started"], self.data["sittings"][-1]["started"]
        cpus = sorted({s.get("cpu", "") for s in self.data["sittings"]} - {""})
        on = f" on {len(cpus)} CPUs ({'; '.join(cpus)})" if len(cpus) > 1 else ""
        return (
            f"Resumed: the run was started {self.sittings} times{on} (from {first} to {last}); "
            "an interrupted step was done again from its start. Labels, pairs and gains do not "
            "depend on the sitting; times of steps from different sittings do not compare."
        )

    def get(self, key: str) -> Any:
        """The value of the finished step ``key``, or None when it has not finished."""
        return self.data["steps"].get(key)

    def put(self, key: str, value: Any) -> Any:
        """Record step ``key`` as finished with ``value`` (JSON), at once; returns ``value`` as a
        resumed run reads it back, so that both runs go on from the same value."""
        self.data["steps"][key] = json.loads(json.dumps(value, ensure_ascii=False))
        self._write()
        return self.data["steps"][key]

    def forget(self, keep: Callable[[str], bool]) -> list[str]:
        """Drop the finished steps ``keep`` refuses (their files are gone), so that a resumed
        run does them again; returns their keys."""
        dropped = [k for k in self.data["steps"] if not keep(k)]
        for key in dropped:
            del self.data["steps"][key]
        if dropped:
            self._write()
        return dropped

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)
