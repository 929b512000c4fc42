"""The settings dialog (evaluation prompts and the judge included), the CJK font choice, and the
shortcut table in docs/ against the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialog, QTableWidget

from gui.context import AppContext
from gui.fonts import cjk_family, with_cjk_fallback
from gui.settings_dialog import SettingsDialog, parse_rubric
from gui.widgets import SHORTCUTS, ShortcutSheet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx(store):
    c = AppContext(store.path, "alice")
    yield c
    c.close()


def test_settings_are_saved_to_the_project_file(qtbot, ctx, store):
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.model.setText("checkpoint:latest")
    dialog.per_prompt.setValue(3)
    dialog.max_new_tokens.setValue(64)
    dialog.temperature.setValue(0.7)
    dialog.top_p.setValue(0.9)
    dialog.queue_size.setValue(5)
    dialog.mode.setCurrentIndex(dialog.mode.findData("rank"))
    dialog.rubric.setPlainText("overall\nhelpfulness, safety\n\n")
    dialog.guidelines.setPlainText("# Our rules\n\nBe kind.")
    with qtbot.waitSignal(ctx.model_spec_changed) as spec, qtbot.waitSignal(ctx.settings_changed):
        dialog.accept()
    assert spec.args == ["checkpoint:latest"]
    assert dialog.result() == QDialog.DialogCode.Accepted
    s = store.settings()  # another connection: it is in the file
    assert s["model"] == "checkpoint:latest" and s["per_prompt"] == 3
    assert s["max_new_tokens"] == 64 and s["temperature"] == 0.7 and s["top_p"] == 0.9
    assert s["queue_size"] == 5 and s["mode"] == "rank"
    assert s["rubric"] == ["overall", "helpfulness", "safety"]
    assert s["guidelines"] == "# Our rules\n\nBe kind."


def test_unchanged_default_guidelines_stay_the_default(qtbot, ctx, store):
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.queue_size.setValue(12)
    dialog.accept()
    assert store.settings()["guidelines"] is None and store.settings()["queue_size"] == 12


def test_bad_settings_are_explained_and_not_saved(qtbot, ctx, store):
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.rubric.setPlainText("overall\noverall")
    dialog.accept()
    assert "more than once" in dialog.error.text()
    assert dialog.result() != QDialog.DialogCode.Accepted
    dialog.rubric.setPlainText("overall")
    dialog.model.setText("  ")
    dialog.accept()
    assert "generation model" in dialog.error.text()
    assert store.settings()["model"] == "default"
    with pytest.raises(ValueError, match="at least one"):
        parse_rubric(" \n , ")


def test_keep_prompts_for_evaluation_from_settings(qtbot, project_with_prompts, ctx):
    store = project_with_prompts
    [sample] = store.add_samples([{"prompt_id": 1, "text": "hi", "model": "m"}])
    store.add_rating(annotator="bob", kind="thumbs", sample_ids=[sample], value={"up": True})
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    row = dialog.eval_row
    assert row.count.text() == "0 of 5 prompts kept for evaluation"
    row.amount.setValue(2)
    with qtbot.waitSignal(ctx.data_changed):
        task = row.keep()
    qtbot.waitUntil(lambda: row.task is None)
    assert task.worker_thread_ident is not None
    assert row.count.text() == "2 of 5 prompts kept for evaluation"
    eval_ids = store.prompt_ids("eval")
    assert len(eval_ids) == 2 and 1 not in eval_ids  # a rated prompt may have trained a model
    row.amount.setValue(5)  # only four prompts have no rating
    row.keep()
    qtbot.waitUntil(lambda: row.task is None)
    assert "only 2 prompts have no ratings" in dialog.error.text()
    assert store.prompt_ids("eval") == eval_ids


def test_the_judge_is_loaded_before_it_is_saved(qtbot, ctx, store):
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    dialog.judge.setText("no_such_module:judge")
    dialog.accept()
    assert "judge does not load" in dialog.error.text() and "no_such_module" in dialog.error.text()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert store.settings()["judge"] is None
    dialog.judge.setText(" core.raters:length ")
    dialog.accept()
    assert store.settings()["judge"] == "core.raters:length"
    dialog = SettingsDialog(ctx)
    qtbot.addWidget(dialog)
    assert dialog.judge.text() == "core.raters:length"
    dialog.judge.setText("")
    dialog.accept()
    assert store.settings()["judge"] is None


def test_cjk_family_prefers_simplified_chinese_and_is_a_fallback():
    families = ["DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "WenQuanYi Zen Hei"]
    assert cjk_family(families) == "Noto Sans CJK SC"
    assert cjk_family(["WenQuanYi Micro Hei", "Arial"]) == "WenQuanYi Micro Hei"
    assert cjk_family(["DejaVu Sans", "Arial"]) is None


def test_the_app_font_falls_back_to_an_installed_cjk_family(qapp):
    from PySide6.QtGui import QFont

    found = cjk_family()
    if found is None:
        pytest.skip("no CJK font installed on this machine")
    font = with_cjk_fallback(QFont("DejaVu Sans"))
    assert font.families()[0] == "DejaVu Sans" and font.families()[-1] == found


def test_docs_list_every_shortcut_and_the_sheet_shows_them(qtbot):
    doc = (ROOT / "docs" / "shortcuts.md").read_text(encoding="utf-8")
    for mode, keys, action in SHORTCUTS:
        line = next((ln for ln in doc.splitlines() if f"| {mode} |" in ln and keys in ln), None)
        assert line is not None, f"docs/shortcuts.md lacks {mode} {keys} ({action})"
    sheet = ShortcutSheet()
    qtbot.addWidget(sheet)
    assert sheet.findChild(QTableWidget).rowCount() == len(SHORTCUTS)
