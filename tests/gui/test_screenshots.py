"""The screenshot script runs end to end (on the tiny model here; `make screenshots` uses the
default model): a demo project built with the app's commands, one PNG per tab."""

from __future__ import annotations

from PySide6.QtGui import QImage


def test_screenshots_of_every_tab_from_a_demo_project(tmp_path, tiny_model_dir):
    from gui import screenshots

    out = tmp_path / "shots"
    rater = tmp_path / "by_hash.py"  # a tiny model's answers all look alike to VADER
    rater.write_text(
        "import hashlib\n\ndef score(prompt, response):\n"
        "    return int(hashlib.sha1(response.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF\n"
    )
    argv = [str(out), "--model", str(tiny_model_dir), "--prompts", "3", "--max-new-tokens", "8"]
    argv += ["--judge", f"{rater}:score", "--workdir", str(tmp_path / "work")]
    assert screenshots.main(argv) == 0
    for tab in screenshots.TABS:
        image = QImage(str(out / f"{tab}.png"))
        assert image.width() >= 1000 and image.height() >= 600, tab
    from core.store import ProjectStore

    with ProjectStore(tmp_path / "work" / "demo.db") as store:
        runs = store.recent_runs(10)
        assert {r["algo"] for r in runs} == {"dpo"} and len(runs) == 2  # the CLI's and the tab's
        assert store.settings()["arena"] and len(store.prompt_ids("eval")) == 6
