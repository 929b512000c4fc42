"""``train --algo ALGO``: train from the project's ratings; works under ``accelerate launch``.

Every flag but ``--algo``, ``--lora/--full``, ``--resume`` and ``--set`` comes from a field of the
algorithms' config dataclasses (core/training/config.py): its name, type, choices and help. So
the command and the Train tab's form show the same settings and cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from typing import Any

import torch

from core.cli.common import project_path
from core.errors import UserError
from core.store import ProjectStore
from core.training import (
    ALGORITHMS,
    ALGOS,
    StepMetrics,
    TrainConfig,
    config_for,
    device_kind,
    lora_defaults,
    set_field,
    train,
    unwrap_hint,
)


def _flag_fields() -> dict[str, tuple[dataclasses.Field, Any, list[str]]]:
    """{field name: (the field, its type hint, the algorithms that have it)} in form order."""
    out: dict[str, tuple[dataclasses.Field, Any, list[str]]] = {}
    for name, entry in ALGORITHMS.items():
        hints = typing.get_type_hints(entry.config)
        for f in dataclasses.fields(entry.config):
            if f.metadata.get("cli", True):
                out.setdefault(f.name, (f, hints[f.name], []))[2].append(name)
    return out


FLAG_FIELDS = _flag_fields()


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help=f"train from the ratings ({', '.join(ALGOS)})", description=__doc__
    )
    p.add_argument("--algo", required=True, choices=ALGOS)
    lora = p.add_mutually_exclusive_group()
    lora.add_argument(
        "--lora",
        dest="lora",
        action="store_true",
        default=None,
        help="train a LoRA adapter (default on CPU)",
    )
    lora.add_argument("--full", dest="lora", action="store_false", help="full fine-tuning")
    for name, (f, hint, algos) in FLAG_FIELDS.items():
        kind, _optional = unwrap_hint(hint)
        text = f.metadata.get("help", "")
        if len(algos) < len(ALGORITHMS):
            text += f" ({', '.join(algos)})"
        options: dict[str, Any] = {"dest": name, "default": None, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            options["nargs"] = "*"
        else:
            options["type"] = kind
            options["metavar"] = name.upper()
        if f.metadata.get("choices"):
            options["choices"] = f.metadata["choices"]
        p.add_argument(flag_of(f), **options)
    p.add_argument(
        "--resume",
        type=int,
        default=None,
        metavar="RUN_ID",
        help="resume a stopped or crashed run from its last checkpoint",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="any setting by its field name, e.g. --set forward_tokens=256 (repeatable; applied "
        "after the options above)",
    )


def config_from_args(args: Any) -> TrainConfig:
    """The config the command asks for: defaults for the device, then every option given."""
    device = getattr(args, "device", None)
    cfg = config_for(args.algo, device, lora=args.lora)
    given = set()
    for name, (f, _hint, _algos) in FLAG_FIELDS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if not hasattr(cfg, name):
            raise UserError(f"{flag_of(f)} does not apply to --algo {args.algo}.")
        setattr(cfg, name, value)
        given.add(name)
    lora = cfg.lora
    given |= {set_field(cfg, a) for a in getattr(args, "settings", None) or []}
    if cfg.lora != lora:  # --set lora=...: the defaults that follow it, as --lora/--full give
        for name, value in lora_defaults(args.algo, device_kind(device), cfg.lora).items():
            if name not in given:
                setattr(cfg, name, value)
    dtype = getattr(args, "dtype", None)
    if dtype and dtype != "auto":
        if dtype in ("fp16", "float16"):
            raise UserError("training in fp16 is not supported; use --dtype bf16 (CUDA) or fp32.")
        cfg.bf16 = dtype in ("bf16", "bfloat16")
    if getattr(args, "trust_remote_code", False):
        cfg.trust_remote_code = True
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run ``train`` with a progress bar; under ``accelerate launch`` on every rank."""
    from tqdm import tqdm

    rank = int(os.environ.get("RANK", "0"))

    def say(msg: str, _fraction: float | None = None) -> None:
        if rank == 0:
            tqdm.write(msg, file=sys.stderr)

    if args.resume is not None:
        config = None
        if args.steps is not None:
            config = config_for(args.algo, getattr(args, "device", None))
            config.steps = args.steps
    else:
        config = config_from_args(args)
    store = ProjectStore(project_path(args), readonly=rank != 0, create=rank == 0)
    if args.resume is not None:
        run_row = store.run(args.resume)
        if run_row is not None and run_row["algo"] != args.algo:
            store.close()
            algo = run_row["algo"]
            raise UserError(f"run {args.resume} is a {algo} run; resume it with --algo {algo}.")
    bar, last, run_id = None, None, None
    try:
        for m in train(store, config, resume_run_id=args.resume, progress=say):
            run_id = m.run_id
            if rank == 0:
                if bar is None:
                    bar = tqdm(
                        total=m.total_steps,
                        initial=m.step - 1,
                        unit="step",
                        desc=f"train run {m.run_id}",
                        file=sys.stderr,
                    )
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in _headline(m.metrics).items()})
            last = m
    finally:
        if bar:
            bar.close()
        if rank == 0 and run_id is not None:
            _summary(store, run_id, last)
        store.close()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def _headline(metrics: dict[str, float]) -> dict[str, float]:
    keys = ("loss", "rewards/accuracies", "accuracy", "reward", "kl")
    return {k.split("/")[-1]: metrics[k] for k in keys if k in metrics}


def _summary(store: ProjectStore, run_id: int, last: StepMetrics | None) -> None:
    import json

    run = store.run(run_id) or {"status": "?", "message": None}
    listed = ", ".join(
        f"checkpoint:{c['id']} (step {c['step']}, {c['kind']})"
        for c in store.checkpoints_of(run_id)
    )
    shown = json.dumps({k: round(v, 4) for k, v in (last.metrics if last else {}).items()})
    message = f" ({run['message']})" if run["message"] else ""
    print(f"run {run_id} {run['status']}{message}; checkpoints: {listed or 'none'}")
    if last:
        print(f"last step {last.step}/{last.total_steps}: {shown}")
