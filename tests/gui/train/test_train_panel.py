"""The Train tab on a tiny model: the form follows the config dataclasses, a DPO run feeds the plots
and the project file off the GUI thread, Pause / Stop / Resume run, errors are shown, closing stops
training. Every wait is on a signal or a condition, never a sleep."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from PySide6.QtCore import Qt

from core.training import DPOConfig, config_for, default_lr, device_kind, field_help
from core.training.config import default_forward_tokens

GOOD = "Paris is the capital of France."
BAD = "bad terrible sad bad terrible sad"
RUN_TIMEOUT_MS = 60000
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny model trains ~50x faster on one thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def train_setup(qtbot, project_with_prompts, tiny_model_dir):
    """``make()``: a shown TrainPanel on five prompts, each with a GOOD ≻ BAD pairwise rating
    (alice rated three prompts, bob two); the project's model is the tiny test model."""
    from gui.context import AppContext
    from gui.train.panel import TrainPanel

    store = project_with_prompts
    for pid in range(1, 6):
        good, bad = store.add_samples(
            [
                {"prompt_id": pid, "text": GOOD, "model": "x"},
                {"prompt_id": pid, "text": BAD, "model": "x"},
            ]
        )
        store.add_rating(
            annotator="alice" if pid <= 3 else "bob",
            kind="pairwise",
            sample_ids=[bad, good],
            value={"choice": "b", "winner": good},
        )
    store.update_settings(model=str(tiny_model_dir))
    made = []

    def make():
        ctx = AppContext(store.path, "tester")
        panel = TrainPanel(ctx)
        made.append((panel, ctx))
        qtbot.addWidget(panel)
        panel.resize(1280, 800)
        panel.show()
        return panel, ctx

    yield make
    for panel, ctx in made:
        panel.shutdown()
        ctx.close()


def configure(panel, algo="dpo", **values):
    panel.form.set_algo(algo)
    values = {"batch_size": 4, "save_every": 0, "learning_rate": 1e-2, **values}
    for name, value in values.items():
        panel.form.set_value(name, value)


