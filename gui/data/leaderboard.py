"""The Data tab's answer to "did it get better?": the arena's leaderboard and the prompt split.

``ArenaView.show_arena(board, prompts, eval_prompts)`` takes ``stats["arena"]`` of
``core.stats.project_stats`` (computed by the panel on a worker thread): each model's Elo-scale
rating with its 95 % bootstrap interval as a point with error bars, one line per pair of models,
and each checkpoint against the model its run started from. The plot items are made once; a
refresh only sets their data.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from gui.data.stats import PALETTE, EmptyNote, make_plot, short_model, side_by_side, titled

ANCHOR = 1000.0  # the first model of the arena is rated exactly this (core.evaluation)
NO_ARENA = (
    "No arena yet. Keep some prompts for evaluation (Project → Settings, or "
    "<code>prompts split --eval 50</code>), then choose a checkpoint in the Train tab and "
    "<i>Evaluate against its starting model</i>, or run "
    "<code>python main.py arena --models SPEC SPEC</code>. People judge its comparisons in the "
    "Rate tab's Arena mode; a judge set in Settings judges them at once."
)


def split_line(prompts: int, eval_prompts: int) -> str:
    """'Prompts: 180 training, 20 evaluation (…)': how the project's prompts are split."""
    text = f"Prompts: {prompts - eval_prompts:,} training, {eval_prompts:,} evaluation"
    if eval_prompts:
        return text + " (evaluation prompts are never trained on; they are rated in the arena)."
    return text + ". Keep some for evaluation in Project → Settings to measure progress."


class ArenaView(QWidget):
    """The leaderboard as a plot with 95 % intervals, the pairs and each checkpoint against its
    starting model in words, and the split of the prompts."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.split = QLabel("Prompts: …")
        self.split.setWordWrap(True)
        self._build_plot()
        self.lines = QLabel()
        self.lines.setWordWrap(True)
        self.lines.setTextFormat(Qt.TextFormat.RichText)
        self.lines.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.lines.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidget(self.lines)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.split)
        layout.addWidget(
            side_by_side(
                (
                    titled("Arena leaderboard (95 % intervals)", self.plot),
                    titled("Did it get better?", scroll),
                ),
                (1, 1),
            ),
            1,
        )
        self.board: dict[str, Any] | None = None

    def _build_plot(self) -> None:
        self.plot = make_plot("rating (Elo scale)")
        item = self.plot.getPlotItem()
        item.getAxis("bottom").setHeight(44)  # two lines: the model and its comparisons
        self.anchor_line = pg.InfiniteLine(
            pos=ANCHOR, angle=0, pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine)
        )
        item.addItem(self.anchor_line, ignoreBounds=True)
        empty = np.zeros(0)
        self.error_bars = pg.ErrorBarItem(
            x=empty, y=empty, top=empty, bottom=empty, beam=0.2, pen=pg.mkPen(PALETTE[0], width=2)
        )
        self.points = pg.ScatterPlotItem(size=11, brush=PALETTE[0], pen=None)
        item.addItem(self.error_bars)
        item.addItem(self.points)
        self._empty = EmptyNote(self.plot, "No arena comparisons yet")

    # ---- filling ------------------------------------------------------------------------------
    def show_arena(self, board: dict[str, Any] | None, prompts: int, eval_prompts: int) -> None:
        self.board = board
        self.split.setText(split_line(prompts, eval_prompts))
        models = (board or {}).get("models") or []
        rated = [(i, m) for i, m in enumerate(models) if m["rating"] is not None]
        x = np.array([i for i, _ in rated], dtype=float)
        y = np.array([m["rating"] for _, m in rated], dtype=float)
        lo = np.array([m["ci95"][0] for _, m in rated], dtype=float)
        hi = np.array([m["ci95"][1] for _, m in rated], dtype=float)
        self.error_bars.setData(x=x, y=y, top=hi - y, bottom=y - lo)
        self.points.setData(x=x, y=y)
        plot = self.plot.getPlotItem()
        ticks = [(i, f"{short_model(m['model'])}\n{_comparisons(m)}") for i, m in enumerate(models)]
        plot.getAxis("bottom").setTicks([ticks])
        plot.setXRange(-0.5, max(len(models), 1) - 0.5, padding=0.05)
        if rated:
            plot.setYRange(min(lo.min(), ANCHOR), max(hi.max(), ANCHOR), padding=0.1)
        self._empty.show_if(not rated, self.plot)
        self.anchor_line.setVisible(bool(rated))
        self.lines.setText(verdict_html(board))

    # ---- for tests and people -----------------------------------------------------------------
    def shown_ratings(self) -> list[tuple[float, float, float]]:
        """(rating, low, high) of each plotted model, left to right."""
        x, y = self.points.getData()
        top, bottom = self.error_bars.opts["top"], self.error_bars.opts["bottom"]
        return [(float(y[i]), float(y[i] - bottom[i]), float(y[i] + top[i])) for i in range(len(x))]


def _comparisons(model: dict[str, Any]) -> str:
    n = model["comparisons"]
    if model["rating"] is None:
        return "not rated yet"
    return f"{n:,} comparison{'s' if n != 1 else ''}"


def verdict_html(board: dict[str, Any] | None) -> str:
    """Each checkpoint against its starting model first (bold), then every other pair."""
    if not board:
        return NO_ARENA
    against = [a["line"] for a in board.get("against_start") or []]
    rest = [line for line in board.get("summary") or [] if line not in against]
    parts = [f"<b>{html.escape(line)}</b>" for line in against]
    parts += [html.escape(line) for line in rest]
    if not parts:
        parts = [
            "No comparison judged yet: rate them in the Rate tab's Arena mode, or set a judge "
            "in Project → Settings and evaluate again."
        ]
    return "<br><br>".join(parts)
