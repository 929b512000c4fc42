"""Generation, whole process: the ``generate`` command against plain ``model.generate`` and
llama.cpp, each from launch to exit.

A user waits for the whole process: start-up, loading the model, the generation itself, writing
the results. So each side runs as a user runs it, in its own process, timed from launch to exit,
on the same prompts (14 starter prompts x K=8 x 64 new tokens, temperature 0.8, top-p 0.95,
through the chat template):

- ours: ``python main.py --db P generate --per-prompt 8 --max-new-tokens 64`` into a fresh
  project, with the precision the app measured for this CPU (``calibrate`` runs once before, and
  its time is reported on its own: a user pays it once per CPU and torch version);
- plain: bench/plain_generate.py, fp32, one ``model.generate(num_return_sequences=K)`` per
  prompt, as a transformers user would write it, on the same converted weights;
- llama.cpp: bench/llamacpp_generate.py, the embedded GGUF file (Q4_1) in llama.cpp through the
  ``xllamacpp`` bindings, one stream at a time, when the bindings are installed.

Tokens count up to each row's first stop token. Runs alternate the sides (the order flips each
repetition); the medians are reported.

With ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` in the environment torch and oneDNN run
only AVX2 kernels, as on a CPU without native bf16: the result is then its own benchmark
(``gen_whole_avx2``, target 2.5x), an emulation on this CPU (its caches, memory and clock stay),
without llama.cpp (which picks its own kernels).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BENCH_DIR,
    REPO,
    Result,
    bench_env,
    cpu_flags,
    finish,
    fresh,
    log,
    median,
    mode_of,
    parser,
    pick,
    run_cli,
    use_bench_home,
    workdir,
)

TARGET_BF16, TARGET_NO_BF16 = 3.5, 2.5  # whole-process tok/s over plain model.generate
NATIVE_BF16 = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 BF16 / AMX, ARM's bf16 flag


def held_to_avx2() -> bool:
    """torch's and oneDNN's kernels held to AVX2 by the environment (no bf16 instructions)."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return aten in ("avx2", "default") and onednn in ("AVX2", "AVX", "SSE41")


