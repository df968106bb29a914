"""The gradient lab view: unrolled against implicit backprop, compared with a float64 reference.

Controls choose what to differentiate (the spec's params and tensors, checkable), the loss
(``sum``, ``l2`` or an expression), ``K`` (the curves run over ``k = 1..K``) and whether a moved
slider re-runs the lab ("auto"). The forward solver, device and dtype come from the app's solver
settings (:func:`forward_solver`). A run goes to a :class:`GradWorker`; its
:class:`~implicit_viz.core.gradients.GradReport` is drawn as it is:

- the error plot (log y): relative error against ``k`` of unrolled backprop and of the
  iterative implicit gradients (fixed-point and Anderson backward steps), and the exact
  implicit, Jacobian-free and phantom gradients as dashed, labelled levels;
- the memory plot: bytes saved for backward against ``k`` for the same curves, with the same
  levels;
- a table with one row per method (error, cosine, time, memory), a line with the spectral
  radius and conditioning at ``z*``, and the report's warnings and ill-posed message in words.

Errors (a bad loss, an unknown name, a solver that cannot be unrolled) are shown in the view and
the plots keep the last good report. The view computes nothing beyond choosing what to draw.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import signals_blocked

from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.export import ExportError, write_grad_report
from implicit_viz.core.gradients import (
    METHODS,
    GradReport,
    GradRequest,
    MethodResult,
    method_info,
)
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.spec import Spec
from implicit_viz.gui.colors import (
    FOREGROUND,
    new_plot_widget,
    set_title,
    settle,
)
from implicit_viz.gui.grad_worker import GradWorker
from implicit_viz.gui.legend import legend_columns_that_fit
from implicit_viz.gui.residual_view import format_cell
from implicit_viz.gui.state import K_RANGE, GradientSettings, Problem, forward_solver

#: Methods drawn as curves over k, and as horizontal levels.
CURVES = ("unrolled", "implicit_fixed_point", "implicit_anderson")
LEVELS = ("implicit_exact", "jacobian_free", "phantom")
#: Errors at or below this are drawn here on the log axis (float64 round-off is ~1e-16).
ERROR_FLOOR = 1e-17
K_DEFAULT = 30
LOSS_CHOICES = ("sum", "l2")
#: Label and colour of each method, as the method registry declares them.
METHOD_LABELS: dict[str, str] = {m: method_info(m).label for m in METHODS}
METHOD_COLORS: dict[str, str] = {m: method_info(m).color for m in METHODS}
#: Where along the x axis each level's label sits (apart, so labels do not overlap).
_LABEL_AT = {"implicit_exact": 0.97, "jacobian_free": 0.62, "phantom": 0.3}
#: (key of :func:`method_row`, column header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("method", "method"),
    ("steps", "steps"),
    ("rel_error", "rel. error"),
    ("cosine", "cosine"),
    ("time_ms", "time (ms)"),
    ("memory", "saved for backward"),
    ("note", "how"),
)
_TEXT_COLUMNS = {"method", "note"}
ERROR_X_LABEL = "k (unrolled / backward steps)"
ERROR_Y_LABEL = "relative error vs reference"
MEMORY_Y_LABEL = "saved for backward (bytes)"
_ERROR_STYLE = "color: #b00020;"
_WARN_STYLE = "color: #8a5a00;"


# ------------------------------------------------------------------------------------------------
# What to draw (pure functions)
# ------------------------------------------------------------------------------------------------


def plotted_errors(values: np.ndarray) -> np.ndarray:
    """What the log plot draws: non-finite -> NaN (a gap), at or below zero ->
    :data:`ERROR_FLOOR`."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v), np.maximum(v, ERROR_FLOOR), np.nan)


def format_error(value: float) -> str:
    """A relative error: 3 significant digits in exponent form."""
    return f"{value:.2e}" if math.isfinite(value) else "—"


def format_cosine(value: float) -> str:
    """A cosine similarity: six decimals (1 - cos down to 1e-6 shows)."""
    return f"{value:.6f}" if math.isfinite(value) else "—"


def format_bytes(n: int | None) -> str:
    """Bytes in B, KiB or MiB, 3 significant digits."""
    if n is None:
        return "—"
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.3g} KiB"
    return f"{n / 1024**2:.3g} MiB"


