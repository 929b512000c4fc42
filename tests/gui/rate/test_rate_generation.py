"""The Rate tab's background work: generation off the GUI thread, model reloads, model failures,
and a project with no prompts at all."""

from __future__ import annotations

import shutil
import threading

from PySide6.QtWidgets import QApplication, QMessageBox

from gui.context import AppContext
from gui.rate.panel import RatePanel


def item_ready(qtbot, panel, timeout=60000):
    qtbot.waitUntil(lambda: panel.item is not None, timeout=timeout)
    return panel.item


def count_samples(store, model):
    return store.count("samples", "model = ?", [model])


def test_generation_runs_on_a_worker_thread_and_records_the_model(qtbot, rate_setup, store):
    panel, _ctx = rate_setup("pairwise", samples=0, eager=True, per_prompt=2, queue_size=3)
    item = item_ready(qtbot, panel)
    spec = panel.feeder.settings["model"]
    assert len(item.responses) == 2
    assert count_samples(store, spec) == store.count("samples") > 0
    gui_thread = threading.get_ident()
    for task in (panel.feeder.last_load_task, panel.feeder.last_refill_task):
        assert task.worker_thread_ident not in (None, gui_thread)
    sample = store.db["samples"].get(item.sample_ids[0])
    assert '"max_new_tokens": 8' in sample["params"] and '"seed"' in sample["params"]


def test_a_new_model_spec_is_loaded_and_recorded(
    qtbot, rate_setup, store, tiny_model_dir, tmp_path
):
    """A checkpoint made the generator (ctx.use_model) makes the next samples."""
    panel, ctx = rate_setup("thumbs", samples=0, eager=True, per_prompt=1, queue_size=2)
    item_ready(qtbot, panel)
    other = shutil.copytree(tiny_model_dir, tmp_path / "tiny-copy")
    with qtbot.waitSignal(ctx.model_spec_changed):
        ctx.use_model(str(other))
    for _ in range(60):
        if count_samples(store, str(other)):
            break
        qtbot.waitUntil(
            lambda: panel.item is not None or count_samples(store, str(other)) > 0, timeout=60000
        )
        if panel.item is not None:
            qtbot.keyClick(panel, "u")
    assert count_samples(store, str(other)) > 0
    qtbot.waitUntil(lambda: panel.feeder.loaded is not None)
    assert panel.feeder.loaded.spec == str(other)


def test_a_model_that_fails_to_load_leaves_existing_items_rateable(
    qtbot, rate_setup, store, tmp_path
):
    panel, ctx = rate_setup("pairwise", eager=True)
    ctx.update_settings(model=str(tmp_path / "no-such-model"))
    qtbot.waitUntil(lambda: panel.feeder.model_error is not None, timeout=30000)
    assert "does not exist" in panel.feeder.model_error
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    assert any("could not be loaded" in b.windowTitle() for b in boxes)
    for b in boxes:
        b.close()
    assert panel.feeder.loaded is None
    item = item_ready(qtbot, panel)
    qtbot.keyClick(panel, "a")
    assert list(store.ratings())[-1]["sample_ids"] == item.sample_ids


def test_a_project_without_prompts_shows_its_empty_state_then_imports(qtbot, store, tiny_model_dir):
    store.update_settings(
        mode="thumbs", model=str(tiny_model_dir), max_new_tokens=4, per_prompt=1, queue_size=2
    )
    ctx = AppContext(store.path, "alice")
    panel = RatePanel(ctx)
    qtbot.addWidget(panel)
    try:
        with qtbot.waitSignal(panel.ready, timeout=20000):
            panel.show()
        view = panel.view
        assert view.stack.currentWidget() is view.empty_page
        assert "no prompts" in view.empty_text.text()
        assert panel.feeder.load_task is None and panel.feeder.loaded is None  # nothing to do
        assert not view.import_button.isHidden()
        view.import_button.click()
        item = item_ready(qtbot, panel)
        assert store.count("prompts") > 100 and item.mode == "thumbs"
    finally:
        panel.shutdown()
        ctx.close()


def test_the_first_item_is_one_prompt_written_before_the_annotators_eyes(
    qtbot, rate_setup, store, monkeypatch
):
    """With nothing to rate, the first generation is the smallest that makes an item (one prompt,
    two responses to compare) and its text shows while it is written; full batches follow."""
    import core.generation

    monkeypatch.setattr(core.generation, "PREVIEW_EVERY_S", 0.0)
    panel, _ctx = rate_setup("pairwise", samples=0, eager=True, per_prompt=4, queue_size=3)
    shown, stages = [], []

    def record():
        if panel.item is None and panel.view.empty_page.preview.isVisible():
            shown.append(panel.view.empty_page.preview.text())
        if panel.feeder.load_stage and panel.item is None:
            stages.append(panel.view.empty_page.text.text())

    panel.feeder.changed.connect(record)
    item = item_ready(qtbot, panel)
    first = store.db["samples"].get(min(item.sample_ids))
    assert '"per_prompt": 2' in first["params"]
    made_first = store.count("samples", "params = ?", [first["params"]])
    assert made_first == 2, "one prompt, the two responses a pairwise item needs"
    assert shown, "the responses were shown while they were written"
    assert "Prompt:" in shown[-1] and "Response 2" in shown[-1]
    assert store.db["prompts"].get(item.prompt_id)["text"][:20] in shown[-1]
    # loading the model said what it was doing, in the panel (a first start's conversion too)
    assert any("Loading model" in t for t in stages)
    assert any("ready on cpu" in t for t in stages)
    qtbot.waitUntil(lambda: store.count("samples", "params LIKE '%\"per_prompt\": 4%'") > 0)
    assert not panel.view.empty_page.preview.isVisible()
