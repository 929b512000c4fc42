"""Checkpoints are atomic safetensors folders, hash-checked, loadable by transformers and peft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.checkpoints import (
    checkpoint_path,
    checkpoints_root,
    latest_checkpoint,
    save_checkpoint,
    sha256_file,
    verify,
)
from core.models import ModelLoadError, save_model_files
from core.training.resume import optimizer_from_files, optimizer_to_files, write_training_state


@pytest.fixture(autouse=True)
def _one_thread():
    """A tiny model gains nothing from threads, and on a busy machine OpenMP threads waiting for
    each other make it many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_id(store):
    return store.create_run("dpo", {"algo": "dpo"}, "tiny", [])


def _tiny(tiny_model_dir, lora=False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _save(store, run_id, model, tok, step=1, optimizer=None, trainer_state=None, **kw):
    """What a training session saves: the model, its tokenizer and, to resume, its state."""

    def write_files(folder):
        save_model_files(model, tok, folder)
        if trainer_state is not None:
            write_training_state(folder, trainer_state, optimizer)

    return save_checkpoint(
        store,
        run_id=run_id,
        step=step,
        kind="policy",
        write_files=write_files,
        adapter=hasattr(model, "peft_config"),
        base_model=kw.pop("base_model", "tiny"),
        config={"algo": "dpo"},
        **kw,
    )


def test_layout_hash_and_loading_full(store, run_id, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model, tok = _tiny(tiny_model_dir)
    store.log_metrics(run_id, 1, {"loss": 0.5})
    ckpt = _save(store, run_id, model, tok, metrics={"loss": 0.5})
    rec = store.checkpoint(ckpt)
    folder = Path(rec["path"])
    assert folder == checkpoints_root(store) / f"run-{run_id}" / "step-1"
    assert folder.parent.parent.name == "project.checkpoints"
    assert rec["sha256"] == sha256_file(folder / "model.safetensors") and not rec["adapter"]
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["weights"] == "model.safetensors" and meta["sha256"] == rec["sha256"]
    assert (folder / "metrics.jsonl").read_text().strip() == json.dumps({"step": 1, "loss": 0.5})
    assert not list(folder.parent.glob(".step-*"))  # no temp folder left behind
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))  # safetensors only
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_adapter_loads_with_peft_and_merges_through_load_model(store, run_id, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.models import load_model

    model, tok = _tiny(tiny_model_dir, lora=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    ckpt = _save(store, run_id, model, tok, base_model=str(tiny_model_dir))
    folder = Path(store.checkpoint(ckpt)["path"])
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder
    )
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = model(ids).logits
        assert torch.allclose(peft_model(ids).logits, expected, atol=1e-5)
        merged = load_model(f"checkpoint:{ckpt}", store=store, device="cpu")
        assert merged.checkpoint_id == ckpt and not hasattr(merged.model, "peft_config")
        assert torch.allclose(merged.model(ids).logits, expected, atol=1e-4)


def test_failed_write_leaves_no_folder_and_no_row(store, run_id, tiny_model_dir, monkeypatch):
    model, tok = _tiny(tiny_model_dir)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tok, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        _save(store, run_id, model, tok)
    run_dir = checkpoints_root(store) / f"run-{run_id}"
    assert list(run_dir.iterdir()) == [] and store.count("checkpoints") == 0


def test_a_folder_without_a_row_is_replaced(store, run_id, tiny_model_dir):
    model, tok = _tiny(tiny_model_dir)
    stale = checkpoints_root(store) / f"run-{run_id}" / "step-1"
    stale.mkdir(parents=True)
    (stale / "half-written").write_text("x")
    ckpt = _save(store, run_id, model, tok)
    assert not (stale / "half-written").exists() and Path(store.checkpoint(ckpt)["path"]) == stale


def test_tampered_or_moved_checkpoints(store, run_id, tiny_model_dir, tmp_path):
    from core.store import ProjectStore

    model, tok = _tiny(tiny_model_dir)
    rec = store.checkpoint(_save(store, run_id, model, tok))
    assert verify(store, rec) == Path(rec["path"])
    # the project moves with its checkpoints folder: the row's absolute path is stale
    moved = tmp_path / "moved"
    moved.mkdir()
    store.close()
    shutil.move(str(tmp_path / "project.db"), moved / "project.db")
    shutil.move(str(tmp_path / "project.checkpoints"), moved / "project.checkpoints")
    with ProjectStore(moved / "project.db") as again:
        rec = again.checkpoint(rec["id"])
        folder = checkpoint_path(again, rec)
        assert folder.parent.parent == moved / "project.checkpoints" and verify(again, rec)
        with open(folder / "model.safetensors", "r+b") as f:
            f.seek(-8, 2)
            f.write(b"tampered")
        with pytest.raises(ModelLoadError, match="sha256"):
            verify(again, rec)
        shutil.rmtree(folder)
        with pytest.raises(ModelLoadError, match="missing"):
            verify(again, rec)


def test_optimizer_state_round_trips_without_pickle(tiny_model_dir):
    model, _ = _tiny(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[5, 6, 7]])).logits.sum().backward()
    opt.step()
    tensors, meta = optimizer_to_files(opt)
    json.dumps(meta)  # the non-tensor part is plain JSON
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer_from_files(fresh, tensors, json.loads(json.dumps(meta)))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx, state in a["state"].items():
        for k, v in state.items():
            assert torch.equal(v, b["state"][idx][k])


def test_only_the_newest_checkpoint_keeps_optimizer_state(store, run_id, tiny_model_dir):
    model, tok = _tiny(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = {"step": 1, "scheduler": sched.state_dict()}
    first = _save(store, run_id, model, tok, step=1, optimizer=opt, trainer_state=state)
    second = _save(store, run_id, model, tok, step=2, optimizer=opt, trainer_state=state)
    assert not (Path(store.checkpoint(first)["path"]) / "optimizer.safetensors").exists()
    assert (Path(store.checkpoint(second)["path"]) / "optimizer.safetensors").exists()
    assert latest_checkpoint(store, run_id=run_id)["id"] == second
