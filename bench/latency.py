"""Annotator latency in the real window: submit -> next item, and the longest GUI stall while the
app generates and while it trains.

The app's MainWindow runs offscreen on a project with ready-made responses. A pairwise rating is
submitted by a key press (``A``) every PACE_MS, as a fast annotator would; the time from the key
press until the next item is on screen and painted is one latency sample. Meanwhile a QTimer fires
every 5 ms on the GUI thread; the longest gap between two of its ticks, beyond the 5 ms, is the
longest stall the annotator could have felt. Three phases:

0. startup: the app loads its generation model on a worker thread;
1. idle: only the app's own item queue works in the background;
2. generating: ``generate_samples`` runs in a ``gui.workers.Task`` as the app's refill does;
3. training: the Train tab's Start runs DPO (its defaults, a few steps) in the background.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import (
    REPO,
    Result,
    finish,
    log,
    median,
    mode_of,
    parser,
    percentile,
    pick,
    qt_config_dir,
    use_bench_home,
    workdir,
)
from bench.pairs import load_pairs, pairs_project

TARGET_P95_MS, TARGET_STALL_MS = 30.0, 50.0
TICK_MS, PACE_MS = 5, 150
WORDS = (
    "the quick answer is that water boils at one hundred degrees at sea level and the "
    "reason is pressure, which changes with height above the sea"
).split()


def prepare_project(db: Path, model: str, n_prompts: int, smoke: bool) -> Path:
    """Pairs to train on (annotator bench), plus prompts with four ready responses to rate and
    prompts with none (for the generation phase)."""
    from core.prompts import import_prompts
    from core.store import ProjectStore

    pairs_project(db, load_pairs(8 if smoke else 64, synthetic=smoke))
    with ProjectStore(db) as store:
        # the prompts this import adds: every prompt of the pairs project has source "bench"
        ids = import_prompts(store, REPO / "resources" / "starter_prompts.jsonl").prompt_ids
        rows = [
            {
                "prompt_id": p,
                "model": "bench",
                "text": f"Answer {j}. " + " ".join(WORDS[(p + j) % 7 :] * 3),
            }
            for p in ids[:n_prompts]
            for j in range(4)
        ]
        store.add_samples(rows)
        store.update_settings(model=model)
    return db


class Clock:
    """A 5 ms QTimer on the GUI thread; ``gaps`` are the intervals between its ticks (ms)."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self) -> None:
        self.gaps, self._last = [], None
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps


class GcPauses:
    """The garbage collector's collections (any thread), as ``(generation, ms)``: a collection
    holds the GIL, so a long one stalls the GUI thread whoever triggered it."""

    def __init__(self):
        import gc

        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._t0) * 1000))

    def take(self) -> list[tuple[int, float]]:
        taken, self.pauses = self.pauses, []
        return taken

    def close(self) -> None:
        import gc

        gc.callbacks.remove(self._callback)


def spin(ms: float) -> None:
    """Run the event loop for ``ms`` milliseconds (the annotator reading the item)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(ms), loop.quit)
    loop.exec()


def wait_until(cond, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > deadline:
            return False
        spin(20)
    return True


def rate_while(panel, keep_going, max_ratings: int) -> list[float]:
    """Submit pairwise ratings at PACE_MS while ``keep_going()``; submit -> painted next item (ms)."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtTest import QTest

    samples: list[float] = []
    shown: list[float] = []
    panel.item_shown.connect(lambda: shown.append(time.perf_counter()))
    while keep_going() and len(samples) < max_ratings:
        spin(PACE_MS)
        if panel.item is None:
            continue  # nothing on screen yet (still loading)
        before = len(shown)
        t0 = time.perf_counter()
        QTest.keyClick(panel, Qt.Key.Key_A)
        if len(shown) == before:  # the next item is not ready: not a latency sample
            continue
        QCoreApplication.processEvents()  # layout and paint of the new item
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def phase(
    name: str, panel, clock: Clock, gcs: GcPauses, keep_going, max_ratings: int, max_s: float = 300
) -> dict:
    gcs.take()
    clock.start()
    t0 = time.perf_counter()
    lat = rate_while(panel, lambda: keep_going() and time.perf_counter() - t0 < max_s, max_ratings)
    gaps = clock.stop()
    collections = gcs.take()
    stall = max(gaps) - TICK_MS if gaps else float("nan")
    longest_gc = max((ms for _, ms in collections), default=0.0)
    row = {
        "phase": name,
        "seconds": round(time.perf_counter() - t0, 1),
        "ratings": len(lat),
        "p50 ms": round(percentile(lat, 50), 1),
        "p95 ms": round(percentile(lat, 95), 1),
        "max ms": round(max(lat), 1) if lat else None,
        "longest stall ms": round(stall, 1),
        "gaps > 50 ms": sum(g - TICK_MS > 50 for g in gaps),
        "full collections": sum(g == 2 for g, _ in collections),
        "longest collection ms": round(longest_gc, 1),
    }
    log(f"  {row}")
    return {"row": row, "latencies": lat, "stall": stall, "longest_gc": longest_gc}


