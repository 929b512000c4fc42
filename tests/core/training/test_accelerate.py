"""`train` under `accelerate launch` with two CPU processes: both ranks train (DDP), rank 0 alone
writes the project file and the checkpoints.

accelerate 1.x runs ``--cpu --num_processes 2`` as ONE process (its simple launcher; several CPU
processes need an MPI hostfile), so the test launches with ``--multi_gpu`` on a machine whose
GPUs are hidden: torchrun starts two processes and accelerate picks gloo on the CPU (MULTI_CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_dpo_on_two_cpu_processes(rated_for_launch, tiny_model_dir, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not installed")
    db = rated_for_launch
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "MASTER_PORT": str(29500 + os.getpid() % 1000),
    }
    cmd = [
        str(accelerate) if accelerate.exists() else "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        env["MASTER_PORT"],
        str(ROOT / "main.py"),
        "--db",
        str(db),
        "--device",
        "cpu",
        "train",
        "--algo",
        "dpo",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--model",
        str(tiny_model_dir),
        "--save-every",
        "1",
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("accelerate launch did not finish in 120 s on this machine")
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and ("gloo" in out.lower() or "address already in use" in out.lower()):
        pytest.skip(f"torch.distributed could not start here: {out[-500:]}")
    assert proc.returncode == 0, out[-3000:]
    assert "on 2 processes" in out  # both ranks joined the run (DDP would hang otherwise)

    from core.store import ProjectStore

    with ProjectStore(db, readonly=True) as store:
        runs = list(store.db.query("SELECT * FROM runs"))
        assert len(runs) == 1 and runs[0]["status"] == "finished"  # one run row, by rank 0
        ckpts = list(store.db.query("SELECT step, path FROM checkpoints ORDER BY step"))
        assert [c["step"] for c in ckpts] == [1, 2]  # written once each
        steps = [
            r[0]
            for r in store.conn.execute(
                "SELECT step FROM metrics WHERE name = 'loss' ORDER BY step"
            )
        ]
        assert steps == [1, 2]
        config = json.loads(runs[0]["config"])
        assert config["algo"] == "dpo" and config["batch_size"] == 2
    folders = sorted(p.name for p in Path(ckpts[0]["path"]).parent.iterdir())
    assert folders == ["step-1", "step-2"]  # no second rank's folders, no temp folders


@pytest.fixture
def rated_for_launch(tmp_path):
    """A project file with four preference pairs (closed, so the launched ranks can open it)."""
    from core.store import ProjectStore

    db = tmp_path / "launch.db"
    with ProjectStore(db) as store:
        texts = ("Say hello.", "What is the capital of France?")
        store.add_prompts([{"text": text} for text in texts], source="test")
        for pid in (1, 2):
            for good, bad in (("Paris.", "bad sad"), ("Hello there!", "terrible")):
                a, b = store.add_samples(
                    [
                        {"prompt_id": pid, "text": good, "model": "x"},
                        {"prompt_id": pid, "text": bad, "model": "x"},
                    ]
                )
                store.add_rating(
                    annotator="ann",
                    kind="pairwise",
                    sample_ids=[a, b],
                    value={"choice": "a", "winner": a},
                )
    return db
