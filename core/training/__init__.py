"""Training: the project's ratings in, a better model out; one optimizer step per yield.

- ``loop``: ``train(store, config)``, the generator the Train tab, the CLI and ``accelerate
  launch`` all run; ``session``: everything before the first step; ``resume``: what a stopped run
  needs to continue.
- ``registry``: the algorithms, one entry each; ``config``: their settings as dataclasses.
- one module per objective: ``reward``, ``dpo``, ``kto``, ``reinforce``, ``rloo`` (online RL),
  over the shared ``objective`` and ``context``.
- ``needs``: how much data the ratings make for an algorithm, in one line.
"""

from core.training.config import (
    DPOConfig,
    KTOConfig,
    ReinforceConfig,
    RewardConfig,
    RLOOConfig,
    TrainConfig,
    device_kind,
    field_help,
    set_field,
    unwrap_hint,
)
from core.training.loop import StepMetrics, train
from core.training.registry import (
    ALGORITHMS,
    ALGOS,
    Algorithm,
    algorithm,
    config_for,
    config_from_dict,
    default_lr,
    lora_defaults,
)
from core.training.session import TrainingError

__all__ = [
    "ALGORITHMS",
    "ALGOS",
    "Algorithm",
    "DPOConfig",
    "KTOConfig",
    "RLOOConfig",
    "ReinforceConfig",
    "RewardConfig",
    "StepMetrics",
    "TrainConfig",
    "TrainingError",
    "algorithm",
    "config_for",
    "config_from_dict",
    "default_lr",
    "device_kind",
    "field_help",
    "lora_defaults",
    "set_field",
    "train",
    "unwrap_hint",
]
