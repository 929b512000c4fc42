"""The Data tab's statistics: who rated how much and how fast, how far annotators agree, how the
scores spread, and how each model or checkpoint fares in human judgements.

``StatsView.show_stats(stats)`` takes the dict of ``core.stats.project_stats`` (the panel computes
it on a worker thread). Every plot item is made once; a refresh only changes its data.
"""

from __future__ import annotations

import html
from pathlib import PurePath
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# Okabe–Ito: colours that stay distinct for colour-blind readers.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MODEL_SERIES = (  # (key in per_checkpoint, legend name); all three are fractions in [0, 1]
    ("win_rate", "pairwise win rate"),
    ("mean_score", "mean score"),
    ("thumbs_up_rate", "thumbs-up rate"),
)
SPEED_COLUMNS = (
    ("Annotator", "Who rated (the name saved with each rating)."),
    ("Ratings", "Live ratings: undone ratings and skips are not counted."),
    ("Timed", "Ratings with the seconds spent on the item recorded."),
    ("Median s", "Median seconds spent per item (timed ratings)."),
    ("Items/h", "Items per hour: timed ratings divided by their total time."),
)
AGREEMENT_COLUMNS = (
    ("Judgement", "Pairwise and thumbs labels; scores per criterion."),
    ("Annotators", "All who judged shared items, then each two of them."),
    ("Items", "Items judged by two or more of these annotators."),
    ("Raw", "Raw agreement: the share of shared items given the same label."),
    ("κ", "Cohen's kappa of two annotators: (p_o − p_e) / (1 − p_e); 0 = chance level."),
    (
        "α",
        "Krippendorff's alpha: nominal for labels; interval (int) and ordinal (ord) for "
        "scores. 1 = perfect agreement, 0 = chance level.",
    ),
)
AXIS_COLOUR = "#444444"


def fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def short_model(model: str, limit: int = 18) -> str:
    """A model spec short enough for an axis: the last part of a path or hub id, cut to ``limit``."""
    name = model if model.startswith(("checkpoint:", "human:")) else PurePath(model).name or model
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _table(columns: tuple[tuple[str, str], ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    for col, (name, tip) in enumerate(columns):
        header_item = QTableWidgetItem(name)
        header_item.setToolTip(tip)
        table.setHorizontalHeaderItem(col, header_item)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(24)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setAlternatingRowColors(True)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    return table


def _set_row(table: QTableWidget, row: int, cells: list[Any], bold: bool = False) -> None:
    for col, value in enumerate(cells):
        text = str(value)
        item = QTableWidgetItem(text)
        if col > 0 and text[:1] and text[:1] in "–-0123456789":  # numbers line up on the right
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if bold:
            font = QFont(item.font())
            font.setBold(True)
            item.setFont(font)
        table.setItem(row, col, item)


def make_plot(left: str, bottom: str | None = None) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    item.hideButtons()
    item.setMouseEnabled(x=False, y=False)
    item.showGrid(y=True, alpha=0.25)
    for side in ("left", "bottom"):
        axis = item.getAxis(side)
        axis.setPen(AXIS_COLOUR)
        axis.setTextPen(AXIS_COLOUR)
    item.setLabel("left", left, color=AXIS_COLOUR)
    if bottom:
        item.setLabel("bottom", bottom, color=AXIS_COLOUR)
    plot.setMinimumHeight(200)
    return plot


def legend_html(entries: list[tuple[str, str]]) -> str:
    """(colour, name) pairs as a legend line: a coloured square before each name."""
    return " &nbsp; ".join(
        f"<span style='color:{colour}'>■</span>&nbsp;{html.escape(name)}"
        for colour, name in entries
    )


def _legend_label() -> QLabel:
    """A legend outside the plot, so it never hides a bar; it wraps when the plot is narrow."""
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    return label


class EmptyNote(pg.TextItem):
    """Grey text in the middle of an empty plot."""

    def __init__(self, plot: pg.PlotWidget, text: str):
        super().__init__(text, color="#888888", anchor=(0.5, 0.5))
        self.setZValue(10)
        plot.addItem(self, ignoreBounds=True)

    def show_if(self, empty: bool, plot: pg.PlotWidget) -> None:
        self.setVisible(empty)
        if empty:
            (x0, x1), (y0, y1) = plot.getPlotItem().viewRange()
            self.setPos((x0 + x1) / 2, (y0 + y1) / 2)


class StatsView(QWidget):
    """Tables of speed and agreement, bars of score distribution and of each model's results."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.summary = QLabel("Statistics appear here once they are computed.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.speed_table = _table(SPEED_COLUMNS)
        self.agreement_table = _table(AGREEMENT_COLUMNS)
        self.agreement_note = QLabel(
            "No item has been judged by two annotators yet; agreement appears once judgements "
            "overlap (merge the other workstations' project files)."
        )
        self.agreement_note.setWordWrap(True)
        self.agreement_note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.agreement_note.setStyleSheet("color: palette(dark);")
        self._build_score_plot()
        self._build_model_plot()

        tables = side_by_side(
            (
                titled("Annotators: counts and speed", self.speed_table),
                titled("Agreement", self.agreement_table, self.agreement_note),
            ),
            (4, 5),
        )
        plots = side_by_side(
            (
                titled("Score distribution per criterion", self.score_legend, self.score_plot),
                titled(
                    "How each model fares in human judgements", self.model_legend, self.model_plot
                ),
            ),
            (1, 1),
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(tables)
        split.addWidget(plots)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout.addWidget(split, 1)

    # ---- plots, made once ---------------------------------------------------------------------
    def _build_score_plot(self) -> None:
        self.score_plot = make_plot("ratings", "score (1–5)")
        self.score_legend = _legend_label()
        self.score_bars: dict[str, pg.BarGraphItem] = {}  # criterion → its bars, kept for good
        self._score_empty = EmptyNote(self.score_plot, "No score ratings yet")

    def _build_model_plot(self) -> None:
        self.model_plot = make_plot("fraction (0–1)")
        item = self.model_plot.getPlotItem()
        item.setYRange(0, 1.0, padding=0.03)
        item.getAxis("bottom").setHeight(44)  # two lines: the model and its rating count
        self.model_legend = _legend_label()
        self.model_legend.setText(
            legend_html([(PALETTE[i], name) for i, (_, name) in enumerate(MODEL_SERIES)])
            + " &nbsp; <span style='color:#999999'>- - -</span>&nbsp;even"
        )
        self.even_line = even = pg.InfiniteLine(
            pos=0.5, angle=0, pen=pg.mkPen("#999999", style=Qt.PenStyle.DashLine)
        )
        item.addItem(even, ignoreBounds=True)
        self.model_bars: dict[str, pg.BarGraphItem] = {}
        width = 0.8 / len(MODEL_SERIES)
        for i, key in enumerate(k for k, _ in MODEL_SERIES):
            bars = pg.BarGraphItem(x=[], height=[], width=width, brush=PALETTE[i], pen=None)
            item.addItem(bars)
            self.model_bars[key] = bars
        self._model_empty = EmptyNote(self.model_plot, "No samples rated yet")

    # ---- filling ------------------------------------------------------------------------------
    def show_stats(self, stats: dict[str, Any]) -> None:
        self.summary.setText(summary_line(stats))
        self._fill_speed(stats.get("speed") or {})
        self._fill_agreement(stats.get("agreement") or {})
        self._plot_scores(stats.get("score_distribution") or {})
        self._plot_models(stats.get("per_checkpoint") or {})

    def _fill_speed(self, speed: dict[str, Any]) -> None:
        people = speed.get("annotators") or {}
        rows = [(name, p, False) for name, p in people.items()]
        if len(people) > 1 and speed.get("all"):
            rows.append(("All", speed["all"], True))
        self.speed_table.setRowCount(len(rows))
        for r, (name, p, bold) in enumerate(rows):
            cells = [
                name,
                p["ratings"],
                p["timed"],
                fmt(p["median_seconds"], 1),
                fmt(p["items_per_hour"], 0),
            ]
            _set_row(self.speed_table, r, cells, bold)

    def _fill_agreement(self, agreement: dict[str, Any]) -> None:
        rows: list[tuple[list[Any], bool]] = []
        for kind in ("pairwise", "thumbs"):
            a = agreement.get(kind) or {}
            if not a.get("items"):
                continue
            alpha = f"{fmt(a['alpha_nominal'])} nom"
            rows.append(
                (
                    [
                        kind,
                        f"all {a['annotators']}",
                        a["items"],
                        fmt(a["raw_agreement"]),
                        "",
                        alpha,
                    ],
                    True,
                )
            )
            for p in a["pairs"]:
                cells = [
                    "",
                    " & ".join(p["annotators"]),
                    p["items"],
                    fmt(p["raw_agreement"]),
                    fmt(p["kappa"]),
                    "",
                ]
                rows.append((cells, False))
        for criterion, a in (agreement.get("scores") or {}).items():
            if a.get("items"):
                alpha = f"{fmt(a['alpha_interval'])} int · {fmt(a['alpha_ordinal'])} ord"
                cells = [f"score: {criterion}", f"all {a['annotators']}", a["items"], "", "", alpha]
                rows.append((cells, True))
        self.agreement_table.setRowCount(len(rows))
        for r, (cells, bold) in enumerate(rows):
            _set_row(self.agreement_table, r, cells, bold)
        self.agreement_table.setVisible(bool(rows))
        self.agreement_note.setVisible(not rows)

    def _plot_scores(self, distribution: dict[str, Any]) -> None:
        plot = self.score_plot.getPlotItem()
        criteria = list(distribution)
        n_bins = max((len(d["counts"]) for d in distribution.values()), default=5)
        width = 0.8 / max(len(criteria), 1)
        for i, criterion in enumerate(criteria):
            d = distribution[criterion]
            bars = self.score_bars.get(criterion)
            if bars is None:
                colour = PALETTE[len(self.score_bars) % len(PALETTE)]
                bars = pg.BarGraphItem(x=[], height=[], width=width, brush=colour, pen=None)
                plot.addItem(bars)
                self.score_bars[criterion] = bars
            offset = (i - (len(criteria) - 1) / 2) * width
            x = np.arange(len(d["counts"])) + offset
            bars.setOpts(x=x, height=np.asarray(d["counts"], dtype=float), width=width)
        for criterion, bars in self.score_bars.items():
            bars.setVisible(criterion in distribution)
        self.score_legend.setText(
            legend_html(
                [
                    (bars.opts["brush"], f"{c} (n={distribution[c]['n']})")
                    for c, bars in self.score_bars.items()
                    if c in distribution
                ]
            )
        )
        edges = next(iter(distribution.values()))["edges"] if distribution else None
        plot.getAxis("bottom").setTicks([_bin_ticks(n_bins, edges)])
        plot.setXRange(-0.5, n_bins - 0.5, padding=0.02)
        top = max((max(d["counts"], default=0) for d in distribution.values()), default=0)
        plot.setYRange(0, max(top, 1), padding=0.05)
        self._score_empty.show_if(not distribution, self.score_plot)

    def _plot_models(self, models: dict[str, Any]) -> None:
        plot = self.model_plot.getPlotItem()
        names = list(models)
        width = 0.8 / len(MODEL_SERIES)
        for i, (key, _name) in enumerate(MODEL_SERIES):
            xs = [j for j, m in enumerate(names) if _series(models[m], key) is not None]
            heights = [_series(models[names[j]], key) for j in xs]
            offset = (i - (len(MODEL_SERIES) - 1) / 2) * width
            self.model_bars[key].setOpts(
                x=np.asarray(xs, dtype=float) + offset, height=np.asarray(heights, dtype=float)
            )
        ticks = [
            (j, f"{short_model(m)}\n{models[m]['ratings']} ratings") for j, m in enumerate(names)
        ]
        plot.getAxis("bottom").setTicks([ticks])
        plot.setXRange(-0.5, max(len(names), 1) - 0.5, padding=0.02)
        self._model_empty.show_if(not names, self.model_plot)
        self.even_line.setVisible(bool(names))

    # ---- for tests and people -----------------------------------------------------------------
    def score_heights(self) -> dict[str, list[float]]:
        """The bar heights now shown per criterion (hidden criteria left out)."""
        return {
            c: [float(h) for h in bars.opts["height"]]
            for c, bars in self.score_bars.items()
            if bars.isVisible()
        }

    def model_heights(self) -> dict[str, list[float]]:
        return {k: [float(h) for h in bars.opts["height"]] for k, bars in self.model_bars.items()}


def _series(model: dict[str, Any], key: str) -> float | None:
    if key == "win_rate":
        return model["pairwise"]["win_rate"]
    return model.get(key)


def _bin_ticks(n_bins: int, edges: list[float] | None) -> list[tuple[int, str]]:
    """1–5 under the five bins a 1–5 rating falls in, with each bin's range of stored scores."""
    if not edges or len(edges) != n_bins + 1:
        return [(i, str(i + 1)) for i in range(n_bins)]
    return [(i, f"{i + 1}\n{edges[i]:.1f}–{edges[i + 1]:.1f}") for i in range(n_bins)]


def summary_line(stats: dict[str, Any]) -> str:
    kinds = stats.get("ratings_by_kind") or {}
    by_kind = ", ".join(f"{n} {k}" for k, n in kinds.items() if k != "skip")
    parts = [
        _plural(stats["prompts"], "prompt"),
        _plural(stats["samples"], "response"),
        _plural(stats["ratings"], "rating") + (f" ({by_kind})" if by_kind else ""),
        f"{stats['superseded']} undone",
        _plural(len(stats["annotators"]), "annotator"),
        _plural(stats["runs"], "run"),
        _plural(stats["checkpoints"], "checkpoint"),
    ]
    return " · ".join(parts)


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def titled(title: str, *widgets: QWidget) -> QWidget:
    """A bold title over ``widgets``; the last one takes the spare height."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    layout.addWidget(QLabel(f"<b>{title}</b>"))
    for w in widgets:
        layout.addWidget(w, 1 if w is widgets[-1] else 0)
    return box


def side_by_side(widgets: tuple[QWidget, ...], stretch: tuple[int, ...]) -> QWidget:
    """Widgets side by side, sharing the width by ``stretch`` (not by what each would like)."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for w, factor in zip(widgets, stretch, strict=True):
        policy = w.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        w.setSizePolicy(policy)
        layout.addWidget(w, factor)
    return row
