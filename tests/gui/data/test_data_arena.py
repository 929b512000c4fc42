"""The Data tab's leaderboard: the arena's ratings with 95 % intervals, the verdicts in words, and
the split of the prompts, computed off the GUI thread with the other statistics."""

from __future__ import annotations

import pytest

from core.evaluation import ArenaSpec, save_arena

WAIT_MS = 30000
MODELS = ["default", "checkpoint:1"]


def arena_project(store, wins: int = 18, per_prompt: int = 4):
    """Five evaluation prompts; checkpoint:1 (started from default) wins ``wins`` of the 20
    comparisons alice judged."""
    store.set_split(store.prompt_ids(), "eval")
    spec = ArenaSpec(MODELS, per_prompt=per_prompt)
    store.add_checkpoint(
        run_id=None,
        step=10,
        kind="policy",
        path="/nowhere/ckpt",
        sha256="",
        base_model="default",
        adapter=False,
    )
    ids = {
        m: store.add_samples(
            {"prompt_id": p, "text": f"{m} {k}", "model": m, "params": spec.generation()}
            for p in store.prompt_ids()
            for k in range(per_prompt)
        )
        for m in MODELS
    }
    for n, (base, ckpt) in enumerate(zip(ids["default"], ids["checkpoint:1"], strict=True)):
        choice = "b" if n < wins else "a"
        store.add_rating(
            annotator="alice",
            kind="pairwise",
            sample_ids=[base, ckpt],
            value={"choice": choice, "winner": ckpt if choice == "b" else base},
            selection="arena",
        )
    save_arena(store, spec)
    return store


@pytest.fixture
def data_panel(qtbot):
    from gui.context import AppContext
    from gui.data.panel import DataPanel

    made = []

    def make(store):
        ctx = AppContext(store.path, "alice")
        panel = DataPanel(ctx)
        qtbot.addWidget(panel)
        panel.resize(1260, 900)
        with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS) as blocker:
            panel.show()
        made.append((panel, ctx))
        return panel, ctx, blocker.args[0]

    yield make
    for panel, ctx in made:
        panel.shutdown()
        ctx.close()


def test_leaderboard_plots_ratings_with_intervals_and_says_who_beat_whom(
    qtbot, data_panel, project_with_prompts
):
    store = arena_project(project_with_prompts)
    panel, ctx, stats = data_panel(store)
    view = panel.arena
    assert view.split.text().startswith("Prompts: 0 training, 5 evaluation")
    (ckpt, base) = view.shown_ratings()  # best first
    assert base[0] == pytest.approx(1000.0)  # the first model of the arena anchors the scale
    assert ckpt[0] > 1100 and ckpt[1] < ckpt[0] < ckpt[2] and base[1] <= base[0] <= base[2]
    line = stats["arena"]["against_start"][0]["line"]
    assert line.startswith("checkpoint:1 beat default: 90 %") and "20 comparisons" in line
    assert f"<b>{line}</b>" in view.lines.text()
    ticks = view.plot.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [t[1] for t in ticks] == ["checkpoint:1\n20 comparisons", "default\n20 comparisons"]

    points, bars = view.points, view.error_bars
    pair = store.ratings().__next__()["sample_ids"]
    store.add_rating(
        annotator="bob",
        kind="pairwise",
        sample_ids=pair,
        value={"choice": "a", "winner": pair[0]},
        selection="arena",
    )
    with qtbot.waitSignal(panel.stats_updated, timeout=WAIT_MS) as blocker:
        ctx.data_changed.emit()
    assert "21 comparisons" in blocker.args[0]["arena"]["against_start"][0]["line"]
    assert view.shown_ratings()[0][0] < ckpt[0]  # one more win for default
    assert view.points is points and view.error_bars is bars  # made once, data set


def test_without_an_arena_the_tab_says_how_to_start_one(qtbot, data_panel, project_with_prompts):
    panel, _ctx, stats = data_panel(project_with_prompts)
    assert stats["arena"] is None
    assert panel.arena.split.text().startswith("Prompts: 5 training, 0 evaluation")
    assert "No arena yet" in panel.arena.lines.text()
    assert "Evaluate against its starting model" in panel.arena.lines.text()
    assert panel.arena.shown_ratings() == []
    assert panel.arena._empty.isVisible()