def run_to_end(qtbot, panel, button=None):
    with qtbot.waitSignal(panel.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        qtbot.mouseClick(button or panel.start_button, LEFT)
    return ended.args  # (run id, status)


def run_row(store, run_id):
    return store.conn.execute("SELECT status, message FROM runs WHERE id = ?", (run_id,)).fetchone()


def metric_steps(store, run_id, name="loss"):
    return [
        r[0]
        for r in store.conn.execute(
            "SELECT step FROM metrics WHERE run_id = ? AND name = ? ORDER BY step", (run_id, name)
        )
    ]


def checkpoint_steps(store, run_id):
    return [
        r[0]
        for r in store.conn.execute(
            "SELECT step FROM checkpoints WHERE run_id = ? ORDER BY step", (run_id,)
        )
    ]


def data_line(qtbot, panel, text):
    qtbot.waitUntil(lambda: panel.data_label.text() == text, timeout=10000)


# ---- the form, the data line, history --------------------------------------------------------------
def test_form_follows_the_config_and_the_data_line_follows_algorithm_and_ratings(
    qtbot, train_setup, store
):
    from gui.train.fields import ScientificSpinBox

    panel, ctx = train_setup()
    form = panel.form
    data_line(qtbot, panel, "5 pairs from 2 annotators")
    defaults = config_for("dpo", ctx.device)
    fields = [f.name for f in dataclasses.fields(DPOConfig) if f.name != "algo"]
    assert sorted(form.editors) == sorted(fields)
    assert {k: v for k, v in form.values().items()} == dataclasses.asdict(defaults)
    helps = field_help(DPOConfig)
    assert helps["beta"] in form.editors["beta"].widget.toolTip()
    lr = form.editors["learning_rate"].widget
    assert isinstance(lr, ScientificSpinBox)
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "5e-5")
    lr.interpretText()
    assert form.value("learning_rate") == pytest.approx(5e-5)
    form.set_value("learning_rate", default_lr("dpo", form.value("lora")))
    form.set_value("lora", not form.value("lora"))  # the default rate follows LoRA / full
    assert form.value("learning_rate") == default_lr("dpo", form.value("lora"))
    kind = device_kind(ctx.device)  # and so do the tokens per pass (on a CPU: fewer with LoRA)
    assert form.value("forward_tokens") == default_forward_tokens(kind, form.value("lora"))
    form.set_value("forward_tokens", 300)  # a choice of the user's own stays
    form.set_value("lora", not form.value("lora"))
    assert form.value("forward_tokens") == 300
    form.set_value("lora", not form.value("lora"))

    form.set_value("batch_size", 3)  # the user's choice carries over to another algorithm
    form.algo_combo.setCurrentIndex(form.algo_combo.findData("kto"))
    assert "desirable_weight" in form.editors and form.value("batch_size") == 3
    assert form.value("learning_rate") == default_lr("kto", form.value("lora"))
    data_line(qtbot, panel, "no desirable / undesirable examples yet: rate with thumbs or scores")
    assert "b00020" in panel.data_label.styleSheet()  # shown as a problem
    good = store.conn.execute("SELECT id FROM samples WHERE text = ? LIMIT 1", (GOOD,)).fetchone()
    store.add_rating(annotator="carol", kind="thumbs", sample_ids=[good[0]], value={"up": True})
    ctx.data_changed.emit()
    data_line(qtbot, panel, "1 desirable and 0 undesirable examples from 1 annotator")

    form.set_algo("rloo")
    data_line(
        qtbot,
        panel,
        "5 prompts to sample from, but no reward model yet: train one "
        "(Reward model) or give a rater",
    )

    form.set_algo("dpo")
    form.set_value("warmup_ratio", 1.0)  # invalid: the message names the field; nothing starts
    qtbot.mouseClick(panel.start_button, LEFT)
    assert panel.task is None and panel.error_box is not None
    assert "warmup_ratio" in panel.error_box.text()
    panel.error_box.close()
    qtbot.waitUntil(lambda: not panel.counter.busy())


def test_earlier_runs_overlay_and_a_reward_checkpoint_goes_to_rloo(qtbot, train_setup, store):
    old_runs = []
    for algo, steps in (("dpo", 5), ("reward", 3)):
        run_id = store.create_run(algo, {"algo": algo}, "tiny", [])
        for s in range(1, steps + 1):
            store.log_metrics(run_id, s, {"loss": 1 / s, "rewards/margins": s / 10})
        store.set_run_status(run_id, "finished")
        old_runs.append(run_id)
    ckpt = store.add_checkpoint(
        run_id=old_runs[1],
        step=3,
        kind="reward",
        path="/nowhere/rm",
        sha256="0",
        base_model="tiny",
        adapter=True,
    )
    panel, _ctx = train_setup()
    plots = panel.plots
    assert plots.overlaid_runs() == [old_runs[1]]  # the newest run is shown on opening
    assert plots.overlay_points(old_runs[1], "loss") == 3
    panel.runs.set_compared(old_runs[0], True)
    assert plots.overlay_points(old_runs[0], "loss") == 5
    assert plots.overlay_points(old_runs[0], "reward") == 5  # rewards/margins feeds "reward"
    assert plots.overlay_points(old_runs[0], "kl") == 0
    panel.runs.set_compared(old_runs[1], False)
    assert plots.overlaid_runs() == [old_runs[0]]

    panel.tabs.setCurrentWidget(panel.checkpoints)
    panel.checkpoints.select_checkpoint(ckpt)
    button = panel.checkpoints.use_button
    assert button.text() == "Use for rloo"  # a reward model is not a generator
    qtbot.mouseClick(button, LEFT)
    assert panel.form.algo == "rloo" and panel.form.value("reward_model") == f"checkpoint:{ckpt}"
    assert store.settings()["model"] != f"checkpoint:{ckpt}"
    qtbot.waitUntil(lambda: "reward model checkpoint:" in panel.data_label.text(), timeout=10000)
    qtbot.waitUntil(lambda: not panel.counter.busy())


