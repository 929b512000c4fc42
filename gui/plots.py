"""Live training curves: reward, loss, KL, accuracy, per-token log-probs and entropy, with earlier
runs overlaid for comparison and the run's diagnostic alerts marked at their step.

Following pyqtgraph's scrollingPlots example: every curve is created once; a step only appends to
numpy arrays, and a QTimer (100 ms) calls ``setData`` on the curves that got new points. Curves
downsample by peak and clip to the view, so a run of many thousand steps stays smooth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QWidget

# (key, title, metric names it shows, first present wins). Names follow TRL.
PLOTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("reward", "Reward", ("reward", "rewards/margins", "mean_reward")),
    ("loss", "Loss", ("loss",)),
    ("kl", "KL", ("kl",)),
    ("accuracy", "Accuracy", ("rewards/accuracies", "accuracy")),
    ("logps", "Log-prob per token", ("logps/chosen_per_token",)),
    ("entropy", "Entropy", ("entropy",)),
)
# A second, dashed curve in a plot: what its title says in parentheses.
SECOND: dict[str, tuple[str, str]] = {
    "accuracy": ("eval/accuracy", "dashed: held-out pairs"),
    "logps": ("logps/rejected_per_token", "chosen; dashed: rejected"),
}
LEGEND_PLOT = "loss"  # its top right is usually free: a loss falls
PLOTTED_METRICS = tuple(name for _key, _title, names in PLOTS for name in names) + tuple(
    name for name, _note in SECOND.values()
)
ALERT_PEN = pg.mkPen("#c62828", width=1.5, style=Qt.PenStyle.DashLine)
LIVE_PEN = pg.mkPen("#1f77b4", width=2)
OVERLAY_COLORS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
SYMBOLS_UP_TO = 40  # points are marked while a curve is short, so 1-3 steps are visible
REDRAW_MS = 100


def pick_metric(metrics: Mapping[str, float], names: Iterable[str]) -> str | None:
    """The first of ``names`` that ``metrics`` has (e.g. ``reward`` before ``rewards/margins``)."""
    return next((n for n in names if n in metrics), None)


class Series:
    """A growing (x, y) pair of float arrays; appending is amortised O(1)."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity)
        self._y = np.empty(capacity)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n], self._y[self.n] = x, y
        self.n += 1

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x[: self.n], self._y[: self.n]


