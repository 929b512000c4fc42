"""CUDA: bf16 DPO step time, generation throughput and peak memory, in one command.

``python -m bench.cuda`` on a machine with a CUDA GPU measures, on the default model:

- DPO, full fine-tuning: seconds per optimizer step with bf16 autocast (fp32 master weights, the
  CUDA default) and in fp32, batch 8, max length 512, on bench/data/pairs.jsonl; the first step
  of each run is a warm-up and not counted; peak GPU memory of each run;
- generation: ``generate_samples`` (the path of ``generate`` and the app's queue) at 14 prompts x
  K=8 x 64 new tokens, tokens per second in bf16 and fp32, and peak GPU memory;

then adds the result to bench/results.json and re-renders docs/benchmarks.md (``bench.run --add``;
``--no-record`` only writes the result file). Without CUDA it says so and exits 0, recording
nothing. ``--smoke`` runs the same code on the CPU with a tiny model, to check it works.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

from bench.common import (
    OUT,
    Result,
    finish,
    log,
    mode_of,
    parser,
    pick,
    use_bench_home,
    workdir,
)
from bench.pairs import load_pairs, pairs_project

STEPS, BATCH, MAX_LENGTH = 8, 8, 512
PROMPTS, K, NEW_TOKENS = 14, 8, 64


def peak_memory_gb(device: str) -> float:
    """Peak GPU memory since the last reset; the process's peak RSS on a CPU."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def dpo_run(args, device: str, bf16: bool, folder: Path) -> dict:
    """One DPO run of our trainer; seconds of every step and the run's peak memory."""
    from core.store import ProjectStore
    from core.training import config_for, train

    pairs = load_pairs(pick(args, 64, 32, 8), synthetic=args.smoke)
    db = pairs_project(folder / f"dpo-{'bf16' if bf16 else 'fp32'}.db", pairs)
    cfg = config_for("dpo", device, lora=False)
    cfg.model, cfg.steps = args.model, pick(args, STEPS, 4, 2)
    cfg.batch_size, cfg.max_length = pick(args, BATCH, BATCH, 2), pick(args, MAX_LENGTH, 256, 64)
    cfg.bf16, cfg.save_every, cfg.seed = bf16, 0, 0
    reset_peak(device)
    with ProjectStore(db) as store:
        metrics = [m.metrics for m in train(store, cfg)]
    counted = [m["step_time"] for m in metrics[1:]] or [m["step_time"] for m in metrics]
    return {
        "s_step": statistics.fmean(counted),
        "tok_s": statistics.fmean(m["tokens_per_second"] for m in metrics[1:] or metrics),
        "peak_gb": peak_memory_gb(device),
        "losses": [round(m["loss"], 4) for m in metrics],
    }


def generation_run(args, device: str, dtype: str, folder: Path) -> dict:
    """``generate_samples`` over PROMPTS prompts x K; tokens per second and peak memory."""
    import torch

    from core.generation import GenerationParams, generate_samples
    from core.models import load_model
    from core.store import ProjectStore

    n_prompts, k = pick(args, PROMPTS, PROMPTS, 2), pick(args, K, K, 2)
    new = pick(args, NEW_TOKENS, NEW_TOKENS, 6)
    db = folder / f"gen-{dtype}.db"
    db.unlink(missing_ok=True)
    lm = load_model(args.model, device=device, dtype=dtype)
    params = GenerationParams(per_prompt=k, max_new_tokens=new, seed=0, batch_size=n_prompts * k)
    with ProjectStore(db) as store:
        texts = [{"text": f"Tell me about item {i}."} for i in range(n_prompts)]
        store.add_prompts(texts, source="bench")
        list(generate_samples(store, lm, GenerationParams(per_prompt=2, max_new_tokens=4), limit=1))
        reset_peak(device)
        start = time.perf_counter()
        last = list(generate_samples(store, lm, params, limit=n_prompts))[-1]
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "tok_s": last.tokens / seconds,
        "tokens": last.tokens,
        "seconds": seconds,
        "peak_gb": peak_memory_gb(device),
        "label": lm.device_label,
    }


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--no-record", action="store_true", help="only write the result file")
    args = p.parse_args(argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        log("bench.cuda: no CUDA device here; nothing measured, nothing recorded.")
        return {}
    use_bench_home()
    device = "cpu" if args.smoke else "cuda"
    folder = workdir(args, "cuda")
    res = Result("cuda", "CUDA: bf16 DPO steps, generation, memory", mode_of(args))
    dpo = {}
    for bf16 in (True, False):
        log(f"bench.cuda: DPO, {'bf16 autocast' if bf16 else 'fp32'}")
        dpo["bf16" if bf16 else "fp32"] = dpo_run(args, device, bf16, folder)
    gen = {}
    for dtype in ("bf16", "fp32"):
        log(f"bench.cuda: generation, {dtype}")
        gen[dtype] = generation_run(args, device, dtype, folder)
    figures = (
        (
            "dpo_bf16_s_step",
            "DPO full fine-tuning, bf16 autocast: s/step",
            dpo["bf16"]["s_step"],
            "s",
        ),
        ("dpo_fp32_s_step", "DPO full fine-tuning, fp32: s/step", dpo["fp32"]["s_step"], "s"),
        ("dpo_bf16_peak", "DPO bf16: peak memory", dpo["bf16"]["peak_gb"], "GB"),
        (
            "gen_bf16_tok_s",
            "generation bf16 (prompts x K=8 x 64 tokens)",
            gen["bf16"]["tok_s"],
            "tok/s",
        ),
        ("gen_fp32_tok_s", "generation fp32", gen["fp32"]["tok_s"], "tok/s"),
        ("gen_bf16_peak", "generation bf16: peak memory", gen["bf16"]["peak_gb"], "GB"),
    )
    for key, label, value, unit in figures:
        res.figure(f"cuda.{key}", label, value, unit, digits=0 if unit == "tok/s" else 3)
    rows = [
        {"work": f"DPO {name}", "s/step": round(d["s_step"], 3), "peak GB": round(d["peak_gb"], 2)}
        for name, d in dpo.items()
    ]
    rows += [
        {
            "work": f"generation {name}",
            "tok/s": round(d["tok_s"], 1),
            "peak GB": round(d["peak_gb"], 2),
        }
        for name, d in gen.items()
    ]
    res.details.update(
        table=rows,
        dpo=dpo,
        generation=gen,
        gpu=torch.cuda.get_device_name(0) if device == "cuda" else None,
    )
    res.notes.append(
        f"DPO: full fine-tuning, batch {pick(args, BATCH, BATCH, 2)}, max length "
        f"{pick(args, MAX_LENGTH, 256, 64)}, first step not counted. Generation: generate_samples,"
        " one batch of all prompts x K. Peak memory: torch.cuda.max_memory_allocated per run."
    )
    data = finish(res, args)
    if args.out and not args.no_record and not args.smoke:
        from bench import run

        run.main(["--add", args.out])
    return data


def default_out() -> str:
    return str(OUT / "full" / "cuda.json")


if __name__ == "__main__":
    import sys

    argv = sys.argv[1:]
    if "--out" not in argv and "--smoke" not in argv:
        argv += ["--out", default_out()]  # the one command also records its result
    main(argv)