def method_row(m: MethodResult) -> dict[str, str]:
    """The table's texts for one method."""
    return {
        "method": METHOD_LABELS.get(m.method, m.method),
        "steps": format_cell(int(m.steps)),
        "rel_error": format_error(m.rel_error),
        "cosine": format_cosine(m.cosine),
        "time_ms": format_cell(float(m.time_s * 1e3)),
        "memory": format_bytes(m.memory_bytes),
        "note": m.note,
    }


def conditioning_text(report: GradReport) -> str:
    """One line: spectral radius and conditioning at ``z*``, the forward solve, the FD check."""
    fwd, fd = report.forward, report.reference.fd
    parts = [
        f"ρ(df/dz*) = {format_cell(report.spectral_radius)}",
        f"σ_min(I − df/dz*) = {format_cell(report.sigma_min)}"
        f" (σ_min/σ_max = {format_cell(report.sigma_min_rel)})",
        f"forward: {fwd.solver} {fwd.status} after {fwd.iterations} steps,"
        f" residual {fwd.residual:.1e}",
    ]
    if fd.fd.size:
        parts.append(
            f"reference checked by finite differences to {fd.rel_error:.1e}"
            f" ({fd.fd.size} check{'' if fd.fd.size == 1 else 's'})"
        )
    return " · ".join(parts)


def warnings_text(report: GradReport) -> str:
    """The report's ill-posed message and warnings in words ("" when there are none)."""
    lines = []
    if report.ill_posed:
        lines.append(
            f"ill-posed: {report.ill_posed_message} — the implicit, Jacobian-free and phantom "
            "numbers are not to be trusted"
        )
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def run_text(report: GradReport, seconds: float | None) -> str:
    """The status line of a finished run: what ran, where, how long."""
    req = report.request
    wrt = ", ".join(w.name for w in report.wrt)
    took = f" — {seconds:.2f} s" if seconds is not None else ""
    return (
        f"{req.spec.name}: d {report.loss_text} / d ({wrt}); unrolled {report.forward.solver},"
        f" K = {req.unroll_max}; {report.device}, {report.dtype}{took}"
    )


# ------------------------------------------------------------------------------------------------
# The plots
# ------------------------------------------------------------------------------------------------


def _legend_below(pw: pg.PlotWidget, columns: int) -> pg.LegendItem:
    """A legend in a row of its own under the x axis, so it never hides a curve or a level's
    label; items added with a ``name`` join it (``pi.legend``). It has ``columns`` columns, or
    fewer when the plot is too narrow for them (a legend wider than its plot would widen the
    plot beyond its window)."""
    pi = pw.getPlotItem()
    legend = pg.LegendItem(
        labelTextColor=FOREGROUND,
        brush=pg.mkBrush(255, 255, 255, 0),
        pen=pg.mkPen(None),
        colCount=columns,
        horSpacing=14,
    )
    pi.layout.addItem(legend, 4, 1)
    pi.legend = legend
    _ColumnsFit(pw, legend, columns)
    return legend


class _ColumnsFit(QObject):
    """Sets a legend's column count to what its plot widget's width holds (at most
    ``columns``) whenever the widget is resized. Owned by the widget; holds the legend weakly
    (no reference cycle through Qt objects)."""

    #: Pixels of the widget's width not available to the legend (the y axis and margins).
    RESERVED = 70

    def __init__(self, pw: pg.PlotWidget, legend: pg.LegendItem, columns: int) -> None:
        super().__init__(pw)
        self._legend = weakref.ref(legend)
        self._columns = columns
        pw.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.fit(obj.width())
        return False

    def fit(self, width: float) -> None:
        legend = self._legend()
        if legend is None or not legend.items:
            return
        want = legend_columns_that_fit(legend, width - self.RESERVED, self._columns)
        if want != legend.columnCount:
            legend.setColumnCount(want)


