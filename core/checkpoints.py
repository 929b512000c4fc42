"""Checkpoints: atomic folders of safetensors beside the project file; a row only after the rename.

Layout (``<project>`` is the project file's name without ``.db``)::

    <project dir>/<project>.checkpoints/run-<run_id>/step-<step>/
        checkpoint.json           what this folder is: kind, adapter, base_model, run, step, sha256
        model.safetensors         full weights + config.json (+ generation_config.json), or
        adapter_model.safetensors a peft LoRA adapter + adapter_config.json over ``base_model``
        tokenizer files           tokenizer.json, tokenizer_config.json, chat template, ...
        run_config.json           the run's training config
        metrics.jsonl             one {"step": s, name: value, ...} line per step so far
        trainer_state.json        step, total steps, scheduler state, optimizer param groups
        optimizer.safetensors     AdamW moments; kept in the newest checkpoint of a run only
        reference_logps.safetensors  reference log-probs per example so far (resume reuses them)

A full *policy* folder loads with ``AutoModelForCausalLM.from_pretrained(folder)``; a full *reward*
folder with ``AutoModelForSequenceClassification.from_pretrained(folder)`` (one label). An adapter
folder loads with ``PeftModel.from_pretrained(base, folder)`` where ``base`` is
``core.models.load_model(rec["base_model"]).model`` (reward: passed through
``core.models.reward.to_reward_model`` first). Weights are safetensors only: nothing here
is unpickled. ``checkpoints.sha256`` is the SHA-256 of the weights file named in checkpoint.json.

Writes are atomic: everything goes into a temp folder beside the target, every file is fsynced,
then ``os.replace`` renames it into place, and only then is the ``checkpoints`` row inserted. A
crash leaves either no folder or a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError
from core.store import ProjectStore, now

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
VERIFY_LIMIT = 4 << 30  # hash-check weights up to 4 GiB on load (bigger ones would take minutes)


# ---- paths ----------------------------------------------------------------------------------
def checkpoints_root(store: ProjectStore) -> Path:
    return store.path.parent / f"{store.path.stem}.checkpoints"


def checkpoint_path(store: ProjectStore, rec: dict[str, Any]) -> Path:
    """The folder of a checkpoint row; follows the project file if the folder moved with it."""
    path = Path(rec["path"])
    if path.exists():
        return path
    moved = checkpoints_root(store) / path.parent.name / path.name
    return moved if moved.exists() else path


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    raise ModelLoadError(f"{folder} holds no safetensors weights ({', '.join(WEIGHT_FILES)}).")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def latest_checkpoint(
    store: ProjectStore, run_id: int | None = None, kind: str | None = None
) -> dict[str, Any] | None:
    """The newest checkpoint row (of a run and/or a kind), decoded like ``store.checkpoint``."""
    found = store.furthest_checkpoint_id(run_id, kind)
    return store.checkpoint(found) if found is not None else None


# ---- saving ---------------------------------------------------------------------------------
def fsync_path(path: Path) -> None:
    """fsync a file or folder (a folder: so a rename in it is durable); best effort on folders."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows folders) refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


def _metrics_history(store: ProjectStore, run_id: int, step: int) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = defaultdict(dict)
    for s, name, value in store.metrics_up_to(run_id, step):
        rows[s][name] = value
    return [{"step": s, **m} for s, m in sorted(rows.items())]


def save_checkpoint(
    store: ProjectStore,
    *,
    run_id: int,
    step: int,
    kind: str,
    write_files: Callable[[Path], None],
    adapter: bool,
    base_model: str,
    config: dict[str, Any],
    metrics: dict[str, float] | None = None,
) -> int:
    """Write ``run-<run_id>/step-<step>/`` atomically, then add its row; returns the checkpoint id.

    ``write_files(folder)`` writes the weights, tokenizer and training state into the temp folder
    (core.training.session knows how); this module adds the run's config, its metrics so far and
    ``checkpoint.json``, fsyncs everything and renames the folder into place.
    """
    run_dir = checkpoints_root(store) / f"run-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / f"step-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=run_dir))
    try:
        write_files(tmp)
        _write_json(tmp / "run_config.json", config)
        with open(tmp / "metrics.jsonl", "w", encoding="utf-8") as f:
            for row in _metrics_history(store, run_id, step):
                f.write(json.dumps(row) + "\n")
        weights = weights_file(tmp)
        digest = sha256_file(weights)
        record = {
            "kind": kind,
            "adapter": adapter,
            "base_model": base_model,
            "run_id": run_id,
            "run_uuid": store.run_uuid(run_id),
            "step": step,
            "weights": weights.name,
            "sha256": digest,
            "created_at": now(),
        }
        _write_json(tmp / "checkpoint.json", record)
        for path in tmp.iterdir():
            fsync_path(path)
        fsync_path(tmp)
        if target.exists():  # a folder without a row: a crash between rename and insert
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_path(run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    ckpt_id = store.add_checkpoint(
        run_id=run_id,
        step=step,
        kind=kind,
        path=str(target.resolve()),
        sha256=digest,
        base_model=base_model,
        adapter=adapter,
        metrics=metrics,
    )
    _drop_older_optimizer_states(run_dir, keep=target)
    return ckpt_id


def _drop_older_optimizer_states(run_dir: Path, keep: Path) -> None:
    """Resume needs only the newest optimizer state; older ones are 2x the weights each."""
    for folder in run_dir.glob("step-*"):
        if folder != keep and (folder / "optimizer.safetensors").exists():
            (folder / "optimizer.safetensors").unlink()


# ---- reading --------------------------------------------------------------------------------
def verify(store: ProjectStore, rec: dict[str, Any]) -> Path:
    """The checkpoint's folder, after checking it exists and its weights match the recorded hash."""
    folder = checkpoint_path(store, rec)
    if not folder.is_dir():
        raise ModelLoadError(
            f"checkpoint:{rec['id']} folder {folder} is missing. Restore it (it lives beside the "
            f"project file in {checkpoints_root(store).name}/) or choose another checkpoint."
        )
    weights = weights_file(folder)
    if rec.get("sha256") and weights.stat().st_size <= VERIFY_LIMIT:
        if sha256_file(weights) != rec["sha256"]:
            raise ModelLoadError(
                f"checkpoint:{rec['id']}: {weights} does not match its recorded sha256; the file "
                "was changed or damaged. Choose another checkpoint."
            )
    return folder


def run_config(folder: Path) -> dict[str, Any]:
    """A checkpoint's training config (``run_config.json``); {} when missing or unreadable."""
    try:
        data = json.loads((folder / "run_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