def stall_cause(p: dict) -> str:
    """Why a phase's longest stall exceeded the target, from what was measured in it."""
    if p["stall"] <= TARGET_STALL_MS:
        return ""
    if p["longest_gc"] >= 0.8 * p["stall"]:
        return f"a garbage collection held the GIL for {p['longest_gc']:.0f} ms"
    if p["longest_gc"] >= 0.5 * p["stall"]:
        return (
            f"mostly a garbage collection: {p['longest_gc']:.0f} ms of the {p['stall']:.0f} ms "
            "stall"
        )
    return (
        f"not a garbage collection (the longest took {p['longest_gc']:.0f} ms): a worker thread "
        "held the GIL in one long C call (in a profile of a first model load: the tokenizer's "
        "Tokenizer.from_file, about 0.2 s; a later load of the same files reuses the tokenizer)"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    use_bench_home()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from core.generation import GenerationParams, generate_samples
    from core.models import load_model
    from gui.app import MainWindow, configure_runtime
    from gui.context import AppContext
    from gui.workers import Task, running_tasks, stop

    app = QApplication.instance() or QApplication([])
    threads = configure_runtime()  # what run_app does: GIL switch interval, torch threads
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):  # not the user's
        QSettings.setPath(
            fmt, QSettings.Scope.UserScope, str(qt_config_dir(Path(os.environ["RLHF_STUDIO_HOME"])))
        )
    res = Result("latency", "Annotator latency and GUI stalls", mode_of(args))
    res.details["background_torch_threads"] = threads
    n_idle = pick(args, 100, 30, 5)
    gen_s, train_steps = pick(args, 40, 15, 3), pick(args, 3, 1, 1)
    n_ready = pick(args, 80, 40, 12)  # prompts with ready responses: 2 pairwise items each
    db = prepare_project(workdir(args, "latency") / "latency.db", args.model, n_ready, args.smoke)
    ctx = AppContext(db, "latency")
    window = MainWindow(ctx, confirm_close=False)
    window.resize(1280, 820)
    window.show()
    panel = window.rate_panel
    clock = Clock()
    gcs = GcPauses()
    phases = []
    try:
        wait_until(lambda: panel.item is not None, 120)
        log("latency: startup phase (the app loads its model in the background)")
        feeder = panel.feeder
        phases.append(
            phase(
                "startup (model loading in the background)",
                panel,
                clock,
                gcs,
                lambda: feeder.loaded is None and feeder.model_error is None,
                10_000,
            )
        )
        log("latency: idle phase")
        phases.append(
            phase(
                "idle (queue refills in the background)",
                panel,
                clock,
                gcs,
                lambda: True,
                n_idle,
                max_s=pick(args, 120, 60, 5),
            )
        )

        log("latency: generating phase")
        loaded = load_model(args.model)  # before the phase; the app's feeder holds its own copy
        params = GenerationParams(per_prompt=4, max_new_tokens=64, batch_size=32)

        def work(cancel):
            from core.store import ProjectStore

            store = ProjectStore(db)
            try:
                yield from generate_samples(store, loaded, params, limit=64, cancel=cancel)
            finally:
                store.close()

        gen_task = Task(work, name="bench-generate").start()
        t_end = time.perf_counter() + gen_s
        phases.append(
            phase(
                "generating (generate_samples in a Task)",
                panel,
                clock,
                gcs,
                lambda: gen_task.is_running() and time.perf_counter() < t_end,
                10_000,
            )
        )
        stop([gen_task])

        train_panel = window.tabs.widget(1)
        if hasattr(train_panel, "start"):
            log("latency: training phase")
            train_panel.form.set_algo("dpo")
            for name, value in {"steps": train_steps, "save_every": 0}.items():
                train_panel.form.set_value(name, value)
            ended: list = []
            train_panel.run_ended.connect(lambda *a: ended.append(a))
            train_panel.start()
            phases.append(
                phase(
                    f"training (DPO from the Train tab, {train_steps} steps)",
                    panel,
                    clock,
                    gcs,
                    lambda: not ended,
                    10_000,
                )
            )
        else:
            res.notes.append("The Train tab is not in this build: the training phase was skipped.")
    finally:
        stop(running_tasks(), timeout_s=120)
        gcs.close()
        window.close()
        ctx.close()
        window.deleteLater()
        app.processEvents()
    res.details["table"] = [p["row"] for p in phases]
    idle = phases[1]
    all_lat = [x for p in phases for x in p["latencies"]]
    res.figure(
        "latency.p50",
        "submit -> next item painted, p50 (idle)",
        percentile(idle["latencies"], 50),
        "ms",
    )
    res.figure(
        "latency.p95",
        "submit -> next item painted, p95 (idle)",
        percentile(idle["latencies"], 95),
        "ms",
        target=TARGET_P95_MS,
        better="lower",
    )
    res.figure(
        "latency.p95_all",
        "submit -> next item painted, p95 (all phases)",
        percentile(all_lat, 95),
        "ms",
        target=TARGET_P95_MS,
        better="lower",
    )
    res.figure(
        "latency.stall_startup",
        "longest GUI stall while the model loads at startup",
        phases[0]["stall"],
        "ms",
        target=TARGET_STALL_MS,
        better="lower",
        note=stall_cause(phases[0]),
    )
    for p, key in zip(phases[2:], ("generating", "training"), strict=False):
        res.figure(
            f"latency.stall_{key}",
            f"longest GUI stall while {key}",
            p["stall"],
            "ms",
            target=TARGET_STALL_MS,
            better="lower",
            note=stall_cause(p),
        )
    res.details["median_ms"] = {p["row"]["phase"]: median(p["latencies"]) for p in phases}
    res.notes.append(
        f"Pairwise ratings by key press every {PACE_MS} ms; a {TICK_MS} ms QTimer measures stalls "
        "(the longest gap between ticks minus 5 ms). Offscreen Qt platform; paint included. "
        f"Runtime as the app sets it (gui.app.configure_runtime): {threads} torch thread(s) for "
        f"background work on {os.cpu_count()} cores, GIL switch interval 1 ms."
    )
    return finish(res, args)


if __name__ == "__main__":
    main()
