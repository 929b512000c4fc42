"""Timing the app's work in each float dtype on a CPU, and choosing a dtype per kind of work.

``calibrate`` copies the model into each candidate dtype, warms each copy up, then times batched
decoding with a KV cache and a forward pass over a block (what generation and a reference or
reward pass do) in rounds, within a hard time budget. ``choose`` turns the speed-ups and a
numerics check into one dtype per kind of work. ``precision.py`` caches the result.
"""

from __future__ import annotations

import copy
import inspect
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
KINDS = ("generate", "forward")  # the work a choice is made for
KIND_NAMES = {"generate": "generation", "forward": "forward passes"}
# A dtype this much slower than fp32 at a kind of work in the warm-up round cannot win it (a
# choice needs 1.1x faster): that work is not timed further in it, so that a CPU without fast
# bf16 kernels settles on fp32 within the budget instead of running out of it.
SLOWER = 0.9
UNITS = ("prefill", "decode_step", "generate", "forward")  # what is timed (generate is derived)
# A short real text for the numerics check: bf16 must predict the same next tokens as fp32.
CHECK_TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. Visitors may "
    "borrow up to five books at a time, and each loan lasts three weeks. Children under twelve "
    "need a parent to sign their card. On Saturdays a volunteer reads stories aloud to young "
    "readers, and the reading room upstairs stays quiet for students preparing their exams."
)


@dataclass
class Calibration:
    """One measurement: median seconds per unit of work and dtype, and the dtype chosen per kind.

    ``timings[unit][dtype]``: ``prefill`` (a prompt for every row), ``decode_step`` (one token for
    every row, with the KV cache), ``generate`` (prefill + ``new_tokens`` decode steps) and
    ``forward`` (log-probs over a block). ``speedup[kind][dtype]`` is the median over rounds of
    fp32 seconds / dtype seconds (``round_speedups`` lists them). A round runs every dtype's
    model calls in turn, call by call, so load from other work falls on all dtypes alike.
    """

    timings: dict[str, dict[str, float]]
    speedup: dict[str, dict[str, float]]
    round_speedups: dict[str, dict[str, list[float]]]
    agreement: dict[str, float | None]  # dtype -> share of positions with fp32's top-1 token
    choice: dict[str, str]  # kind -> dtype name
    rounds: int
    seconds: float
    threads: int
    conclusive: bool = True  # False: too few rounds fit in the budget; not cached
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """A cached calibration; ValueError or TypeError when it is not one."""
        cal = cls(**data)
        if set(cal.choice) != set(KINDS) or not set(cal.choice.values()) <= set(DTYPES):
            raise ValueError(f"calibration choice {cal.choice!r} is not one dtype per kind")
        return cal


def choose(
    speedup: dict[str, dict[str, float]],
    agreement: dict[str, float | None],
    *,
    margin: float = 1.1,
    min_agreement: float = 0.9,
) -> dict[str, str]:
    """Per kind of work, the fastest dtype that beats fp32 by ``margin`` and predicts fp32's
    top-1 token on ``min_agreement`` of positions (None: no tokenizer to check with); else fp32."""
    choice = {}
    for kind in KINDS:
        best, best_speed = "fp32", margin
        for name, speed in speedup.get(kind, {}).items():
            agree = agreement.get(name)
            if name != "fp32" and speed >= best_speed and (agree is None or agree >= min_agreement):
                best, best_speed = name, speed
        choice[kind] = best
    return choice


class OutOfTime(Exception):
    """The calibration's deadline passed between two model calls."""


