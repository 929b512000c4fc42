"""The algorithms, one entry each: adding an algorithm is one ``Algorithm`` in ``ALGORITHMS``.

An entry names its config class (its fields are the Train tab's form and the ``train`` command's
flags), its objective (the loss), the title the Train tab shows, its default learning rates for
full fine-tuning and LoRA, its default passes over the data, and what it trains on. Why the
defaults are what they are is docs/design.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from core.errors import UserError
from core.training.config import (
    DPOConfig,
    KTOConfig,
    ReinforceConfig,
    RewardConfig,
    RLOOConfig,
    TrainConfig,
    default_forward_tokens,
    device_kind,
)
from core.training.dpo import DPOObjective
from core.training.kto import KTOObjective
from core.training.objective import Objective
from core.training.reinforce import ReinforceObjective
from core.training.reward import RewardObjective
from core.training.rloo import RLOOObjective


@dataclass(frozen=True)
class Algorithm:
    name: str  # what --algo and a run's ``algo`` column say
    title: str  # what the Train tab shows
    config: type[TrainConfig]
    objective: type[Objective]
    learning_rate: tuple[float, float]  # (full fine-tuning, LoRA)
    epochs: float  # passes over the data when no step count is given
    trains_on: str  # pairs | unpaired | rewards | prompts (what core.training.needs counts)


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "reward", "Reward model", RewardConfig, RewardObjective, (5e-5, 5e-4), 2.0, "pairs"
        ),
        Algorithm("dpo", "DPO", DPOConfig, DPOObjective, (3e-5, 3e-4), 2.0, "pairs"),
        Algorithm("kto", "KTO", KTOConfig, KTOObjective, (3e-5, 3e-4), 2.0, "unpaired"),
        Algorithm(
            "rloo", "RLOO (online RL)", RLOOConfig, RLOOObjective, (1e-5, 1e-4), 1.0, "prompts"
        ),
        Algorithm(
            "reinforce",
            "REINFORCE",
            ReinforceConfig,
            ReinforceObjective,
            (3e-5, 3e-4),
            2.0,
            "rewards",
        ),
    )
}
ALGOS = tuple(ALGORITHMS)


def algorithm(name: str | None) -> Algorithm:
    """The registry entry of ``name``, or one clear error listing the algorithms."""
    if name not in ALGORITHMS:
        raise UserError(f"algorithm {name!r} is not one of {', '.join(ALGOS)}.")
    return ALGORITHMS[name]


def default_lr(algo: str, lora: bool) -> float:
    """The learning rate a config gets by default (the Train form calls this when LoRA toggles)."""
    full, low_rank = algorithm(algo).learning_rate
    return low_rank if lora else full


def lora_defaults(algo: str, kind: str, lora: bool) -> dict[str, Any]:
    """The defaults that follow LoRA/full fine-tuning on a device kind: the learning rate and the
    tokens per forward pass. The Train form and ``train --set lora=...`` keep these in step."""
    return {
        "learning_rate": default_lr(algo, lora),
        "forward_tokens": default_forward_tokens(kind, lora),
    }


def config_for(
    algo: str, device: str | torch.device | None = None, *, lora: bool | None = None
) -> TrainConfig:
    """The config of ``algo`` with defaults for ``device`` (None/"auto": the best available).

    LoRA by default where there is no CUDA (a 135M model trains at desktop speed and peak memory
    stays small); full fine-tuning and bf16 autocast on CUDA. The learning rate follows LoRA/full.
    """
    entry = algorithm(algo)
    kind = device_kind(device)
    use_lora = (kind != "cuda") if lora is None else lora
    bf16 = kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return entry.config(
        learning_rate=default_lr(algo, use_lora),
        epochs=entry.epochs,
        lora=use_lora,
        bf16=bf16,
        forward_tokens=default_forward_tokens(kind, use_lora),
        device="auto" if device is None else str(device),
    )


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config from its JSON (a run's ``config`` column); unknown keys are ignored, and a
    field the JSON lacks takes its ``metadata["before"]`` (the behaviour before the field) if any,
    else its default."""
    algo = data.get("algo")
    if algo not in ALGORITHMS:
        raise UserError(f"run config has algo {algo!r}, not one of {', '.join(ALGOS)}")
    cls = ALGORITHMS[algo].config
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in data.items() if k in names}
    for f in dataclasses.fields(cls):  # a field added later: old runs resume as they ran
        if f.name not in kept and "before" in f.metadata:
            kept[f.name] = f.metadata["before"]
    return cls(**kept)
