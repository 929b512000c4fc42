"""The Data tab: import, export, checkpoint export, merge and statistics, each run as a Task and
checked on the project file (or the file written). The file dialogs are bypassed: the buttons call
``import_file`` / ``export_to`` / ``export_checkpoint_to`` / ``merge_files``, and so do the tests."""

from __future__ import annotations

import json

import pytest

from core import data
from core.store import ProjectStore
from core.store.merge_rows import TABLES

WAIT_MS = 20000


def add_prompt(store: ProjectStore, text: str) -> int:
    (pid,), _ = store.add_prompts([{"text": text}], source="test")
    return pid


def counts(store: ProjectStore) -> dict[str, int]:
    return {t: store.count(t) for t in TABLES}


@pytest.fixture
def rated(project_with_prompts):
    """Five prompts, each with two "default" responses and one "other/model" response; alice and
    bob compare default vs other on every prompt (they disagree on the last), alice scores the
    second default response, bob gives the other one a thumb."""
    store = project_with_prompts
    for i, p in enumerate(r[0] for r in store.conn.execute("SELECT id FROM prompts ORDER BY id")):
        d1, d2, o = store.add_samples(
            [
                {"prompt_id": p, "text": f"default answer {i}", "model": "default"},
                {"prompt_id": p, "text": f"second answer {i}", "model": "default"},
                {"prompt_id": p, "text": f"other answer {i}", "model": "other/model"},
            ]
        )
        for who in ("alice", "bob"):
            winner = d1 if who == "bob" and i == 4 else o
            value = {"choice": "a" if winner == d1 else "b", "winner": winner}
            store.add_rating(
                annotator=who, kind="pairwise", sample_ids=[d1, o], value=value, seconds=4.0 + i
            )
        store.add_rating(
            annotator="alice",
            kind="score",
            sample_ids=[d2],
            value={"scores": {"overall": i / 4, "fluency": 1.0}},
            seconds=6.0,
        )
        store.add_rating(annotator="bob", kind="thumbs", sample_ids=[o], value={"up": i % 2 == 0})
    return store


@pytest.fixture
def panel_setup(qtbot, rated):
    """A shown DataPanel on the rated project, its first statistics computed."""
    from gui.context import AppContext
    from gui.data.panel import DataPanel

    ctx = AppContext(rated.path, "alice")
    panel = DataPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1260, 760)
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS):
        panel.show()
    yield panel, ctx, rated
    panel.shutdown()
    ctx.close()


def run_job(qtbot, panel, job: str, start) -> bool:
    """Start a job and wait until it ends; returns whether it succeeded."""
    with qtbot.waitSignal(
        panel.job_finished, timeout=WAIT_MS, check_params_cb=lambda name, _ok: name == job
    ) as blocker:
        start()
    assert not panel.tasks, "the job's Task is still listed after it finished"
    return blocker.args[1]


def close_error(panel) -> str:
    box = panel.last_error
    assert box is not None and box.isVisible()
    text = box.text()
    box.close()
    return text


def make_workstation(path, annotator="carol") -> ProjectStore:
    """A second project file: one new prompt, two responses, one pairwise rating."""
    other = ProjectStore(path)
    p = add_prompt(other, "Name three colours.")
    a, b = other.add_samples(
        [
            {"prompt_id": p, "text": "red, green, blue", "model": "default"},
            {"prompt_id": p, "text": "blue", "model": "default"},
        ]
    )
    other.add_rating(
        annotator=annotator,
        kind="pairwise",
        sample_ids=[a, b],
        value={"choice": "a", "winner": a},
        seconds=3.0,
    )
    return other


# ---- import -------------------------------------------------------------------------------------
def test_import_adds_new_prompts_skips_duplicates_and_refreshes(qtbot, panel_setup, tmp_path):
    panel, ctx, store = panel_setup
    path = tmp_path / "more.jsonl"
    path.write_text(
        '{"prompt": "What is the capital of France?"}\n'  # already in the project
        '{"prompt": "Name three colours."}\n'
        '{"messages": [{"role": "user", "content": "Count to three."}]}\n',
        encoding="utf-8",
    )
    panel.source.setText("batch-2")
    changed = []
    ctx.data_changed.connect(lambda: changed.append(True))
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS) as refreshed:
        assert run_job(qtbot, panel, "import", lambda: panel.import_file(path))
    assert panel.import_box.result.text() == "2 added, 1 duplicate skipped (3 in more.jsonl)."
    assert store.count("prompts") == 7
    assert store.count("prompts", "source = 'batch-2'") == 2
    assert changed == [True]
    assert refreshed.args[0]["prompts"] == 7  # the statistics followed ctx.data_changed
    assert "7 prompts" in panel.stats.summary.text()


