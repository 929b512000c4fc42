"""Everything before the first step: config, accelerator, model (+LoRA), data, run row, optimizer.

Split from core/training/loop.py so the loop there reads top to bottom. ``setup_session`` raises
``UserError`` for problems a person can fix *before* a run row exists; ``Session`` then carries
the run through the loop and owns every write (only the main process writes).
"""

from __future__ import annotations

import math
import os
import sqlite3
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoints import checkpoint_path, latest_checkpoint, save_checkpoint
from core.errors import UserError
from core.models import load_model, save_model_files
from core.models.batching import CompletionLogps
from core.models.reward import RewardScores, to_reward_model
from core.quiet_imports import quiet_import
from core.store import ProjectStore
from core.training.config import TrainConfig
from core.training.context import Context
from core.training.objective import Objective
from core.training.registry import algorithm, config_for, config_from_dict
from core.training.resume import (
    load_reference_logps,
    load_trainer_state,
    restore_weights,
    write_training_state,
)


class TrainingError(UserError):
    """A run that failed in a way a person can act on (diverged, out of memory)."""


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at 0-based ``step``: linear warmup, then decay.

    Warmup starts at 1/(warmup+1) rather than 0 and decay ends above 0: with the few dozen steps
    a desktop run has, no step is wasted at learning rate 0.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


@dataclass
class Session:
    store: ProjectStore
    config: TrainConfig
    accelerator: Any
    ctx: Context
    objective: Objective
    run_id: int
    total_steps: int
    step: int = 0  # optimizer steps done
    resume_folder: Path | None = None
    progress: Any = None
    optimizer: Any = None
    scheduler: Any = None
    last_saved: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def say(self, message: str) -> None:
        if self.progress and self.is_main:
            self.progress(message, None)

    # ---- writes (main process only) --------------------------------------------------------
    def set_status(self, status: str, message: str | None = None, quiet: bool = False) -> None:
        if not self.is_main:
            return
        try:
            self.store.set_run_status(self.run_id, status, message)
        except sqlite3.Error:
            if not quiet:
                raise

    def fail(self, message: str) -> TrainingError:
        self.set_status("failed", message)
        return TrainingError(message)

    def alert(self, alert: Any) -> None:
        """A diagnostic alert: said as one ``alert:`` line and stored with the run (main only)."""
        if self.is_main:
            self.store.add_alert(self.run_id, alert.step, alert.rule, alert.message)
            if self.progress:
                self.progress(alert.line(), None)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.last_metrics = metrics
        if self.is_main:
            self.store.log_metrics(self.run_id, step, metrics)

    def save(self, step: int) -> int | None:
        """Checkpoint after ``step`` optimizer steps (once per step); returns its id on main."""
        if step <= self.last_saved:
            return None
        ckpt = None
        ref = self.objective.reference  # every rank's share, kept so a resumed run reuses it
        reference = None if ref is None else (ref.gathered(self.accelerator), ref.fingerprint())
        if self.is_main:
            cfg, model = self.config, self.ctx.model
            state = {
                "step": step,
                "total_steps": self.total_steps,
                "algo": cfg.algo,
                "scheduler": self.scheduler.state_dict(),
            }

            def write_files(folder: Path) -> None:
                save_model_files(model, self.ctx.tokenizer, folder)
                write_training_state(folder, state, self.optimizer, reference)

            ckpt = save_checkpoint(
                self.store,
                run_id=self.run_id,
                step=step,
                kind=self.objective.kind,
                write_files=write_files,
                adapter=hasattr(model, "peft_config"),
                base_model=cfg.model,
                config=cfg.to_dict(),
                metrics=self.last_metrics,
            )
            self.say(f"Saved checkpoint:{ckpt} at step {step}.")
        self.accelerator.wait_for_everyone()
        self.last_saved = step
        return ckpt

    # ---- once before the loop ----------------------------------------------------------------
    def prepare_training(self) -> None:
        cfg, ctx = self.config, self.ctx
        self.say(f"Preparing {cfg.algo} on {self.objective.describe()}…")
        self.objective.plan(self.total_steps, ctx)  # which examples the steps use, in order
        self.objective.prepare(ctx)
        self._start_reference()  # before restore_weights: the starting weights are the reference
        if self.resume_folder is not None:
            restore_weights(ctx.model, self.resume_folder)
        params = [p for p in ctx.model.parameters() if p.requires_grad]
        optimizer = _adamw(params, cfg)
        warmup = round(cfg.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            partial(lr_factor, total=self.total_steps, warmup=warmup, schedule=cfg.lr_schedule),
        )
        if self.resume_folder is not None:
            state = load_trainer_state(self.resume_folder, optimizer)
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = self.last_saved = int(state["step"])
            self.say(f"Resuming run {self.run_id} at step {self.step} of {self.total_steps}.")
        module = (
            RewardScores(ctx.model, cfg.pooling)
            if self.objective.kind == "reward"
            else CompletionLogps(ctx.model)
        )
        ctx.module, self.optimizer = self.accelerator.prepare(module, optimizer)

    def _start_reference(self) -> None:
        """Reference log-probs a checkpoint of this run saved, then those that must be computed
        before the first step (core/training/reference.py)."""
        reference = self.objective.reference
        if reference is None:
            return
        if self.resume_folder is not None:
            reference.load(load_reference_logps(self.resume_folder, reference.fingerprint()))
        reference.start(self.ctx, self.objective.planned(self.ctx))


