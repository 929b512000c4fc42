"""The fixed preference pairs that the DPO speed and memory benchmarks train on.

bench/data/pairs.jsonl holds 64+ (prompt, chosen, rejected) rows: responses of the embedded
default model to the starter prompts, judged by the sentiment rater (core.raters:sentiment), made
once with ``python -m bench.pairs`` so every run trains on the same tokens. ``pairs_project``
writes them into a project file as prompts, samples and pairwise ratings, as the app would.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import BENCH_DIR, REPO, log, use_bench_home

PAIRS_FILE = BENCH_DIR / "data" / "pairs.jsonl"


def load_pairs(n: int, synthetic: bool = False) -> list[dict[str, str]]:
    """``n`` pairs from bench/data/pairs.jsonl, or short synthetic ones (for a tiny model)."""
    if synthetic:
        return [
            {
                "prompt": f"Tell me about day {i}.",
                "chosen": f"Day {i} was a wonderful, happy day. " * 3,
                "rejected": f"Day {i} was a sad and terrible day. " * 3,
            }
            for i in range(n)
        ]
    rows = [json.loads(line) for line in PAIRS_FILE.read_text().splitlines() if line.strip()]
    if len(rows) < n:
        raise SystemExit(
            f"{PAIRS_FILE} has {len(rows)} pairs, fewer than {n}; run python -m bench.pairs"
        )
    return rows[:n]


def pairs_project(db: Path, pairs: list[dict[str, str]], annotator: str = "bench") -> Path:
    """A project file whose ratings are exactly ``pairs`` (one pairwise rating each)."""
    from core.store import ProjectStore

    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    with ProjectStore(db) as store:
        for p in pairs:
            (pid,), _ = store.add_prompts([{"text": p["prompt"]}], source="bench")
            chosen, rejected = store.add_samples(
                [
                    {"prompt_id": pid, "text": p[side], "model": "default"}
                    for side in ("chosen", "rejected")
                ]
            )
            store.add_rating(
                annotator=annotator,
                kind="pairwise",
                sample_ids=[chosen, rejected],
                value={"choice": "a", "winner": chosen, "rater": "core.raters:sentiment"},
            )
    return db


def make_pairs_file(n_prompts: int = 169, min_pairs: int = 64) -> None:
    """Two responses per starter prompt from the default model, the one the sentiment rater
    scores higher as chosen (a near-tie is marked ``tie``: the speed benchmarks do not care which
    side wins, only what the tokens are), until there are ``min_pairs``."""
    use_bench_home()
    from core.generation import GenerationParams, generate_texts
    from core.models import load_model
    from core.raters import TIE_MARGIN, sentiment

    lines = (REPO / "resources" / "starter_prompts.jsonl").read_text().splitlines()
    rows_in = [json.loads(line) for line in lines if line.strip()]
    prompts = [r["prompt"] for r in rows_in if "prompt" in r][:n_prompts]
    lm = load_model("default")
    params = GenerationParams(per_prompt=2, max_new_tokens=64)
    rows = []
    for i in range(0, len(prompts), 8):
        batch = prompts[i : i + 8]
        out = generate_texts(lm, [[{"role": "user", "content": p}] for p in batch], params, seed=i)
        for prompt, ((a, _), (b, _)) in zip(batch, out, strict=True):
            sa, sb = sentiment(prompt, a), sentiment(prompt, b)
            chosen, rejected = (a, b) if sa >= sb else (b, a)
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "tie": abs(sa - sb) < TIE_MARGIN,
                }
            )
        log(f"{i + len(batch)} prompts, {len(rows)} pairs")
        if len(rows) >= min_pairs:
            break
    if len(rows) < min_pairs:
        raise SystemExit(f"only {len(rows)} pairs from {len(prompts)} prompts")
    PAIRS_FILE.parent.mkdir(parents=True, exist_ok=True)
    PAIRS_FILE.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    log(f"wrote {len(rows)} pairs to {PAIRS_FILE}")


if __name__ == "__main__":
    make_pairs_file()
