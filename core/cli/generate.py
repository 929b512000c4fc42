"""``generate``: K candidate responses per prompt from the project's model (or ``--model``)."""

from __future__ import annotations

import argparse

from core.cli.common import open_store, progress_bar, say
from core.errors import UserError
from core.generation import GenerationParams, generate_samples
from core.models import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        s = store.settings()
        params = GenerationParams(
            per_prompt=s["per_prompt"] if args.per_prompt is None else args.per_prompt,
            max_new_tokens=args.max_new_tokens or s["max_new_tokens"],
            temperature=s["temperature"] if args.temperature is None else args.temperature,
            top_p=s["top_p"] if args.top_p is None else args.top_p,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        params.validate()
        if store.count("prompts") == 0:
            raise UserError(
                f"{store.path} has no prompts; import some first "
                "(prompts import resources/starter_prompts.jsonl)."
            )
        loaded = load_model(
            args.model or s["model"],
            store=store,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            progress=say,
        )
        written, last = 0, None
        with progress_bar("prompt", "generate") as bar:
            for prog in generate_samples(store, loaded, params, limit=args.limit):
                bar.to(prog.done, prog.total, tok_s=f"{prog.tokens_per_second:.0f}")
                written += len(prog.sample_ids)
                last = prog
    rate = f", {last.tokens_per_second:.0f} tok/s" if last else ""
    print(f"{written} samples written from {loaded.spec} on {loaded.device_label}{rate}.")
    return 0