class _MethodPlot:
    """A plot with one curve per :data:`CURVES` method and a dashed level per :data:`LEVELS`
    method (with a legend entry and a label showing its value)."""

    def __init__(self, y_label: str, *, log_y: bool, legend_columns: int = 3) -> None:
        self.widget = new_plot_widget(ERROR_X_LABEL, y_label)
        self.log_y = log_y
        pi = self.widget.getPlotItem()
        pi.setLogMode(x=False, y=log_y)
        self.legend = _legend_below(self.widget, legend_columns)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.levels: dict[str, pg.InfiniteLine] = {}
        for name in CURVES:
            pen = pg.mkPen(METHOD_COLORS[name], width=2)
            curve = pg.PlotDataItem(
                pen=pen,
                symbol="o",
                symbolSize=4,
                symbolPen=pen,
                symbolBrush=METHOD_COLORS[name],
                connect="finite",
                name=METHOD_LABELS[name],
            )
            pi.addItem(curve)
            self.curves[name] = curve
        for name in LEVELS:
            pen = pg.mkPen(METHOD_COLORS[name], width=1.5, style=Qt.PenStyle.DashLine)
            pi.addItem(pg.PlotDataItem(pen=pen, name=METHOD_LABELS[name]))  # legend entry only
            line = pg.InfiniteLine(
                angle=0,
                movable=False,
                pen=pen,
                label=METHOD_LABELS[name],
                labelOpts={
                    "position": _LABEL_AT[name],
                    "color": METHOD_COLORS[name],
                    "fill": (255, 255, 255, 210),
                    "anchors": [(1, 1), (1, 1)],
                },
            )
            line.setZValue(10)  # above the curves: the label's white box stays readable
            line.setVisible(False)
            pi.addItem(line, ignoreBounds=False)
            self.levels[name] = line

    def set_curve(self, name: str, k: np.ndarray, y: np.ndarray) -> None:
        self.curves[name].setData(np.asarray(k, dtype=float), np.asarray(y, dtype=float))

    def set_level(self, name: str, value: float, text: str) -> None:
        """Put level ``name`` at ``value`` (data units; log10 taken on a log axis)."""
        line = self.levels[name]
        if not math.isfinite(value):
            line.setVisible(False)
            return
        line.setVisible(True)  # first: a hidden line's label ignores new text
        line.setPos(math.log10(value) if self.log_y else value)
        line.label.setFormat(text.replace("{", "{{").replace("}", "}}"))


# ------------------------------------------------------------------------------------------------
# The view
# ------------------------------------------------------------------------------------------------


