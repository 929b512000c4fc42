"""Training configs: one dataclass per algorithm, every field with help text and a sane default.

The Train tab builds its form from these fields and the ``train`` command its flags
(``dataclasses.fields(cfg)``: the type, the default, ``metadata["help"]`` for the tooltip and the
``--help`` line, ``metadata["group"]`` for the section and, for a choice, ``metadata["choices"]``;
``metadata["flag"]`` names a flag that differs from the field's name, ``metadata["cli"] = False``
keeps a field off the command line). Which algorithm uses which config, and its default learning
rates and epochs, is core/training/registry.py; why the defaults are what they are is
docs/design.md.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.errors import UserError
from core.models.reward import POOLINGS

BASELINES = ("prompt", "mean")  # REINFORCE: what a score is compared with

# A run whose steps come from epochs takes at least MIN_STEPS optimizer steps (at most MAX_EPOCHS
# passes): a few dozen pairs make too few steps to move the policy after warm-up and decay.
MIN_STEPS, MAX_EPOCHS = 32, 8.0
# Tokens per forward pass: activation memory grows with them. LoRA on a CPU takes smaller passes to
# keep peak memory low; full fine-tuning is dominated by weights and optimizer state, so smaller
# passes would only cost time; a GPU is faster with large passes (docs/design.md).
FORWARD_TOKENS = {"cpu": 512, "cpu-lora": 256, "cuda": 16384}


def default_forward_tokens(kind: str, lora: bool) -> int:
    """Tokens per forward pass by default on a device kind (cpu, cuda, mps) with LoRA or not."""
    if kind == "cuda":
        return FORWARD_TOKENS["cuda"]
    return FORWARD_TOKENS["cpu-lora" if lora else "cpu"]


def _f(default: Any, help: str, group: str = "training", **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class TrainConfig:
    """Settings shared by every algorithm."""

    algo: str = _f("dpo", "training algorithm", "run", cli=False)
    model: str | None = _f(
        None,
        "policy (or reward model base) to start from: a model spec, `default`, or checkpoint:ID; "
        "empty = the project's generation model",
        "run",
    )
    # ---- data
    annotators: list[str] | None = _f(None, "train only on these annotators (empty = all)", "data")
    criterion: str | None = _f(
        "overall",
        "score criterion that makes pairs, labels and rewards (empty = mean of all)",
        "data",
    )
    score_margin: float = _f(
        0.25, "two scores of one prompt make a pair when this far apart", "data"
    )
    score_threshold: float = _f(0.5, "a score at or above this is desirable (kto)", "data")
    # ---- optimisation
    learning_rate: float = _f(
        3e-4, "AdamW peak learning rate (the default depends on LoRA/full)", flag="--lr"
    )
    steps: int | None = _f(None, "optimizer steps; empty = from epochs")
    epochs: float = _f(2.0, "passes over the training data (used when steps is empty)")
    min_steps: int = _f(
        MIN_STEPS,
        f"fewest optimizer steps when they come from epochs: a small data set gets more passes, "
        f"up to {MAX_EPOCHS:g}",
    )
    batch_size: int = _f(8, "examples per device per forward pass (a DPO pair counts once)")
    grad_accum: int = _f(1, "micro-batches per optimizer step (effective batch = batch × this)")
    lr_schedule: str = _f(
        "linear",
        "after warmup: linear decay to 0, cosine decay, or constant",
        choices=("linear", "cosine", "constant"),
    )
    warmup_ratio: float = _f(0.1, "fraction of the steps that ramp the learning rate up from 0")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (0 = no clipping)")
    abort_on_alert: bool = _f(
        False,
        "stop the run (saving a checkpoint, so it can be resumed) when a diagnostic alert is "
        "raised; alerts are shown and stored either way (docs/diagnostics.md)",
    )
    abort_grad_norm: float = _f(
        1e4, "stop the run (failed) when the gradient norm exceeds this: training diverged"
    )
    max_length: int = _f(
        512, "longest prompt + response in tokens (longer prompts lose their start)"
    )
    seed: int = _f(0, "seed for data order, LoRA init and sampling")
    # ---- model and device
    lora: bool = _f(
        True,
        "train a LoRA adapter (small, fast on CPU) instead of every weight",
        "model",
        cli=False,  # --lora / --full
    )
    lora_r: int = _f(16, "LoRA rank", "model")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r)", "model")
    lora_target: str = _f(
        "all-linear", "modules that get adapters: all-linear or comma-separated names", "model"
    )
    forward_tokens: int = _f(
        512,
        "most tokens (padded) in one forward pass; larger batches run in several passes with the "
        "same gradients. Bounds memory: lower it if memory runs out, raise it on a GPU for speed",
        "model",
    )
    gradient_checkpointing: bool = _f(
        False, "recompute activations in backward: less memory, ~30% slower", "model"
    )
    bf16: bool = _f(False, "bf16 autocast (CUDA); fp32 master weights", "model", cli=False)
    device: str = _f("auto", "cpu, cuda, cuda:1, mps or auto", "model", cli=False)
    trust_remote_code: bool = _f(False, "allow a model's own code to run", "model", cli=False)
    # ---- checkpoints
    save_every: int = _f(
        50, "save a checkpoint every N steps (and always at the end; 0 = end only)", "checkpoints"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "max_length": self.max_length,
            "lora_r": self.lora_r,
            "forward_tokens": self.forward_tokens,
        }
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"{name} must be at least 1, not {value}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"steps must be at least 1, not {self.steps}")
        if self.steps is None and not self.epochs > 0:
            raise UserError(f"epochs must be more than 0, not {self.epochs}")
        if self.min_steps < 0:
            raise UserError(f"min_steps must be 0 or more, not {self.min_steps}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise UserError(f"learning rate must be a positive number, not {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.lr_schedule not in ("linear", "cosine", "constant"):
            raise UserError(f"lr_schedule {self.lr_schedule!r} is not linear, cosine or constant")
        if self.max_length < 16:
            raise UserError(f"max_length {self.max_length} is too short; use at least 16 tokens")


@dataclass
class RewardConfig(TrainConfig):
    """Reward model: the base model with a scalar head, Bradley-Terry loss on preference pairs."""

    algo: str = _f("reward", "training algorithm", "run", cli=False)
    use_margin: bool = _f(
        True, "subtract each pair's score margin inside the loss (pairs from scores)", "reward"
    )
    pooling: str = _f(
        "mean",
        "what the head reads: the mean of the response's tokens (better from few ratings), or "
        "the last token (what transformers' own sequence classifier computes)",
        "reward",
        choices=POOLINGS,
    )
    heldout_fraction: float = _f(
        0.1,
        "fraction of the pairs kept out of training to measure accuracy on pairs the model has "
        "not seen (eval/accuracy); none are kept from fewer than 20 pairs",
        "reward",
        before=0.0,
    )

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.heldout_fraction < 0.5:
            raise UserError(f"heldout_fraction must be in [0, 0.5), not {self.heldout_fraction}")
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling {self.pooling!r} is not mean or last")


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimization on (chosen, rejected) pairs."""

    algo: str = _f("dpo", "training algorithm", "run", cli=False)
    beta: float = _f(
        0.1, "strength of the pull toward the reference model (higher = stay closer)", "dpo"
    )
    loss_type: str = _f("sigmoid", "sigmoid (DPO) or ipo", "dpo", choices=("sigmoid", "ipo"))
    label_smoothing: float = _f(
        0.0, "cDPO: assumed fraction of preference labels that are wrong (0 to 0.5)", "dpo"
    )

    def validate(self) -> None:
        super().validate()
        if not self.beta > 0:
            raise UserError(f"beta must be more than 0, not {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise UserError(f"label_smoothing must be in [0, 0.5), not {self.label_smoothing}")
        if self.loss_type not in ("sigmoid", "ipo"):
            raise UserError(f"loss_type {self.loss_type!r} is not sigmoid or ipo")


@dataclass
class KTOConfig(TrainConfig):
    """Kahneman-Tversky optimization on desirable / undesirable examples (thumbs, scores)."""

    algo: str = _f("kto", "training algorithm", "run", cli=False)
    beta: float = _f(0.1, "strength of the pull toward the reference model", "kto")
    desirable_weight: float = _f(1.0, "loss weight of desirable examples", "kto")
    undesirable_weight: float = _f(
        1.0, "loss weight of undesirable examples (raise it when they are rarer)", "kto"
    )

    def validate(self) -> None:
        super().validate()
        if not self.beta > 0:
            raise UserError(f"beta must be more than 0, not {self.beta}")


@dataclass
class RLOOConfig(TrainConfig):
    """Online RL: sample K responses per prompt, score them, leave-one-out baseline, KL penalty."""

    algo: str = _f("rloo", "training algorithm", "run", cli=False)
    reward_model: str | None = _f(
        None,
        "reward checkpoint that scores samples (checkpoint:ID); empty = the newest one",
        "rloo",
    )
    rater: str | None = _f(
        None, "scripted rater MODULE:FUNC that scores samples instead of a reward model", "rloo"
    )
    num_samples: int = _f(4, "responses sampled per prompt (K >= 2)", "rloo")
    max_new_tokens: int = _f(64, "longest sampled response in tokens", "rloo")
    temperature: float = _f(
        0.8, "sampling temperature (log-probs use the same temperature)", "rloo"
    )
    kl_coef: float = _f(
        0.05, "KL penalty to the reference model subtracted from the reward", "rloo"
    )
    clip_eps: float = _f(0.2, "clip range of the importance ratio", "rloo")
    ppo_epochs: int = _f(
        2, "optimizer steps on each batch of samples before sampling again", "rloo"
    )
    rollouts_per_sampling: int = _f(
        4,
        "rollouts sampled in one batched pass; the later ones are used a few steps stale (the "
        "clipped ratio corrects for it). More is faster where a decoding step costs about the "
        "same for many rows as for few, as on a CPU",
        "rloo",
    )
    heldout_fraction: float = _f(
        0.0, "fraction of prompts never trained on (kept for evaluation)", "rloo"
    )

    def validate(self) -> None:
        super().validate()
        if self.num_samples < 2:
            raise UserError(f"rloo needs at least 2 samples per prompt, not {self.num_samples}")
        if self.max_new_tokens < 1 or not self.temperature > 0:
            raise UserError("rloo needs max_new_tokens >= 1 and a temperature above 0")
        if not 0 <= self.heldout_fraction < 1:
            raise UserError(f"heldout_fraction must be in [0, 1), not {self.heldout_fraction}")
        if self.rollouts_per_sampling < 1:
            raise UserError(
                f"rollouts_per_sampling must be at least 1, not {self.rollouts_per_sampling}"
            )
        if self.reward_model and self.rater:
            raise UserError("give either --reward-model or --rater, not both")


@dataclass
class ReinforceConfig(TrainConfig):
    """REINFORCE on human scores of already-rated samples, per-prompt baseline, KL penalty."""

    algo: str = _f("reinforce", "training algorithm", "run", cli=False)
    kl_coef: float = _f(0.05, "KL penalty to the reference model (added to the loss)", "reinforce")
    # per prompt by default: scores vary more between prompts than between a prompt's answers
    baseline: str = _f(
        "prompt",
        "what each score is compared with: prompt = the mean of the other scored samples of the "
        "same prompt (leave-one-out), so a prompt that draws high scores for every answer "
        "teaches nothing about the answers; mean = the mean of all scores",
        "reinforce",
        choices=BASELINES,
        before="mean",  # what runs saved before this field existed ran with
    )

    def validate(self) -> None:
        super().validate()
        if self.kl_coef < 0:
            raise UserError(f"kl_coef must be 0 or more, not {self.kl_coef}")
        if self.baseline not in BASELINES:
            raise UserError(f"baseline {self.baseline!r} is not {' or '.join(BASELINES)}")


def device_kind(device: str | torch.device | None) -> str:
    """cpu, cuda or mps: what ``device`` (None/"auto": the best available) is."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    return torch.device(device).type


def field_help(cls_or_cfg: Any) -> dict[str, str]:
    """{field name: help text}, for tooltips and ``--help``."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls_or_cfg)}


def unwrap_hint(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of ``int | None``, ``list[str] | None``, ``float``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return hint, False


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def set_field(cfg: TrainConfig, assignment: str) -> str:
    """Apply one ``FIELD=VALUE`` (the CLI's ``--set``) to ``cfg``, converted to the field's type;
    returns the field's name.

    ``none`` (or nothing) clears a field that may be empty; a list takes comma-separated items."""
    name, sep, text = assignment.partition("=")
    name, text = name.strip().replace("-", "_"), text.strip()
    fields = {f.name: f for f in dataclasses.fields(cfg) if f.name != "algo"}  # that is --algo
    if not sep or name not in fields:
        known = ", ".join(sorted(fields))
        what = f"--set {assignment!r}: " + (
            f"{name!r} is not a setting of --algo {cfg.algo}" if sep else "write FIELD=VALUE"
        )
        raise UserError(f"{what}. Settings: {known}.")
    kind, optional = unwrap_hint(typing.get_type_hints(type(cfg))[name])
    f = fields[name]
    try:
        if optional and text.lower() in ("", "none"):
            value: Any = None
        elif kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            value = text.lower() in _TRUE
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        elif typing.get_origin(kind) is list:
            value = [item.strip() for item in text.split(",") if item.strip()]
        else:
            value = text
    except ValueError:
        wanted = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise UserError(
            f"--set {name}={text}: {name} takes {wanted} ({f.metadata.get('help', '')})."
        ) from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"--set {name}={text}: choose one of {', '.join(map(str, choices))}.")
    setattr(cfg, name, value)
    return name
