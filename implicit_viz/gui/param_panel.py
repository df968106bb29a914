"""Sliders for a spec's scalar params and seed boxes for its random tensors.

The spec's text gives each param its range and default; the sliders override the value. When
the spec is edited the panel keeps what the user pulled, unless the text changed that value.
"""

from __future__ import annotations

import math
import sys

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFormLayout, QLabel, QWidget
from superqt import QLabeledDoubleSlider, QLargeIntSpinBox

from implicit_viz.core.spec import ParamSpec, Spec
from implicit_viz.gui.session import SEED_MAX, SEED_MIN

#: Slider positions per range: the step is (max - min) / STEPS.
STEPS = 1000
#: Where ``max - min`` of a range overflows, the slider's ends are clipped to +-SLIDER_LIMIT
#: (half the largest float), so the span the slider divides by stays finite.
SLIDER_LIMIT = sys.float_info.max / 2
_FMAX = sys.float_info.max


def slider_range(p: ParamSpec) -> tuple[float, float]:
    """The slider's ends for ``p``: its range with infinite ends (an automatic range of a huge
    value reaches inf) at the largest float, and, where ``max - min`` would overflow, clipped
    to +-:data:`SLIDER_LIMIT`. Always finite, ``lo < hi`` and ``hi - lo`` finite."""
    lo = -1.0 if math.isnan(p.min) else max(float(p.min), -_FMAX)
    hi = 1.0 if math.isnan(p.max) else min(float(p.max), _FMAX)
    if not math.isfinite(hi - lo):
        lo, hi = max(lo, -SLIDER_LIMIT), min(hi, SLIDER_LIMIT)
    if not lo < hi:  # pragma: no cover - the spec guarantees min < max
        lo, hi = -1.0, 1.0
    return lo, hi


def slider_steps(lo: float, hi: float) -> tuple[int, float, float]:
    """``(decimals, single step, page step)`` for a slider over ``[lo, hi]`` (finite,
    ``lo < hi``), computed without overflow: ``hi - lo`` may exceed the largest float."""
    step = hi / STEPS - lo / STEPS  # finite: each term is at most max / STEPS
    page = hi / 20 - lo / 20
    if not step > 0:  # a span so small that /STEPS underflows
        step = page = hi - lo
    decimals = max(2, min(8, 3 - math.floor(math.log10(step * STEPS))))
    return decimals, step, page


class ParamPanel(QWidget):
    """One labelled slider per scalar param, one seed box per randomly drawn tensor.

    Signals
    -------
    changed()
        A value or a seed changed (while a slider is dragged, on every move).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._form = QFormLayout(self)
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self._sliders: dict[str, QLabeledDoubleSlider] = {}
        self._seeds: dict[str, QLargeIntSpinBox] = {}
        self._structure: tuple = ()
        self._spec_values: dict[str, float] = {}
        self._spec_seeds: dict[str, int] = {}
        self._empty = QLabel("This spec has no params.")
        self._empty.setEnabled(False)
        self._form.addRow(self._empty)

    # state -----------------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """Slider values, param name -> value."""
        return {name: float(s.value()) for name, s in self._sliders.items()}

    def seeds(self) -> dict[str, int]:
        """Seed boxes, tensor name -> seed."""
        return {name: int(b.value()) for name, b in self._seeds.items()}

    def slider(self, name: str) -> QLabeledDoubleSlider:
        return self._sliders[name]

    def seed_box(self, name: str) -> QLargeIntSpinBox:
        return self._seeds[name]

    def set_values(self, values: dict[str, float], seeds: dict[str, int] | None = None) -> None:
        """Set sliders (clamped to their ranges) and seeds; unknown names are ignored.
        Emits ``changed`` once if anything moved."""
        moved = False
        for name, v in values.items():
            s = self._sliders.get(name)
            if s is not None and not math.isnan(v):
                v = min(max(float(v), s.minimum()), s.maximum())
                if s.value() != v:
                    s.blockSignals(True)
                    s.setValue(v)
                    s.blockSignals(False)
                    moved = True
        for name, seed in (seeds or {}).items():
            b = self._seeds.get(name)
            if b is not None and b.minimum() <= int(seed) <= b.maximum() and b.value() != int(seed):
                b.blockSignals(True)
                b.setValue(int(seed))
                b.blockSignals(False)
                moved = True
        if moved:
            self.changed.emit()

    def set_spec(self, spec: Spec) -> None:
        """Build controls for ``spec``. Values the user set survive an edit of the spec, unless
        the text changed that param's value (or that tensor's seed). Emits no signal."""
        structure = (
            tuple((p.name, p.min, p.max) for p in spec.params),
            tuple(t.name for t in spec.tensors if t.is_random),
        )
        current_v, current_s = self.values(), self.seeds()
        new_v = {}
        for p in spec.params:
            keep = p.name in current_v and self._spec_values.get(p.name) == p.value
            new_v[p.name] = current_v[p.name] if keep else p.value
        new_s = {}
        for t in spec.tensors:
            if t.is_random:
                keep = t.name in current_s and self._spec_seeds.get(t.name) == t.seed
                new_s[t.name] = current_s[t.name] if keep else t.seed
        if structure != self._structure:
            self._rebuild(spec)
            self._structure = structure
        self._spec_values = {p.name: p.value for p in spec.params}
        self._spec_seeds = {t.name: t.seed for t in spec.tensors if t.is_random}
        self.blockSignals(True)
        try:
            self.set_values(new_v, new_s)
        finally:
            self.blockSignals(False)

    # building --------------------------------------------------------------------------------
    def _rebuild(self, spec: Spec) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)  # deletes the row's widgets
        self._sliders.clear()
        self._seeds.clear()
        for p in spec.params:
            s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            lo, hi = slider_range(p)
            decimals, step, page = slider_steps(lo, hi)
            s.setDecimals(decimals)
            s.setRange(lo, hi)
            s.setSingleStep(step)
            s.setPageStep(page)
            s.setValue(min(max(p.value, lo), hi))
            s.setObjectName(f"param_{p.name}")
            clipped = (lo, hi) != (p.min, p.max)
            tip = (
                f"{p.name} in [{p.min:g}, {p.max:g}]"
                + (f" (the slider covers [{lo:g}, {hi:g}])" if clipped else "")
                + (f": {p.description}" if p.description else "")
            )
            s.setToolTip(tip)
            label = QLabel(p.name)
            label.setToolTip(tip)
            s.valueChanged.connect(lambda _v: self.changed.emit())
            self._form.addRow(label, s)
            self._sliders[p.name] = s
        for t in spec.tensors:
            if not t.is_random:
                continue
            b = QLargeIntSpinBox()
            # any seed the spec holds fits (no overflow); a session's seeds lie in SEED_MIN..MAX
            b.setRange(min(SEED_MIN, t.seed), max(SEED_MAX, t.seed))
            b.setValue(t.seed)
            b.setObjectName(f"seed_{t.name}")
            b.setToolTip(f"seed of the random tensor {t.name} {list(t.shape)} ({t.init})")
            b.valueChanged.connect(lambda _v: self.changed.emit())
            self._form.addRow(QLabel(f"{t.name} seed"), b)
            self._seeds[t.name] = b
        if not self._sliders and not self._seeds:
            self._empty = QLabel("This spec has no params.")
            self._empty.setEnabled(False)
            self._form.addRow(self._empty)
