"""Room to move: how the default model's own answers score under each scripted preference.

A rater can only teach something if the base model's answers are neither all good nor all bad
by it, and if two answers to the same prompt often differ (pairwise training learns from that
difference). ``generate`` samples K answers per prompt from the model with the benchmark's
sampling settings; ``table`` scores them and prints, per rater, the mean, the standard deviation
and how often two answers to one prompt differ by more than ``--margin``.

Only train and dev prompts may be sampled here: looking at the model's answers to test prompts
would let the test set shape the raters.

    nice -n 19 python -m bench.learning.room_to_move generate --split dev --out dev.jsonl
    python -m bench.learning.room_to_move table dev.jsonl --by-source

The tables it printed are in docs/learning-protocol.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

from bench.learning import prompt_sets
from core.raters import TIE_MARGIN  # closer pairs are ties in pairwise auto-rating


def generate(args: argparse.Namespace) -> None:
    """K samples per prompt, written one JSON object a line (prompt, source, lang, k, text)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.split == "test":
        raise SystemExit(
            "room_to_move samples train or dev prompts only (docs/learning-protocol.md)"
        )
    if args.model is None:  # the app's default model, converted on first use
        from core.models.default import default_model_dir

        args.model = str(default_model_dir())
    torch.set_num_threads(args.threads)  # a shared machine: one core, and run under nice
    tok = AutoTokenizer.from_pretrained(args.model)
    tok.padding_side = "left"  # decoder-only: pad on the left so every row ends at the prompt
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    n = args.per_source * len(prompt_sets.SOURCES)
    chosen = prompt_sets.prompts(args.split, n=n, seed=args.seed)
    info = {p.text: p for p in prompt_sets.records(args.split)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with out.open("w", encoding="utf-8") as f:
        for start in range(0, len(chosen), args.batch):
            batch = chosen[start : start + args.batch]
            texts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in batch
            ]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(args.seed * 100_003 + start)  # each batch reproducible on its own
            with torch.inference_mode():
                ids = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=args.temperature,
                    top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens,
                    num_return_sequences=args.k,
                    pad_token_id=tok.pad_token_id,
                )  # (B * K, prompt + new): rows grouped by prompt
            new = ids[:, enc["input_ids"].shape[1] :]
            for row, seq in enumerate(new):
                prompt = batch[row // args.k]
                n_tokens = int((seq != tok.pad_token_id).sum())
                rec = {
                    "prompt": prompt,
                    "source": info[prompt].source,
                    "lang": info[prompt].lang,
                    "k": row % args.k,
                    "n_tokens": n_tokens,
                    "text": tok.decode(seq, skip_special_tokens=True).strip(),
                }
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            done = min(start + args.batch, len(chosen))
            print(f"{done}/{len(chosen)} prompts, {time.perf_counter() - t0:.0f} s", flush=True)


def load_samples(paths: list[str]) -> list[dict]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line]


def spread(rows: list[dict], func, margin: float) -> dict[str, float]:
    """Mean and SD of the scores; share of within-prompt pairs that differ by more than margin;
    share of prompts with at least one such pair; share of scores at exactly 0 or 1."""
    scores = [func(r["prompt"], r["text"]) for r in rows]
    groups: dict[str, list[float]] = {}
    for r, s in zip(rows, scores, strict=True):
        groups.setdefault(r["prompt"], []).append(s)
    pairs = [abs(a - b) > margin for g in groups.values() for a, b in itertools.combinations(g, 2)]
    prompts_with = [
        any(abs(a - b) > margin for a, b in itertools.combinations(g, 2)) for g in groups.values()
    ]
    return {
        "n": len(scores),
        "prompts": len(groups),
        "mean": statistics.fmean(scores),
        "sd": statistics.pstdev(scores),
        "pairs": statistics.fmean(pairs),
        "prompts_with": statistics.fmean(prompts_with),
        "at_0": statistics.fmean(s == 0 for s in scores),
        "at_1": statistics.fmean(s == 1 for s in scores),
    }


