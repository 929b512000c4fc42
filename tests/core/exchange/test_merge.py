"""Merging workstations' project files: by uuid, remapped ids, idempotent, read-only, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

import main
from core.exchange.merge import iter_merge_projects, merge_projects
from core.store import ProjectError, ProjectStore


def add_prompt(store: ProjectStore, text: str, messages: list | None = None) -> int:
    (pid,), _ = store.add_prompts([{"text": text, "messages": messages}], source="test")
    return pid


def workstation(path: Path, who: str, *, shared: str = "Shared prompt", padding: int = 0) -> Path:
    """A project file as one annotator leaves it: prompts, samples from a checkpoint, every rating
    kind, a run with metrics. ``padding`` rows first make its ids differ from another file's."""
    with ProjectStore(path) as s:
        for i in range(padding):
            add_prompt(s, f"{who} filler {i}")
        p = add_prompt(s, shared)
        q = add_prompt(
            s, f"{who}'s own prompt", [{"role": "user", "content": f"{who}'s own prompt"}]
        )
        run = s.create_run("dpo", {"algo": "dpo", "model": "default"}, "default", [])
        ckpt = s.add_checkpoint(
            run_id=run,
            step=5,
            kind="policy",
            path="checkpoints/run1",
            sha256="x",
            base_model="default",
            adapter=True,
            metrics={"loss": 0.5},
        )
        s.log_metrics(run, 1, {"loss": 0.7})
        s.log_metrics(run, 5, {"loss": 0.5})
        a, b, c = s.add_samples(
            [
                {"prompt_id": p, "text": f"{who} a", "model": "default"},
                {
                    "prompt_id": p,
                    "text": f"{who} b",
                    "model": f"checkpoint:{ckpt}",
                    "checkpoint_id": ckpt,
                },
                {"prompt_id": p, "text": f"{who} c", "model": "default"},
            ]
        )
        (d,) = s.add_samples([{"prompt_id": q, "text": f"{who} d", "model": "default"}])
        (rw,) = s.add_samples([{"prompt_id": p, "text": f"{who} rw", "model": f"human:{who}"}])
        ids = [
            s.add_rating(
                annotator=who,
                kind="pairwise",
                sample_ids=[a, b],
                value={"choice": "b", "winner": b},
                seconds=3.5,
                comment="hm",
            ),
            s.add_rating(
                annotator=who, kind="rank", sample_ids=[a, b, c], value={"order": [c, a, b]}
            ),
            s.add_rating(
                annotator=who, kind="score", sample_ids=[d], value={"scores": {"overall": 0.75}}
            ),
            s.add_rating(
                annotator=who,
                kind="rewrite",
                sample_ids=[a, rw],
                value={"original": a, "rewrite": rw},
            ),
            s.add_rating(
                annotator=who,
                kind="flag",
                sample_ids=[c],
                value={"reason": "unsafe", "sample_id": c},
            ),
        ]
        s.set_superseded(ids[2])
        s.conn.execute(
            "UPDATE runs SET rating_ids = ?, base_model = ? WHERE id = ?",
            (json.dumps(ids[:2]), f"checkpoint:{ckpt}", run),
        )
    return path


