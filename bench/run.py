"""Run the benchmark suite: each script in its own process, results into one file, then the report.

``python -m bench.run`` (``make bench``) measures everything and writes bench/results.json and
docs/benchmarks.md. ``--quick`` (``make bench-quick``) is a smoke pass of the whole suite on the
default model with small sizes; it writes bench/out/quick/ and leaves docs/ alone. ``--only`` /
``--skip`` choose scripts; results of scripts not run are kept from the previous results file.
``--collect`` runs nothing and gathers the result files the scripts last wrote; ``--add FILE``
adds the result of a script run by hand (e.g. ``python -m bench.learning.run --runs dpo_small``,
a re-measured subset). A whole run (no ``--only``/``--skip``) starts a fresh results file.

The learning bench runs twice: ``learning_dev`` (the development raters) and, in a full run only,
``learning_test``, the reporting run on the test raters (docs/learning-protocol.md): a quick
pass never shows a test rater's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import report
from bench.common import BENCH_DIR, OUT, REPO, bench_env, load_average, log

# (name, module and arguments, minutes allowed in a full run). Order: cheap and independent
# first; the learning proof, the longest, last.
SCRIPTS = (
    ("gen_speed", ("bench.gen_speed",), 15),
    ("gen_whole", ("bench.gen_whole",), 20),
    ("store_speed", ("bench.store_speed",), 15),
    ("cold_start", ("bench.cold_start",), 10),
    ("memory", ("bench.memory",), 10),
    ("latency", ("bench.latency",), 20),
    ("dpo_vs_trl", ("bench.dpo_vs_trl",), 20),
    ("diagnostics", ("bench.diagnostics",), 20),
    ("dpo_whole", ("bench.dpo_whole",), 40),
    ("learning_dev", ("bench.learning.run",), 1200),
    ("learning_test", ("bench.learning.run", "--role", "test", "--report"), 1200),
)
FULL_ONLY = {"learning_test"}  # the test raters' figures come from the reporting run alone


def run_script(name: str, module: tuple[str, ...], minutes: float, mode: str, folder: Path) -> dict:
    """One script in a subprocess; its log goes to <folder>/logs/<name>.log."""
    out = folder / f"{name}.json"
    out.unlink(missing_ok=True)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", *module, "--out", str(out)]
    if mode == "quick":
        cmd.append("--quick")
    load_before = load_average()
    log(f"{name}: {' '.join(cmd[1:])} (load {load_before})")
    start = time.perf_counter()
    with open(logs / f"{name}.log", "w") as f:
        # its own process group: a timeout also ends the app processes the script started
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=bench_env(),
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
    seconds = time.perf_counter() - start
    if rc == 0 and out.exists():
        log(f"{name}: done in {seconds:.0f} s")
        return json.loads(out.read_text())
    tail = (logs / f"{name}.log").read_text()[-3000:]
    log(f"{name}: FAILED ({rc}) after {seconds:.0f} s; see {logs / (name + '.log')}")
    title = name.replace("_", " ").capitalize()
    why = f"timed out after {minutes:g} min" if rc == "timeout" else f"exited {rc}"
    return {
        "name": name,
        "title": title,
        "mode": mode,
        "figures": [],
        "seconds": round(seconds),
        "load_before": load_before,
        "load_after": load_average(),
        "error": f"{why}; log bench/out/{mode}/logs/{name}.log",
        "log_tail": tail,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke pass of the suite")
    p.add_argument(
        "--only", help="comma-separated scripts to run: " + ", ".join(n for n, *_ in SCRIPTS)
    )
    p.add_argument("--skip", help="comma-separated scripts not to run")
    p.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: gather the scripts' last result files (bench/out/<mode>/NAME.json)",
    )
    p.add_argument(
        "--add",
        nargs="*",
        metavar="RESULT.json",
        help="run nothing else: add these result files of single scripts to the results (none: "
        "only render docs/benchmarks.md again)",
    )
    args = p.parse_args(argv)
    adding = args.add is not None  # `--add` with no file still measures nothing
    if adding:
        args.only = ""  # nothing to run
    mode = "quick" if args.quick else "full"
    folder = OUT / mode
    results_path = folder / "results.json" if args.quick else BENCH_DIR / "results.json"
    docs = folder / "benchmarks.md" if args.quick else REPO / "docs" / "benchmarks.md"
    only = set(filter(None, args.only.split(","))) if args.only is not None else None
    if adding and only is None:
        only = set()  # --add adds result files and re-renders; it measures nothing else
    skip = set(args.skip.split(",")) if args.skip else set()
    unknown = ((only or set()) | skip) - {n for n, *_ in SCRIPTS}
    if unknown:
        p.error(f"unknown script(s): {', '.join(sorted(unknown))}")
    previous = json.loads(results_path.read_text()) if results_path.exists() else {}
    # a whole run starts afresh; a partial one keeps what earlier runs measured
    partial = only is not None or skip or args.collect or adding
    benches = dict(previous.get("benches", {})) if partial else {}
    for extra in args.add or []:  # e.g. a re-measured subset: python -m bench.learning.run --runs
        data = json.loads(Path(extra).read_text())
        benches[data["name"]] = data
    start = time.perf_counter()
    for name, module, minutes in SCRIPTS:
        if (only is not None and name not in only) or name in skip:
            continue
        if mode == "quick" and name in FULL_ONLY:
            continue
        if args.collect:
            if (folder / f"{name}.json").exists():
                benches[name] = json.loads((folder / f"{name}.json").read_text())
            continue
        benches[name] = run_script(name, module, minutes, mode, folder)
        _write(results_path, benches, docs)  # a crash later keeps what was measured
    _write(results_path, benches, docs)
    log(f"suite finished in {(time.perf_counter() - start) / 60:.1f} min: {results_path}, {docs}")
    return 0 if all(not b.get("error") for b in benches.values()) else 1


def _write(results_path: Path, benches: dict, docs: Path) -> None:
    machine = next((b["machine"] for b in benches.values() if b.get("machine")), {})
    results = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "benches": benches,
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(report.render(results, docs.parent.resolve()))


if __name__ == "__main__":
    sys.exit(main())
