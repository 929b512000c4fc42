"""DPO, whole process: the ``train`` command against a TRL DPOTrainer script, each from start to exit.

A user waits for the whole process, not for steps: loading, tokenizing, the reference log-probs,
the steps and saving the model. So each side runs as a user runs it, in its own process, timed
from start to exit: ours is ``python main.py --db P train --algo dpo --full ...`` (the final
checkpoint included); TRL's is bench/trl_dpo.py (imports, model, dataset, DPOTrainer, train,
``save_model``). Both train on the same pairs: the project's own ``export ratings --format
preference`` (conversational rows, so TRL applies the chat template as ours does).
Settings: full fine-tuning, fp32, CPU, batch 8, max length 128, lr 3e-5 linear with 10% warm-up,
beta 0.1. Two run lengths in the same bench run: 6 optimizer steps, and 2 epochs over the pairs.
Runs alternate ours and TRL (the order flips each repetition); the median wall time is reported.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BENCH_DIR,
    REPO,
    Result,
    bench_env,
    finish,
    log,
    median,
    mode_of,
    parser,
    pick,
    run_cli,
    use_bench_home,
    workdir,
)
from bench.pairs import load_pairs, pairs_project

TARGET_RATIO = 1.5  # issue 17: whole process at least 1.5x TRL for both run lengths
MAX_LENGTH, LR = 128, 3e-5
# (label, key, our train flags, the TRL script's flags)
LENGTHS = (
    ("6 steps", "steps6", ["--steps", "6"], ["--steps", "6"]),
    ("2 epochs", "epochs2", ["--epochs", "2", "--min-steps", "0"], ["--epochs", "2"]),
)


def run_ours(args, pairs: list[dict], flags: list[str], folder: Path, batch: int) -> float:
    db = pairs_project(folder / "ours.db", pairs)  # a fresh project: the run's rows and checkpoint
    argv = ["--db", str(db), "--device", "cpu", "train", "--algo", "dpo", "--full"]
    argv += ["--model", args.model, "--batch-size", str(batch), "--max-length", str(MAX_LENGTH)]
    argv += ["--lr", str(LR), "--warmup-ratio", "0.1", "--save-every", "0", "--seed", "0", *flags]
    seconds, _ = run_cli(argv)
    return seconds


def run_trl(export: Path, model_dir: str, flags: list[str], folder: Path, batch: int) -> float:
    cmd = [sys.executable, str(BENCH_DIR / "trl_dpo.py"), str(export), model_dir]
    cmd += [str(folder / "trl-out"), *flags, "--batch", str(batch)]
    cmd += ["--max-length", str(MAX_LENGTH), "--lr", str(LR)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=bench_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the TRL script exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=None, help="pairs in the project (default 64)")
    args = p.parse_args(argv)
    use_bench_home()
    n_pairs = args.pairs or pick(args, 64, 16, 8)
    batch = pick(args, 8, 4, 2)
    reps = pick(args, 2, 1, 1)
    folder = workdir(args, "dpo_whole")
    res = Result("dpo_whole", "DPO whole process vs TRL", mode_of(args))
    pairs = load_pairs(n_pairs, synthetic=args.smoke)
    export = folder / "pairs.jsonl"
    export_db = pairs_project(folder / "export.db", pairs)
    run_cli(
        ["--db", str(export_db), "export", "ratings", "--format", "preference"]
        + ["-o", str(export)]
    )
    from core.models import load_model

    model_dir = load_model(args.model, device="cpu", dtype="fp32").source  # the same weights
    sides = ["ours", "trl"]
    if importlib.util.find_spec("trl") is None:
        sides = ["ours"]
        res.notes.append("TRL is not installed (pip install -e '.[bench]'): only our trainer ran.")
    walls: dict[tuple[str, str], list[float]] = {}
    for rep in range(reps):
        for label, key, ours_flags, trl_flags in LENGTHS:
            for side in sides if rep % 2 == 0 else sides[::-1]:
                run_dir = folder / f"{key}-{side}-{rep}"
                run_dir.mkdir(parents=True, exist_ok=True)
                log(f"dpo_whole: {side}, {label}, repetition {rep + 1} of {reps}")
                seconds = (
                    run_ours(args, pairs, ours_flags, run_dir, batch)
                    if side == "ours"
                    else run_trl(export, model_dir, trl_flags, run_dir, batch)
                )
                log(f"  {seconds:.1f} s")
                walls.setdefault((key, side), []).append(seconds)
    rows = []
    for label, key, _, _ in LENGTHS:
        ours = median(walls.get((key, "ours"), []))
        trl = median(walls.get((key, "trl"), []))
        ratio = trl / ours if ours > 0 else float("nan")
        steps = math.ceil(6 if key == "steps6" else 2 * n_pairs / batch)
        res.figure(f"dpo_whole.{key}.ours_s", f"ours, {label}: start to exit", ours, "s")
        res.figure(f"dpo_whole.{key}.trl_s", f"TRL DPOTrainer, {label}: start to exit", trl, "s")
        res.figure(
            f"dpo_whole.{key}.ratio",
            f"whole-process speed-up over TRL, {label} (TRL s / ours)",
            ratio,
            "x",
            target=TARGET_RATIO,
            digits=2,
        )
        rows.append(
            {
                "run": label,
                "optimizer steps": steps,
                "ours s": [round(s, 1) for s in walls.get((key, "ours"), [])],
                "TRL s": [round(s, 1) for s in walls.get((key, "trl"), [])],
                "ratio (medians)": round(ratio, 2) if not math.isnan(ratio) else None,
            }
        )
    res.details.update(table=rows, pairs=n_pairs, batch=batch, max_length=MAX_LENGTH, reps=reps)
    res.notes.append(
        f"{n_pairs} pairs exported from the project, batch {batch}, max length {MAX_LENGTH}, full "
        f"fine-tuning, fp32, CPU, lr {LR:g} linear with 10% warm-up; each run a fresh process, "
        "timed from start to exit (the trained model saved at the end by both)."
    )
    return finish(res, args)


if __name__ == "__main__":
    main()
