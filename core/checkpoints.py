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

A full *policy* folder loads with ``AutoModelForCausalLM.from_pretrained(folder)``; a full *reward*
folder with ``AutoModelForSequenceClassification.from_pretrained(folder)`` (one label). An adapter
folder loads with ``PeftModel.from_pretrained(base, folder)`` where ``base`` is
``core.models.load_model(rec["base_model"]).model`` (reward: passed through
``core.trainers.reward_model.to_reward_model`` first). Weights are safetensors only: nothing here
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
from pathlib import Path
from typing import Any

import torch

from core.models import TOKENIZER_LOCK, ModelLoadError, Progress
from core.quiet_imports import quiet_import
from core.store import ProjectStore, now

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
VERIFY_LIMIT = 4 << 30  # hash-check weights up to 4 GiB on load (bigger ones would take minutes)
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


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
    where, args = [], []
    if run_id is not None:
        where.append("run_id = ?")
        args.append(run_id)
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    sql = "SELECT id FROM checkpoints" + (" WHERE " + " AND ".join(where) if where else "")
    row = store.conn.execute(sql + " ORDER BY step DESC, id DESC LIMIT 1", args).fetchone()
    return store.checkpoint(row[0]) if row else None


# ---- saving ---------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
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
    for s, name, value in store.conn.execute(
        "SELECT step, name, value FROM metrics WHERE run_id = ? AND step <= ? ORDER BY step, name",
        (run_id, step),
    ):
        rows[s][name] = value
    return [{"step": s, **m} for s, m in sorted(rows.items())]


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


def save_checkpoint(
    store: ProjectStore,
    *,
    run_id: int,
    step: int,
    kind: str,
    model: Any,
    tokenizer: Any,
    base_model: str,
    config: dict[str, Any],
    metrics: dict[str, float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> int:
    """Write ``run-<run_id>/step-<step>/`` atomically, then add its row; returns the checkpoint id.

    ``model`` is the unwrapped model: a peft model saves its adapter, anything else its full
    weights. ``trainer_state`` (JSON) and ``optimizer`` are what ``--resume`` needs.
    """
    from safetensors.torch import save_file

    adapter = hasattr(model, "peft_config")
    run_dir = checkpoints_root(store) / f"run-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / f"step-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=run_dir))
    try:
        model.save_pretrained(tmp)
        with TOKENIZER_LOCK:  # it may be shared with a thread that is tokenizing
            tokenizer.save_pretrained(tmp)
        _write_json(tmp / "run_config.json", config)
        with open(tmp / "metrics.jsonl", "w", encoding="utf-8") as f:
            for row in _metrics_history(store, run_id, step):
                f.write(json.dumps(row) + "\n")
        if trainer_state is not None:
            state = dict(trainer_state)
            if optimizer is not None:
                tensors, state["optimizer"] = optimizer_to_files(optimizer)
                save_file(tensors, tmp / "optimizer.safetensors")
            _write_json(tmp / "trainer_state.json", state)
        weights = weights_file(tmp)
        digest = sha256_file(weights)
        run_uuid = store.conn.execute("SELECT uuid FROM runs WHERE id = ?", (run_id,)).fetchone()
        _write_json(tmp / "checkpoint.json", {
            "kind": kind, "adapter": adapter, "base_model": base_model, "run_id": run_id,
            "run_uuid": run_uuid[0] if run_uuid else None, "step": step,
            "weights": weights.name, "sha256": digest, "created_at": now(),
        })  # fmt: skip
        for path in tmp.iterdir():
            _fsync(path)
        _fsync(tmp)
        if target.exists():  # a folder without a row: a crash between rename and insert
            shutil.rmtree(target)
        os.replace(tmp, target)
        _fsync(run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    ckpt_id = store.add_checkpoint(
        run_id=run_id, step=step, kind=kind, path=str(target.resolve()), sha256=digest,
        base_model=base_model, adapter=adapter, metrics=metrics,
    )  # fmt: skip
    _drop_older_optimizer_states(run_dir, keep=target)
    return ckpt_id


def _drop_older_optimizer_states(run_dir: Path, keep: Path) -> None:
    """Resume needs only the newest optimizer state; older ones are 2x the weights each."""
    for folder in run_dir.glob("step-*"):
        if folder != keep and (folder / "optimizer.safetensors").exists():
            (folder / "optimizer.safetensors").unlink()


# ---- loading --------------------------------------------------------------------------------
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


def load_checkpoint_model(
    rec: dict[str, Any],
    *,
    store: ProjectStore,
    dtype: torch.dtype,
    progress: Progress | None = None,
) -> tuple[Any, Any]:
    """(causal LM, tokenizer) of a policy checkpoint, ready to generate (adapters merged)."""
    from core.models import load_model, load_pretrained_folder, load_tokenizer

    folder = verify(store, rec)
    if not rec["adapter"]:
        return load_pretrained_folder(str(folder), dtype, False, f"checkpoint:{rec['id']}")
    quiet_import("peft")
    from peft import PeftModel

    if progress:
        progress(f"Loading base model {rec['base_model']} for checkpoint:{rec['id']}…", 0.2)
    base = load_model(rec["base_model"], store=store, device="cpu", dtype=_DTYPE_NAMES[dtype])
    model = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    return model, load_tokenizer(str(folder))


def load_reward_model(
    store: ProjectStore,
    ref: str | int | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress | None = None,
) -> Any:
    """A reward checkpoint (``checkpoint:ID``; None = the newest reward checkpoint), ready to score.

    Returns a ``core.trainers.reward_model.LoadedRewardModel`` for ``score_texts``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.models import load_model, parse_dtype, pick_device
    from core.trainers.reward_model import LoadedRewardModel, pooling_of, to_reward_model

    rec = latest_checkpoint(store, kind="reward") if ref is None else store.checkpoint(ref)
    if rec is None:
        raise ModelLoadError(
            f"{store.path} has no reward model yet; train one first (train --algo reward) or "
            "score with a scripted rater (--rater MODULE:FUNC)."
        )
    if rec["kind"] != "reward":
        raise ModelLoadError(
            f"checkpoint:{rec['id']} is a {rec['kind']} checkpoint, not a reward model; choose "
            "a checkpoint made by `train --algo reward`."
        )
    folder = verify(store, rec)
    dev = pick_device(device)
    dt = parse_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if progress:
        progress(f"Loading reward model checkpoint:{rec['id']}…", 0.1)
    if rec["adapter"]:
        quiet_import("peft")
        from peft import PeftModel

        base = load_model(rec["base_model"], store=store, device="cpu", dtype=_DTYPE_NAMES[dt])
        model = to_reward_model(base.model, tokenizer.pad_token_id)
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=dt)
    model.to(dev).eval()
    pooling = pooling_of(model, run_config(folder))
    return LoadedRewardModel(model, tokenizer, dev, rec["id"], pooling=pooling)


def run_config(folder: Path) -> dict[str, Any]:
    """A checkpoint's training config (``run_config.json``); {} when missing or unreadable."""
    try:
        data = json.loads((folder / "run_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
