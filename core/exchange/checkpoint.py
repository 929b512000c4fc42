"""Checkpoint export: a Hugging Face folder with its tokenizer and a model card, or one GGUF file
with its card beside it (docs/exports.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import verify
from core.exchange.card import model_card
from core.exchange.files import ExportError, atomic_file, drain, file_target, folder_target
from core.exchange.gguf import GGUFExportError, GGUFProgress, check_quant, iter_export_gguf
from core.exchange.gguf import read_config as read_gguf_config
from core.exchange.gguf_card import default_model_card, usage_lines
from core.models import DEFAULT_MODEL_NAME, default_model_dir, load_tokenizer, parse_spec
from core.models.loading import load_checkpoint_model, save_model_files
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


@dataclass
class GGUFCheckpointExport:
    path: Path
    checkpoint_id: int | None  # None: the embedded default model
    form: str  # full | merged (an adapter merged into its base first) | default
    quant: str
    size_bytes: int
    seconds: float  # the merge included
    card: Path | None  # the model card written beside the file
    tensor_types: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False


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


# ---- GGUF -----------------------------------------------------------------------------------------
def card_path(gguf_file: Path) -> Path:
    """The model card of a GGUF export: ``NAME.gguf`` gets ``NAME.README.md`` beside it."""
    return gguf_file.with_name(gguf_file.stem + ".README.md")


def export_checkpoint_gguf(
    store: ProjectStore | None,
    ref: str | int,
    output: str | os.PathLike,
    quant: str = "f16",
    *,
    progress: Callable[[GGUFProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> GGUFCheckpointExport:
    """Write checkpoint ``ref`` (or ``"default"``, the embedded default model) as one GGUF file,
    and its model card beside it; an adapter is merged into its base model first."""
    gen = iter_export_checkpoint_gguf(store, ref, output, quant, cancel=cancel)
    return drain(gen, progress)


def iter_export_checkpoint_gguf(
    store: ProjectStore | None,
    ref: str | int,
    output: str | os.PathLike,
    quant: str = "f16",
    *,
    cancel: threading.Event | None = None,
) -> Generator[GGUFProgress, None, GGUFCheckpointExport]:
    """The GGUF export as a generator (for gui/workers.py): yields progress, returns the result.

    Everything a person can get wrong (the path, the quantization, the checkpoint, a reward model,
    an architecture GGUF export does not support) is refused before any model is loaded."""
    start = time.perf_counter()
    target = file_target(output)
    if target.suffix.lower() != ".gguf":
        raise ExportError(f"{target}: give a file name ending in .gguf (-o NAME.gguf).")
    check_quant(quant)
    rec, folder = (None, None) if str(ref) == "default" else _gguf_source(store, ref)
    merge = rec is not None and bool(rec["adapter"])
    form = "default" if rec is None else ("merged" if merge else "full")
    tmp: Path | None = None
    try:
        if rec is None:
            yield GGUFProgress(0, 0, f"preparing the default model {DEFAULT_MODEL_NAME}")
            source, name = default_model_dir(), DEFAULT_MODEL_NAME
        else:
            source, name = folder, f"{Path(store.path).stem}-checkpoint-{rec['id']}"
        if merge:
            yield GGUFProgress(0, 0, f"merging the adapter of checkpoint:{rec['id']}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".merge", dir=target.parent)
            )
            model, tokenizer = load_checkpoint_model(rec, store=store, dtype=torch.float32)
            save_model_files(model, tokenizer, tmp)
            del model
            source = tmp
        res = yield from iter_export_gguf(source, target, quant, name=name, cancel=cancel)
        card = None
        if not res.cancelled:
            card = _write_gguf_card(store, rec, folder, source, target, quant)
        return GGUFCheckpointExport(
            path=target,
            checkpoint_id=None if rec is None else rec["id"],
            form=form,
            quant=quant,
            size_bytes=res.size_bytes,
            seconds=time.perf_counter() - start,
            card=card,
            tensor_types=res.tensor_types,
            cancelled=res.cancelled,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _gguf_source(store: ProjectStore | None, ref: str | int) -> tuple[dict[str, Any], Path]:
    """The checkpoint to export and its folder, checked: a policy whose architecture GGUF export
    takes (an adapter's base model on the hub is checked after the merge)."""
    if store is None:
        raise ExportError(f"{ref}: checkpoints need an open project (--db).")
    rec = store.checkpoint(ref)
    folder = verify(store, rec)
    if rec["kind"] != "policy":
        raise GGUFExportError(
            f"checkpoint:{rec['id']} is a {rec['kind']} model; GGUF export is for policies "
            "(models that generate text). Export it as a Hugging Face folder (--format hf)."
        )
    base = Path(_base_folder(store, rec["base_model"] or "default")) if rec["adapter"] else folder
    if (base / "config.json").is_file():
        read_gguf_config(base)
    return rec, folder


def _write_gguf_card(
    store: ProjectStore | None,
    rec: dict[str, Any] | None,
    folder: Path | None,
    source: Path,
    target: Path,
    quant: str,
) -> Path:
    """The card beside the file; the Ollama template comes from the tokenizer in ``source``."""
    tokenizer = load_tokenizer(str(source))
    if rec is None:
        text = default_model_card(target.name, quant, tokenizer)
    else:
        usage = usage_lines(target.name, quant, tokenizer)
        text = model_card(store, rec, "gguf", folder, usage=usage)
    card = card_path(target)
    with atomic_file(card, binary=False) as f:
        f.write(text)
    return card
