"""The README's screenshots, made from real use: ``make screenshots`` (``python -m gui.screenshots``).

It builds a demo project the way a user would, with the app's own commands on the embedded
default model: the starter prompts (a few kept for evaluation), generated answers, two scripted
annotators who rate them pairwise (so agreement has something to measure), a short DPO run, and an
arena of the trained checkpoint against the model it started from, judged by a scripted judge.
Then it opens the window offscreen and saves the Rate tab with a real item, the Train tab while a
run trains (its curves growing) and the Data tab with agreement and the leaderboard.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from core.cli import build_parser, run

TABS = ("rate", "train", "data")
JUDGE = "core.raters:sentiment"
TRAIN_SHOT_STEP = 3  # the Train tab is saved after this step of its run


def build_project(db: Path, model: str, prompts: int, tokens: int, judge: str = JUDGE) -> None:
    """The demo project, through the app's own commands (as ``main.py ...`` runs them)."""
    base = ["--db", str(db), "--device", "cpu"]

    def cli(*argv: str) -> None:
        if run(build_parser().parse_args([*base, *argv])) != 0:
            raise SystemExit(f"screenshots: main.py {' '.join(argv)} failed")

    cli("prompts", "import", "resources/starter_prompts.jsonl")
    cli("prompts", "split", "--eval", "6")
    gen = ["--per-prompt", "4", "--max-new-tokens", str(tokens), "--seed", "1"]
    cli("generate", "--limit", str(prompts), "--model", model, *gen)
    for annotator, rater in (("alice", judge), ("bob", "core.raters:concise")):
        cli("rate", "--auto", rater, "--mode", "pairwise", "--annotator", annotator)
    cli("train", "--algo", "dpo", "--model", model, "--steps", "6", "--max-length", "256")
    arena = ["--per-prompt", "2", "--max-new-tokens", str(tokens), "--judge", judge]
    cli("arena", "--models", model, "checkpoint:latest", *arena)


def take_all(db: Path, out: Path, model: str, tokens: int) -> list[Path]:
    """Open the window on ``db`` offscreen and save one PNG per tab into ``out``."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from gui.app import MainWindow, configure_runtime
    from gui.context import AppContext
    from gui.fonts import apply_app_fonts

    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_runtime()
    apply_app_fonts(app)
    ctx = AppContext(db, "dana")  # a new annotator: every answer is still to rate for her
    ctx.update_settings(model=model, max_new_tokens=tokens, mode="pairwise")
    window = MainWindow(ctx, confirm_close=False)
    window.resize(1280, 820)
    window.show()

    def wait(ready, timeout_s: float) -> None:
        loop = QEventLoop()
        poll = QTimer()
        poll.timeout.connect(lambda: loop.quit() if ready() else None)
        poll.start(100)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        poll.stop()
        settle = QEventLoop()
        QTimer.singleShot(300, settle.quit)  # the last layout pass and repaint
        settle.exec()

    def save(name: str) -> Path:
        path = out / f"{name}.png"
        if not window.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        print(f"screenshot saved to {path}")
        return path

    saved = []
    try:
        window.select_tab("rate")
        wait(lambda: window.rate_panel.item is not None, 300)
        saved.append(save("rate"))
        window.select_tab("train")
        train = window.tabs.currentWidget()
        train.form.set_algo("dpo")
        for name, value in {"steps": 8, "save_every": 0, "max_length": 256}.items():
            train.form.set_value(name, value)
        steps: list[int] = []
        train.step_done.connect(lambda m: steps.append(m.step))
        train.start()
        wait(lambda: len(steps) >= TRAIN_SHOT_STEP, 900)
        saved.append(save("train"))
        train.stop()
        wait(lambda: not train.run.busy, 600)
        window.select_tab("data")
        data = window.tabs.currentWidget()
        wait(lambda: getattr(data, "is_ready", lambda: True)(), 300)
        saved.append(save("data"))
    finally:
        window.rate_panel.shutdown()
        window.close()
        from gui.app import stop_background_work

        stop_background_work()
        ctx.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default="docs/screenshots", help="folder for the PNGs")
    p.add_argument("--model", default="default", help="model spec (a tiny one for a quick check)")
    p.add_argument("--prompts", type=int, default=16, help="starter prompts answered")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--judge", default=JUDGE, help="the scripted rater of alice and the arena")
    p.add_argument("--workdir", help="where the demo project goes (default: a temp folder)")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlhf-screenshots-"))
    db = work / "demo.db"
    if db.exists():
        raise SystemExit(f"screenshots: {db} exists; give a new --workdir")
    build_project(db, args.model, args.prompts, args.max_new_tokens, args.judge)
    take_all(db, out, args.model, args.max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
