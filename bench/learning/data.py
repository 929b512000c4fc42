"""A learning-bench training project, made with the app's own commands.

One project per set of prompt sources: its training prompts come from the train split, its
evaluation prompts (``prompts import --split eval``) from the role's held-out split (dev or test),
so the app itself keeps them out of every training run. The model answers the training prompts
once (``generate``); each rater of the project then rates those answers under its own annotator
names (``rate --auto``): ``NAME`` pairwise, ``NAME-large`` and ``NAME-small`` the first of those
comparisons that hold the large and small numbers of pairs, ``NAME-score`` scores.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import log
from bench.learning import prompt_sets
from bench.learning.plan import Plan, Rater

TRAIN_SEED = "1"  # generation seed of the training answers


class Cli:
    """``main.py --db DB [--dtype D] ...`` in this process; returns each call's wall time (or its
    stdout)."""

    def __init__(self, db: Path, dtype: str | None = None):
        self.db = db
        self.dtype = dtype

    def __call__(self, *argv: str) -> float:
        return self._run(argv, None)

    def output(self, *argv: str) -> str:
        """Run the command and return what it printed on stdout (its result)."""
        out = io.StringIO()
        self._run(argv, out)
        return out.getvalue()

    def _run(self, argv: tuple[str, ...], out: io.StringIO | None) -> float:
        import main as app_main

        dtype = ["--dtype", self.dtype] if self.dtype else []
        log(f"  main.py {' '.join([*dtype, '--db', self.db.name, *argv])}")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out) if out is not None else contextlib.nullcontext():
            rc = app_main.main([*dtype, "--db", str(self.db), *argv])
        if rc != 0:
            raise RuntimeError(f"main.py {' '.join(argv)} exited {rc}")
        return time.perf_counter() - t0


def prompt_texts(split: str, sources: tuple[str, ...] | None, n: int) -> list[str]:
    """``n`` prompts of ``split`` from ``sources``, balanced; all of them when there are fewer."""
    available = len(prompt_sets.records(split, sources))
    return prompt_sets.prompts(split, sources, n=min(n, available))


def answers_per_prompt(size: dict[str, Any], n_prompts: int) -> int:
    """K for the training answers: the size's K, more when there are too few prompts for the
    pairwise ratings (pairwise mode pairs a prompt's answers two by two); always even."""
    need = math.ceil(2 * size["ratings"] / max(1, n_prompts))
    k = max(size["k"], need)
    return k + k % 2


def make_project(
    cli: Cli, folder: Path, plan: Plan, sources: tuple[str, ...] | None, seed: str = TRAIN_SEED
) -> dict:
    """Import the train and held-out prompts, set the model, generate the training answers (with
    generation seed ``seed``)."""
    size = plan.size
    train = prompt_texts("train", sources, size["train"])
    heldout = prompt_texts(plan.role, sources, size["heldout"])
    for name, texts in (("train", train), ("heldout", heldout)):
        (folder / f"{cli.db.stem}-{name}.jsonl").write_text(
            "".join(json.dumps({"prompt": t}, ensure_ascii=False) + "\n" for t in texts),
            encoding="utf-8",
        )
    cli("prompts", "import", str(folder / f"{cli.db.stem}-train.jsonl"))
    cli("prompts", "import", str(folder / f"{cli.db.stem}-heldout.jsonl"), "--split", "eval")
    if plan.model != "default":
        from core.store import ProjectStore

        with ProjectStore(cli.db) as store:
            store.update_settings(model=plan.model)
    k = answers_per_prompt(size, len(train))
    seconds = cli(
        "generate",
        "--per-prompt",
        str(k),
        "--max-new-tokens",
        str(size["new"]),
        "--seed",
        seed,
    )
    return {
        "train prompts": len(train),
        f"{plan.role} prompts": len(heldout),
        "K (train)": k,
        "generate s": round(seconds, 1),
    }


def rate(cli: Cli, rater: Rater, size: dict[str, Any]) -> dict[str, Any]:
    """The rater's pairwise comparisons, the two nested subsets of them, and its scores. Each
    annotator rates up to its number, counting what it rated before: an interrupted call done
    again rates only what is missing."""
    from core.store import ProjectStore

    def auto(mode: str, annotator: str, limit: int) -> float:
        with ProjectStore(cli.db) as store:
            have = store.count("ratings", "annotator = ?", (annotator,))
        if limit <= have:
            return 0.0
        return cli(
            "rate",
            "--auto",
            rater.spec,
            "--mode",
            mode,
            "--annotator",
            annotator,
            "--limit",
            str(limit - have),
        )

    seconds = auto("pairwise", rater.name, size["ratings"])
    with ProjectStore(cli.db) as store:
        choices = pairwise_choices(store, rater.name)
    for n in ("large", "small"):
        auto("pairwise", f"{rater.name}-{n}", rating_limit(choices, size[n]))
    seconds += auto("score", f"{rater.name}-score", size["ratings"])
    with ProjectStore(cli.db) as store:
        return {
            "samples": store.count("samples"),
            "pairwise ratings": len(choices),
            "pairs (all)": count_pairs(choices),
            "pairs (large)": count_pairs(pairwise_choices(store, f"{rater.name}-large")),
            "pairs (small)": count_pairs(pairwise_choices(store, f"{rater.name}-small")),
            "score ratings": store.count("ratings", "annotator = ?", (f"{rater.name}-score",)),
            "rate s": round(seconds, 1),
        }


def pairwise_choices(store, annotator: str) -> list[str]:
    """The choices of ``annotator``'s pairwise ratings, oldest first."""
    return [
        r["value"]["choice"]
        for r in store.ratings(kinds=["pairwise"])
        if r["annotator"] == annotator
    ]


def count_pairs(choices: list[str]) -> int:
    return sum(c not in ("tie", "both_bad") for c in choices)


def rating_limit(choices: list[str], pairs: int) -> int:
    """How many of the ratings (in order) hold ``pairs`` non-tie pairs: a second annotator
    rating the same items in the same order with this limit gets exactly them."""
    seen = 0
    for n, choice in enumerate(choices, start=1):
        seen += choice not in ("tie", "both_bad")
        if seen >= pairs:
            return n
    return len(choices) if seen else 0


def running_digests(db: Path) -> Iterator[str]:
    """The digest of a project's prompts and answers after each answer, in id order."""
    digest = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for prompt, text in conn.execute(
            "SELECT p.text, s.text FROM samples s JOIN prompts p ON p.id = s.prompt_id "
            "ORDER BY s.id"
        ):
            digest.update(f"{prompt}\0{text}\0".encode())
            yield digest.hexdigest()[:16]


def answers_digest(db: Path) -> str:
    """A digest of a project's prompts and candidate answers: equal digests, equal pools."""
    tail = deque(running_digests(db), maxlen=1)
    return tail[0] if tail else hashlib.sha256().hexdigest()[:16]
