"""RLHF Studio. With no command it opens the desktop app; otherwise it runs a headless command.

python main.py [--db FILE]                       # the app
python main.py --db P prompts import FILE [--source NAME]
python main.py --db P generate [--per-prompt K] [--limit N] ...
python main.py --db P rate --auto MODULE:FUNC --mode pairwise --annotator NAME
python main.py --db P stats [--json]
python main.py --db P train --algo dpo ...
python main.py --db P export ratings|checkpoint ...
python main.py --db P merge OTHER.db ...
python main.py calibrate [--model SPEC]          # fp32 or bf16 on this CPU, measured again

The commands live in core/cli/ (one module each); the app in gui/.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.cli import build_parser, guarded, run


def gui_imports() -> None:
    """What the app imports before its window opens: the model stack and the store, then the
    GUI, whose package hands imports back from PySide6's ``__feature__`` hook as soon as PySide6
    installs it (gui/__init__.py), so nothing imported later has its source read for it."""
    import core.generation  # noqa: F401
    import core.store  # noqa: F401
    import gui.app  # noqa: F401


def run_gui(args: argparse.Namespace) -> int:
    gui_imports()
    from gui.app import run_app

    return guarded(run_app, args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.command in (None, "gui"):
        if args.command is None:
            args.screenshot, args.tab = None, "rate"
        return run_gui(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
