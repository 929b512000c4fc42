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
    assert stats["runs"] == 0 and stats["checkpoints"] == 0 and stats["schema_version"] == 1

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
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needle):
    db = str(tmp_path / "p.db")
    if args[0] == "generate":
        (tmp_path / "one.txt").write_text("Say hi.\n")
        cli("--db", db, "prompts", "import", str(tmp_path / "one.txt"))
    proc = cli("--db", db, *args, check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_not_a_project_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    proc = cli("--db", str(notes), "stats", check=False)
    assert proc.returncode == 2 and "not an RLHF Studio project file" in proc.stderr
    assert notes.read_text() == "hello"