def snapshot(path: Path) -> dict[str, list]:
    """Every row of every table, with ids resolved to uuids so two files can be compared."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    su = dict(conn.execute("SELECT id, uuid FROM samples"))
    out = {
        "ratings": sorted(
            (u, a, k, [su[i] for i in json.loads(ids)], _value_uuids(json.loads(v), su), sup)
            for u, a, k, ids, v, sup in conn.execute(
                "SELECT uuid, annotator, kind, sample_ids, value, superseded FROM ratings"
            )
        ),
        "samples": sorted(
            conn.execute(
                "SELECT s.uuid, p.content_key, s.text FROM samples s JOIN prompts p "
                "ON p.id = s.prompt_id"
            ).fetchall()
        ),
        "annotators": sorted(r[0] for r in conn.execute("SELECT name FROM annotators")),
        "metrics": sorted(
            conn.execute(
                "SELECT r.uuid, m.step, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
            ).fetchall()
        ),
    }
    conn.close()
    return out


def _value_uuids(value: dict, su: dict[int, str]) -> dict:
    out = dict(value)
    for key in ("winner", "original", "rewrite", "sample_id"):
        if out.get(key) is not None:
            out[key] = su[out[key]]
    if "order" in out:
        out["order"] = [su[i] for i in out["order"]]
    return out


def counts(store: ProjectStore) -> dict[str, int]:
    tables = ("annotators", "prompts", "samples", "ratings", "runs", "metrics", "checkpoints")
    return {t: store.count(t) for t in tables}


@pytest.fixture
def files(tmp_path):
    a = workstation(tmp_path / "alice.db", "alice")
    b = workstation(tmp_path / "bob.db", "bob", padding=3)
    return a, b


def test_merge_brings_everything_with_ids_remapped(tmp_path, files):
    a, b = files
    target = tmp_path / "all.db"
    shutil.copy(a, target)
    with ProjectStore(target) as store:
        report = merge_projects(store, [b])
        assert report.added("ratings") == 5 and report.added("samples") == 5
        assert report.files[0].prompts_matched_by_content == 1  # "Shared prompt"
        assert report.added("prompts") == 4  # 3 fillers + bob's own prompt
        assert report.added("annotators") == 1 and report.added("metrics") == 2
        assert report.added("runs") == 1 and report.added("checkpoints") == 1
        assert "bob.db: 1 annotators" in report.summary()
        merged = snapshot(target)
    want_a, want_b = snapshot(a), snapshot(b)
    assert merged["ratings"] == sorted(want_a["ratings"] + want_b["ratings"])
    assert merged["annotators"] == ["alice", "bob"]
    assert merged["metrics"] == sorted(want_a["metrics"] + want_b["metrics"])
    assert len(merged["samples"]) == 10
    with ProjectStore(target) as store:
        shared = store.conn.execute(
            "SELECT id FROM prompts WHERE text = 'Shared prompt'"
        ).fetchall()
        assert len(shared) == 1  # same content, different uuid: mapped onto one prompt
        bob_samples = store.conn.execute(
            "SELECT prompt_id, model, checkpoint_id FROM samples WHERE text LIKE 'bob %'"
        ).fetchall()
        ckpt = store.conn.execute(
            "SELECT c.id, c.run_id, c.path, c.base_model, r.id, r.base_model, r.rating_ids "
            "FROM checkpoints c JOIN runs r ON r.id = c.run_id ORDER BY c.id DESC LIMIT 1"
        ).fetchone()
        cid, run_id, path, base, rid, run_base, rating_ids = ckpt
        assert f"checkpoint:{cid}" in {m for _, m, _ in bob_samples}
        assert {c for _, _, c in bob_samples} == {None, cid}
        assert shared[0][0] in {p for p, _, _ in bob_samples}
        assert run_id == rid and run_base == f"checkpoint:{cid}" and base == "default"
        assert path == str(b.resolve().parent / "checkpoints/run1")
        bob_ratings = [r for r in store.ratings(include_superseded=True) if r["annotator"] == "bob"]
        assert json.loads(rating_ids) == [r["id"] for r in bob_ratings[:2]]


def test_merging_twice_adds_nothing_and_the_source_is_untouched(tmp_path, files):
    a, b = files
    before = {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in (a, b)}
    with ProjectStore(tmp_path / "all.db") as store:
        first = merge_projects(store, [a, b])
        after_first = counts(store)
        second = merge_projects(store, [a, b])
        assert counts(store) == after_first
        assert all(n == 0 for f in second.files for n in f.added.values())
        assert second.summary().count("nothing new") == 2
        assert first.added("ratings") == 10
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data and os.stat(p).st_mtime_ns == mtime


def test_an_undo_and_a_finished_run_after_a_merge_are_carried_over(tmp_path, files):
    a, _ = files
    with ProjectStore(tmp_path / "all.db") as store:
        merge_projects(store, [a])
        with ProjectStore(a) as src:
            first = src.conn.execute("SELECT MIN(id) FROM ratings").fetchone()[0]
            src.set_superseded(first)
            src.set_run_status(1, "finished", "done")
        report = merge_projects(store, [a])
        assert report.files[0].ratings_undone == 1 and report.files[0].runs_updated == 1
        assert store.count("ratings", "superseded = 1") == 2
        assert store.conn.execute("SELECT status FROM runs").fetchone()[0] == "finished"


@pytest.mark.parametrize(
    "problem", ["newer", "unknown", "not_project", "garbage", "corrupt", "itself", "empty"]
)
def test_a_bad_source_merges_nothing(tmp_path, files, problem):
    a, b = files
    bad = tmp_path / "bad.db"
    if problem == "newer":
        shutil.copy(b, bad)
        conn = sqlite3.connect(bad)
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        conn.commit()
        conn.close()
        message = "newer"
    elif problem == "unknown":
        shutil.copy(b, bad)
        conn = sqlite3.connect(bad)
        conn.execute("ALTER TABLE ratings DROP COLUMN comment")
        conn.commit()
        conn.close()
        message = "unknown schema: table 'ratings' lacks comment"
    elif problem == "not_project":
        conn = sqlite3.connect(bad)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
        message = "not an RLHF Studio project"
    elif problem == "garbage":
        bad.write_bytes(b"hello, I am a text file\n" * 100)
        message = "not an SQLite database"
    elif problem == "corrupt":
        with ProjectStore(b) as s:
            s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = bytearray(b.read_bytes())
        page = 4096
        raw[2 * page : len(raw)] = os.urandom(len(raw) - 2 * page)  # header intact, pages not
        bad.write_bytes(bytes(raw))
        message = "damaged|cannot be read|malformed|not a project"
    elif problem == "empty":
        bad.write_bytes(b"")
        message = "empty database|not an RLHF Studio"
    else:
        bad = tmp_path / "target.db"
        message = "the open project itself"
    target = tmp_path / "target.db"
    shutil.copy(a, target)
    with ProjectStore(target) as store:
        before = snapshot(target), counts(store)
        with pytest.raises(ProjectError, match=message):
            merge_projects(store, [b, bad])  # b is fine: still nothing of it is merged
        assert (snapshot(target), counts(store)) == before
        assert not store.conn.in_transaction


def test_cancel_rolls_back(tmp_path, files):
    a, b = files
    with ProjectStore(tmp_path / "t.db") as store:
        cancel = threading.Event()
        gen = iter_merge_projects(store, [a, b], cancel=cancel)
        progress = next(gen)
        assert progress.file == "alice.db"
        cancel.set()
        with pytest.raises(StopIteration) as stop:
            while True:
                next(gen)
        assert stop.value.value.cancelled
        assert counts(store)["ratings"] == 0 and not store.conn.in_transaction
        gen = iter_merge_projects(store, [a])
        for _ in range(3):
            next(gen)
        gen.close()  # the GUI worker's cancel
        assert counts(store)["samples"] == 0


def test_merge_command_prints_what_was_added(tmp_path, files, capsys):
    a, b = files
    target = str(tmp_path / "new.db")
    assert main.main(["--db", target, "merge", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "alice.db: 1 annotators, 2 prompts, 1 runs, 1 checkpoints, 5 samples, 5 ratings" in out
    assert main.main(["--db", target, "merge", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
