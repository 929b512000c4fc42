"""DPO training speed side by side: our trainer against TRL's DPOTrainer.

Same model (the default), same 64 pairs (bench/data/pairs.jsonl), batch 8, max length 512, full
fine-tuning, fp32, CPU, the same learning rate and schedule and the same number of optimizer
steps. Each run is its own process; runs alternate ours, TRL, ours, TRL. The first step of each
run is a warm-up and is not counted: seconds per step is the mean of the others. Tokens per step
are the same for both (8 pairs of prompt + chosen and prompt + rejected, at the data set's mean
length), so tokens/s = tokens per step / seconds per step.

What differs by design: our trainer computes each pair's reference log-probs once per run (they
never change), for the pairs the run's steps use; with full fine-tuning that pass comes before the
first step, in the setup time. TRL's default computes them with a reference model in every step. TRL can precompute them too (``precompute_ref_log_probs``), which the
``--trl-precompute`` run measures when asked.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    REPO,
    Result,
    bench_env,
    finish,
    log,
    mode_of,
    parser,
    pick,
    use_bench_home,
    workdir,
)
from bench.pairs import load_pairs, pairs_project

TARGET_RATIO = 1.5
BATCH, MAX_LENGTH, LR = 8, 512, 3e-5


def run_ours(model: str, pairs: list[dict], steps: int, folder: Path) -> dict:
    from core.store import ProjectStore
    from core.training import config_for, train

    db = pairs_project(folder / "ours.db", pairs)
    cfg = config_for("dpo", "cpu", lora=False)
    cfg.model, cfg.steps, cfg.batch_size, cfg.max_length = model, steps, BATCH, MAX_LENGTH
    cfg.learning_rate, cfg.save_every, cfg.seed = LR, 0, 0
    times, t0, first = [], time.perf_counter(), None
    with ProjectStore(db) as store:
        for m in train(store, cfg):
            if first is None:
                first = (
                    time.perf_counter() - t0 - m.metrics["step_time"]
                )  # load, tokenize, reference
            times.append(m.metrics["step_time"])
            if m.step == steps:  # the end-of-run checkpoint is written after this yield
                wall = time.perf_counter() - t0
    return {"step_times": times, "setup_s": first, "wall_s": wall}


def run_trl(
    model: str, pairs: list[dict], steps: int, folder: Path, precompute: bool = False
) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from core.models import load_model

    t0 = time.perf_counter()
    source = load_model(model, device="cpu").source  # the converted default model's folder
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    policy = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": p["prompt"]}],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in pairs
        ]
    )
    config = DPOConfig(
        output_dir=str(folder / "trl"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        max_length=MAX_LENGTH,
        beta=0.1,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        dataloader_num_workers=0,
        precompute_ref_log_probs=precompute,
    )
    times: list[float] = []
    begins: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()
            begins.append(self.t)

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    trainer = DPOTrainer(
        model=policy, args=config, train_dataset=data, processing_class=tok, callbacks=[StepClock()]
    )
    trainer.train()
    wall = time.perf_counter() - t0
    return {"step_times": times, "setup_s": begins[0] - t0 if begins else 0.0, "wall_s": wall}


def tokens_per_step(model: str, pairs: list[dict], synthetic: bool) -> float:
    """Mean tokens of one pair (prompt + chosen, prompt + rejected, chat template) x batch."""
    from core.models import format_prompt, load_model

    tok = load_model(model, device="cpu").tokenizer
    total = 0
    for p in pairs:
        prompt = format_prompt(tok, [{"role": "user", "content": p["prompt"]}])
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        for side in ("chosen", "rejected"):
            total += n_prompt + len(tok(p[side], add_special_tokens=False)["input_ids"]) + 1
    return BATCH * total / len(pairs)


def one_run(which: str, args) -> dict:
    pairs = load_pairs(args.pairs, synthetic=args.smoke)
    folder = Path(tempfile.mkdtemp(prefix=f"dpo-{which}-", dir=workdir(args, "dpo_vs_trl")))
    if which == "ours":
        return run_ours(args.model, pairs, args.steps, folder)
    return run_trl(args.model, pairs, args.steps, folder, precompute=which == "trl-precompute")


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument(
        "--one",
        choices=["ours", "trl", "trl-precompute"],
        help="run one trainer and print its timings as JSON (the parent runs these)",
    )
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--pairs", type=int, default=None)
    p.add_argument(
        "--trl-precompute",
        action="store_true",
        help="also time TRL with precomputed reference log-probs",
    )
    args = p.parse_args(argv)
    use_bench_home()
    args.steps = args.steps or pick(args, 9, 4, 2)
    args.pairs = args.pairs or pick(args, 64, 64, 8)
    if args.one:  # a child process: one run, JSON on stdout
        print(json.dumps(one_run(args.one, args)))
        return {}
    res = Result("dpo_vs_trl", "DPO training speed vs TRL", mode_of(args))
    reps = pick(args, 2, 1, 1)
    order = ["ours", "trl"] * reps + (["trl-precompute"] if args.trl_precompute else [])
    if args.smoke and importlib.util.find_spec("trl") is None:  # the bench extra is not installed
        order = ["ours"]
        res.notes.append("TRL is not installed (pip install -e '.[bench]'): only our trainer ran.")
    runs: dict[str, list[dict]] = {}
    for which in order:
        log(f"dpo_vs_trl: {which}, {args.steps} steps")
        out = one_run(which, args) if args.smoke else _child(which, args)
        runs.setdefault(which, []).append(out)
        counted = out["step_times"][1:] or out["step_times"]
        log(
            f"  {statistics.fmean(counted):.2f} s/step, setup {out['setup_s']:.1f} s, wall {out['wall_s']:.1f} s"
        )
    tokens = tokens_per_step(args.model, load_pairs(args.pairs, synthetic=args.smoke), args.smoke)
    rows, per_step = [], {}
    for which, outs in runs.items():
        counted = [t for o in outs for t in (o["step_times"][1:] or o["step_times"])]
        per_step[which] = statistics.fmean(counted)
        rows.append(
            {
                "trainer": {
                    "ours": "RLHF Studio",
                    "trl": "TRL DPOTrainer",
                    "trl-precompute": "TRL DPOTrainer, precomputed reference",
                }[which],
                "runs": len(outs),
                "s/step": round(per_step[which], 3),
                "tokens/s": round(tokens / per_step[which], 1),
                "setup s (mean)": round(statistics.fmean(o["setup_s"] for o in outs), 1),
                "wall s for all steps (mean)": round(
                    statistics.fmean(o["wall_s"] for o in outs), 1
                ),
            }
        )
    per_step.setdefault("trl", float("nan"))
    ratio = per_step["trl"] / per_step["ours"]
    res.figure(
        "dpo.ours_s_step", "ours: seconds per optimizer step", per_step["ours"], "s", digits=2
    )
    res.figure(
        "dpo.trl_s_step",
        "TRL DPOTrainer: seconds per optimizer step",
        per_step["trl"],
        "s",
        digits=2,
        note="issue #6 reference: ~9 s/step",
    )
    res.figure(
        "dpo.ours_tok_s", "ours: tokens per second", tokens / per_step["ours"], "tok/s", digits=0
    )
    res.figure(
        "dpo.trl_tok_s",
        "TRL DPOTrainer: tokens per second",
        tokens / per_step["trl"],
        "tok/s",
        digits=0,
    )
    res.figure(
        "dpo.ratio",
        "speed-up over TRL DPOTrainer (TRL s/step / ours)",
        ratio,
        "x",
        target=TARGET_RATIO,
        digits=2,
        note="" if ratio >= TARGET_RATIO else "see the step breakdown in the details",
    )
    res.details.update(
        table=rows,
        runs=runs,
        tokens_per_step=tokens,
        steps=args.steps,
        pairs=args.pairs,
        batch=BATCH,
        max_length=MAX_LENGTH,
        learning_rate=LR,
    )
    res.notes.append(
        f"{args.pairs} pairs, batch {BATCH}, max length {MAX_LENGTH}, full fine-tuning, fp32, "
        f"CPU, lr {LR:g} linear with 10% warmup, {args.steps} optimizer steps per run (the first "
        f"not counted), {tokens:.0f} tokens per step. Setup = loading, tokenizing and (ours) the "
        "reference pass over the pairs the steps use; TRL runs its reference model inside every "
        "step."
    )
    return finish(res, args)


def _child(which: str, args) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.dpo_vs_trl",
        "--one",
        which,
        "--steps",
        str(args.steps),
        "--pairs",
        str(args.pairs),
        "--model",
        args.model,
    ]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, cwd=REPO, env=bench_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
