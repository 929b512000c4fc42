"""A journal resumes only the run it was written for, and only with the code that measured it."""

from __future__ import annotations

import pytest

from bench.learning.journal import Journal, JournalMismatch, measuring_code


def tree(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_measuring_code_digest_sees_measuring_code_only(tmp_path):
    root = tree(
        tmp_path,
        {
            "core/store.py": "a = 1",
            "bench/learning/run.py": "b = 1",
            "bench/learning/summary.py": "c = 1",
            "bench/learning/prompts/x.jsonl": '{"prompt": "hi"}',
            "gui/app.py": "d = 1",
            "main.py": "",
        },
    )
    before = measuring_code(root)
    (root / "bench/learning/summary.py").write_text("c = 2")  # renders only
    (root / "gui/app.py").write_text("d = 2")
    assert measuring_code(root) == before
    for name in ("core/store.py", "bench/learning/run.py", "bench/learning/prompts/x.jsonl"):
        (root / name).write_text((root / name).read_text() + " ")
        assert measuring_code(root) != before, name
        before = measuring_code(root)


def test_resume_keeps_finished_steps_and_refuses_another_run(tmp_path):
    who = {"role": "dev", "seeds": [0, 1], "code": "abc"}
    first = Journal.open(tmp_path, who, resume=False)
    assert first.put("step/1", {"labels": (1, 2)}) == {"labels": [1, 2]}  # as read back
    again = Journal.open(tmp_path, who, resume=True)
    assert again.get("step/1") == {"labels": [1, 2]} and again.sittings == 2
    assert "started 2 times" in again.resumed_note()
    with pytest.raises(JournalMismatch, match="code 'abc' \\(now 'xyz'\\)"):
        Journal.open(tmp_path, {**who, "code": "xyz"}, resume=True)
    fresh = Journal.open(tmp_path, {**who, "code": "xyz"}, resume=False)  # starts afresh
    assert fresh.get("step/1") is None and fresh.sittings == 1


def test_a_journal_kept_elsewhere_forgets_steps_whose_files_are_gone(tmp_path):
    who = {"role": "test", "seeds": [0], "code": "abc"}
    kept = tmp_path / "tracked" / "run.json"
    first = Journal.open(tmp_path / "a", who, resume=False, path=kept)
    first.put("r/s0/done", {"gain": 1})
    first.put("r/s1/25", {"gain": 2})
    assert kept.exists() and not (tmp_path / "a" / "journal.json").exists()
    # another machine: an empty work folder, the same journal file
    again = Journal.open(tmp_path / "b", who, resume=True, path=kept)
    assert again.forget(lambda key: key.endswith("/done")) == ["r/s1/25"]
    assert again.get("r/s0/done") == {"gain": 1} and again.get("r/s1/25") is None
    assert Journal.open(tmp_path / "c", who, resume=True, path=kept).get("r/s1/25") is None
    assert all(s["cpu"] for s in again.data["sittings"])


def test_the_resumed_note_names_the_cpus_when_sittings_ran_on_several(tmp_path):
    who = {"role": "dev", "code": "abc"}
    journal = Journal.open(tmp_path, who, resume=False)
    assert "CPUs" not in Journal.open(tmp_path, who, resume=True).resumed_note()
    journal = Journal.open(tmp_path, who, resume=True)
    journal.data["sittings"][0]["cpu"] = "AMD EPYC 9B14 (family 25, model 17)"
    assert "on 2 CPUs (AMD EPYC 9B14" in journal.resumed_note()