class MetricPlots(pg.GraphicsLayoutWidget):
    """Six plots (3 × 2, x = step, linked) of the live run plus any overlaid earlier runs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground("w")
        self.plots: dict[str, pg.PlotItem] = {}
        self.live: dict[str, pg.PlotDataItem] = {}
        self._series: dict[str, Series] = {}
        self._metric: dict[str, str | None] = {}  # which name feeds each plot in the live run
        self._dirty: set[str] = set()
        self._overlays: dict[int, list[pg.PlotDataItem]] = {}
        self.second: dict[str, pg.PlotDataItem] = {}
        self._alert_lines: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        first = None
        for i, (key, title, _names) in enumerate(PLOTS):
            plot = self.addPlot(row=i // 2, col=i % 2)
            plot.setDownsampling(mode="peak")
            plot.setClipToView(True)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "step")
            plot.setTitle(title, color="#222", size="10pt")
            for side in ("left", "bottom"):
                plot.getAxis(side).setPen("#888")
                plot.getAxis(side).setTextPen("#333")
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if key == LEGEND_PLOT:
                self.legend = plot.addLegend(offset=(-8, 8), labelTextColor="#222")
                self.legend.setBrush(pg.mkBrush(255, 255, 255, 200))
            curve = plot.plot(pen=LIVE_PEN, symbolSize=5)  # in the legend once a run starts
            curve.setSymbol("o")
            curve.setSymbolBrush(LIVE_PEN.color())
            curve.setSymbolPen(None)
            self.plots[key], self.live[key] = plot, curve
            self._series[key] = Series()
            self._metric[key] = None
            if key in SECOND:
                dashed = pg.mkPen(LIVE_PEN.color(), width=2, style=Qt.PenStyle.DashLine)
                self.second[key] = plot.plot(pen=dashed)
                self._series[key + "/2"] = Series()
        self._missing: set[str] = set()  # plots the live run logs nothing for
        self._redraw = QTimer(self)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.flush)
        self._redraw.start()

    # ---- the live run ---------------------------------------------------------------------------
    def start_run(self, label: str = "this run") -> None:
        """Empty the live curves for a new run (overlays stay)."""
        for key, curve in self.live.items():
            self._series[key] = Series()
            self._metric[key] = None
            curve.setData([], [])
            curve.setSymbol("o")
        for key, curve in self.second.items():
            self._series[key + "/2"] = Series()
            curve.setData([], [])
        for plot, line in self._alert_lines:
            plot.removeItem(line)
        self._alert_lines.clear()
        self._missing.clear()
        for key in self.plots:
            self._set_title(key)
        self._dirty.clear()
        self.set_live_label(label)

    def set_live_label(self, label: str) -> None:
        curve = self.live[LEGEND_PLOT]
        self.legend.removeItem(curve)  # no-op when it is not there yet
        self.legend.addItem(curve, label)

    def add_step(self, step: int, metrics: Mapping[str, float]) -> None:
        """Queue one step's metrics; the timer draws them (never more than ~10 redraws a second)."""
        for key, _title, names in PLOTS:
            name = self._metric[key] or pick_metric(metrics, names)
            if name is None or name not in metrics:
                continue
            if self._metric[key] is None:
                self._metric[key] = name
                self._set_title(key)
            self._series[key].append(step, float(metrics[name]))
            self._dirty.add(key)
            if key in SECOND and SECOND[key][0] in metrics:
                self._series[key + "/2"].append(step, float(metrics[SECOND[key][0]]))
        for key in self.plots:
            if self._metric[key] is None and key not in self._missing:
                self._missing.add(key)
                self._set_title(key)

    def flush(self) -> None:
        """Hand the new points to their curves (the timer calls this; tests may call it too)."""
        for key in self._dirty:
            x, y = self._series[key].data()
            curve = self.live[key]
            if len(x) > SYMBOLS_UP_TO and curve.opts["symbol"] is not None:
                curve.setSymbol(None)
            curve.setData(x, y)
            if key in self.second:
                self.second[key].setData(*self._series[key + "/2"].data())
        self._dirty.clear()

    def mark_alert(self, step: int, rule: str) -> None:
        """A red dashed line at ``step`` on every plot; the first plot names the rule."""
        for i, plot in enumerate(self.plots.values()):
            options = {"position": 0.9, "color": "#c62828"} if i == 0 else None
            line = pg.InfiniteLine(
                pos=step, angle=90, pen=ALERT_PEN, label=rule if i == 0 else None, labelOpts=options
            )
            plot.addItem(line)
            self._alert_lines.append((plot, line))

    def alert_marks(self) -> list[float]:
        """The steps marked on the first plot (for tests)."""
        first = next(iter(self.plots.values()))
        return [line.value() for plot, line in self._alert_lines if plot is first]

    def live_points(self, key: str) -> int:
        """How many points the live curve of plot ``key`` shows now."""
        x, _y = self.live[key].getOriginalDataset()  # getData() is clipped to the view
        return 0 if x is None else len(x)

    def live_metric(self, key: str) -> str | None:
        """The metric name feeding plot ``key`` in the live run (None before its first point)."""
        return self._metric[key]

    def _set_title(self, key: str) -> None:
        title, names = next((t, n) for k, t, n in PLOTS if k == key)
        name, note = self._metric[key], ""
        if name and len(names) > 1:
            note = name  # which of the candidates this algorithm logs
        elif name and key in SECOND:
            note = SECOND[key][1]
        elif key in self._missing:
            note = "not logged by this algorithm"
        shown = f"{title}  <span style='color:#777'>({note})</span>" if note else title
        self.plots[key].setTitle(shown, color="#222", size="10pt")

    # ---- earlier runs ---------------------------------------------------------------------------
    def set_overlay(
        self, run_id: int, label: str, history: Iterable[tuple[int, Mapping[str, float]]]
    ) -> None:
        """Show run ``run_id`` dashed beside the live run; ``history`` is [(step, metrics)]."""
        self.remove_overlay(run_id)
        series: dict[str, tuple[list[int], list[float]]] = {}
        for step, metrics in history:
            for name, value in metrics.items():
                steps, values = series.setdefault(name, ([], []))
                steps.append(step)
                values.append(value)
        color = OVERLAY_COLORS[run_id % len(OVERLAY_COLORS)]
        pen = pg.mkPen(color, width=1.5, style=Qt.PenStyle.DashLine)
        curves = []
        for key, _title, names in PLOTS:
            # the live run's choice first, so a comparison puts like beside like
            name = pick_metric(series, [n for n in (self._metric[key], *names) if n])
            steps, values = series.get(name, ([], [])) if name else ([], [])
            curve = self.plots[key].plot(
                steps, values, pen=pen, name=label if key == LEGEND_PLOT else None
            )
            curve.setZValue(-1)  # under the live curve
            curves.append(curve)
        self._overlays[run_id] = curves

    def remove_overlay(self, run_id: int) -> None:
        curves = self._overlays.pop(run_id, None)
        if not curves:
            return
        for (key, _title, _names), curve in zip(PLOTS, curves, strict=True):
            if key == LEGEND_PLOT:
                self.legend.removeItem(curve)
            self.plots[key].removeItem(curve)

    def overlaid_runs(self) -> list[int]:
        return sorted(self._overlays)

    def overlay_points(self, run_id: int, key: str) -> int:
        curves = self._overlays.get(run_id)
        if not curves:
            return 0
        x, _y = curves[[k for k, _t, _n in PLOTS].index(key)].getOriginalDataset()
        return 0 if x is None else len(x)

    # ---- export ---------------------------------------------------------------------------------
    def save_png(self, path: str | Path, key: str | None = None) -> Path:
        """Write all four plots (or plot ``key``) to a PNG, as they are on screen."""
        from pyqtgraph.exporters import ImageExporter

        self.flush()
        item = self.ci if key is None else self.plots[key]
        exporter = ImageExporter(item)
        # on-screen size: scaling up renders the legend's text smaller than the axes'
        exporter.parameters()["width"] = max(1, int(item.boundingRect().width()))
        path = Path(path)
        exporter.export(str(path))
        return path

    def shutdown(self) -> None:
        self._redraw.stop()