class GradientView(QWidget):
    """Controls, the error and memory plots, the method table and the run's status.

    Signals
    -------
    reportShown(int)
        The view now shows the report of this request id.
    errorShown(str)
        A message about a failed or impossible run was shown.
    """

    reportShown = Signal(int)
    errorShown = Signal(str)

    def __init__(self, worker: GradWorker | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker = worker if worker is not None else GradWorker(self)
        #: The window's problem (None before the first spec): the map the lab differentiates.
        self._problem: Problem | None = None
        self._report: GradReport | None = None
        self._shown_id = 0
        #: Per submitted request id, the context (spec, values, seeds) it was built from: a
        #: report whose context is no longer the view's is dropped, never shown.
        self._submitted: dict[int, tuple] = {}
        self._report_context: tuple | None = None
        self.last_error = ""

        self._build_controls()
        self._error_plot = _MethodPlot(ERROR_Y_LABEL, log_y=True)
        self._memory_plot = _MethodPlot(MEMORY_Y_LABEL, log_y=False, legend_columns=2)
        set_title(self._error_plot.widget, "gradient error against k")
        set_title(self._memory_plot.widget, "memory saved for backward against k")
        self._build_table()
        self._build_layout()

        self.worker.reportReady.connect(self._on_report)
        self.worker.failed.connect(self._on_failed)
        self.worker.busyChanged.connect(self._on_busy)

    # layout -----------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.wrt_list = QListWidget()
        self.wrt_list.setToolTip("params and tensors to differentiate with respect to")
        row_h = self.fontMetrics().height() + 6
        self.wrt_list.setMaximumHeight(3 * row_h + 6)
        self.wrt_list.setMinimumWidth(150)
        self.wrt_list.itemChanged.connect(lambda _item: self._controls_changed())

        self.loss_combo = QComboBox()
        self.loss_combo.setEditable(True)
        self.loss_combo.addItems(LOSS_CHOICES)
        self.loss_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.loss_combo.setMinimumContentsLength(16)
        self.loss_combo.setToolTip(
            "sum: sum(z*); l2: 0.5 ||z* - target||^2; or an expression over z and the spec's "
            "names giving one number, e.g. dot(z, z) + a"
        )
        self.loss_combo.activated.connect(lambda _i: self._controls_changed())
        self.loss_combo.lineEdit().editingFinished.connect(self._controls_changed)

        self.k_spin = QSpinBox()
        self.k_spin.setRange(*K_RANGE)
        self.k_spin.setValue(K_DEFAULT)
        self.k_spin.setToolTip("K: the curves run over k = 1..K unrolled / backward steps")
        self.k_spin.valueChanged.connect(lambda _v: self._controls_changed())

        self.solver_label = QLabel()
        self.solver_label.setToolTip(
            "the forward solver unrolled: the first of the app's solvers that autograd can "
            "unroll (else fixed_point)"
        )
        self.auto_check = QCheckBox("auto")
        self.auto_check.setChecked(True)  # the app only feeds it slider moves while it is shown
        self.auto_check.setToolTip("re-run whenever a slider or a control here changes")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda _checked=False: self.run())
        self._update_solver_label()

    def _build_table(self) -> None:
        self._table = QTableWidget(len(METHODS), len(COLUMNS))
        self._table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self._table.verticalHeader().setVisible(False)
        self._table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._table.horizontalHeader().setStretchLastSection(True)
        self._table.horizontalHeader().setSectionResizeMode(
            len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch
        )
        for row, name in enumerate(METHODS):
            for col, (key, _) in enumerate(COLUMNS):
                item = QTableWidgetItem("—")
                align = Qt.AlignmentFlag.AlignVCenter | (
                    Qt.AlignmentFlag.AlignLeft
                    if key in _TEXT_COLUMNS
                    else Qt.AlignmentFlag.AlignRight
                )
                item.setTextAlignment(align)
                self._table.setItem(row, col, item)
            first = self._table.item(row, 0)
            first.setText(METHOD_LABELS[name])
            first.setData(Qt.ItemDataRole.DecorationRole, QColor(METHOD_COLORS[name]))
        self._fit_columns()
        self._table.setMinimumHeight((len(METHODS) + 1) * (self.fontMetrics().height() + 6) + 8)

        self.conditioning_label = QLabel()
        self.conditioning_label.setWordWrap(True)
        self.conditioning_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.warnings_label = QLabel()
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings_label.setVisible(False)

    def _build_layout(self) -> None:
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Differentiate:"))
        controls.addWidget(self.wrt_list)
        controls.addSpacing(8)
        controls.addWidget(QLabel("Loss:"))
        controls.addWidget(self.loss_combo)
        controls.addSpacing(8)
        controls.addWidget(QLabel("K:"))
        controls.addWidget(self.k_spin)
        controls.addSpacing(8)
        controls.addWidget(self.solver_label)
        controls.addStretch(1)
        controls.addWidget(self.auto_check)
        controls.addWidget(self.run_button)

        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self._error_plot.widget)
        plots.addWidget(self._memory_plot.widget)
        plots.setSizes([600, 400])
        plots.setChildrenCollapsible(False)

        bottom = QWidget()
        col = QVBoxLayout(bottom)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.conditioning_label)
        col.addWidget(self.warnings_label)
        col.addWidget(self._table, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(plots)
        splitter.addWidget(bottom)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)

        self.status_label = QLabel("no gradient run yet")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status_label)

    # context and request -----------------------------------------------------------------------
    def set_problem(self, problem: Problem | None) -> None:
        """Remember the window's problem (:meth:`AppState.problem`: spec, slider values, seeds,
        start/tensor overrides, solver settings); with "auto" on, run."""
        self._problem = problem
        spec = self._spec
        if self._report is not None and self._report_context is not None:
            self._dim_report(self._report_context[0] != spec)
        self._update_wrt_choices()
        self._update_solver_label()
        if self.auto_check.isChecked() and spec is not None:
            self.run()

    @property
    def _spec(self) -> Spec | None:
        return None if self._problem is None else self._problem.spec

    def settings(self) -> GradientSettings:
        """The tab's controls, for the model and sessions."""
        return GradientSettings(
            wrt=self.wrt(),
            loss=self.loss(),
            k=self.k_spin.value(),
            auto=self.auto_check.isChecked(),
        )

    def apply_settings(self, s: GradientSettings) -> None:
        """Show ``s`` (names the spec lacks are ignored); runs nothing."""
        with (
            signals_blocked(self.auto_check),
            signals_blocked(self.k_spin),
            signals_blocked(self.loss_combo),
        ):
            self.auto_check.setChecked(s.auto)
            self.k_spin.setValue(s.k)
            self.loss_combo.setCurrentText(s.loss)
            if s.wrt:
                self.set_wrt(s.wrt)

    def set_wrt(self, names: list[str] | tuple[str, ...]) -> None:
        """Check exactly ``names`` in the list (unknown names are ignored)."""
        self.wrt_list.blockSignals(True)
        try:
            for i in range(self.wrt_list.count()):
                item = self.wrt_list.item(i)
                name = item.data(Qt.ItemDataRole.UserRole)
                item.setCheckState(
                    Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked
                )
        finally:
            self.wrt_list.blockSignals(False)

    def wrt(self) -> tuple[str, ...]:
        """The checked names, in the spec's order."""
        out = []
        for i in range(self.wrt_list.count()):
            item = self.wrt_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return tuple(out)

    def set_loss(self, text: str) -> None:
        self.loss_combo.setCurrentText(text)

    def loss(self) -> str:
        return self.loss_combo.currentText().strip()

    def build_request(self) -> GradRequest:
        """The request the current controls and context describe. Raises ``SpecError`` (no
        spec, bad slider values, nothing to differentiate) or ``SolverError``."""
        if self._problem is None:
            raise SpecError("no spec yet: load or write one first")
        return self._problem.grad_request(self.wrt(), self.loss(), self.k_spin.value())

    def run(self) -> int | None:
        """Submit the current request; its id, or None (and a message) when it cannot be built."""
        try:
            request = self.build_request()
        except (SpecError, SolverError, ValueError) as exc:
            self._show_error(str(exc))
            return None
        rid = self.worker.submit(request)
        self._submitted[rid] = self._context()
        for old in [r for r in self._submitted if r < rid and r != self._shown_id]:
            del self._submitted[old]
        self._set_status(f"running the gradient lab on {request.spec.name}…")
        return rid

    def _context(self) -> tuple:
        """What a report depends on besides the controls: the spec, slider values, seeds."""
        p = self._problem
        if p is None:
            return (None, (), (), ())
        return (
            p.spec,
            tuple(sorted(p.values.items())),
            tuple(sorted(p.seeds.items())),
            tuple(sorted(p.overrides.items())),
        )

    def _dim_report(self, stale: bool) -> None:
        """Dim the plots of a report whose spec the window no longer holds, and say so."""
        for widget in self.plot_widgets().values():
            widget.getPlotItem().setOpacity(0.3 if stale else 1.0)
        if stale:
            self._set_status(
                "the plots show a report of the previous spec, which has changed since: "
                "Run for this one",
                error=True,
            )

    def shutdown(self) -> None:
        """Stop the worker thread (call before the app quits)."""
        self.worker.shutdown()

    # results ---------------------------------------------------------------------------------
    def report(self) -> GradReport | None:
        """The report the view shows (None before the first run finished)."""
        return self._report

    @property
    def shown_id(self) -> int:
        """The request id of the report the view shows (0 before the first)."""
        return self._shown_id

    def plot_widgets(self) -> dict[str, pg.PlotWidget]:
        return {"error": self._error_plot.widget, "memory": self._memory_plot.widget}

    def curves(self, which: str = "error") -> dict[str, pg.PlotDataItem]:
        """Curve per method name of plot ``which`` ("error" or "memory")."""
        return dict(self._plot(which).curves)

    def levels(self, which: str = "error") -> dict[str, pg.InfiniteLine]:
        """Level line per method name of plot ``which``; on the error plot its position is
        ``log10`` of the value (the axis is logarithmic)."""
        return dict(self._plot(which).levels)

    def table(self) -> QTableWidget:
        return self._table

    def show_report(self, report: GradReport, seconds: float | None = None) -> None:
        """Draw ``report``: curves, levels, table, conditioning and warnings, status."""
        self._report = report
        self._dim_report(False)
        err, mem = self._error_plot, self._memory_plot
        for name in CURVES:
            c = report.curve(name)
            err.set_curve(name, c.k, plotted_errors(c.rel_error))
            mem.set_curve(name, c.k, c.memory_bytes)
        for name in LEVELS:
            m = report.method(name)
            label = METHOD_LABELS[name]
            err.set_level(name, float(plotted_errors(m.rel_error)), f"{label} {m.rel_error:.2e}")
            mem.set_level(name, float(m.memory_bytes), f"{label} {format_bytes(m.memory_bytes)}")
        wrt = ", ".join(w.name for w in report.wrt)
        set_title(err.widget, f"{report.request.spec.name}: d {report.loss_text} / d ({wrt})")
        self._fill_table(report)
        self.conditioning_label.setText(conditioning_text(report))
        warn = warnings_text(report)
        self.warnings_label.setText(warn)
        self.warnings_label.setStyleSheet(_ERROR_STYLE if report.ill_posed else _WARN_STYLE)
        self.warnings_label.setVisible(bool(warn))
        self._set_status(run_text(report, seconds))
        settle(err.widget)
        settle(mem.widget)

    # exports ---------------------------------------------------------------------------------
    def export_curves(self, path: str | Path) -> Path:
        """Write the shown report to ``.csv``, ``.npz`` or ``.json``; raises ``ExportError``."""
        if self._report is None:
            raise ExportError(f"cannot write '{path}': no gradient run has finished yet")
        return write_grad_report(path, self._report)

    def export_plot(self, which: str, path: str | Path) -> Path:
        """Save plot ``which`` ("error" or "memory") as PNG, SVG or PDF; raises ``ExportError``."""
        from implicit_viz.gui.plot_export import export_plot

        plots = self.plot_widgets()
        if which not in plots:
            raise ExportError(
                f"cannot export plot to {path}: no plot named {which!r}; "
                f"use one of {', '.join(plots)}"
            )
        if self._report is None:
            raise ExportError(f"cannot export plot to {path}: no gradient run has finished yet")
        return export_plot(plots[which], path)

    # internals --------------------------------------------------------------------------------
    def _plot(self, which: str) -> _MethodPlot:
        return {"error": self._error_plot, "memory": self._memory_plot}[which]

    def _update_wrt_choices(self) -> None:
        """List the spec's params and tensors, keeping the checks of names still there; with
        none left checked, check the first param (else the first tensor)."""
        spec = self._spec
        entries: list[tuple[str, str]] = []
        if spec is not None:
            entries += [(p.name, f"{p.name}  (param)") for p in spec.params]
            for t in spec.tensors:
                shape = "×".join(map(str, t.shape)) or "scalar"
                entries.append((t.name, f"{t.name}  (tensor {shape})"))
        current = [
            (item.data(Qt.ItemDataRole.UserRole), item.text())
            for item in map(self.wrt_list.item, range(self.wrt_list.count()))
        ]
        if current == entries:
            return
        keep = [n for n in self.wrt() if n in {name for name, _ in entries}]
        self.wrt_list.blockSignals(True)
        try:
            self.wrt_list.clear()
            for name, text in entries:
                item = QListWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked)
                self.wrt_list.addItem(item)
        finally:
            self.wrt_list.blockSignals(False)
        if not keep and entries:
            keep = [entries[0][0]]
        self.set_wrt(keep)

    def _update_solver_label(self) -> None:
        settings = self._problem.settings if self._problem is not None else SolverSettings()
        name, options = forward_solver(settings)
        opts = ", ".join(f"{k}={v}" for k, v in options.items())
        self.solver_label.setText(
            f"unrolls: {name}{f' ({opts})' if opts else ''}; {settings.device}, {settings.dtype}"
        )

    def _controls_changed(self) -> None:
        if self.auto_check.isChecked() and self._spec is not None:
            self.run()

    def _fit_columns(self) -> None:
        """Every column but the last (which stretches) to its contents."""
        for col in range(len(COLUMNS) - 1):
            self._table.resizeColumnToContents(col)

    def _fill_table(self, report: GradReport) -> None:
        rows = {m.method: method_row(m) for m in report.methods}
        for row, name in enumerate(METHODS):
            texts = rows.get(name)
            for col, (key, _) in enumerate(COLUMNS):
                item = self._table.item(row, col)
                item.setText(texts[key] if texts else "—")
                implicit = name != "unrolled"
                dim = report.ill_posed and implicit
                item.setForeground(QBrush(QColor("#999999")) if dim else QBrush())
            self._table.item(row, 0).setToolTip(texts["note"] if texts else "")
        self._fit_columns()

    def _on_report(self, request_id: int, report: GradReport) -> None:
        if request_id < self._shown_id:
            return  # an older answer arrived late: the newest request wins
        context = self._submitted.pop(request_id, None)
        if context != self._context():
            return  # built from another spec or other values: dropped, never shown
        self._shown_id = request_id
        self._report_context = context
        self.show_report(report, self.worker.duration(request_id))
        self.reportShown.emit(request_id)

    def _on_failed(self, request_id: int, message: str) -> None:
        self._submitted.pop(request_id, None)
        if request_id >= self._shown_id:
            self._show_error(message)

    def _on_busy(self, busy: bool) -> None:
        self.run_button.setText("Running…" if busy else "Run")

    def _show_error(self, message: str) -> None:
        self.last_error = message
        keep = " (the plots show the last run)" if self._report is not None else ""
        self._set_status(f"gradient run failed: {message}{keep}", error=True)
        self.errorShown.emit(message)

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet(f"color: {FOREGROUND};" if not error else _ERROR_STYLE)
        self.status_label.setText(text)
        self.status_label.setToolTip(text)
