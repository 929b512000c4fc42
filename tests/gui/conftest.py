"""GUI test fixtures: isolated QSettings, no background thread outlives its test, a ready panel.

Every GUI test runs offscreen (``QT_QPA_PLATFORM=offscreen``) and waits on signals, never sleeps.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path_factory):
    """QSettings (the remembered annotator name) go to a temp folder, not the user's config."""
    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    yield


@pytest.fixture(autouse=True)
def _no_thread_left_running(qapp):
    """Fail a test that leaves a Task's QThread running (and stop it so later tests are safe)."""
    yield
    from gui.workers import running_tasks, stop

    tasks = running_tasks()
    left = [t.name for t in tasks if not t.wait(0)]
    for _ in range(10):  # a stopped Task's last signal may start another; stop that one too
        if not running_tasks():
            break
        stop(running_tasks())
    assert not left, (
        f"the test left background Task(s) running: {left}; cancel them and wait until they "
        "end (gui.workers.stop) before the test ends"
    )


def _add_test_samples(store, per_prompt: int = 4) -> list[int]:
    """``per_prompt`` samples (model "test") for every prompt; returns their ids."""
    prompt_ids = [r[0] for r in store.conn.execute("SELECT id FROM prompts ORDER BY id")]
    return store.add_samples(
        {"prompt_id": p, "text": f"**Answer {j}** to prompt {p}.\n\n- a list item", "model": "test"}
        for p in prompt_ids
        for j in range(per_prompt)
    )


@pytest.fixture
def rate_setup(qtbot, project_with_prompts, tiny_model_dir):
    """``make(mode, ...)``: a RatePanel on a project with 5 prompts × 4 samples, its first item shown.

    The panel's model is the tiny test model and loads only when responses run short, so tests
    that never need generation never wait for a model.
    """
    from gui.context import AppContext
    from gui.rate.panel import RatePanel

    store = project_with_prompts
    made: list[tuple[RatePanel, AppContext]] = []

    def make(mode="pairwise", *, samples=4, eager=False, annotator="alice", **settings):
        if samples:
            _add_test_samples(store, samples)
        store.update_settings(mode=mode, model=str(tiny_model_dir), max_new_tokens=8, **settings)
        ctx = AppContext(store.path, annotator)
        panel = RatePanel(ctx)
        panel.feeder.eager_model = eager
        made.append((panel, ctx))
        qtbot.addWidget(panel)
        panel.resize(1100, 750)
        panel.show()
        return panel, ctx

    yield make
    for panel, ctx in made:
        panel.shutdown()
        ctx.close()
