"""What every benchmark script shares: its arguments, machine info, statistics and the result file.

A script builds a result with ``Result`` (figures, each against its target, plus free-form
details) and ``finish`` writes it as JSON; bench/run.py collects those files into
bench/results.json and bench/report.py turns that into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"  # scratch space (git-ignored): projects, logs, the bench home
HOME = OUT / "home"  # RLHF_STUDIO_HOME of the benchmarks: the converted default model lives here
MODES = ("full", "quick", "smoke")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds on --model (a tiny model): checks the script runs",
    )
    p.add_argument("--model", default="default", help="model spec (default: the embedded model)")
    p.add_argument("--out", help="write the result JSON here (default: print it)")
    p.add_argument("--workdir", help="scratch folder (default: bench/out/<script>)")
    p.add_argument(
        "--again",
        metavar="WHY",
        help="a re-measurement after a change: the result is named <script>_again and its title "
        "says WHY, so that bench.run --add keeps it beside the earlier one (which it supersedes)",
    )
    return p


def mode_of(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def pick(args: argparse.Namespace, full: Any, quick: Any, smoke: Any) -> Any:
    """The size of something for this run's mode."""
    return {"full": full, "quick": quick, "smoke": smoke}[mode_of(args)]


def workdir(args: argparse.Namespace, name: str) -> Path:
    path = Path(args.workdir) if args.workdir else OUT / mode_of(args) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def bench_env(home: Path | None = None) -> dict[str, str]:
    """Environment for the app's own processes: an isolated home, offline, no Qt window."""
    env = dict(os.environ)
    if home is not None:
        env["RLHF_STUDIO_HOME"] = str(home)
    env.setdefault("RLHF_STUDIO_HOME", str(HOME))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", QT_QPA_PLATFORM="offscreen")
    env["XDG_CONFIG_HOME"] = str(qt_config_dir(Path(env["RLHF_STUDIO_HOME"])))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def qt_config_dir(home: Path) -> Path:
    """Where the app's QSettings go in a benchmark: beside its data, never the user's config."""
    return home / "qt-config"


def use_bench_home() -> None:
    """Run in this process with the bench home unless the caller (a test) set one."""
    os.environ.setdefault("RLHF_STUDIO_HOME", str(HOME))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cli(
    argv: list[str], *, home: Path | None = None, timeout: float | None = None, check: bool = True
) -> tuple[float, str]:
    """``python main.py ARGV`` as a user runs it; returns (wall seconds, stdout + stderr)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), *argv],
        cwd=REPO,
        env=bench_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise RuntimeError(f"main.py {' '.join(argv)} exited {proc.returncode}:\n{output[-3000:]}")
    return seconds, output


# ---- machine ------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's name, with family/model numbers (a VM may show only "AMD EPYC")."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict[str, Any]:
    import torch
    import transformers

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "simd": ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "os": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        info["trl"] = None
    return info


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ---- statistics -------------------------------------------------------------------------------
_T975 = {
    1: 12.71,
    2: 4.30,
    3: 3.18,
    4: 2.78,
    5: 2.57,
    6: 2.45,
    7: 2.36,
    8: 2.31,
    9: 2.26,
    10: 2.23,
    12: 2.18,
    15: 2.13,
    20: 2.09,
    25: 2.06,
    30: 2.04,
    40: 2.02,
    60: 2.00,
    120: 1.98,
}


def t975(df: int) -> float:
    """Two-sided 95% Student-t quantile; between table entries the smaller df (conservative)."""
    if df < 1:
        return float("nan")
    if df > max(_T975):
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean, standard error and 95% confidence interval (Student t)."""
    n = len(values)
    if n == 0:
        return {
            "n": 0,
            "mean": float("nan"),
            "se": float("nan"),
            "lo": float("nan"),
            "hi": float("nan"),
        }
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    half = t975(n - 1) * se
    return {"n": n, "mean": mean, "se": se, "lo": mean - half, "hi": mean + half}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---- results ----------------------------------------------------------------------------------
@dataclass
class Result:
    """One script's result: figures (each with its target and pass/short) plus details."""

    name: str
    title: str
    mode: str
    started: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    load_before: list[float] = field(default_factory=load_average)
    commit: str = field(default_factory=lambda: code_version())
    figures: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    _t0: float = field(default_factory=time.perf_counter)

    def figure(
        self,
        key: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        target: float | None = None,
        better: str = "higher",
        note: str = "",
        digits: int = 1,
    ) -> dict[str, Any]:
        """Add a figure; with a target it is "pass" or "short" (``better``: higher or lower)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            status = "missing"
        elif target is None:
            status = "info"
        else:
            ok = value >= target if better == "higher" else value <= target
            status = "pass" if ok else "short"
        fig = {
            "key": key,
            "label": label,
            "value": value,
            "unit": unit,
            "target": target,
            "better": better,
            "status": status,
            "note": note,
            "digits": digits,
        }
        self.figures = [f for f in self.figures if f["key"] != key] + [fig]
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "mode": self.mode,
            "started": self.started,
            "commit": self.commit,
            "seconds": round(time.perf_counter() - self._t0, 1),
            "load_before": self.load_before,
            "load_after": load_average(),
            "machine": machine_info(),
            "figures": self.figures,
            "details": self.details,
            "notes": self.notes,
            "plots": self.plots,
        }


def code_version() -> str:
    """The commit the code under measurement is at, ``+changes`` when its code differs from it
    (results and docs, which benchmarks write, do not count)."""
    try:
        head, changes = (
            subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
            for cmd in (
                ["git", "rev-parse", "--short", "HEAD"],
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "."]
                + [":!bench/results.json", ":!docs"],
            )
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if changes else "")


def finish(result: Result, args: argparse.Namespace) -> dict[str, Any]:
    """Write the result JSON to ``--out`` (or print it) and return it."""
    if getattr(args, "again", None):
        result.name = f"{result.name}_again"
        result.title = f"{result.title}, re-measured: {args.again}"
    data = result.to_dict()
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return data


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plots_dir(args: argparse.Namespace) -> Path:
    """Where PNG plots go: docs/ for a full run (the report links them), else the scratch folder."""
    path = REPO / "docs" if mode_of(args) == "full" else workdir(args, "plots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def fresh(db: Path) -> None:
    """Remove a project file and its WAL files, so a run starts from an empty project."""
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
