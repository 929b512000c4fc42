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
