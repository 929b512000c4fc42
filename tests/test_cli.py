"""The command line as a researcher uses it, including one honest run on the embedded default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.mark.slow
def test_import_generate_rate_stats_on_the_default_model(tmp_path):
    db = str(tmp_path / "e2e.db")
    out = cli("--db", db, "prompts", "import", "resources/starter_prompts.jsonl").stdout
    assert "prompts added" in out
    out = cli(
        "--db",
        db,
        "generate",
        "--limit",
        "3",
        "--per-prompt",
        "2",
        "--max-new-tokens",
        "12",
        "--seed",
        "5",
    ).stdout
    assert "6 samples written from default" in out
    cli(
        "--db",
        db,
        "rate",
        "--auto",
        "core.raters:sentiment",
        "--mode",
        "pairwise",
        "--annotator",
        "vader",
    )
    cli(
        "--db",
        db,
        "rate",
        "--auto",
        "core.raters:length",
        "--mode",
        "score",
        "--annotator",
        "lengthy",
        "--limit",
        "4",
    )
    stats = json.loads(cli("--db", db, "stats", "--json").stdout)
    assert stats["prompts"] >= 150 and stats["samples"] == 6
    assert stats["ratings"] == 3 + 4
    assert stats["annotators"] == {"lengthy": 4, "vader": 3}
    assert stats["runs"] == 0 and stats["checkpoints"] == 0 and stats["schema_version"] == 2

    import sqlite3

    conn = sqlite3.connect(db)
    model, params, n = conn.execute("SELECT model, params, n_tokens FROM samples").fetchone()
    assert model == "default" and 0 < n <= 12
    assert json.loads(params)["seed"] == 5 and json.loads(params)["max_new_tokens"] == 12
    kinds = {k for (k,) in conn.execute("SELECT kind FROM ratings")}
    assert kinds == {"pairwise", "score"}
    conn.close()


def test_malformed_jsonl_reports_its_line_and_imports_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "fine"}\n{"prompt": "also fine"}\n{"prompt": broken}\n', encoding="utf-8"
    )
    db = str(tmp_path / "p.db")
    proc = cli("--db", db, "prompts", "import", str(bad), check=False)
    assert proc.returncode == 2
    assert "bad.jsonl line 3" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    stats = json.loads(cli("--db", db, "stats", "--json").stdout)
    assert stats["prompts"] == 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["generate", "--model", "/no/such/model"], "does not exist"),
        (
            ["rate", "--auto", "no_module_here:f", "--mode", "score", "--annotator", "x"],
            "no_module",
        ),
        (["prompts", "import", "/no/such/file.txt"], "file.txt"),
        (["generate", "--per-prompt", "0"], "--per-prompt must be at least 1"),
        (["export", "ratings", "--format", "jsonl", "-o", "{file}/y.jsonl"], "is a file"),
        (["export", "checkpoint", "-o", "{file}/folder"], "is a file"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needle):
    db = str(tmp_path / "p.db")
    (tmp_path / "one.txt").write_text("Say hi.\n")
    cli("--db", db, "prompts", "import", str(tmp_path / "one.txt"))
    args = [a.replace("{file}", str(tmp_path / "one.txt")) for a in args]
    proc = cli("--db", db, *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def test_not_a_project_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    proc = cli("--db", str(notes), "stats", check=False)
    assert proc.returncode == 2 and "not an RLHF Studio project file" in proc.stderr
    assert notes.read_text() == "hello"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland are Linux's")
def test_starting_the_app_with_no_display_says_what_to_do(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    run = [sys.executable, str(ROOT / "main.py"), "--db", str(tmp_path / "p.db")]
    proc = subprocess.run(
        [*run, "--annotator", "x"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "no display" in proc.stderr and "QT_QPA_PLATFORM=offscreen" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "p.db").exists()
    # a display that is set but cannot be used (no X server there, or Qt's libraries missing)
    proc = subprocess.run(
        [*run, "--annotator", "x"],
        cwd=ROOT,
        env={**env, "DISPLAY": ":97"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "is missing" in proc.stderr or "does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_wrecking_learning_rate_raises_an_alert_on_the_default_model(tmp_path):
    """Full fine-tuning at learning rate 1e-3 for 6 steps wrecks a 135M model: both responses of
    every pair lose likelihood; the run says so in an ``alert:`` line and keeps it with the run."""
    db = str(tmp_path / "wreck.db")
    cli("--db", db, "prompts", "import", "resources/starter_prompts.jsonl")
    cli("--db", db, "generate", "--limit", "12", "--per-prompt", "4", "--max-new-tokens", "32")
    cli("--db", db, "generate", "--limit", "12", "--per-prompt", "4", "--max-new-tokens", "32")
    rate = ["rate", "--auto", "core.raters:sentiment", "--mode", "pairwise", "--annotator", "v"]
    cli("--db", db, *rate)
    train = ["train", "--algo", "dpo", "--full", "--lr", "1e-3", "--steps", "6", "--batch-size"]
    proc = cli("--db", db, "--device", "cpu", *train, "8", "--max-length", "128")
    alerts = [line for line in proc.stderr.splitlines() if line.startswith("alert:")]
    assert alerts, proc.stderr[-2000:]
    stats = json.loads(cli("--db", db, "stats", "--json").stdout)
    assert stats["run_details"][0]["alerts"]

    # the wrecked checkpoint against its starting model, blind, judged by a scripted rater
    cli("--db", db, "prompts", "split", "--eval", "6", "--seed", "1")
    arena = ["arena", "--models", "default", "checkpoint:latest", "--per-prompt", "2"]
    arena += ["--max-new-tokens", "16", "--judge", "core.raters:sentiment", "--json"]
    board = json.loads(cli("--db", db, *arena).stdout)
    models = {m["model"]: m for m in board["models"]}
    latest = f"checkpoint:{stats['checkpoints']}"  # the run's last checkpoint
    assert set(models) == {"default", latest} and models["default"]["rating"] == 1000
    for m in models.values():
        lo, hi = m["ci95"]
        assert lo <= m["rating"] <= hi and m["comparisons"] == 6 * 2  # prompts x answers each
    (pair,) = board["pairs"]
    assert pair["n"] == 12 and 0 <= pair["ci95"][0] <= pair["win_rate"] <= pair["ci95"][1] <= 1
    assert json.loads(cli("--db", db, "stats", "--json").stdout)["arena"] == board
