"""RLHF Studio command line. With no subcommand it opens the desktop app.

python main.py [--db FILE]                       # the app
python main.py --db P prompts import FILE [--source NAME]
python main.py --db P generate [--per-prompt K] [--limit N] ...
python main.py --db P rate --auto MODULE:FUNC --mode pairwise --annotator NAME
python main.py --db P stats [--json]
python main.py --db P train --algo dpo ...
python main.py --db P export ratings|checkpoint ...
python main.py --db P merge OTHER.db ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


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
        "--dtype", default=None, help="fp32, bf16, fp16 (default: bf16 on CUDA, else fp32)"
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model's own code to run"
    )
    p.add_argument("--annotator", help="your name as an annotator (the app skips its name dialog)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    prompts = sub.add_parser("prompts", help="manage prompts")
    psub = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="import prompts from .txt, .jsonl or .csv")
    imp.add_argument("file")
    imp.add_argument("--source", help="label stored with each prompt (default: the file name)")

    gen = sub.add_parser("generate", help="generate K candidate responses per prompt")
    gen.add_argument("--per-prompt", type=int, default=None, help="K (default: project setting, 4)")
    gen.add_argument(
        "--limit", type=int, default=None, help="at most N prompts (fewest samples first)"
    )
    gen.add_argument("--max-new-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass")
    gen.add_argument("--model", default=None, help="model spec (default: project setting)")

    rate = sub.add_parser("rate", help="rate samples with a scripted rater")
    rate.add_argument(
        "--auto",
        required=True,
        metavar="MODULE:FUNC",
        help="f(prompt, response) -> float in [0, 1], e.g. core.raters:sentiment",
    )
    rate.add_argument("--mode", required=True, choices=["score", "pairwise", "rank", "thumbs"])
    rate.add_argument("--annotator", dest="rate_annotator", required=True)
    rate.add_argument("--limit", type=int, default=None, help="write at most N ratings")

    stats = sub.add_parser("stats", help="counts, agreement and speed")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")

    gui = sub.add_parser("gui", help="open the desktop app (the default)")
    gui.add_argument("--screenshot", metavar="OUT.png", help="render offscreen, save a PNG, exit")
    gui.add_argument("--tab", choices=["rate", "train", "data"], default="rate")
    gui.add_argument(
        "--annotator",
        default=argparse.SUPPRESS,
        help="your name as an annotator (skips the name dialog)",
    )

    _add_train_parser(sub)
    _add_exchange_parsers(sub)
    return p


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from core.cli_options import add_train_arguments

    train = sub.add_parser(
        "train", help="train from the ratings (reward, dpo, kto, rloo, reinforce)"
    )
    add_train_arguments(train)


def _add_exchange_parsers(sub: argparse._SubParsersAction) -> None:
    from core.cli_options import add_export_arguments, add_merge_arguments

    add_export_arguments(sub.add_parser("export", help="export ratings or a checkpoint"))
    add_merge_arguments(sub.add_parser("merge", help="merge other project files into this one"))


def open_store(args: argparse.Namespace):
    from core.models import default_project_path
    from core.store import ProjectStore

    return ProjectStore(Path(args.db) if args.db else default_project_path())


def cmd_prompts(args: argparse.Namespace) -> int:
    from core.prompts import import_prompts

    with open_store(args) as store:
        res = import_prompts(store, args.file, source=args.source)
    print(
        f"{res.path}: {res.added} prompts added, {res.skipped_duplicates} duplicates skipped "
        f"({res.total} read)."
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.generation import GenerationParams, generate_samples
    from core.models import load_model

    with open_store(args) as store:
        s = store.settings()
        params = GenerationParams(
            per_prompt=args.per_prompt or s["per_prompt"],
            max_new_tokens=args.max_new_tokens or s["max_new_tokens"],
            temperature=s["temperature"] if args.temperature is None else args.temperature,
            top_p=s["top_p"] if args.top_p is None else args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        params.validate()
        if store.count("prompts") == 0:
            from core.errors import UserError

            raise UserError(
                f"{store.path} has no prompts; import some first "
                "(prompts import resources/starter_prompts.jsonl)."
            )
        spec = args.model or s["model"]
        loaded = load_model(
            spec,
            store=store,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            progress=lambda msg, _f: print(msg, file=sys.stderr),
        )
        bar, written, last = None, 0, None
        for prog in generate_samples(store, loaded, params, limit=args.limit):
            if bar is None:
                bar = tqdm(total=prog.total, unit="prompt", desc="generate", file=sys.stderr)
            bar.update(prog.done - bar.n)
            bar.set_postfix(tok_s=f"{prog.tokens_per_second:.0f}")
            written += len(prog.sample_ids)
            last = prog
        if bar:
            bar.close()
    rate = f", {last.tokens_per_second:.0f} tok/s" if last else ""
    print(f"{written} samples written from {loaded.spec} on {loaded.device_label}{rate}.")
    return 0


def cmd_rate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.raters import load_rater, rate_auto

    rater = load_rater(args.auto)
    with open_store(args) as store:
        bar, written = None, 0
        for prog in rate_auto(
            store,
            rater,
            mode=args.mode,
            annotator=args.rate_annotator,
            limit=args.limit,
            rater_spec=args.auto,
        ):
            if bar is None:
                bar = tqdm(total=prog.total, unit="item", desc="rate", file=sys.stderr)
            bar.update(prog.done - bar.n)
            written = prog.written
        if bar:
            bar.close()
    print(f"{written} {args.mode} ratings written by {args.rate_annotator} ({args.auto}).")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from core.stats import format_stats, project_stats

    with open_store(args) as store:
        stats = project_stats(store)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
    else:
        print(format_stats(stats))
    return 0


def gui_imports() -> None:
    """What the GUI imports before its window opens, in the order that costs least: torch and the
    store before the first PySide6 import, because from then on PySide6's import hook (its
    __feature__ support) reads the source of every module imported, over a thousand of them for
    torch (docs/benchmarks.md, cold start)."""
    import core.generation  # noqa: F401
    import core.store  # noqa: F401
    import gui.app  # noqa: F401


def cmd_gui(args: argparse.Namespace) -> int:
    gui_imports()
    from gui.app import run_app

    return run_app(args)


def cmd_train(args: argparse.Namespace) -> int:
    from core.training import train_command

    return train_command(args)


def cmd_export(args: argparse.Namespace) -> int:
    from core.exchange import export_command

    return export_command(args)


def cmd_merge(args: argparse.Namespace) -> int:
    from core.exchange import merge_command

    return merge_command(args)


COMMANDS = {
    "prompts": cmd_prompts,
    "generate": cmd_generate,
    "rate": cmd_rate,
    "stats": cmd_stats,
    "gui": cmd_gui,
    None: cmd_gui,
    "train": cmd_train,
    "export": cmd_export,
    "merge": cmd_merge,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.command is None:
        args.screenshot, args.tab = None, "rate"
    if args.command in ("generate", "train", "export"):
        _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; everything already written is kept.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear message, never a traceback, for bad input
        if not _is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def _is_user_error(e: Exception) -> bool:
    from core.errors import USER_ERRORS

    return isinstance(e, USER_ERRORS)


def _quiet_libraries() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