def prompts_file(folder: Path, n: int) -> Path:
    lines = (REPO / "resources" / "starter_prompts.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    prompts = [r["prompt"] for r in rows if "prompt" in r][:n]
    out = folder / "prompts.jsonl"
    out.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    return out


def run_ours(args, prompts: Path, folder: Path, k: int, new: int, rep: int) -> tuple[float, int]:
    from core.store import ProjectStore

    db = folder / f"ours-{rep}.db"
    fresh(db)  # an earlier run's samples would count
    run_cli(["--db", str(db), "prompts", "import", str(prompts)])  # set-up, not timed
    argv = ["--db", str(db), "generate", "--model", args.model, "--per-prompt", str(k)]
    argv += ["--max-new-tokens", str(new), "--temperature", "0.8", "--top-p", "0.95"]
    argv += ["--seed", str(rep)]
    seconds, _ = run_cli(argv)
    store = ProjectStore(db)
    try:
        tokens = store.generated_tokens()
    finally:
        store.close()
    return seconds, int(tokens)


def run_script(script: str, argv: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *argv],
        cwd=REPO,
        env=bench_env(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    use_bench_home()
    n_prompts, k, new = pick(args, 14, 4, 2), pick(args, 8, 8, 2), pick(args, 64, 32, 4)
    reps = pick(args, 3, 1, 1)  # three, alternating order: a median, not a mean of two
    held = held_to_avx2()
    folder = workdir(args, "gen_whole_avx2" if held else "gen_whole")
    res = (
        Result(
            "gen_whole_avx2",
            "Generation, whole process, torch and oneDNN held to AVX2 kernels (a CPU without "
            "native bf16, emulated)",
            mode_of(args),
        )
        if held
        else Result("gen_whole", "Generation, whole process", mode_of(args))
    )
    prompts = prompts_file(folder, n_prompts)
    from core.models import load_model
    from core.models.default import embedded_gguf
    from core.models.specs import parse_spec

    model_dir = load_model(args.model, device="cpu", dtype="fp32").source  # the same weights
    calibrate_s, calibrate_out = run_cli(["calibrate", "--model", args.model], check=False)
    log(f"gen_whole: calibrate {calibrate_s:.1f} s: {calibrate_out.strip().splitlines()[-1:]}")
    if "Inconclusive" in calibrate_out:  # what the app tells a user to do, once
        more_s, calibrate_out = run_cli(
            ["calibrate", "--model", args.model, "--budget", "30"], check=False
        )
        calibrate_s += more_s
        log(f"gen_whole: calibrate --budget 30: {calibrate_out.strip().splitlines()[-1:]}")
    sides = ["ours", "plain"]
    gguf = None
    if held:
        res.notes.append(
            "Emulation: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 hold torch and oneDNN "
            "to AVX2 kernels on this CPU, standing in for a CPU without native bf16; the CPU's "
            "caches, memory bandwidth and clock are this one's. No llama.cpp side (it chooses its "
            "own kernels)."
        )
    elif parse_spec(args.model).kind == "default" and importlib.util.find_spec("xllamacpp"):
        gguf = embedded_gguf()
        sides.append("llama.cpp")
    elif importlib.util.find_spec("xllamacpp") is None:
        res.notes.append("xllamacpp is not installed: no llama.cpp figure.")
    walls: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    decode: list[float] = []
    common = ["--k", str(k), "--max-new-tokens", str(new)]
    for rep in range(reps):
        for side in sides if rep % 2 == 0 else sides[::-1]:
            log(f"gen_whole: {side}, repetition {rep + 1} of {reps}")
            if side == "ours":
                seconds, tokens = run_ours(args, prompts, folder, k, new, rep)
            elif side == "plain":
                argv_ = [str(prompts), str(model_dir), *common, "--seed", str(rep)]
                seconds, out = run_script("plain_generate.py", argv_)
                tokens = out["tokens"]
            else:
                seconds, out = run_script(
                    "llamacpp_generate.py", [str(prompts), str(gguf), *common]
                )
                tokens = out["tokens"]
                decode.append(out["decode_tok_s"])
            log(f"  {seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tok/s")
            walls.setdefault(side, []).append(seconds)
            rates.setdefault(side, []).append(tokens / seconds)
    flags = cpu_flags()
    native = [] if held else sorted(flags & NATIVE_BF16)
    target = TARGET_BF16 if native else TARGET_NO_BF16
    shape = f"{n_prompts} prompts x K={k} x {new} tokens"
    ours, plain = median(rates["ours"]), median(rates["plain"])
    key = res.name  # the emulation's figures are its own, beside the CPU's native ones
    res.figure(f"{key}.ours_tok_s", f"ours, {shape}: tok/s launch to exit", ours, "tok/s")
    res.figure(f"{key}.plain_tok_s", f"plain model.generate, fp32, {shape}", plain, "tok/s")
    res.figure(
        f"{key}.ratio",
        f"whole-process speed-up over plain model.generate ({'native bf16: ' + ', '.join(native) if native else 'no native bf16'})",
        ours / plain if plain else float("nan"),
        "x",
        target=target,
        digits=2,
    )
    if "llama.cpp" in rates:
        res.figure(
            "gen_whole.llamacpp_tok_s",
            f"llama.cpp single stream (Q4_1 GGUF), {shape}: tok/s launch to exit",
            median(rates["llama.cpp"]),
            "tok/s",
        )
        res.figure(
            "gen_whole.llamacpp_decode_tok_s",
            "llama.cpp single stream: its own decode rate",
            median(decode),
            "tok/s",
        )
    res.details.update(
        walls={s: [round(w, 1) for w in v] for s, v in walls.items()},
        tok_s={s: [round(r, 1) for r in v] for s, v in rates.items()},
        calibrate_s=round(calibrate_s, 1),
        calibrate=calibrate_out.strip().splitlines()[-6:],
        native_bf16=native,
        reps=reps,
    )
    res.notes.append(
        f"Each side a fresh process timed from launch to exit; {shape}, temperature 0.8, top-p "
        f"0.95; ours at the precision it measured (calibrate took {calibrate_s:.0f} s once "
        "before, not counted); plain model.generate in fp32, one call per prompt"
        + (
            "."
            if held
            else "; llama.cpp one request at a time on the GGUF file the default model ships as "
            "(Q4_1)."
        )
    )
    if not native:
        res.notes.append(
            f"{'These kernels use' if held else 'This CPU has'} no native bf16; the 3.5x target "
            "applies to CPUs with it, 2.5x here."
        )
    return finish(res, args)


if __name__ == "__main__":
    main()
