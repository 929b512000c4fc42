"""Project-file speed: insert, export and merge of 10k and 100k synthetic ratings.

Insert goes through ``ProjectStore.add_rating``, one commit per rating as the rating panel does.
Export writes the raw rows (jsonl) and TRL's preference format (which aggregates annotators, as a
run would train on). Merge brings a whole project file (prompts, samples, ratings) into an empty
one, then merges it again (idempotent: nothing new). Growth should be linear: the per-row cost at
the large size is compared with the small size.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from bench.common import Result, finish, log, mode_of, parser, pick, workdir

ANNOTATORS = ("ana", "ben", "chloe", "dev")
LINEAR_TOLERANCE = 1.5  # per-row cost at 10x the rows may be at most this much higher


def build_project(path: Path, n_ratings: int, seed: int = 0) -> dict[str, float]:
    """A project with n ratings: 4 samples per prompt, each annotator rates both pairs of a prompt
    (pairwise) and scores one sample, so ratings / prompt = 3 x annotators. Returns timings."""
    from core.store import ProjectStore

    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    per_prompt = 3 * len(ANNOTATORS)
    n_prompts = max(1, n_ratings // per_prompt + 1)
    store = ProjectStore(path)
    t0 = time.perf_counter()
    store.add_prompts(({"text": f"prompt {i}"} for i in range(n_prompts)), source="bench")
    rows = [
        {
            "prompt_id": p + 1,
            "text": f"response {j} to prompt {p}: " + "word " * rng.randint(5, 60),
            "model": "default",
            "params": {"seed": p},
            "n_tokens": 40,
        }
        for p in range(n_prompts)
        for j in range(4)
    ]
    for i in range(0, len(rows), 5000):
        store.add_samples(rows[i : i + 5000])
    setup = time.perf_counter() - t0
    t0, written = time.perf_counter(), 0
    for p in range(n_prompts):
        s = [4 * p + j + 1 for j in range(4)]
        for who in ANNOTATORS:
            for ids, kind in (
                ((s[0], s[1]), "pairwise"),
                ((s[2], s[3]), "pairwise"),
                ((s[0],), "score"),
            ):
                if written == n_ratings:
                    break
                if kind == "pairwise":
                    choice = rng.choice("aab")
                    value = {"choice": choice, "winner": ids["ab".index(choice)]}
                else:
                    value = {"scores": {"overall": round(rng.random(), 2)}}
                store.add_rating(
                    annotator=who,
                    kind=kind,
                    sample_ids=list(ids),
                    value=value,
                    seconds=rng.uniform(2, 20),
                )
                written += 1
    insert = time.perf_counter() - t0
    store.close()
    return {"setup_s": setup, "insert_s": insert, "ratings": written, "prompts": n_prompts}


def time_exports(path: Path, out: Path) -> dict[str, float]:
    from core.exchange.ratings import export_ratings
    from core.store import ProjectStore

    times = {}
    with ProjectStore(path) as store:
        for fmt in ("jsonl", "preference"):
            t0 = time.perf_counter()
            result = export_ratings(store, out / f"export.{fmt}.jsonl", fmt)
            times[f"export_{fmt}_s"] = time.perf_counter() - t0
            times[f"export_{fmt}_rows"] = result.rows
    return times


def time_merge(source: Path, target: Path) -> dict[str, float]:
    from core.exchange.merge import merge_projects
    from core.store import ProjectStore

    target.unlink(missing_ok=True)
    with ProjectStore(target) as store:
        t0 = time.perf_counter()
        report = merge_projects(store, [source])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = merge_projects(store, [source])
        second = time.perf_counter() - t0
    return {
        "merge_s": first,
        "merge_ratings_added": report.added("ratings"),
        "remerge_s": second,
        "remerge_ratings_added": again.added("ratings"),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    res = Result("store_speed", "Project file: insert, export, merge", mode_of(args))
    sizes = pick(args, [10_000, 100_000], [1_000, 10_000], [60, 240])
    folder = workdir(args, "store_speed")
    table = {}
    for n in sizes:
        log(f"store_speed: {n} ratings")
        row = build_project(folder / f"ratings-{n}.db", n)
        row.update(time_exports(folder / f"ratings-{n}.db", folder))
        row.update(time_merge(folder / f"ratings-{n}.db", folder / f"merged-{n}.db"))
        row["db_mb"] = (folder / f"ratings-{n}.db").stat().st_size / 2**20
        table[n] = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        log(f"  {table[n]}")
    res.details["sizes"] = table
    small, large = sizes[0], sizes[-1]
    label = {10_000: "10k", 100_000: "100k"}
    for n in sizes:
        name = label.get(n, str(n))
        r = table[n]
        res.figure(
            f"store.insert_{name}",
            f"insert {name} ratings (one commit each)",
            r["ratings"] / r["insert_s"],
            "ratings/s",
            digits=0,
        )
        res.figure(
            f"store.export_jsonl_{name}",
            f"export {name} ratings, raw jsonl",
            r["export_jsonl_s"],
            "s",
            digits=2,
        )
        res.figure(
            f"store.export_pref_{name}",
            f"export {name} ratings, TRL preference",
            r["export_preference_s"],
            "s",
            digits=2,
        )
        res.figure(
            f"store.merge_{name}",
            f"merge a {name}-rating project into an empty one",
            r["merge_s"],
            "s",
            digits=2,
        )
    for op, key in (
        ("insert", "insert_s"),
        ("export jsonl", "export_jsonl_s"),
        ("export preference", "export_preference_s"),
        ("merge", "merge_s"),
    ):
        ratio = (table[large][key] / large) / (table[small][key] / small)
        res.figure(
            f"store.growth_{key[:-2]}",
            f"{op}: per-rating cost at {label.get(large, large)} / at {label.get(small, small)}",
            ratio,
            "x",
            target=LINEAR_TOLERANCE,
            better="lower",
            digits=2,
            note="" if ratio <= LINEAR_TOLERANCE else "super-linear growth",
        )
    res.notes.append(
        f"{len(ANNOTATORS)} annotators; per prompt 4 samples, 2 pairwise ratings and 1 score per "
        "annotator. The merge re-run added "
        + ", ".join(f"{table[n]['remerge_ratings_added']} ratings ({n})" for n in sizes)
        + " (idempotent)."
    )
    return finish(res, args)


if __name__ == "__main__":
    main()
