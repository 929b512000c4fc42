"""Checkpoint export: a Hugging Face folder with its tokenizer and a model card (docs/exports.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import verify
from core.exchange.card import model_card
from core.exchange.files import folder_target
from core.models import default_model_dir, parse_spec
from core.models.loading import load_checkpoint_model
from core.store import ProjectStore

# Files a training run keeps for resuming that a published model does not need.
_TRAINING_ONLY = (
    "optimizer",
    "scheduler",
    "rng_state",
    "trainer_state",
    "training_state",
    "reference_logps",
    "training_args",
    "checkpoint.json",
)


@dataclass
class CheckpointExport:
    path: Path
    checkpoint_id: int
    kind: str  # policy | reward
    form: str  # full | adapter | merged
    notes: list[str]


# ---- checkpoint export ----------------------------------------------------------------------------
def export_checkpoint(
    store: ProjectStore, ref: str | int, out_dir: str | os.PathLike, merged: bool = False
) -> CheckpointExport:
    """Write checkpoint ``ref`` as a Hugging Face folder with tokenizer and a README model card.

    A full-weights checkpoint, or an adapter with ``merged=True``, loads with
    ``AutoModelForCausalLM.from_pretrained``; an adapter otherwise loads with
    ``PeftModel.from_pretrained`` over its base model. Reward checkpoints are copied as they are.
    The folder is built beside ``out_dir`` and renamed into place; an existing non-empty folder
    is never overwritten."""
    out = folder_target(out_dir)  # a bad -o is named before any checkpoint is read
    rec = store.checkpoint(ref)
    src = verify(store, rec)
    notes: list[str] = []
    if merged and rec["kind"] != "policy":
        notes.append("a reward checkpoint is exported as it is; --merged was ignored")
    if merged and not rec["adapter"]:
        notes.append("the checkpoint holds full weights already; --merged changed nothing")
    form = (
        "merged"
        if merged and rec["adapter"] and rec["kind"] == "policy"
        else ("adapter" if rec["adapter"] else "full")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if form == "merged":  # the base model (fp32, CPU) with the adapter merged in
            model, _ = load_checkpoint_model(rec, store=store, dtype=torch.float32)
            model.save_pretrained(tmp)
            _copy_files(src, tmp, skip_adapter=True)
        else:
            _copy_files(src, tmp, skip_adapter=False)
        _ensure_tokenizer(store, rec, tmp, notes)
        if rec["kind"] == "policy":
            _ensure_generation_config(store, rec, tmp, notes)
        (tmp / "README.md").write_text(model_card(store, rec, form, src), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CheckpointExport(out, rec["id"], rec["kind"], form, notes)


def _base_folder(store: ProjectStore, spec: str) -> str:
    """Where a base model spec's config and tokenizer can be read from (a folder or hub id)."""
    parsed = parse_spec(spec)
    if parsed.kind == "default":
        return str(default_model_dir())
    if parsed.kind == "checkpoint":
        rec = store.checkpoint(parsed.value)
        folder = verify(store, rec)
        return _base_folder(store, rec["base_model"]) if rec["adapter"] else str(folder)
    return parsed.value


def _copy_files(src: Path, dst: Path, *, skip_adapter: bool) -> None:
    def ignore(_folder: str, names: list[str]) -> set[str]:
        out = {n for n in names if n.startswith(".") or n.startswith(_TRAINING_ONLY)}
        if skip_adapter:
            out |= {n for n in names if n.startswith("adapter_") or n in _MODEL_FILES}
            out |= {n for n in names if (dst / n).exists()}  # merged weights and config win
        return out

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


_MODEL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
}


def _ensure_tokenizer(store: ProjectStore, rec: dict[str, Any], folder: Path, notes: list) -> None:
    if (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists():
        return
    from transformers import AutoTokenizer

    base = _base_folder(store, rec["base_model"] or "default")
    try:
        AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    except (OSError, ValueError) as e:
        notes.append(f"no tokenizer in the checkpoint and none could be read from {base} ({e})")


def _ensure_generation_config(
    store: ProjectStore, rec: dict[str, Any], folder: Path, notes: list
) -> None:
    if (folder / "generation_config.json").exists():
        return
    from transformers import AutoConfig, GenerationConfig

    try:
        if (folder / "config.json").exists():
            config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder))
        else:
            config = GenerationConfig.from_pretrained(_base_folder(store, rec["base_model"]))
        config.save_pretrained(folder)
    except (OSError, ValueError) as e:
        notes.append(f"no generation_config.json could be made ({e})")


# ---- the model card -------------------------------------------------------------------------------
