"""Peak memory of DPO training: the resident set size of ``main.py train --algo dpo`` with LoRA
and with full fine-tuning, read from the kernel (``wait4`` rusage ``ru_maxrss``) when the
process ends. Both train on the same 64 pairs at the default batch size and max length.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import REPO, Result, bench_env, finish, log, mode_of, parser, pick, workdir
from bench.pairs import load_pairs, pairs_project

TARGETS_GB = {"lora": 2.5, "full": 4.0}


def peak_rss(argv: list[str], log_path: Path, timeout_s: float) -> tuple[float, float, int, str]:
    """Run ``main.py ARGV``; (peak RSS in GB, wall seconds, exit code, output tail).

    ``os.wait4`` returns the rusage of exactly this child, so earlier children of the same
    process (a test run, the other fine-tuning mode) cannot leak into the figure."""
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), *argv], cwd=REPO, env=bench_env(),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = log_path.read_text()[-2000:]
    return usage.ru_maxrss / 2**20, time.perf_counter() - start, proc.returncode, tail


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    res = Result("memory", "Peak memory of DPO training", mode_of(args))
    folder = workdir(args, "memory")
    steps = pick(args, 4, 2, 1)
    n_pairs = pick(args, 64, 64, 8)
    pairs = load_pairs(n_pairs, synthetic=args.smoke)
    rows = []
    for kind in ("lora",) if args.smoke else ("lora", "full"):  # smoke: the code path, once
        db = pairs_project(folder / f"memory-{kind}.db", pairs)
        argv_ = ["--db", str(db), "--device", "cpu", "train", "--algo", "dpo", "--steps", str(steps),
                 "--model", args.model, f"--{kind}", "--save-every", "0"]  # fmt: skip
        log(f"memory: {kind} ({steps} steps)")
        gb, seconds, rc, tail = peak_rss(
            argv_, folder / f"train-{kind}.log", timeout_s=pick(args, 900, 600, 120)
        )
        if rc != 0:
            raise RuntimeError(f"train --{kind} exited {rc}:\n{tail}")
        rows.append({"fine-tuning": kind, "peak RSS (GB)": round(gb, 3), "steps": steps,
                     "pairs": n_pairs, "wall (s)": round(seconds, 1)})  # fmt: skip
        log(f"  peak RSS {gb:.2f} GB in {seconds:.0f} s")
        res.figure(f"memory.dpo_{kind}", f"peak RSS, DPO {'LoRA' if kind == 'lora' else 'full fine-tuning'}",
                   gb, "GB", target=TARGETS_GB[kind], better="lower", digits=2,
                   note="" if gb <= TARGETS_GB[kind] else "see the table: model, reference, optimizer state")  # fmt: skip
    res.details["table"] = rows
    res.notes.append(
        f"`main.py train --algo dpo --steps {steps}` on {n_pairs} pairs, default batch size and max "
        "length, fp32 on CPU; the RSS includes Python, torch and transformers themselves "
        f"(pid {os.getpid()} spawned each run)."
    )
    return finish(res, args)


if __name__ == "__main__":
    main()
