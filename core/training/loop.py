"""The training loop: the project's ratings in, a better model out, one optimizer step per yield.

``train(store, config)`` is a generator. It loads the model, snapshots the ratings that exist now
(annotators keep rating meanwhile), builds the examples, computes reference log-probs once, then
runs a plain loop and yields a ``StepMetrics`` after every optimizer step. Between steps it
honours ``pause`` (a ``threading.Event``: waits while set) and ``cancel`` (saves a checkpoint and
stops). Every step's metrics go into the ``metrics`` table; checkpoints are written every
``save_every`` steps and at the end (core/checkpoints.py). The same code runs the CLI's ``train``
command, the Train tab, and ``accelerate launch`` (DDP: every rank trains on its shard of each
batch; only the main process writes to the project file and the checkpoint folders).

The algorithms are listed in core/training/registry.py, one module per objective beside it.
Metric names follow TRL.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from core.checkpoints import latest_checkpoint
from core.store import ProjectStore
from core.training.config import TrainConfig
from core.training.context import PreparationCancelled, Tally
from core.training.diagnostics import Alert, Watcher
from core.training.session import Session, TrainingError, setup_session

Progress = Callable[[str, float | None], None]
PAUSE_POLL_S = 0.2  # how often a paused run looks at its pause and cancel flags


@dataclass
class StepMetrics:
    """One optimizer step: ``step`` counts from 1; ``checkpoint_id`` is set when one was saved."""

    run_id: int
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_id: int | None = None
    alerts: list[Alert] = field(default_factory=list)  # diagnostics raised at this step


def train(
    store: ProjectStore,
    config: TrainConfig | None = None,
    *,
    cancel: threading.Event | None = None,
    pause: threading.Event | None = None,
    resume_run_id: int | None = None,
    progress: Progress | None = None,
) -> Iterator[StepMetrics]:
    """Train ``config.algo`` on the project's ratings; yields after every optimizer step.

    ``resume_run_id`` continues that run from its last checkpoint with its own config, ratings,
    optimizer and scheduler state (``config``, if given, may only extend ``steps``). Problems a
    person can fix raise ``UserError`` before any run row is written; a run that diverges (NaN,
    exploding gradients) or runs out of memory is marked failed and raises ``TrainingError``.
    """
    session = setup_session(store, config, resume_run_id, progress, cancel)
    try:
        yield from _loop(session, pause)
    except TrainingError as e:
        session.set_status("failed", str(e))
        raise
    except (torch.OutOfMemoryError, MemoryError) as e:
        raise session.fail(_oom_message(session, e)) from e
    except RuntimeError as e:
        if _is_oom(e):
            raise session.fail(_oom_message(session, e)) from e
        session.set_status("failed", f"{type(e).__name__}: {e}")
        raise
    except (GeneratorExit, KeyboardInterrupt):
        # the consumer dropped the generator (or Ctrl-C): possibly during garbage collection,
        # after the store was closed, so this last status write is best effort
        session.set_status("stopped", f"interrupted at step {session.step}", quiet=True)
        raise
    except BaseException as e:
        session.set_status("failed", f"{type(e).__name__}: {e}")
        raise


def _loop(s: Session, pause: threading.Event | None) -> Iterator[StepMetrics]:
    cfg, acc, ctx, objective = s.config, s.accelerator, s.ctx, s.objective
    cancel = ctx.cancel
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    try:
        s.prepare_training()  # reference pass, resume state, optimizer; may take a while
    except PreparationCancelled:
        s.set_status("stopped", "stopped while preparing, before the first step")
        return
    s.set_status("running")
    watcher = _watcher(s)
    for step in range(s.step, s.total_steps):
        _wait_while_paused(s, pause, cancel)
        if cancel is not None and cancel.is_set():
            s.save(step)  # so that a stopped run can resume where it stopped
            s.set_status("stopped", f"stopped at step {step} of {s.total_steps}")
            return
        t0 = time.perf_counter()
        tally = Tally([*objective.metric_names, "_tokens"])
        micro = objective.micro_batches(ctx, step)  # grad_accum micro-batches of this rank
        passes = [(part, w) for mb in micro for part, w in objective.parts(ctx, mb)]
        tokens = 0
        for i, (part, weight) in enumerate(passes):
            # DDP all-reduces the gradients once, in the step's last backward
            sync = nullcontext() if i == len(passes) - 1 else acc.no_sync(ctx.module)
            with sync:
                loss, n = objective.loss(ctx, part, tally, weight)
                acc.backward(loss * weight / len(micro))
            tokens += n
        objective.end_step(tally)
        tally.add("_tokens", tokens)
        grad_norm = float(acc.clip_grad_norm_(params, cfg.max_grad_norm or float("inf")))
        metrics = tally.means(acc)
        _guard(s, step + 1, metrics.get("loss", 0.0), grad_norm)
        lr = s.scheduler.get_last_lr()[0]
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.step = step + 1
        metrics.update(objective.after_step(ctx, s.step, s.total_steps))
        step_time = time.perf_counter() - t0
        metrics.update(
            {
                "grad_norm": grad_norm,
                "learning_rate": lr,
                "step_time": step_time,
                "tokens_per_second": metrics.pop("_tokens") * acc.num_processes / step_time,
            }
        )
        s.log_metrics(s.step, metrics)
        alerts = watcher.observe(s.step, metrics)
        for alert in alerts:
            s.alert(alert)
        abort = bool(alerts) and cfg.abort_on_alert and s.step < s.total_steps
        last = s.step == s.total_steps or abort
        ckpt = s.save(s.step) if last or (cfg.save_every and s.step % cfg.save_every == 0) else None
        yield StepMetrics(s.run_id, s.step, s.total_steps, metrics, ckpt, alerts)
        if abort:
            s.set_status("stopped", f"stopped by an alert at step {s.step} ({alerts[0].rule})")
            return
    s.set_status("finished", f"{s.total_steps} steps")


def _watcher(s: Session) -> Watcher:
    """The run's diagnostics; a resumed run first replays its stored steps, whose alerts were
    raised when they happened."""
    watcher = Watcher(s.config.algo, {**s.config.to_dict(), **s.objective.watch_config()})
    if s.step:
        names = {n for n in s.objective.metric_names} | {"grad_norm", "eval/accuracy"}
        watcher.replay(s.store.metric_history(s.run_id, names))
    return watcher


def _wait_while_paused(
    s: Session, pause: threading.Event | None, cancel: threading.Event | None
) -> None:
    if pause is None or not pause.is_set():
        return
    s.set_status("paused", f"paused at step {s.step}")
    while pause.is_set() and not (cancel is not None and cancel.is_set()):
        time.sleep(PAUSE_POLL_S)  # a sleeping thread, not a spinning one
    s.set_status("running")


def _guard(s: Session, step: int, loss: float, grad_norm: float) -> None:
    """Stop before a bad update reaches the weights: NaN/inf loss or an exploding gradient."""
    problem = None
    if not math.isfinite(loss):
        problem = f"the loss is {loss}"
    elif not math.isfinite(grad_norm):
        problem = f"the gradient norm is {grad_norm}"
    elif grad_norm > s.config.abort_grad_norm:
        problem = f"the gradient norm {grad_norm:.3g} exceeds abort_grad_norm {s.config.abort_grad_norm:g}"
    if problem is None:
        return
    last = latest_checkpoint(s.store, run_id=s.run_id) if s.is_main else None
    kept = f"checkpoint:{last['id']} (step {last['step']})" if last else "no checkpoint yet"
    raise TrainingError(
        f"run {s.run_id} diverged at step {step}: {problem}. Nothing from this step was applied; "
        f"the last good checkpoint is {kept}. Lower the learning rate (it is "
        f"{s.config.learning_rate:g}) or the gradient clipping, then start a new run."
    )


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate" in text


def _oom_message(s: Session, e: BaseException) -> str:
    cfg = s.config
    hints = [] if cfg.lora else ["LoRA (--lora) instead of full fine-tuning"]
    hints.append(f"fewer tokens per forward pass (forward_tokens, now {cfg.forward_tokens})")
    hints += [
        f"a smaller batch (--batch-size {max(1, cfg.batch_size // 2)} --grad-accum "
        f"{cfg.grad_accum * 2} keeps the effective batch)",
        f"a shorter --max-length (now {cfg.max_length})",
    ]
    if not cfg.gradient_checkpointing:
        hints.append("--gradient-checkpointing")
    return (
        f"run {s.run_id} ran out of memory at step {s.step + 1} ({type(e).__name__}). "
        f"Try {', '.join(hints)}."
    )
