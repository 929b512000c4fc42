"""Peak memory of DPO training: the resident set size of ``main.py train --algo dpo`` with LoRA
and with full fine-tuning, read from the kernel (``wait4`` rusage ``ru_maxrss``) when the
process ends. Both train on the same 64 pairs at the default batch size and max length; a third run shows
LoRA with full fine-tuning's tokens per forward pass, which the LoRA default trades for memory.
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
from core.store import ProjectStore

TARGETS_GB = {"lora": 2.5, "full": 4.0}


def _mean_step_seconds(db: Path) -> float:
    """Mean optimizer-step time of the newest run in ``db`` (the first step included)."""
    with ProjectStore(db, readonly=True) as store:
        history = store.metric_history(store.last_run_id(), ["step_time"])
    values = [m["step_time"] for _, m in history]
    return sum(values) / len(values) if values else float("nan")


def peak_rss(argv: list[str], log_path: Path, timeout_s: float) -> tuple[float, float, int, str]:
    """Run ``main.py ARGV``; (peak RSS in GB, wall seconds, exit code, output tail).

    ``os.wait4`` returns the rusage of exactly this child, so earlier children of the same
    process (a test run, the other fine-tuning mode) cannot leak into the figure."""
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), *argv],
            cwd=REPO,
            env=bench_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
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
    from core.training.config import default_forward_tokens

    rows, step_seconds = [], {}
    # the defaults (on a CPU LoRA passes fewer tokens than full fine-tuning), then LoRA with
    # full fine-tuning's tokens per pass: what the LoRA default trades (memory against time)
    tokens = {
        "lora": default_forward_tokens("cpu", True),
        "full": default_forward_tokens("cpu", False),
    }
    variants = [("lora", tokens["lora"]), ("full", tokens["full"]), ("lora", tokens["full"])]
    for kind, n_tokens in variants[:1] if args.smoke else variants:  # smoke: the code path, once
        other = n_tokens != tokens[kind]
        name = f"{kind}-{n_tokens}" if other else kind
        db = pairs_project(folder / f"memory-{name}.db", pairs)
        argv_ = [
            "--db",
            str(db),
            "--device",
            "cpu",
            "train",
            "--algo",
            "dpo",
            "--steps",
            str(steps),
            "--model",
            args.model,
            f"--{kind}",
            "--save-every",
            "0",
            "--set",
            f"forward_tokens={n_tokens}",
        ]
        log(f"memory: {name} ({steps} steps)")
        gb, seconds, rc, tail = peak_rss(
            argv_, folder / f"train-{name}.log", timeout_s=pick(args, 900, 600, 120)
        )
        if rc != 0:
            raise RuntimeError(f"train --{kind} exited {rc}:\n{tail}")
        step_s = step_seconds[name] = _mean_step_seconds(db)
        rows.append(
            {
                "fine-tuning": kind,
                "forward tokens": n_tokens,
                "default": not other,
                "peak RSS (GB)": round(gb, 3),
                "s/step": round(step_s, 1),
                "steps": steps,
                "pairs": n_pairs,
                "wall (s)": round(seconds, 1),
            }
        )
        log(f"  peak RSS {gb:.2f} GB in {seconds:.0f} s ({step_s:.1f} s/step)")
        what = "LoRA" if kind == "lora" else "full fine-tuning"
        if other:
            res.figure(
                f"memory.dpo_{kind}_{n_tokens}",
                f"peak RSS, DPO {what}, forward_tokens {n_tokens} (not the default)",
                gb,
                "GB",
                digits=2,
                note=f"{step_s:.1f} s/step against {step_seconds[kind]:.1f} at the default "
                f"{tokens[kind]} ({steps} steps each; see the table)",
            )
            continue
        res.figure(
            f"memory.dpo_{kind}",
            f"peak RSS, DPO {what} (forward_tokens {n_tokens})",
            gb,
            "GB",
            target=TARGETS_GB[kind],
            better="lower",
            digits=2,
            note=""
            if gb <= TARGETS_GB[kind]
            else "activations of the forward passes plus memory malloc keeps; lower "
            "forward_tokens trades it for time",
        )
    res.details["table"] = rows
    res.notes.append(
        f"`main.py train --algo dpo --steps {steps}` on {n_pairs} pairs, default batch size and max "
        "length, fp32 on CPU; the RSS includes Python, torch and transformers themselves "
        f"(pid {os.getpid()} spawned each run)."
    )
    return finish(res, args)


if __name__ == "__main__":
    main()
