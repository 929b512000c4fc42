"""``calibrate``: measure again whether fp32 or bf16 runs the model faster on this CPU.

``load_model`` measures once per CPU, torch version and model shape and keeps the result in the
data dir (core.models.precision); this command re-runs that measurement on demand, for example
after moving the data dir to another machine or when the first measurement ran on a busy one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from functools import partial

from core.cli.common import open_store, say
from core.errors import UserError
from core.models import load_model, precision
from core.models.precision import CACHE_NAME, PrecisionChoice, precision_for
from core.paths import data_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser(
        "calibrate", help="measure again whether fp32 or bf16 is faster on this CPU"
    )
    cal.add_argument("--model", default=None, help="model spec (default: project setting)")
    cal.add_argument(
        "--budget", type=float, default=10.0, help="seconds the measurement may take (default 10)"
    )
    cal.add_argument("--json", action="store_true", help="the whole measurement as JSON")


def run(args: argparse.Namespace) -> int:
    if args.device not in (None, "auto", "cpu"):
        raise UserError(
            f"calibrate measures the CPU; on {args.device} the precision is fixed (bf16 on CUDA "
            "that has it, fp16 on MPS)."
        )
    if args.budget <= 0:
        raise UserError(f"--budget must be more than 0 seconds, not {args.budget:g}")
    with open_store(args) as store:
        loaded = load_model(
            args.model or store.settings()["model"],
            store=store,
            device="cpu",
            dtype="fp32",  # measured from full precision, whatever the cache says now
            trust_remote_code=args.trust_remote_code,
            progress=say,
        )
    say(f"Measuring fp32 and bf16 on this CPU (at most {args.budget:g} s)…")
    choice = precision_for(
        loaded.model,
        data_dir(),
        device="cpu",
        tokenizer=loaded.tokenizer,
        recalibrate=True,
        calibrate_fn=partial(precision.calibrate, budget_s=args.budget),
    )
    if args.json:
        print(json.dumps(asdict(choice.calibration), indent=2))
    else:
        print(describe(choice, loaded.spec))
    return 0


def describe(choice: PrecisionChoice, spec: str) -> str:
    """The measurement in a few lines for a person."""
    cal = choice.calibration
    assert cal is not None  # a CPU choice always carries its calibration
    lines = [
        f"{spec} on this CPU: {cal.seconds:.1f} s, {cal.rounds} round(s), {cal.threads} thread(s)"
    ]
    for kind, label in (("generate", "generation"), ("forward", "forward passes")):
        speed = cal.speedup.get(kind, {}).get("bf16")
        measured = f"bf16 runs at {speed:.2f}x fp32" if speed else "bf16 not measured"
        lines.append(f"  {label}: {measured} -> {cal.choice[kind]}")
    agree = cal.agreement.get("bf16")
    if agree is not None:
        lines.append(f"  bf16 predicts fp32's next token at {agree:.0%} of positions")
    lines += [f"  {note}" for note in cal.notes]
    if cal.conclusive:
        lines.append(
            f"Saved in {data_dir() / CACHE_NAME}; models load in {cal.choice['generate']} on this "
            "CPU unless --dtype says otherwise."
        )
    else:
        lines.append(
            "Inconclusive (the machine may be busy): an earlier measurement stays in use, else "
            f"fp32. Try a longer --budget than {cal.seconds:.0f} s."
        )
    return "\n".join(lines)
