"""One editor per training-config field: the widget a field's type asks for, and how to read it.

A bool is a check box, ``metadata["choices"]`` a combo box, an int a spin box (``int | None``:
0 shows "auto" and means None), a float a spin box (very small or large defaults such as a
learning rate in scientific notation), a list a comma-separated line, anything else a line edit.
The tooltip is ``metadata["help"]``.
"""

from __future__ import annotations

import dataclasses
import html
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from core.training.config import unwrap_hint

LABELS = {
    "lr_schedule": "LR schedule",
    "lora": "LoRA",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_target": "LoRA targets",
    "bf16": "bf16",
    "kl_coef": "KL coefficient",
    "max_grad_norm": "Clip grad norm",
    "abort_grad_norm": "Abort at grad norm",
    "num_samples": "Samples per prompt (K)",
    "ppo_epochs": "Epochs per rollout",
    "rollouts_per_sampling": "Rollouts per sampling pass",
    "clip_eps": "Clip ε",
    "loss_type": "Loss type",
}
PLACEHOLDERS = {
    "annotators": "all annotators (comma-separated names)",
    "criterion": "mean of all criteria",
    "reward_model": "newest reward checkpoint",
    "rater": "MODULE:FUNC or path/to/file.py:func",
}
SUGGESTIONS = {"device": ("auto", "cpu", "cuda", "mps")}
INT_MAX = 2_000_000_000


def _sci(value: float) -> str:
    """3e-4, 1.5e-5, 1e4: how researchers write learning rates and thresholds."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


class ScientificSpinBox(QDoubleSpinBox):
    """A float spin box that shows and accepts ``3e-4``; the arrows halve and double the value."""

    _PARTIAL = re.compile(r"[0-9.]*([eE][+-]?[0-9]*)?")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(20)  # the box rounds to this many decimals; 1e-20 is below any use
        self.setRange(0.0, 1e30)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return _sci(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        try:
            value = float(text)
        except ValueError:
            partial = self._PARTIAL.fullmatch(text.strip())
            state = QValidator.State.Intermediate if partial else QValidator.State.Invalid
            return state, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        self.setValue(self.value() * 2.0**steps)


class DecimalSpinBox(QDoubleSpinBox):
    """A float spin box that writes 0.1 and 2, not 0.1000 and 2.0000."""

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        text = super().textFromValue(value)
        point = self.locale().decimalPoint()
        return text.rstrip("0").rstrip(point) if point in text else text


@dataclass
class FieldEditor:
    """One config field's widget and how to read and write its value."""

    name: str
    widget: QWidget
    get: Callable[[], Any]
    set: Callable[[Any], None]


def make_editor(f: dataclasses.Field, hint: Any, default: Any, changed: Callable) -> FieldEditor:
    """The widget for one field, its value set to ``default`` and wired to ``changed``."""
    kind, optional = unwrap_hint(hint)
    origin = typing.get_origin(kind) or kind
    choices = f.metadata.get("choices")
    name = f.name
    if kind is bool:
        w = QCheckBox()
        ed = FieldEditor(name, w, w.isChecked, lambda v: w.setChecked(bool(v)))
        signal = w.toggled
    elif choices or name in SUGGESTIONS:
        w = QComboBox()
        w.addItems([str(c) for c in (choices or SUGGESTIONS[name])])
        w.setEditable(not choices)

        def set_choice(v: Any, w: QComboBox = w) -> None:
            if w.findText(str(v)) < 0:
                w.addItem(str(v))
            w.setCurrentText(str(v))

        ed = FieldEditor(name, w, lambda: w.currentText().strip(), set_choice)
        signal = w.currentTextChanged
    elif kind is int:
        w = QSpinBox()
        w.setRange(0, INT_MAX)
        if optional:
            w.setSpecialValueText("auto")  # 0 shows as "auto" and means None

        def get_int(w: QSpinBox = w) -> int | None:
            return None if optional and w.value() == 0 else w.value()

        ed = FieldEditor(name, w, get_int, lambda v: w.setValue(int(v or 0)))
        signal = w.valueChanged
    elif kind is float:
        scientific = default not in (None, 0) and not 1e-2 <= abs(default) < 1e4
        w = ScientificSpinBox() if scientific else DecimalSpinBox()
        if not scientific:
            w.setDecimals(4)
            w.setRange(0.0, 1e6)
            w.setSingleStep(0.05 if (default or 0) <= 1 else 0.5)
        ed = FieldEditor(name, w, w.value, lambda v: w.setValue(float(v or 0)))
        signal = w.valueChanged
    elif name == "reward_model":
        w = QComboBox()
        w.setEditable(True)
        w.addItem("")
        w.lineEdit().setPlaceholderText(PLACEHOLDERS[name])
        ed = FieldEditor(
            name, w, lambda: w.currentText().strip() or None, lambda v: w.setCurrentText(v or "")
        )
        signal = w.currentTextChanged
    elif origin is list:
        w = QLineEdit()
        ed = FieldEditor(
            name,
            w,
            lambda: [s.strip() for s in w.text().split(",") if s.strip()] or None,
            lambda v: w.setText(", ".join(v or [])),
        )
        signal = w.textChanged
    else:
        w = QLineEdit()
        ed = FieldEditor(
            name,
            w,
            lambda: w.text().strip() or (None if optional else ""),
            lambda v: w.setText("" if v is None else str(v)),
        )
        signal = w.textChanged
    if isinstance(w, QLineEdit) and name in PLACEHOLDERS:
        w.setPlaceholderText(PLACEHOLDERS[name])
    ed.set(default)
    signal.connect(changed)  # after the default, so building the form reports no change
    help_text = html.escape(str(f.metadata.get("help", "")))
    w.setToolTip(f"<b>{name}</b>: {help_text}<br>default: {html.escape(repr(default))}")
    w.setObjectName(f"field_{name}")
    return ed
