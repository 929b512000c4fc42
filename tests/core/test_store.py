"""The project file: creation, WAL, refusal of foreign or newer files, ratings never deleted."""

import json
import sqlite3
from pathlib import Path

import pytest

from core.store import SCHEMA_VERSION, ProjectError, ProjectStore


def test_new_project_has_schema_wal_and_uuid(tmp_path):
    path = tmp_path / "p.db"
    with ProjectStore(path) as s:
        assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert s.get_meta("project_uuid")
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        tables = set(s.db.table_names())
    assert {
        "prompts",
        "samples",
        "ratings",
        "annotators",
        "runs",
        "metrics",
        "checkpoints",
    } <= tables


def test_not_sqlite_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n")
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="not an RLHF Studio project file"):
        ProjectStore(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match="not an RLHF Studio project"):
        ProjectStore(path)


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    ProjectStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="newer than this build"):
        ProjectStore(path)
    assert path.read_bytes() == before


def test_readonly_file_gives_a_clear_message(tmp_path):
    path = tmp_path / "ro.db"
    ProjectStore(path).close()
    path.chmod(0o444)
    try:
        import os

        if os.access(path, os.W_OK):  # root ignores file modes
            pytest.skip("running as root: file modes do not make the file read-only")
        with pytest.raises(ProjectError, match="read-only"):
            ProjectStore(path)
    finally:
        path.chmod(0o644)


def test_reopen_keeps_rows_and_settings(project_with_prompts, tmp_path):
    s = project_with_prompts
    s.update_settings(rubric=["overall", "helpfulness"], per_prompt=2)
    path = s.path
    s.close()
    with ProjectStore(path) as again:
        assert again.count("prompts") == 5
        assert again.settings()["rubric"] == ["overall", "helpfulness"]
        assert again.settings()["per_prompt"] == 2
        with pytest.raises(ValueError, match="unknown project settings"):
            again.update_settings(colour="blue")


def test_rating_is_committed_at_once_and_undo_supersedes(project_with_prompts):
    s = project_with_prompts
    a, b = s.add_samples(
        [
            {"prompt_id": 1, "text": "one", "model": "test"},
            {"prompt_id": 1, "text": "two", "model": "test"},
        ]
    )
    rid = s.add_rating(
        annotator="ann",
        kind="pairwise",
        sample_ids=[b, a],
        value={"choice": "a", "winner": b},
        seconds=2.5,
    )
    # Another connection sees it immediately: nothing is batched in memory.
    other = ProjectStore(s.path)
    row = other.conn.execute(
        "SELECT annotator, kind, sample_ids, value, seconds FROM ratings WHERE id = ?", (rid,)
    ).fetchone()
    assert row[0] == "ann" and row[1] == "pairwise"
    assert json.loads(row[2]) == [b, a] and json.loads(row[3])["winner"] == b
    assert row[4] == 2.5
    s.set_superseded(rid)
    assert other.count("ratings") == 1  # never deleted
    assert other.count("ratings", "superseded = 0") == 0
    assert list(s.ratings()) == [] and s.live_rating_ids() == []
    assert [r["id"] for r in s.ratings(include_superseded=True)] == [rid]
    s.set_superseded(rid, False)
    assert s.live_rating_ids() == [rid]
    assert other.basic_stats()["ratings"] == 1
    assert other.basic_stats()["annotators"] == {"ann": 1}
    other.close()


def test_bad_rating_kind_and_missing_sample(project_with_prompts):
    s = project_with_prompts
    with pytest.raises(ValueError, match="not one of"):
        s.add_rating(annotator="a", kind="stars", sample_ids=[1], value={})
    with pytest.raises(ValueError, match="does not exist"):
        s.add_rating(annotator="a", kind="thumbs", sample_ids=[999], value={"up": True})
    assert s.count("ratings") == 0


def test_checkpoint_latest_needs_a_policy_checkpoint(store):
    with pytest.raises(ProjectError, match="no policy checkpoint"):
        store.checkpoint("checkpoint:latest")
    run = store.create_run("reward", {}, "default", [])
    store.add_checkpoint(
        run_id=run,
        step=1,
        kind="reward",
        path="/x",
        sha256="0",
        base_model="default",
        adapter=False,
    )
    with pytest.raises(ProjectError, match="no policy checkpoint"):
        store.checkpoint("checkpoint:latest")
    cid = store.add_checkpoint(
        run_id=run, step=2, kind="policy", path="/y", sha256="0", base_model="default", adapter=True
    )
    assert store.checkpoint("checkpoint:latest")["id"] == cid
    with pytest.raises(ProjectError, match="does not exist"):
        store.checkpoint("checkpoint:42")


def test_opening_a_second_store_keeps_the_write_ahead_log_safe(tmp_path):
    """Regression: opening a store once read the file header with open()/close(), which drops
    every POSIX lock this process holds on the file. Another process closing its connection then
    checkpointed and deleted the write-ahead log under our open connection, and what we committed
    afterwards was invisible to other processes (and, in a longer run, corrupted the file)."""
    import subprocess
    import sys

    db = tmp_path / "p.db"
    first = ProjectStore(db)
    first.conn.execute("CREATE TABLE t (x)")
    first.conn.execute("INSERT INTO t VALUES (0)")
    ProjectStore(db).close()  # e.g. a worker thread's own store
    count = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "print(c.execute('SELECT count(*) FROM t').fetchone()[0]); c.close()"
    )
    subprocess.run([sys.executable, "-c", count, str(db)], check=True, capture_output=True)
    assert Path(f"{db}-wal").exists()  # still ours: the other process did not take it away
    for i in range(50):
        first.conn.execute("INSERT INTO t VALUES (?)", (i,))
    seen = subprocess.run(
        [sys.executable, "-c", count, str(db)], check=True, capture_output=True, text=True
    )
    assert seen.stdout.strip() == "51"
    first.close()


def test_a_version_1_file_is_migrated_with_its_rows_kept(tmp_path):
    """A project written before evaluation prompts existed opens as version 2: its prompts are
    training prompts, its ratings say nothing about how they were selected, alerts can be kept."""
    import sqlite_utils

    from core.store.schema import MIGRATIONS

    path = tmp_path / "v1.db"
    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)
    db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO prompts(uuid, text, content_key, created_at) VALUES ('u', 'Hi.', 'Hi.', 'x')"
    )
    db.execute(
        "INSERT INTO samples(uuid, prompt_id, text, model, created_at) "
        "VALUES ('s', 1, 'Hello.', 'default', 'x')"
    )
    db.execute(
        "INSERT INTO ratings(uuid, annotator, kind, prompt_id, sample_ids, value, created_at) "
        "VALUES ('r', 'ann', 'thumbs', 1, '[1]', '{\"up\": true}', 'x')"
    )
    db.conn.commit()
    db.close()
    with ProjectStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        assert s.prompt_ids("train") == [1] and s.prompt_ids("eval") == []
        assert s.rating(1)["selection"] is None and s.rating(1)["value"] == {"up": True}
        run = s.create_run("dpo", {}, "default", [1])
        s.add_alert(run, 3, "kl_blowup", "alert: KL ...")
        assert [a["rule"] for a in s.alerts(run)] == ["kl_blowup"]
        with pytest.raises(ValueError, match="split"):
            s.set_split([1], "test")
