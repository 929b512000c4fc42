"""What ``--resume`` needs from a checkpoint: the trained weights, the optimizer moments, the
trainer state (step, total steps, scheduler) and the reference log-probs computed so far, stored
as safetensors and JSON (nothing unpickled)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import weights_file
from core.errors import ModelLoadError

REFERENCE_FILE = "reference_logps.safetensors"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """An optimizer state as (tensors for safetensors, JSON rest); no pickle involved."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: Any
) -> None:
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in tensors.items():
        idx, name = key.split("/", 1)
        state[int(idx)][name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split("/", 1)
        state[int(idx)][name] = value
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()}  # JSON made the tuple a list
        for g in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": dict(state), "param_groups": groups})


def restore_weights(model: Any, folder: Path) -> None:
    """Load a checkpoint's trained weights into a live model of the same shape (resume)."""
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        state = load_file(folder / "adapter_model.safetensors")
        result = set_peft_model_state_dict(model, state)
        if getattr(result, "unexpected_keys", None):
            raise ModelLoadError(
                f"{folder}: adapter does not fit the model ({result.unexpected_keys[:3]})."
            )
        return
    state = load_file(weights_file(folder))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k or "embed" in k}
    if unexpected or set(missing) - tied:
        raise ModelLoadError(
            f"{folder}: weights do not fit the model (missing {sorted(set(missing) - tied)[:3]}, "
            f"unexpected {unexpected[:3]})."
        )


def load_trainer_state(folder: Path, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """trainer_state.json of a checkpoint; also restores the optimizer moments when given."""
    from safetensors.torch import load_file

    path = folder / "trainer_state.json"
    if not path.exists():
        raise ModelLoadError(f"{folder} has no trainer_state.json; it cannot be resumed from.")
    state = json.loads(path.read_text(encoding="utf-8"))
    opt_file = folder / "optimizer.safetensors"
    if optimizer is not None and "optimizer" in state and opt_file.exists():
        optimizer_from_files(optimizer, load_file(opt_file), state["optimizer"])
    return state


def write_training_state(
    folder: Path,
    trainer_state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None,
    reference: tuple[dict[int, torch.Tensor], str] | None = None,
) -> None:
    """``trainer_state.json`` and, with an optimizer, ``optimizer.safetensors`` into ``folder``;
    ``reference`` (per-example reference log-probs, their examples' fingerprint) into
    ``reference_logps.safetensors``."""
    from safetensors.torch import save_file

    state = dict(trainer_state)
    if optimizer is not None:
        tensors, state["optimizer"] = optimizer_to_files(optimizer)
        save_file(tensors, folder / "optimizer.safetensors")
    if reference is not None:
        values, fingerprint = reference
        tensors = {str(i): t.detach().cpu().contiguous() for i, t in values.items()}
        save_file(tensors, folder / REFERENCE_FILE, metadata={"fingerprint": fingerprint})
    text = json.dumps(state, indent=1, ensure_ascii=False, default=str)
    (folder / "trainer_state.json").write_text(text, encoding="utf-8")


def load_reference_logps(folder: Path, fingerprint: str) -> dict[int, torch.Tensor]:
    """The reference log-probs a checkpoint saved, by example index; none when it saved none or
    saved them for other examples (``fingerprint`` differs)."""
    from safetensors import safe_open

    path = folder / REFERENCE_FILE
    if not path.exists():
        return {}
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("fingerprint") != fingerprint:
            return {}
        return {int(key): f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
