"""The Train tab's settings form, generated from the algorithm's config dataclass.

Every field of ``core.training.config.config_for(algo, device)`` becomes an editor
(gui/train_fields.py) showing the device's default, with ``metadata["help"]`` as its tooltip;
``metadata["group"]`` makes the sections. New fields in core show up here without a change.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.training import (
    ALGORITHMS,
    ALGOS,
    TrainConfig,
    algorithm,
    config_for,
    device_kind,
    lora_defaults,
)
from gui.train.fields import LABELS, FieldEditor, make_editor

ALGO_TITLES = {name: entry.title for name, entry in ALGORITHMS.items()}
GROUP_TITLES = {
    **ALGO_TITLES,
    "run": "Starting model",
    "training": "Optimisation",
    "data": "Data",
    "model": "Model and device",
    "checkpoints": "Checkpoints",
}
COLLAPSED = {"data", "model", "checkpoints"}
HIDDEN = {"algo"}  # the algorithm picker above the form sets it
DEFAULT_ALGO = "dpo"


class Section(QWidget):
    """A titled group of fields that folds away behind its header."""

    def __init__(self, title: str, expanded: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.header = QToolButton(text=title, checkable=True, checked=expanded)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(14, 0, 0, 4)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(self.body)
        self.header.toggled.connect(self._show)
        self._show(expanded)

    def _show(self, expanded: bool) -> None:
        self.body.setVisible(expanded)
        arrow = Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow
        self.header.setArrowType(arrow)


class TrainForm(QWidget):
    """The algorithm picker and its settings; ``config()`` is what Start trains with."""

    algo_changed = Signal(str)
    """Another algorithm was picked (the form was rebuilt with its fields)."""
    changed = Signal(str)
    """A field's value changed (its name)."""

    def __init__(self, device: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.device = device
        self.editors: dict[str, FieldEditor] = {}
        self.sections: dict[str, Section] = {}
        self._defaults: dict[str, Any] = {}
        self._placeholders: dict[str, str] = {}
        self._reward_specs: list[tuple[str, str]] = []
        self.algo_combo = QComboBox()
        for algo in ALGOS:
            self.algo_combo.addItem(ALGO_TITLES.get(algo, algo), algo)
        self.algo_combo.setToolTip("The training algorithm; each keeps its own settings below.")
        self.about = QLabel(wordWrap=True)
        self.about.setStyleSheet("color: #555")
        self._fields = QWidget()
        self._fields_layout = QVBoxLayout(self._fields)
        self._fields_layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.addRow("Algorithm", self.algo_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.about)
        layout.addWidget(self._fields)
        self.algo_combo.currentIndexChanged.connect(lambda _i: self.set_algo(self.algo))
        self.set_algo(DEFAULT_ALGO if DEFAULT_ALGO in ALGOS else ALGOS[0])

    @property
    def algo(self) -> str:
        return str(self.algo_combo.currentData())

    def set_algo(self, algo: str) -> None:
        """Rebuild the fields for ``algo``; values the user changed carry over where they apply."""
        if self.editors and algo == self._defaults.get("algo"):
            return
        kept = {k: v for k, v in self.values().items() if v != self._defaults.get(k)}
        kept.pop("algo", None)
        self.algo_combo.blockSignals(True)
        self.algo_combo.setCurrentIndex(self.algo_combo.findData(algo))
        self.algo_combo.blockSignals(False)
        defaults = config_for(algo, self.device)
        self._defaults = dataclasses.asdict(defaults)
        self.about.setText((type(defaults).__doc__ or "").strip().splitlines()[0])
        self._build(type(defaults), defaults)
        for name, value in kept.items():
            if name in self.editors:
                self.editors[name].set(value)
        self.algo_changed.emit(algo)

    def _build(self, cls: type[TrainConfig], defaults: TrainConfig) -> None:
        for section in self.sections.values():
            section.setParent(None)
            section.deleteLater()
        self.editors.clear()
        self.sections.clear()
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.name not in HIDDEN]
        groups = [str(f.metadata.get("group", "training")) for f in fields]
        order = [defaults.algo, "run", "training", "data", "model", "checkpoints"]
        for group in [*order, *dict.fromkeys(groups)]:
            members = [f for f, g in zip(fields, groups, strict=True) if g == group]
            if not members or group in self.sections:
                continue
            section = Section(GROUP_TITLES.get(group, group.title()), group not in COLLAPSED)
            self.sections[group] = section
            self._fields_layout.addWidget(section)
            for f in members:
                ed = make_editor(
                    f,
                    hints.get(f.name, str),
                    getattr(defaults, f.name),
                    lambda *_a, n=f.name: self._on_changed(n),
                )
                self.editors[f.name] = ed
                label = QLabel(LABELS.get(f.name, f.name.replace("_", " ").capitalize()))
                label.setToolTip(ed.widget.toolTip())
                section.form.addRow(label, ed.widget)
        for name, text in self._placeholders.items():
            self.set_placeholder(name, text)
        self.set_reward_checkpoints(self._reward_specs)

    def _on_changed(self, name: str) -> None:
        if name == "lora":
            self._follow_lora()
        self.changed.emit(name)

    def _follow_lora(self) -> None:
        """LoRA and full fine-tuning want ~10x different rates, and on a CPU different tokens per
        pass: keep those defaults in step, unless the user chose a value of their own."""
        if "lora" not in self.editors:
            return
        lora = self.editors["lora"].get()
        kind = device_kind(self.device)
        before = lora_defaults(self.algo, kind, not lora)
        for name, value in lora_defaults(self.algo, kind, lora).items():
            if name not in self.editors:
                continue
            editor = self.editors[name]
            if editor.get() in (before[name], self._defaults.get(name)):
                editor.set(value)
            self._defaults[name] = value
        self._defaults["lora"] = lora

    # ---- values ---------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        return {"algo": self.algo, **{n: ed.get() for n, ed in self.editors.items()}}

    def value(self, name: str) -> Any:
        return self.editors[name].get()

    def set_value(self, name: str, value: Any) -> None:
        self.editors[name].set(value)

    def config(self) -> TrainConfig:
        """The config the form describes, validated (``UserError`` says which field is wrong)."""
        cfg = algorithm(self.algo).config(**self.values())
        cfg.validate()
        return cfg

    def reset(self) -> None:
        """Every field back to the device's default for this algorithm."""
        self._defaults = dataclasses.asdict(config_for(self.algo, self.device))
        for name, value in self._defaults.items():
            if name in self.editors:
                self.editors[name].set(value)

    # ---- hints from the project -----------------------------------------------------------------
    def set_placeholder(self, name: str, text: str) -> None:
        """Grey text an empty field shows (e.g. the project's model for ``model``)."""
        self._placeholders[name] = text
        widget = self.editors[name].widget if name in self.editors else None
        if isinstance(widget, QLineEdit):
            widget.setPlaceholderText(text)

    def set_reward_checkpoints(self, specs: list[tuple[str, str]]) -> None:
        """(spec, description) of the reward checkpoints ``reward_model`` offers."""
        self._reward_specs = list(specs)
        ed = self.editors.get("reward_model")
        if ed is None or not isinstance(ed.widget, QComboBox):
            return
        box, current = ed.widget, ed.get()
        box.blockSignals(True)
        box.clear()
        box.addItem("")
        for spec, text in specs:
            box.addItem(spec)
            box.setItemData(box.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        box.setCurrentText(current or "")
        box.blockSignals(False)


class TrainControls(QWidget):
    """The Train tab's left column: the form (scrolling), the data line and the run buttons."""

    def __init__(self, device: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.form = TrainForm(device)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.data_label = QLabel("Counting training data…", wordWrap=True)
        self.data_label.setToolTip("What the ratings in the project make for this algorithm.")
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train with these settings on the ratings that exist now.")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Wait after the current step (the model stays loaded).")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(
            "End after the current step; a checkpoint is saved so the run can be resumed "
            "(Runs tab)."
        )
        reset = QPushButton("Defaults")
        reset.setToolTip("Every setting back to its default for this algorithm and device.")
        reset.clicked.connect(self.form.reset)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.data_label)
        layout.addLayout(buttons)
        layout.addWidget(reset, 0, Qt.AlignmentFlag.AlignLeft)

    def set_state(self, state: str) -> None:
        """Enable the buttons that apply: idle, starting, running, paused or stopping."""
        self.start_button.setEnabled(state == "idle")
        self.pause_button.setEnabled(state in ("starting", "running"))
        self.resume_button.setEnabled(state == "paused")
        self.stop_button.setEnabled(state in ("starting", "running", "paused"))

    def show_data_line(self, text: str, enough: bool) -> None:
        self.data_label.setText(text)
        self.data_label.setStyleSheet("" if enough else "color: #b00020")
