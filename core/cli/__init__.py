"""The command line: one module per headless command, each with ``add_parser`` and ``run``.

``main.py`` parses with :func:`build_parser` and dispatches: no command (or ``gui``) opens the
desktop app, anything else runs here. Every problem a person can fix ends in one line on stderr
and exit code 2 (:func:`guarded`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

from core.errors import USER_ERRORS

HEADLESS = (
    "prompts",
    "generate",
    "rate",
    "stats",
    "train",
    "arena",
    "export",
    "merge",
    "calibrate",
)
QUIET = (
    "generate",
    "train",
    "export",
    "calibrate",
)  # commands whose libraries would print progress of their own


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"core.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlhf-studio",
        description="Generate, rate and train from human feedback on one workstation.",
    )
    p.add_argument("--db", help="project file (default: default.db in the user data dir)")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)"
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="fp32, bf16, fp16 (default: bf16 on CUDA; on a CPU the faster one, measured once "
        "per CPU: see the calibrate command)",
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model's own code to run"
    )
    p.add_argument("--annotator", help="your name as an annotator (the app skips its name dialog)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in HEADLESS[:4]:
        _module(name).add_parser(sub)
    gui = sub.add_parser("gui", help="open the desktop app (the default)")
    gui.add_argument("--screenshot", metavar="OUT.png", help="render offscreen, save a PNG, exit")
    gui.add_argument("--tab", choices=["rate", "train", "data"], default="rate")
    gui.add_argument(
        "--annotator",
        default=argparse.SUPPRESS,
        help="your name as an annotator (skips the name dialog)",
    )
    for name in HEADLESS[4:]:
        _module(name).add_parser(sub)
    return p


def guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command``; a user error becomes one line on stderr and exit code 2."""
    try:
        return command(args)
    except KeyboardInterrupt:
        print("interrupted; everything already written is kept.", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Run the headless command ``args.command``."""
    if args.command in QUIET:
        from core.cli.common import quiet_libraries

        quiet_libraries()
    return guarded(_module(args.command).run, args)