def table(args: argparse.Namespace) -> None:
    """Print the markdown table of every rater's spread, then the correlations between raters."""
    from bench.learning import preferences  # needs vaderSentiment; generating does not

    rows = load_samples(args.samples)
    if any(prompt_sets.split_of(r["prompt"]) == "test" for r in rows):
        raise SystemExit("these samples include test prompts; score train or dev samples only")
    limit = max(r["n_tokens"] for r in rows)  # the token limit, when any answer reached it
    capped = statistics.fmean(r["n_tokens"] >= limit for r in rows)
    print(
        f"{len(rows)} samples, {len({r['prompt'] for r in rows})} prompts, "
        f"{capped:.0%} cut off at the token limit\n"
    )
    print(
        f"| rater | role | on sources | mean | SD | pairs differing > {args.margin} "
        f"| prompts with such a pair | pairs differing > {TIE_MARGIN} (not ties) | at 0 | at 1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, spec in preferences.RATERS.items():
        mine = [r for r in rows if _applies(spec, r)]
        s = spread(mine, spec.func, args.margin)
        untied = spread(mine, spec.func, TIE_MARGIN)["pairs"]
        where = "all" if spec.sources is None else ", ".join(spec.sources)
        print(
            f"| {name} | {spec.role} | {where} ({s['prompts']} prompts) | {s['mean']:.2f} | "
            f"{s['sd']:.2f} | {s['pairs']:.0%} | {s['prompts_with']:.0%} | {untied:.0%} | "
            f"{s['at_0']:.0%} | {s['at_1']:.0%} |"
        )
    specs = list(preferences.RATERS.values())
    scores = {sp.name: [sp.func(r["prompt"], r["text"]) for r in rows] for sp in specs}
    print("\nPearson correlation over the samples both raters apply to\n")
    print("| | " + " | ".join(sp.name for sp in specs) + " |")
    print("|---" * (len(specs) + 1) + "|")
    for a in specs:
        cells = []
        for b in specs:
            both = [i for i, r in enumerate(rows) if _applies(a, r) and _applies(b, r)]
            x, y = [scores[a.name][i] for i in both], [scores[b.name][i] for i in both]
            cells.append(f"{_corr(x, y):+.2f}" if len(both) > 2 else "–")
        print(f"| {a.name} | " + " | ".join(cells) + " |")
    if args.by_source:
        print("\nMean (pairs differing) per source\n")
        sources = list(prompt_sets.SOURCES)
        print("| rater | " + " | ".join(sources) + " |")
        print("|---" * (len(sources) + 1) + "|")
        for name, spec in preferences.RATERS.items():
            cells = []
            for src in sources:
                s = spread([r for r in rows if r["source"] == src], spec.func, args.margin)
                cells.append(f"{s['mean']:.2f} ({s['pairs']:.0%})")
            print(f"| {name} | " + " | ".join(cells) + " |")


def _applies(spec, row: dict) -> bool:
    return spec.sources is None or row["source"] in spec.sources


def _corr(a: list[float], b: list[float]) -> float:
    try:
        return statistics.correlation(a, b)
    except statistics.StatisticsError:  # a constant column
        return float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="sample the model's answers to train or dev prompts")
    g.add_argument("--split", choices=("train", "dev"), required=True)
    g.add_argument("--per-source", type=int, default=10, help="prompts from each source")
    g.add_argument("--out", required=True)
    g.add_argument("--model", default=None, help="a model folder (default: the app's default)")
    g.add_argument("--k", type=int, default=4, help="samples per prompt")
    g.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    g.add_argument("--temperature", type=float, default=0.8)  # the benchmark's settings
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("table", help="score samples with every rater and print the spread")
    t.add_argument("samples", nargs="+")
    t.add_argument("--margin", type=float, default=0.1)
    t.add_argument("--by-source", action="store_true")
    args = p.parse_args(argv)
    generate(args) if args.command == "generate" else table(args)


if __name__ == "__main__":
    main()
