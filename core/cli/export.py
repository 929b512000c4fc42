"""``export ratings|checkpoint``: ratings as raw rows or TRL-ready data; a checkpoint as a Hugging
Face folder or one GGUF file, with a model card (docs/exports.md)."""

from __future__ import annotations

import argparse
import sys

from core.cli.common import open_store, progress_bar, say
from core.exchange import (
    FORMATS,
    QUANTS,
    RAW_FORMATS,
    ExportError,
    GGUFCheckpointExport,
    GGUFProgress,
    export_checkpoint,
    export_checkpoint_gguf,
    export_ratings,
)
from core.models import DEFAULT_MODEL_NAME
from core.store import ProjectStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ratings or a checkpoint")
    what = p.add_subparsers(dest="export_what", metavar="WHAT", required=True)
    r = what.add_parser("ratings", help="ratings as raw rows or TRL-ready training data")
    r.add_argument("--format", required=True, choices=FORMATS)
    r.add_argument("-o", "--output", required=True, help="file to write")
    r.add_argument("--anonymize", action="store_true", help="salted hashes instead of names")
    r.add_argument("--include-superseded", action="store_true", help="also undone ratings")
    r.add_argument(
        "--annotator", nargs="*", dest="annotators", default=None, help="only these annotators"
    )
    r.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="drop items whose annotators agree less than this fraction",
    )
    r.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="sft: also samples whose mean overall score is at least X (0-1)",
    )
    r.add_argument(
        "--plain",
        action="store_true",
        help="training formats: plain strings instead of TRL's conversational form (then TRL "
        "does not apply the chat template the samples were generated with)",
    )
    c = what.add_parser("checkpoint", help="a Hugging Face folder or one GGUF file, with a card")
    c.add_argument(
        "checkpoint",
        nargs="?",
        default="checkpoint:latest",
        help="checkpoint:ID, checkpoint:latest, or default (the embedded default model; gguf)",
    )
    c.add_argument(
        "--format",
        choices=("hf", "gguf"),
        default="hf",
        help="hf: a Hugging Face folder (default); gguf: one file for llama.cpp, Ollama, LM Studio",
    )
    c.add_argument(
        "--quant",
        choices=tuple(QUANTS),
        default=None,
        help="gguf: how the weight matrices are stored (default f16; q4_0 is lossy)",
    )
    c.add_argument("--merged", action="store_true", help="merge a LoRA adapter into full weights")
    c.add_argument("-o", "--output", required=True, help="folder (hf) or FILE.gguf (gguf)")


def run(args: argparse.Namespace) -> int:
    if args.export_what == "checkpoint":
        return _checkpoint(args)
    with open_store(args, create=False) as store:
        with progress_bar("row", f"export {args.format}", leave=False) as bar:
            res = export_ratings(
                store,
                args.output,
                args.format,
                anonymize=args.anonymize,
                include_superseded=args.include_superseded,
                annotators=args.annotators,
                min_agreement=args.min_agreement,
                min_score=args.min_score,
                plain=args.plain,
                progress=lambda p: bar.to(p.done, p.total or None),
            )
    if res.rows == 0:
        print(
            f"note: no ratings make {res.format} rows yet; see docs/exports.md for which "
            "ratings each format uses.",
            file=sys.stderr,
        )
    form = "" if res.format in RAW_FORMATS else " (plain strings)"
    form = " (conversational)" if res.conversational else form
    print(f"{res.rows} rows written to {res.path} as {res.format}{form} in {res.seconds:.1f} s.")
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    if args.format == "hf":
        if args.quant is not None:
            raise ExportError(
                "--quant applies to --format gguf; a Hugging Face folder is as saved."
            )
        if args.checkpoint == "default":
            raise ExportError(
                f"default ({DEFAULT_MODEL_NAME}) is not a checkpoint of this project; "
                "--format gguf exports it as GGUF, --format hf only checkpoints."
            )
        with open_store(args, create=False) as store:
            res = export_checkpoint(store, args.checkpoint, args.output, merged=args.merged)
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"checkpoint:{res.checkpoint_id} ({res.kind}, {res.form}) exported to {res.path}")
        return 0
    quant = args.quant or "f16"
    if args.merged:
        print("note: a GGUF file always holds full weights; an adapter is merged", file=sys.stderr)
    if args.checkpoint == "default":
        res = _gguf(None, args, quant)
    else:
        with open_store(args, create=False) as store:
            res = _gguf(store, args, quant)
    what = f"checkpoint:{res.checkpoint_id} ({res.form})"
    what = f"the default model {DEFAULT_MODEL_NAME}" if res.checkpoint_id is None else what
    print(
        f"{what} exported to {res.path} as {quant} GGUF: "
        f"{res.size_bytes / 2**20:.1f} MiB in {res.seconds:.1f} s; model card: {res.card}"
    )
    return 0


def _gguf(store: ProjectStore | None, args: argparse.Namespace, quant: str) -> GGUFCheckpointExport:
    with progress_bar("tensor", f"export gguf {quant}", leave=False) as bar:

        def show(p: GGUFProgress) -> None:
            if p.total:
                bar.to(p.done, p.total)
            else:
                say(p.text)

        return export_checkpoint_gguf(store, args.checkpoint, args.output, quant, progress=show)
