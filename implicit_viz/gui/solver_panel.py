"""The solver panel: which solvers run (several, to compare), tol, max_iter, damping, Anderson
memory, device and dtype. It produces a :class:`~implicit_viz.core.live.SolverSettings`."""

from __future__ import annotations

import math

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from implicit_viz.core.limits import MAX_TOL
from implicit_viz.core.live import SOLVER_NAMES, SolverSettings

_TIPS = {
    "fixed_point": "naive iteration z <- f(z)",
    "damped": "damped iteration z <- (1 - beta) z + beta f(z)",
    "anderson": "Anderson acceleration: mixes the last m iterates",
    "newton": "Newton's method on g(z) = z - f(z), Jacobian by autograd",
    "broyden": "Broyden's quasi-Newton method (rank-one Jacobian updates)",
}


class SolverPanel(QWidget):
    """Controls for :class:`SolverSettings`; ``changed`` fires on every accepted edit."""

    changed = Signal()

    def __init__(self, devices: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        grid = QGridLayout()
        self._checks: dict[str, QCheckBox] = {}
        for i, name in enumerate(SOLVER_NAMES):
            cb = QCheckBox(name)
            cb.setObjectName(f"solver_{name}")
            cb.setToolTip(_TIPS[name])
            cb.toggled.connect(self._on_toggle)
            grid.addWidget(cb, i // 2, i % 2)
            self._checks[name] = cb
        form.addRow("Solvers", grid)

        self.tol = QLineEdit()
        self.tol.setToolTip("absolute tolerance on ||f(z) - z||, e.g. 1e-6")
        self.tol.editingFinished.connect(self._on_tol)
        form.addRow("tol", self.tol)

        self.max_iter = QSpinBox()
        self.max_iter.setRange(1, 100_000)
        self.max_iter.setToolTip("step budget per solver")
        form.addRow("max_iter", self.max_iter)

        self.beta = QDoubleSpinBox()
        self.beta.setRange(0.01, 1.0)
        self.beta.setSingleStep(0.05)
        self.beta.setDecimals(3)
        self.beta.setToolTip("damping of the damped solver, in (0, 1]")
        form.addRow("damping β", self.beta)

        self.anderson_m = QSpinBox()
        self.anderson_m.setRange(1, 50)
        self.anderson_m.setToolTip("Anderson memory: how many past iterates are mixed")
        form.addRow("Anderson m", self.anderson_m)

        self.device = QComboBox()
        self.device.addItems(devices or ["cpu"])
        form.addRow("device", self.device)
        self.dtype = QComboBox()
        self.dtype.addItems(["float64", "float32"])
        form.addRow("dtype", self.dtype)

        self._tol_value = SolverSettings().tol
        self.set_settings(SolverSettings())
        for w in (self.max_iter, self.anderson_m):
            w.valueChanged.connect(self._emit)
        self.beta.valueChanged.connect(self._emit)
        self.device.currentIndexChanged.connect(self._emit)
        self.dtype.currentIndexChanged.connect(self._emit)
        self._updating = False

    # state -----------------------------------------------------------------------------------
    def settings(self) -> SolverSettings:
        return SolverSettings(
            solvers=tuple(n for n in SOLVER_NAMES if self._checks[n].isChecked()),
            tol=self._tol_value,
            max_iter=int(self.max_iter.value()),
            beta=float(self.beta.value()),
            anderson_m=int(self.anderson_m.value()),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
        )

    def set_settings(self, s: SolverSettings) -> None:
        """Show ``s`` (unknown devices fall back to the first one); emits ``changed`` once."""
        self._updating = True
        try:
            wanted = set(s.solvers) or {SOLVER_NAMES[0]}
            for name, cb in self._checks.items():
                cb.setChecked(name in wanted)
            self._tol_value = s.tol
            self.tol.setText(f"{s.tol:g}")
            self.tol.setStyleSheet("")
            self.max_iter.setValue(s.max_iter)
            self.beta.setValue(s.beta)
            self.anderson_m.setValue(s.anderson_m)
            i = self.device.findText(s.device)
            self.device.setCurrentIndex(max(i, 0))
            self.dtype.setCurrentIndex(max(self.dtype.findText(s.dtype), 0))
        finally:
            self._updating = False
        self._emit()

    def check(self, name: str) -> QCheckBox:
        return self._checks[name]

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
