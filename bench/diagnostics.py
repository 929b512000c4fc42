"""Do the training diagnostics speak when they should, and only then? Two DPO runs on the default
model, as a user runs them: default settings on the starter prompts (no alert wanted in the first
20 steps) and full fine-tuning at learning rate 1e-3 for 6 steps, which wrecks a 135M model (at
least one alert wanted). Both train on the same pairs: starter prompts, 4 answers each, rated
pairwise by VADER sentiment with ``rate --auto``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import Result, finish, log, mode_of, parser, pick, run_cli, workdir

RULES_DOC = "docs/diagnostics.md"
SMOKE_RATER = "bench.learning.raters:text_hash"


def alert_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("alert:")]


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    res = Result("diagnostics", "Training diagnostics: alerts when a run goes wrong", mode_of(args))
    folder = workdir(args, "diagnostics")
    db = folder / "diagnostics.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    prompts, tokens = pick(args, (24, 48), (12, 32), (3, 6))
    healthy_steps, wreck_steps = pick(args, (20, 6), (8, 6), (2, 2))
    base = ["--db", str(db), "--device", "cpu"]
    run_cli([*base, "prompts", "import", "resources/starter_prompts.jsonl"])
    gen = ["generate", "--limit", str(prompts), "--per-prompt", "4", "--max-new-tokens"]
    run_cli([*base, *gen, str(tokens), "--model", args.model, "--seed", "1"])
    # a tiny model's outputs all look alike to VADER: the smoke run needs a rater that separates
    rater = pick(args, "core.raters:sentiment", "core.raters:sentiment", SMOKE_RATER)
    rate = ["rate", "--auto", rater, "--mode", "pairwise", "--annotator", "vader"]
    run_cli([*base, *rate])
    train = ["train", "--algo", "dpo", "--model", args.model, "--steps"]
    log(f"diagnostics: default settings, {healthy_steps} steps")
    seconds, out = run_cli([*base, *train, str(healthy_steps)])
    healthy = alert_lines(out)
    log(f"diagnostics: full fine-tuning at lr 1e-3, {wreck_steps} steps")
    wreck_seconds, out = run_cli(
        [*base, *train, str(wreck_steps), "--full", "--lr", "1e-3", "--max-length", "256"]
    )
    wrecked = alert_lines(out)
    res.figure(
        "healthy_alerts",
        f"alerts in the first {healthy_steps} steps of DPO with default settings",
        len(healthy),
        "alerts",
        target=0,
        better="lower",
        digits=0,
        note=f"{seconds:.0f} s",
    )
    res.figure(
        "wrecked_alerts",
        f"alerts in {wreck_steps} steps of full fine-tuning at lr 1e-3",
        len(wrecked),
        "alerts",
        target=1,
        digits=0,
        note=f"{wreck_seconds:.0f} s; first: " + (wrecked[0][:120] if wrecked else "none"),
    )
    _, stats = run_cli([*base, "stats", "--json"])
    runs = json.loads(stats[stats.index("{") :])["run_details"]
    res.details.update(
        healthy=healthy,
        wrecked=wrecked,
        stored={r["id"]: [a["rule"] for a in r["alerts"]] for r in runs},
        pairs_from=f"{prompts} starter prompts x 4 answers, {tokens} new tokens",
    )
    res.notes.append(f"The rules and their thresholds: {RULES_DOC}.")
    return finish(res, args)


if __name__ == "__main__":
    main()