def _adamw(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters) where this torch build supports it."""
    kwargs = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, **kwargs)


def _accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # In one process (the GUI runs many trainings) each run may pick another device or
        # precision; accelerate keeps a process-wide singleton, so start it afresh.
        AcceleratorState._reset_state(reset_partial_state=True)
    if cfg.device.startswith("cuda:"):
        torch.cuda.set_device(torch.device(cfg.device))
    return Accelerator(cpu=cfg.device == "cpu", mixed_precision="bf16" if cfg.bf16 else "no")


def _add_lora(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    quiet_import("peft")  # core.quiet_imports: no collector pauses while the GUI runs
    from peft import LoraConfig, get_peft_model

    target: Any = cfg.lora_target.strip()
    if target != "all-linear":
        target = [t.strip() for t in target.split(",") if t.strip()]
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=target,
        task_type="SEQ_CLS" if algorithm(cfg.algo).objective.kind == "reward" else "CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft asks a deprecated transformers property
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            return get_peft_model(model, lora)
    except ValueError as e:
        raise UserError(
            f"LoRA target modules {cfg.lora_target!r} do not fit this model ({e})."
        ) from e


def _load_policy(store: ProjectStore, cfg: TrainConfig, acc: Any, progress: Any) -> tuple[Any, Any]:
    with acc.main_process_first():  # the first load of `default` converts a GGUF once
        loaded = load_model(
            cfg.model or store.settings()["model"],
            store=store,
            device=str(acc.device),
            dtype="bf16" if cfg.bf16 and cfg.lora else "fp32",  # full FT keeps fp32 masters
            trust_remote_code=cfg.trust_remote_code,
            progress=progress if acc.is_main_process else None,
        )
    cfg.model = loaded.spec  # checkpoint:latest is recorded as the id it meant
    model, tokenizer = loaded.model, loaded.tokenizer
    if algorithm(cfg.algo).objective.kind == "reward":
        model = to_reward_model(model, tokenizer.pad_token_id, cfg.pooling)
    if cfg.lora:
        model = _add_lora(model, cfg)
    for m in model.modules():  # TRL does the same: dropout would make policy != reference at 0
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if cfg.gradient_checkpointing:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        kwargs = {"use_reentrant": False}  # LoRA: the frozen inputs need no requires_grad hook
        if hasattr(base, "activation_checkpointing_enable"):  # the newer name (transformers 5.x)
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    return model, tokenizer


def _snapshot(store: ProjectStore, acc: Any) -> list[int]:
    """The ratings that exist now (the run trains on these, whatever annotators add later)."""
    from accelerate.utils import broadcast_object_list

    ids = store.live_rating_ids()
    if acc.num_processes > 1:
        holder = [ids]
        broadcast_object_list(holder, from_process=0)
        ids = holder[0]
    return ids


def setup_session(
    store: ProjectStore,
    config: TrainConfig | None,
    resume_run_id: int | None,
    progress: Any,
    cancel: Any = None,
) -> Session:
    # what training needs beyond generation, imported without collector pauses
    quiet_import("accelerate", "accelerate.utils")
    from accelerate.utils import broadcast_object_list, set_seed

    resume_folder, done = None, 0
    if resume_run_id is not None:
        row = store.run(resume_run_id)
        if row is None:
            raise UserError(f"run {resume_run_id} does not exist in {store.path}.")
        cfg = config_from_dict(row["config"])
        if config is not None and config.steps:
            cfg.steps = config.steps
        rating_ids: list[int] | None = row["rating_ids"]
        ckpt = latest_checkpoint(store, run_id=resume_run_id)
        if ckpt is not None:
            resume_folder, done = checkpoint_path(store, ckpt), int(ckpt["step"])
    else:
        cfg = config if config is not None else config_for("dpo")
        rating_ids = None
    cfg.validate()
    acc = _accelerator(cfg)
    set_seed(cfg.seed)
    model, tokenizer = _load_policy(store, cfg, acc, progress)
    if rating_ids is None:
        rating_ids = _snapshot(store, acc)
    ctx = Context(store, cfg, acc, tokenizer, model, rating_ids, cancel=cancel)
    objective = algorithm(cfg.algo).objective(ctx)
    total = cfg.steps or objective.steps_for(cfg, acc.num_processes)
    if done >= total:
        raise UserError(
            f"run {resume_run_id} already did all its {total} steps; give more --steps to "
            "train it further."
        )
    run_id = resume_run_id
    if run_id is None:
        holder = [None]
        if acc.is_main_process:
            holder[0] = store.create_run(cfg.algo, cfg.to_dict(), cfg.model, objective.rating_ids())
        if acc.num_processes > 1:
            broadcast_object_list(holder, from_process=0)
        run_id = holder[0]
    session = Session(
        store, cfg, acc, ctx, objective, int(run_id), total, 0, resume_folder, progress
    )
    if acc.is_main_process:
        n = acc.num_processes
        where = f"on {n} processes" if n > 1 else "on 1 process"
        session.say(
            f"Run {run_id}: {cfg.algo} on {objective.describe()}, {total} steps, "
            f"{where} ({acc.device.type}, {'bf16' if cfg.bf16 else 'fp32'}, "
            f"{'LoRA' if cfg.lora else 'full fine-tuning'})."
        )
    return session