def test_malformed_jsonl_names_the_line_and_imports_nothing(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "Fine."}\n{"prompt": "unterminated\n', encoding="utf-8")
    assert not run_job(qtbot, panel, "import", lambda: panel.import_file(path))
    message = close_error(panel)
    assert "bad.jsonl line 2" in message and "invalid JSON" in message
    assert "bad.jsonl line 2" in panel.import_box.result.text()
    assert store.count("prompts") == 5
    assert store.count("prompts", "text = 'Fine.'") == 0


# ---- export -------------------------------------------------------------------------------------
def test_export_preference_writes_the_pairs_training_would_use(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    out = tmp_path / "out" / "pairs.jsonl"
    assert run_job(qtbot, panel, "export", lambda: panel.export_to(out, "preference"))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = data.preference_pairs(store, aggregate=True)
    assert len(rows) == len(expected) == 4  # the split vote on the last prompt has no majority
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert panel.export_box.result.text().startswith(f"4 rows written to {out} (preference")
    assert panel.export_box.progress.isHidden()
    assert panel.export_box.button.text() == "Export ratings…"
    assert panel.export_form.include_superseded.isHidden()  # training rows are never undone
    assert rows[0]["chosen"][0]["role"] == "assistant"  # TRL's conversational form
    assert run_job(qtbot, panel, "export", lambda: panel.export_to(out, plain=True))
    assert isinstance(json.loads(out.read_text(encoding="utf-8").splitlines()[0])["chosen"], str)
    assert "conversational" not in panel.export_box.result.text()


def test_export_raw_of_chosen_annotators_anonymised(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    form = panel.export_form
    form.set_format("jsonl")
    form.tick(["bob"])
    form.anonymize.setChecked(True)
    out = tmp_path / "bob.jsonl"
    assert run_job(qtbot, panel, "export", lambda: panel.export_to(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == store.count("ratings", "annotator = 'bob'") == 10
    assert {r["annotator"] for r in rows} == {rows[0]["annotator"]}
    assert rows[0]["annotator"].startswith("annotator-") and "bob" not in out.read_text()


# ---- checkpoint export --------------------------------------------------------------------------
def test_export_checkpoint_writes_a_folder_with_a_model_card(qtbot, panel_setup, tmp_path):
    """The panel's side of a checkpoint export (tests/core check that such folders load): a
    full-weights folder is listed, exported through a Task, and the folder has its model card."""
    panel, ctx, store = panel_setup
    folder = tmp_path / "step-3"
    folder.mkdir()
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    cid = store.add_checkpoint(
        run_id=None,
        step=3,
        kind="policy",
        path=str(folder),
        sha256="",
        base_model="default",
        adapter=False,
    )
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS):
        ctx.data_changed.emit()
    assert panel.checkpoint_form.selected()["id"] == cid
    assert not panel.checkpoint_form.merged.isEnabled()  # full weights: nothing to merge
    out = tmp_path / "exported"
    assert run_job(qtbot, panel, "checkpoint", lambda: panel.export_checkpoint_to(out, cid))
    assert (out / "README.md").read_text(encoding="utf-8").startswith("---")
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert f"checkpoint:{cid} (policy, full) exported to {out}" in (
        panel.checkpoint_box.result.text()
    )


def test_export_checkpoint_as_gguf_through_the_form(qtbot, panel_setup, tmp_path, tiny_model_dir):
    """The form's GGUF choice and quantization run the export in a Task: the file loads back as a
    model, its card sits beside it, and a reward checkpoint cannot be chosen for GGUF."""
    import gguf

    from core.checkpoints import sha256_file, weights_file
    from core.models import load_model

    panel, ctx, store = panel_setup
    sha = sha256_file(weights_file(tiny_model_dir))
    common = {"run_id": None, "path": str(tiny_model_dir), "sha256": sha, "base_model": "default"}
    reward = store.add_checkpoint(step=4, kind="reward", adapter=False, **common)
    cid = store.add_checkpoint(step=5, kind="policy", adapter=False, **common)
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS):
        ctx.data_changed.emit()
    form = panel.checkpoint_form
    form.select(reward)
    assert form.fmt() == "hf" and not form.format.isEnabled()
    form.select(cid)
    form.set_format("gguf", "q8_0")
    assert form.quant.isVisibleTo(panel) and not form.merged.isVisibleTo(panel)
    out = tmp_path / "out" / "tiny.gguf"
    seen = []
    panel.checkpoint_box.progress.valueChanged.connect(seen.append)
    assert run_job(qtbot, panel, "checkpoint", lambda: panel.export_checkpoint_to(out, cid))
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.README.md", "tiny.gguf"]
    assert panel.checkpoint_box.result.text().startswith(
        f"checkpoint:{cid} (full) exported to {out} as q8_0 GGUF"
    )
    assert seen and max(seen) > 0  # progress went tensor by tensor
    file_type = gguf.GGUFReader(out).fields["general.file_type"].contents()
    assert file_type == gguf.LlamaFileType.MOSTLY_Q8_0
    assert load_model(str(out)).model.config.num_hidden_layers == 2
    assert "ollama create tiny" in (out.parent / "tiny.README.md").read_text(encoding="utf-8")


# ---- merge --------------------------------------------------------------------------------------
def test_merge_adds_rows_once_and_says_what_per_table(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    make_workstation(tmp_path / "ws2.db").close()
    before = counts(store)
    assert run_job(qtbot, panel, "merge", lambda: panel.merge_files([tmp_path / "ws2.db"]))
    after = counts(store)
    assert {t: after[t] - before[t] for t in TABLES if after[t] != before[t]} == {
        "annotators": 1,
        "prompts": 1,
        "samples": 2,
        "ratings": 1,
    }
    assert panel.merge_box.result.text() == ("ws2.db: 1 annotator, 1 prompt, 2 samples, 1 rating")
    assert run_job(qtbot, panel, "merge", lambda: panel.merge_files([tmp_path / "ws2.db"]))
    assert counts(store) == after
    assert panel.merge_box.result.text() == "ws2.db: nothing new (already merged)"


def test_merge_refuses_newer_schema_and_non_project_files(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    make_workstation(tmp_path / "ws2.db").close()
    newer = ProjectStore(tmp_path / "newer.db")
    newer.set_meta("schema_version", "99")
    newer.close()
    (tmp_path / "notes.db").write_text("not a database", encoding="utf-8")
    before = counts(store)
    for bad, says in [("newer.db", "newer than this build"), ("notes.db", "not an RLHF Studio")]:
        paths = [tmp_path / "ws2.db", tmp_path / bad]  # the good file is not merged either
        assert not run_job(qtbot, panel, "merge", lambda paths=paths: panel.merge_files(paths))
        assert says in close_error(panel)
        assert says in panel.merge_box.result.text()
        assert counts(store) == before


def test_cancelled_merge_merges_nothing(qtbot, panel_setup, tmp_path):
    panel, _ctx, store = panel_setup
    make_workstation(tmp_path / "ws2.db").close()
    before = counts(store)
    store.conn.execute("BEGIN IMMEDIATE")  # the merge waits for the write lock until we cancel
    try:
        assert panel.merge_files([tmp_path / "ws2.db"]) is not None
        assert panel.merge_box.button.text() == "Cancel"
        panel.merge_box.button.click()
        assert panel.merge_box.button.text() == "Cancelling…"
    finally:
        store.conn.execute("ROLLBACK")
    with qtbot.waitSignal(panel.job_finished, timeout=WAIT_MS) as blocker:
        pass
    assert blocker.args == ["merge", False]
    assert counts(store) == before
    assert panel.merge_box.result.text() == "Cancelled. Nothing was merged."


# ---- statistics ---------------------------------------------------------------------------------
def cells(table, row: int) -> list[str]:
    return [table.item(row, c).text() for c in range(table.columnCount())]


def test_statistics_fill_tables_and_plots_and_follow_new_data(qtbot, panel_setup):
    panel, ctx, store = panel_setup
    view = panel.stats
    assert [cells(view.speed_table, r)[:3] for r in range(view.speed_table.rowCount())] == [
        ["alice", "10", "10"],
        ["bob", "10", "5"],
        ["All", "20", "15"],
    ]
    pairwise = cells(view.agreement_table, 0)
    assert pairwise[:4] == ["pairwise", "all 2", "5", "0.80"]
    assert cells(view.agreement_table, 1)[:4] == ["", "alice & bob", "5", "0.80"]
    assert view.agreement_note.isHidden()
    heights = view.score_heights()
    assert set(heights) == {"overall", "fluency"}
    assert heights["overall"] == [1, 1, 1, 1, 1]  # 0, .25, .5, .75, 1: one per 1–5 bin
    assert heights["fluency"] == [0, 0, 0, 0, 5]
    wins = view.model_heights()["win_rate"]
    assert sorted(wins) == [pytest.approx(0.1), pytest.approx(0.9)]  # 1 of 10 vs 9 of 10
    assert panel.export_form.ticked_annotators() == []
    assert panel.export_form.annotators.count() == 2
    assert panel.is_ready()

    bars, win_bars = view.score_bars["overall"], view.model_bars["win_rate"]
    (alices,) = store.conn.execute("SELECT sample_ids FROM ratings WHERE kind = 'score'").fetchone()
    store.add_rating(
        annotator="bob",
        kind="score",
        sample_ids=json.loads(alices),
        value={"scores": {"overall": 1.0}},
        seconds=2.0,
    )
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS):
        ctx.data_changed.emit()
    assert view.score_heights()["overall"] == [1, 1, 1, 1, 2]
    assert view.score_bars["overall"] is bars and view.model_bars["win_rate"] is win_bars
    assert cells(view.agreement_table, 2)[:3] == ["score: overall", "all 2", "1"]
