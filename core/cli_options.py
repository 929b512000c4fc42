"""Argument definitions for the headless commands that the GUI also drives (train, export, merge).

Kept apart from main.py so the tests and `accelerate launch` entry points parse exactly what the
CLI parses.
"""

from __future__ import annotations

import argparse

ALGOS = ("reward", "dpo", "kto", "rloo", "reinforce")
EXPORT_FORMATS = ("jsonl", "csv", "parquet", "preference", "unpaired", "sft")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--algo", required=True, choices=ALGOS)
    p.add_argument(
        "--model",
        default=None,
        help="policy to start from (default: the project's generation model)",
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the data")
    p.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="fewest steps when they come from --epochs (small data gets more passes, up to 8)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--beta", type=float, default=None, help="DPO/KTO beta")
    p.add_argument("--loss-type", choices=["sigmoid", "ipo"], default=None, help="DPO loss")
    p.add_argument("--label-smoothing", type=float, default=None, help="cDPO label smoothing")
    p.add_argument("--kl-coef", type=float, default=None, help="KL penalty (rloo, reinforce)")
    p.add_argument(
        "--pooling",
        choices=["mean", "last"],
        default=None,
        help="reward model: the head reads the mean of the response tokens (default) or the last "
        "token (transformers' own pooling)",
    )
    lora = p.add_mutually_exclusive_group()
    lora.add_argument(
        "--lora",
        dest="lora",
        action="store_true",
        default=None,
        help="train a LoRA adapter (default on CPU)",
    )
    lora.add_argument("--full", dest="lora", action="store_false", help="full fine-tuning")
    p.add_argument("--max-length", type=int, default=None, help="prompt + response tokens")
    p.add_argument(
        "--reward-model",
        default=None,
        metavar="checkpoint:ID",
        help="reward checkpoint that scores rloo samples",
    )
    p.add_argument(
        "--rater",
        default=None,
        metavar="MODULE:FUNC",
        help="scripted rater that scores rloo samples instead of a reward model",
    )
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument(
        "--resume",
        type=int,
        default=None,
        metavar="RUN_ID",
        help="resume a stopped or crashed run from its last checkpoint",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--gradient-checkpointing", action="store_true", default=None)
    p.add_argument("--annotators", nargs="*", default=None, help="train only on these annotators")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="any other setting of the Train tab by its field name, e.g. --set forward_tokens=256 "
        "--set rollouts_per_sampling=4 (repeatable; applied after the options above)",
    )


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="export_what", metavar="WHAT", required=True)
    r = sub.add_parser("ratings", help="ratings as raw rows or TRL-ready training data")
    r.add_argument("--format", required=True, choices=EXPORT_FORMATS)
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
    c = sub.add_parser("checkpoint", help="a Hugging Face folder with a model card")
    c.add_argument(
        "checkpoint",
        nargs="?",
        default="checkpoint:latest",
        help="checkpoint:ID or checkpoint:latest",
    )
    c.add_argument("--merged", action="store_true", help="merge a LoRA adapter into full weights")
    c.add_argument("-o", "--output", required=True, help="folder to write")


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("others", nargs="+", metavar="OTHER.db", help="project files to merge in")
