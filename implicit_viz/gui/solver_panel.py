"""The solver panel: which solvers run (several, to compare), tol, max_iter, each solver's
options, device and dtype. It produces a :class:`~implicit_viz.core.live.SolverSettings`.

Built from the solver registry: one check box per registered solver, and under it one control
per option the solver declares (:meth:`~implicit_viz.core.solvers.base.Solver.option_specs`),
with the option's range, default and help. A newly registered solver shows up here unchanged.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from implicit_viz.core.limits import MAX_TOL
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.solver_settings import MAX_LIVE_ITER
from implicit_viz.core.solvers import available_solvers, solver_class
from implicit_viz.core.solvers.options import OptionSpec

OptionControl = QSpinBox | QDoubleSpinBox | QCheckBox


def option_control(spec: OptionSpec) -> OptionControl:
    """A control for one solver option: a check box for a yes/no option, else a spin box over
    its range (an open end is approached by one step of the last decimal); its default; its
    help as tooltip."""
    if spec.kind is bool:
        check = QCheckBox()
        check.setChecked(bool(spec.default))
        check.setToolTip(f"{spec.help} (default {'on' if spec.default else 'off'})")
        return check
    if spec.kind is int:
        box: QSpinBox | QDoubleSpinBox = QSpinBox()
        lo = int(spec.ui_min) + (1 if spec.low_open else 0)
        hi = int(spec.ui_max) - (1 if spec.high_open and spec.high is not None else 0)
        box.setRange(max(lo, -(2**31) + 1), min(hi, 2**31 - 1))
    else:
        box = QDoubleSpinBox()
        box.setDecimals(6 if spec.default and abs(spec.default) < 1e-2 else 3)
        eps = 10.0 ** -box.decimals()
        lo = spec.ui_min + (eps if spec.low_open else 0.0)
        hi = spec.ui_max - (eps if spec.high_open and spec.high is not None else 0.0)
        box.setRange(lo, hi)
        box.setSingleStep(0.05 if hi - lo <= 10 else 1.0)
    box.setValue(spec.default)
    box.setToolTip(f"{spec.help} (range {spec.range_text()}, default {spec.default:g})")
    return box


def read_control(box: OptionControl, spec: OptionSpec) -> bool | int | float:
    """The value a control shows, of its option's type."""
    if isinstance(box, QCheckBox):
        return box.isChecked()
    return int(box.value()) if spec.kind is int else float(box.value())


def write_control(box: OptionControl, value: bool | int | float) -> None:
    if isinstance(box, QCheckBox):
        box.setChecked(bool(value))
    else:
        box.setValue(value)


class SolverPanel(QWidget):
    """Controls for :class:`SolverSettings`; ``changed`` fires on every accepted edit."""

    changed = Signal()

    def __init__(self, devices: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        self._names = tuple(available_solvers())
        self._checks: dict[str, QCheckBox] = {}
        #: (solver, option) -> its control
        self._options: dict[tuple[str, str], OptionControl] = {}
        self._specs: dict[tuple[str, str], OptionSpec] = {}
        for name in self._names:
            cls = solver_class(name)
            cb = QCheckBox(name)
            cb.setObjectName(f"solver_{name}")
            cb.setToolTip(cls.summary or cls.label or name)
            cb.toggled.connect(self._on_toggle)
            form.addRow(cb)
            self._checks[name] = cb
            for spec in cls.option_specs():
                box = option_control(spec)
                box.setObjectName(f"option_{name}_{spec.name}")
                signal = box.toggled if isinstance(box, QCheckBox) else box.valueChanged
                signal.connect(self._emit)
                form.addRow(f"    {spec.label or spec.name}", box)
                self._options[(name, spec.name)] = box
                self._specs[(name, spec.name)] = spec

        self.tol = QLineEdit()
        self.tol.setToolTip("absolute tolerance on ||f(z) - z||, e.g. 1e-6")
        self.tol.editingFinished.connect(self._on_tol)
        form.addRow("tol", self.tol)

        self.max_iter = QSpinBox()
        self.max_iter.setRange(1, MAX_LIVE_ITER)
        self.max_iter.setToolTip("step budget per solver")
        form.addRow("max_iter", self.max_iter)

        self.device = QComboBox()
        self.device.addItems(devices or ["cpu"])
        form.addRow("device", self.device)
        self.dtype = QComboBox()
        self.dtype.addItems(["float64", "float32"])
        form.addRow("dtype", self.dtype)

        self._tol_value = SolverSettings().tol
        self.set_settings(SolverSettings())
        self.max_iter.valueChanged.connect(self._emit)
        self.device.currentIndexChanged.connect(self._emit)
        self.dtype.currentIndexChanged.connect(self._emit)
        self._updating = False

    # state -----------------------------------------------------------------------------------
    def settings(self) -> SolverSettings:
        options: dict[str, dict[str, float | int]] = {}
        for (name, opt), box in self._options.items():
            spec = self._specs[(name, opt)]
            value = read_control(box, spec)
            if value != spec.default:
                options.setdefault(name, {})[opt] = value
        return SolverSettings(
            solvers=tuple(n for n in self._names if self._checks[n].isChecked()),
            tol=self._tol_value,
            max_iter=int(self.max_iter.value()),
            options=options,
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
        )

    def set_settings(self, s: SolverSettings) -> None:
        """Show ``s`` (unknown devices fall back to the first one); emits ``changed`` once."""
        self._updating = True
        try:
            wanted = set(s.solvers) or {self._names[0]}
            for name, cb in self._checks.items():
                cb.setChecked(name in wanted)
            self._tol_value = s.tol
            self.tol.setText(f"{s.tol:g}")
            self.tol.setStyleSheet("")
            self.max_iter.setValue(s.max_iter)
            for (name, opt), box in self._options.items():
                write_control(box, s.option(name, opt))
            i = self.device.findText(s.device)
            self.device.setCurrentIndex(max(i, 0))
            self.dtype.setCurrentIndex(max(self.dtype.findText(s.dtype), 0))
        finally:
            self._updating = False
        self._emit()

    def check(self, name: str) -> QCheckBox:
        return self._checks[name]

    def option_box(self, solver: str, option: str) -> OptionControl:
        """The control of ``solver``'s ``option``."""
        return self._options[(solver, option)]

    # slots -----------------------------------------------------------------------------------
    def _emit(self, *_args) -> None:
        if not getattr(self, "_updating", True):
            self.changed.emit()

    def _on_toggle(self, _checked: bool) -> None:
        # At least one solver stays on: unticking the last one is undone.
        if getattr(self, "_updating", True):
            return
        if not any(cb.isChecked() for cb in self._checks.values()):
            sender = self.sender()
            if isinstance(sender, QCheckBox):
                sender.blockSignals(True)
                sender.setChecked(True)
                sender.blockSignals(False)
            return
        self._emit()

    def _on_tol(self) -> None:
        text = self.tol.text().strip()
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not 0 < v <= MAX_TOL:
            self.tol.setStyleSheet("QLineEdit { border: 1px solid #d62728; }")
            self.tol.setToolTip(
                f"'{text}' is not a tolerance in (0, {MAX_TOL:g}]; tol stays {self._tol_value:g}"
            )
            return
        self.tol.setStyleSheet("")
        self.tol.setToolTip("absolute tolerance on ||f(z) - z||, e.g. 1e-6")
        if v != self._tol_value:
            self._tol_value = v
            self._emit()