# ---- training --------------------------------------------------------------------------------------
def test_dpo_run_feeds_plots_and_project_file_off_the_gui_thread(
    qtbot, train_setup, store, tmp_path, monkeypatch
):
    from core.training.dpo import DPOObjective

    loss_threads = []
    original = DPOObjective.loss

    def recording_loss(self, *args, **kwargs):
        loss_threads.append(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DPOObjective, "loss", recording_loss)
    panel, ctx = train_setup()
    progress, workers = [], []
    ctx.background_progress.connect(lambda *a: progress.append(a))
    panel.step_done.connect(lambda _m: workers.append(panel.task.worker_thread_ident))
    configure(panel, steps=3, save_every=2)

    run_id, status = run_to_end(qtbot, panel)
    assert status == "finished"
    main = threading.get_ident()
    assert loss_threads and main not in loss_threads  # no training step ran on the GUI thread
    assert workers and main not in workers
    qtbot.waitUntil(lambda: panel.plots.live_points("loss") == 3)  # drawn by the timer
    assert panel.plots.live_points("reward") == 3 and panel.plots.live_points("accuracy") == 3
    assert panel.plots.live_metric("reward") == "rewards/margins"
    assert panel.plots.live_points("kl") == 0
    assert metric_steps(store, run_id) == [1, 2, 3]
    assert metric_steps(store, run_id, "rewards/accuracies") == [1, 2, 3]
    assert (f"Training run {run_id}", 3, 3) in progress and progress[-1] == ("", 0, 0)
    assert "step 3/3" in panel.log.toPlainText()

    assert checkpoint_steps(store, run_id) == [2, 3]
    table = panel.checkpoints
    assert [r["step"] for r in table.rows] == [3, 2]  # newest first, the list refreshed itself
    newest = table.rows[0]["id"]
    table.select_checkpoint(newest)
    assert table.use_button.text() == "Use as generator"
    with qtbot.waitSignal(ctx.model_spec_changed):
        qtbot.mouseClick(table.use_button, LEFT)
    assert store.settings()["model"] == f"checkpoint:{newest}"
    assert "generator" in table.table.item(0, 3).text()

    png = tmp_path / "plots.png"
    monkeypatch.setattr(
        "gui.train.panel.QFileDialog.getSaveFileName", lambda *a, **k: (str(png), "PNG (*.png)")
    )
    qtbot.mouseClick(panel.save_button, LEFT)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pause_stop_and_resume_run(qtbot, train_setup, store):
    panel, _ctx = train_setup()
    configure(panel, steps=400)  # far more than run while the test presses buttons
    with qtbot.waitSignal(panel.step_done, timeout=RUN_TIMEOUT_MS) as first:
        qtbot.mouseClick(panel.start_button, LEFT)
    run_id = first.args[0].run_id
    qtbot.mouseClick(panel.pause_button, LEFT)
    qtbot.waitUntil(lambda: run_row(store, run_id)[0] == "paused", timeout=RUN_TIMEOUT_MS)
    assert panel.resume_button.isEnabled() and not panel.pause_button.isEnabled()
    done = metric_steps(store, run_id)
    with qtbot.waitSignal(
        panel.step_done, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda m: m.step > done[-1]
    ):
        qtbot.mouseClick(panel.resume_button, LEFT)  # runs on from where it waited

    with qtbot.waitSignal(panel.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        qtbot.mouseClick(panel.stop_button, LEFT)
    assert ended.args == [run_id, "stopped"]
    done = metric_steps(store, run_id)
    assert done == list(range(1, len(done) + 1)) and len(done) < 400
    assert f"step {done[-1]}" in run_row(store, run_id)[1]
    assert checkpoint_steps(store, run_id) == [done[-1]]  # Stop saved where it stopped
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()

    panel.tabs.setCurrentWidget(panel.runs)
    panel.runs.select_run(run_id)
    assert panel.runs.resume_button.isEnabled()
    with qtbot.waitSignal(panel.step_done, timeout=RUN_TIMEOUT_MS) as again:
        qtbot.mouseClick(panel.runs.resume_button, LEFT)
    assert (again.args[0].run_id, again.args[0].step) == (run_id, done[-1] + 1)
    assert panel.plots.live_metric("loss") == "loss"
    with qtbot.waitSignal(panel.run_ended, timeout=RUN_TIMEOUT_MS) as ended:
        qtbot.mouseClick(panel.stop_button, LEFT)
    assert ended.args == [run_id, "stopped"]
    steps = metric_steps(store, run_id)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > len(done)
    qtbot.waitUntil(lambda: panel.plots.live_points("loss") == len(steps))  # one curve, continued


def test_errors_are_shown_and_the_panel_stays_usable(qtbot, train_setup, store):
    panel, _ctx = train_setup()
    configure(panel, "reinforce", steps=2)  # nothing scored: a UserError before any run row
    assert run_to_end(qtbot, panel) == [None, "not started"]
    assert "scored samples" in panel.error_box.text()
    assert "Error:" in panel.log.toPlainText()
    panel.error_box.close()

    configure(panel, "dpo", steps=4, learning_rate=1e30, save_every=1)  # diverges: NaN guard
    run_id, status = run_to_end(qtbot, panel)
    assert status == "failed"
    assert "diverged" in panel.error_box.text() and "diverged" in run_row(store, run_id)[1]
    assert panel.start_button.isEnabled()
    panel.error_box.close()


def test_closing_the_app_stops_training_and_keeps_a_checkpoint(qtbot, train_setup, store):
    from gui.workers import running_tasks, stop

    panel, ctx = train_setup()
    configure(panel, steps=400)
    with qtbot.waitSignal(panel.step_done, timeout=RUN_TIMEOUT_MS) as first:
        qtbot.mouseClick(panel.start_button, LEFT)
    run_id = first.args[0].run_id
    changed = []
    ctx.data_changed.connect(lambda: changed.append(True))
    with qtbot.waitSignal(panel.run_ended, timeout=RUN_TIMEOUT_MS):
        assert not stop(running_tasks(), timeout_s=30)  # what the window does on close
    status, message = run_row(store, run_id)
    stopped_at = checkpoint_steps(store, run_id)
    assert status == "stopped" and len(stopped_at) == 1 and f"step {stopped_at[0]}" in message
    assert not running_tasks() and not panel.counter.busy() and not changed  # nothing new started


def test_an_alert_shows_a_banner_and_marks_the_plots(qtbot, train_setup, store, monkeypatch):
    from core.training import loop
    from core.training.diagnostics import Alert

    class AlertAtTwo:
        def __init__(self, algo, config):
            pass

        def observe(self, step, metrics):
            return [Alert("loss-rising", step, f"step {step}: the loss rose")] if step == 2 else []

        def replay(self, steps):
            return []

    monkeypatch.setattr(loop, "Watcher", AlertAtTwo)
    panel, _ctx = train_setup()
    assert panel.alert_banner.isHidden()
    configure(panel, steps=3)
    run_id, status = run_to_end(qtbot, panel)
    assert status == "finished"  # an alert does not stop a run unless the form asks
    assert not panel.alert_banner.isHidden() and "the loss rose" in panel.alert_banner.text()
    assert panel.plots.alert_marks() == [2.0]
    assert "alert: [loss-rising]" in panel.log.toPlainText()
    assert [a["rule"] for a in store.alerts(run_id)] == ["loss-rising"]
