"""The project's selection setting in the Rate tab: pairwise items picked by uncertainty (with a
random control share) or at random, each rating recording how its item was picked."""

from __future__ import annotations

from collections import Counter

from core.training import config_for, train


def rate_by_keyboard(qtbot, panel, n: int) -> None:
    for _ in range(n):
        qtbot.waitUntil(lambda: panel.item is not None, timeout=30000)
        with qtbot.waitSignal(panel.rated):
            qtbot.keyClick(panel, "a")


def test_uncertain_items_come_from_the_newest_reward_model(
    qtbot, rate_setup, store, tiny_model_dir
):
    # ratings by someone else, so that a reward model can be trained on them
    panel, ctx = rate_setup("pairwise", annotator="bob")
    rate_by_keyboard(qtbot, panel, 4)
    cfg = config_for("reward", "cpu")
    cfg.model, cfg.steps, cfg.batch_size = str(tiny_model_dir), 1, 4
    list(train(store, cfg))
    panel, ctx = rate_setup(
        "pairwise", samples=0, annotator="carol", selection="uncertain", random_fraction=0.25
    )
    rate_by_keyboard(qtbot, panel, 8)
    mine = [r for r in store.ratings() if r["annotator"] == "carol"]
    how = Counter(r["selection"] for r in mine)
    assert sum(how.values()) == 8 and set(how) <= {"uncertain", "random"} and how["uncertain"]
    assert panel.feeder.rewards.label.startswith("reward model checkpoint:")
    assert {r["selection"] for r in store.ratings() if r["annotator"] == "bob"} == {"coverage"}


def test_without_a_model_uncertain_falls_back_to_coverage_and_says_so(qtbot, rate_setup, store):
    panel, ctx = rate_setup("pairwise", selection="uncertain")
    messages = []
    ctx.status_message.connect(messages.append)
    rate_by_keyboard(qtbot, panel, 2)
    assert {r["selection"] for r in store.ratings()} == {"coverage"}
    qtbot.waitUntil(lambda: panel.feeder.selection_note is not None)
    assert "no reward model or trained policy" in panel.feeder.selection_note
    store.update_settings(selection="random")
    ctx.settings_changed.emit(store.settings())
    panel.feeder.queue.clear()
    rate_by_keyboard(qtbot, panel, 3)
    assert Counter(r["selection"] for r in store.ratings())["random"] >= 1