@dataclass
class _Work:
    """The inputs of one round of work; ``run`` times it for several model copies, interleaved."""

    prompt: torch.Tensor  # (B, P) token ids; their values do not change the speed
    block: torch.Tensor  # (B, T)
    steps: int
    new_tokens: int
    timer: Callable[[], float]
    deadline: float

    def _timed(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
        """``call(*args, **kwargs)`` and its seconds; OutOfTime first when the deadline has
        passed, so the budget is overrun by at most one model call."""
        t0 = self.timer()
        if t0 > self.deadline:
            raise OutOfTime
        result = call(*args, **kwargs)
        return result, self.timer() - t0

    @torch.inference_mode()
    def run(
        self,
        models: dict[str, Any],
        steps: int | None = None,
        skip: dict[str, set[str]] | None = None,
    ) -> dict[str, dict[str, float]]:
        """Per model: seconds of one prefill, the median decode step, and a forward pass with
        log-probs, except the kinds of work ``skip[name]`` names. Each call is made for every
        model in turn before the next call."""
        from transformers import DynamicCache

        steps = self.steps if steps is None else steps
        skip = skip or {}
        out, caches, step_s, seconds = {}, {}, {}, {name: {} for name in models}
        generating = {n: m for n, m in models.items() if "generate" not in skip.get(n, ())}
        for name, model in generating.items():
            names = inspect.signature(model.forward).parameters
            cache_arg = "cache" if "cache" in names else "past_key_values"  # transformers 5: cache
            # the last position's logits only, as generation needs; an index tensor, because the
            # int form slices a non-contiguous view that CPU linear layers run slowly, in bf16 most
            last = torch.tensor([self.prompt.shape[1] - 1])
            extra = {"logits_to_keep": last} if "logits_to_keep" in names else {}
            caches[name] = {cache_arg: DynamicCache(config=model.config)}
            out[name], seconds[name]["prefill"] = self._timed(
                model, input_ids=self.prompt, use_cache=True, **caches[name], **extra
            )
            step_s[name] = []
        for _ in range(steps):
            for name, model in generating.items():
                nxt = out[name].logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
                out[name], s = self._timed(model, input_ids=nxt, use_cache=True, **caches[name])
                step_s[name].append(s)
        for name, model in models.items():
            if "forward" not in skip.get(name, ()):
                seconds[name]["forward"] = self._timed(block_logps, model, self.block)[1]
            if name in generating:
                step = seconds[name]["decode_step"] = statistics.median(step_s[name] or [0.0])
                seconds[name]["generate"] = seconds[name]["prefill"] + self.new_tokens * step
        return seconds


def calibrate(
    model_or_config: Any,
    *,
    tokenizer: Any = None,
    candidates: tuple[str, ...] = ("fp32", "bf16"),
    batch: int = 8,
    prompt_len: int = 16,
    steps: int = 6,
    new_tokens: int = 64,
    block_len: int = 16,
    rounds: int = 3,
    min_rounds: int = 2,
    budget_s: float = 10.0,
    margin: float = 1.1,
    min_agreement: float = 0.9,
    timer: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Time the app's work in each candidate dtype on the CPU and choose one per kind of work.

    Each candidate is a copy of the model cast to that dtype: real weights, because the numerics
    check needs them and a copy costs less than a random init; a config gets random weights,
    valid for speed only. Every copy is warmed up, then all are timed in up to ``rounds`` rounds,
    stopping rather than passing ``budget_s`` (overrun: at most one model call). Fewer than
    ``min_rounds`` rounds is inconclusive: fp32, not cached. The numerics check needs
    ``tokenizer``. A dtype torch cannot run here is dropped, so the choice falls to fp32. A kind
    of work the warm-up round finds a dtype clearly slower at than fp32 (``SLOWER``) is not
    timed further in it: the warm-up's speed-up stands as its measurement.
    """
    start = timer()
    deadline = start + budget_s
    model = _model_of(model_or_config)
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.get_input_embeddings().num_embeddings)
    prompt = torch.randint(vocab, (batch, prompt_len), generator=gen)
    block = torch.randint(vocab, (batch, block_len), generator=gen)
    work = _Work(prompt, block, steps, new_tokens, timer, deadline)
    check = tokenizer(CHECK_TEXT, return_tensors="pt")["input_ids"] if tokenizer else None
    notes: list[str] = []
    models, agreement, estimate, slow, skip = _warm_up(
        model, candidates, work, check, deadline, notes
    )
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    done = 0
    while done < rounds and len(models) > 1 and timer() + estimate <= deadline:
        began = timer()
        names = list(models)[done % len(models) :] + list(models)[: done % len(models)]
        try:  # the order rotates so that no dtype always runs right after the same other one
            timed = work.run({name: models[name] for name in names}, skip=skip)
        except OutOfTime:
            break
        for name, sample in timed.items():
            samples[name].append(sample)
        done, estimate = done + 1, timer() - began
    timings = {
        u: {
            n: statistics.median(s[u] for s in samples[n])
            for n in models
            if samples[n] and u in samples[n][0]
        }
        for u in UNITS
    }
    round_speedups: dict[str, dict[str, list[float]]] = {}
    for k in KINDS:
        for n in dict.fromkeys([*models, *slow]):  # a dtype settled at one kind is in both
            if k in slow.get(n, {}):  # measured once, in the warm-up round
                speeds = [slow[n][k]]
            elif done and k in samples[n][0]:
                speeds = [f[k] / s[k] for f, s in zip(samples["fp32"], samples[n], strict=True)]
            else:
                continue
            round_speedups.setdefault(k, {"fp32": [1.0] * max(1, done)})[n] = speeds
    speedup = {
        k: {n: statistics.median(r) for n, r in by.items()} for k, by in round_speedups.items()
    }
    only_fp32_runs = len(models) == 1 and set(agreement) >= set(candidates)  # all were tried
    conclusive = done >= min_rounds or only_fp32_runs
    if not conclusive:
        notes.append(f"{done} round(s) fit in {budget_s:g} s; fp32 until measured again")
    choice = choose(speedup, agreement, margin=margin, min_agreement=min_agreement)
    return Calibration(
        timings=timings,
        speedup=speedup,
        round_speedups=round_speedups,
        agreement=agreement,
        choice=choice if conclusive else dict.fromkeys(KINDS, "fp32"),
        rounds=done,
        seconds=timer() - start,
        threads=torch.get_num_threads(),
        conclusive=conclusive,
        notes=notes,
    )


def _warm_up(
    model: Any,
    candidates: tuple[str, ...],
    work: _Work,
    check: torch.Tensor | None,
    deadline: float,
    notes: list[str],
) -> tuple[
    dict[str, Any],
    dict[str, float | None],
    float,
    dict[str, dict[str, float]],
    dict[str, set[str]],
]:
    """A warmed-up copy per dtype that runs here and still has work to time, each dtype's top-1
    agreement with fp32, the seconds a round of the work left is expected to take, per dtype
    the warm-up speed-ups of the kinds of work it is clearly slower at (settled), and per model
    the kinds a round no longer times."""
    models: dict[str, Any] = {}
    agreement: dict[str, float | None] = {}
    reference = None
    for name in ("fp32", *[c for c in candidates if c != "fp32"]):
        if work.timer() > deadline:
            notes.append(f"the budget was spent before {name} was warmed up")
            break
        try:  # the cast, the first run and the numerics check all fail alike without bf16 kernels
            cast = cast_copy(model, DTYPES[name])
            work.run({name: cast}, steps=1)  # every shape once
            top1 = _top1(cast, check) if check is not None else None
        except OutOfTime:
            notes.append(f"the budget was spent while {name} was warmed up")
            break
        except (RuntimeError, NotImplementedError, TypeError) as e:
            if name == "fp32":
                raise
            agreement[name] = 0.0
            notes.append(f"{name} cannot run here ({type(e).__name__}: {e}); fp32 instead")
            continue
        reference = top1 if name == "fp32" else reference
        agreement[name] = None if top1 is None else float((top1 == reference).float().mean())
        models[name] = cast
    try:  # first calls after another dtype's still run slow: one untimed round, interleaved
        warm = work.run(models, steps=1) if len(models) > 1 else {}
    except OutOfTime:
        notes.append("the budget was spent in the warm-up round")
        return models, agreement, math.inf, {}, _settled({}, models)
    slow: dict[str, dict[str, float]] = {}
    for name in [n for n in warm if n != "fp32"]:
        speeds = {k: warm["fp32"][k] / warm[name][k] for k in KINDS}
        slow[name] = {k: v for k, v in speeds.items() if v < SLOWER}
        if not slow[name]:
            del slow[name]
            continue
        what = " and ".join(f"{v:.2f}x fp32 at {KIND_NAMES[k]}" for k, v in slow[name].items())
        notes.append(f"{name} ran at {what} in the warm-up round: slower, not timed further")
        if set(slow[name]) == set(KINDS):
            del models[name]
    skip = _settled(slow, models)
    estimate = sum(
        (w["prefill"] + work.steps * w["decode_step"] if "generate" not in skip[n] else 0.0)
        + (w["forward"] if "forward" not in skip[n] else 0.0)
        for n, w in warm.items()
        if n in models
    )
    return models, agreement, estimate, slow, skip


def _settled(slow: dict[str, dict[str, float]], models: dict[str, Any]) -> dict[str, set[str]]:
    """Per model, the kinds of work a round no longer times: a dtype's settled kinds, and fp32's
    when every other dtype's are settled (nothing left to compare it with)."""
    skip = {n: set(slow.get(n, {})) for n in models if n != "fp32"}
    others = [skip[n] for n in skip]
    skip["fp32"] = set.intersection(*others) if others else set(KINDS)
    return skip


def _model_of(model_or_config: Any) -> Any:
    """The model itself, or one with random weights built from a config."""
    if isinstance(model_or_config, torch.nn.Module):
        return model_or_config
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(model_or_config, dtype=torch.float32).eval()


def cast_copy(model: Any, dtype: torch.dtype) -> Any:
    """``model`` itself when it is in ``dtype`` (used read-only), else a copy cast to ``dtype``."""
    params = list(model.parameters())
    if all(p.dtype == dtype for p in params):
        return model
    # deepcopy takes the cast parameters from the memo: no full-precision copy is made, and
    # tied weights (one Parameter object) stay tied
    memo: dict[int, Any] = {
        id(p): torch.nn.Parameter(p.detach().to(dtype), requires_grad=False) for p in params
    }
    return copy.deepcopy(model, memo).to(dtype).eval()


def block_logps(model: Any, block: torch.Tensor) -> torch.Tensor:
    """Each next token's log-prob in fp32, as a reference or reward pass computes it."""
    logits = model(input_ids=block).logits[:, :-1].float()  # (B, T-1, V)
    return logits.gather(-1, block[:, 1:, None]).squeeze(-1) - logits.logsumexp(-1)


@torch.inference_mode()
def _top1(model: Any, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.argmax(-1)  # (1, T)
