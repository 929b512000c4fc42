"""The main window and ``run_app``: screenshots of each tab, open errors, the status bar, QSettings."""

from __future__ import annotations

import os
import sqlite3
from argparse import Namespace

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QInputDialog, QMessageBox

from gui.app import APP, ORG, MainWindow, ask_annotator, run_app
from gui.context import AppContext


def args_for(db, **kw):
    base = dict(
        db=str(db),
        annotator="alice",
        device=None,
        dtype=None,
        trust_remote_code=False,
        screenshot=None,
        tab="rate",
    )
    return Namespace(**{**base, **kw})


@pytest.fixture
def rated_project(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    ids = [r[0] for r in store.conn.execute("SELECT id FROM prompts")]
    store.add_samples(
        {
            "prompt_id": p,
            "text": f"Answer {j}: 你好, **world**.\n\n```\ncode()\n```",
            "model": "test",
        }
        for p in ids
        for j in range(2)
    )
    store.update_settings(model=str(tiny_model_dir), max_new_tokens=8)
    return store


def assert_real_png(path, capsys=None):
    image = QImage(str(path))
    assert not image.isNull() and image.width() >= 1000 and image.height() >= 600
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, 600, 29)}
    assert len(colours) > 5  # not a blank window


@pytest.mark.parametrize("tab", ["rate", "train", "data"])
def test_screenshot_of_each_tab(qtbot, rated_project, tmp_path, tab, capsys):
    out = tmp_path / f"{tab}.png"
    assert run_app(args_for(rated_project.path, screenshot=str(out), tab=tab)) == 0
    assert_real_png(out)
    assert "screenshot saved" in capsys.readouterr().out


def test_screenshot_of_a_project_without_prompts_shows_the_empty_state(qtbot, store, tmp_path):
    out = tmp_path / "empty.png"
    assert run_app(args_for(store.path, screenshot=str(out))) == 0
    assert_real_png(out)


def test_screenshot_exits_1_when_no_item_can_be_prepared(
    qtbot, project_with_prompts, tmp_path, capsys
):
    project_with_prompts.update_settings(model=str(tmp_path / "missing-model"))
    out = tmp_path / "stalled.png"
    args = args_for(project_with_prompts.path, screenshot=str(out), screenshot_timeout=60)
    assert run_app(args) == 1
    assert out.exists()
    assert "does not exist" in capsys.readouterr().err


def test_screenshot_remembers_the_annotator(qtbot, store, tmp_path):
    run_app(args_for(store.path, annotator="bob", screenshot=str(tmp_path / "x.png")))
    assert QSettings(ORG, APP).value("annotator") == "bob"


def test_first_start_asks_the_annotator_name_once(qtbot, monkeypatch):
    asked = []

    def fake_get_text(*a, **kw):
        asked.append(a)
        return "  carol ", True

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(fake_get_text))
    settings = QSettings(ORG, APP)
    settings.remove("annotator")
    assert ask_annotator(settings) == "carol"
    assert ask_annotator(settings) == "carol"
    assert len(asked) == 1


@pytest.mark.parametrize("problem", ["not sqlite", "newer schema", "read-only"])
def test_open_errors_are_shown_and_exit_non_zero(qtbot, tmp_path, monkeypatch, problem):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda *a: shown.append(a[2])))
    db = tmp_path / "project.db"
    if problem == "not sqlite":
        db.write_text("these are my notes\n")
    else:
        from core.store import ProjectStore

        ProjectStore(db).close()
        if problem == "newer schema":
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        else:
            os.chmod(db, 0o444)
            if os.geteuid() == 0:  # root writes anyway: make the store see what a user would
                real_access = os.access
                monkeypatch.setattr(
                    os, "access", lambda p, m: False if str(p) == str(db) else real_access(p, m)
                )
    try:
        assert run_app(args_for(db)) == 2
    finally:
        os.chmod(db, 0o644)
    expected = {
        "not sqlite": "not an RLHF Studio project",
        "newer schema": "newer",
        "read-only": "read-only",
    }[problem]
    assert len(shown) == 1 and expected in shown[0] and str(db) in shown[0]


def test_status_bar_shows_project_model_annotator_and_background_progress(qtbot, rated_project):
    ctx = AppContext(rated_project.path, "alice")
    window = MainWindow(ctx, confirm_close=False)
    qtbot.addWidget(window)
    window.show()
    try:
        assert window.project_label.text() == "Project: project.db"
        assert window.annotator_label.text() == "Annotator: alice"
        assert "tiny-model" in window.model_label.text()
        import torch

        from core.models import LoadedModel

        measured = LoadedModel(None, None, torch.device("cpu"), torch.bfloat16, "default")
        measured.precision = "measured"
        window.rate_panel.feeder.model_status.emit(measured.spec, measured.device_label)
        assert window.device_label.text() == "Device: cpu (bfloat16, measured)"
        ctx.background_progress.emit("Generating responses", 2, 8)
        assert window.progress.isVisible() and window.progress.maximum() == 8
        assert window.progress.value() == 2
        ctx.background_progress.emit("Loading", 0, -1)
        assert window.progress.maximum() == 0  # busy
        ctx.background_progress.emit("", 0, 0)
        assert not window.progress.isVisible()
        qtbot.waitUntil(lambda: window.rate_panel.item is not None)
        assert window.tabs.tabText(0) == "Rate" and window.tabs.count() == 3
    finally:
        window.close()
        ctx.close()


def test_runtime_leaves_the_gui_a_core(monkeypatch):
    """Background model work on a CPU gets one core fewer than the machine has, so the GUI thread
    is never queued behind torch's threads; the GIL switches every millisecond."""
    import sys

    import torch

    from gui.app import GIL_SWITCH_INTERVAL_S, configure_runtime

    threads, interval = torch.get_num_threads(), sys.getswitchinterval()
    try:
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        torch.set_num_threads(4)
        assert configure_runtime() == 3 == torch.get_num_threads()
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one core: torch keeps its one thread
        torch.set_num_threads(1)
        assert configure_runtime() == 1
    finally:
        torch.set_num_threads(threads)
        sys.setswitchinterval(interval)


def test_screenshot_of_a_new_project_reports_its_first_text_then_the_item(
    qtbot, project_with_prompts, tiny_model_dir, tmp_path, capsys
):
    """A project with prompts and no responses: the model writes the first item while the
    annotator waits; the first text on screen comes before the item is ready to rate."""
    project_with_prompts.update_settings(model=str(tiny_model_dir), max_new_tokens=8)
    out = tmp_path / "new.png"
    assert run_app(args_for(project_with_prompts.path, screenshot=str(out))) == 0
    lines = capsys.readouterr().out.splitlines()
    text = [i for i, line in enumerate(lines) if "first text on screen" in line]
    saved = [i for i, line in enumerate(lines) if "screenshot saved" in line]
    assert len(text) == 1 and len(saved) == 1 and text[0] < saved[0]
    assert project_with_prompts.count("samples") >= 2
