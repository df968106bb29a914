"""Residuals against the step on a log scale, and the results table beneath.

The plot has one curve per solver (``trace.residuals``, solver colour, legend) and a dashed
horizontal line at the tolerance labelled "tol". Zero residuals are drawn at
:data:`RESIDUAL_FLOOR`; non-finite ones are left out. The table has one row per solver from
``trace.row()``: outcome in words (tinted unless converged), iterations, residual, f-evals, time,
observed rate and the spectral radius of ``df/dz`` at ``z*``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from implicit_viz.core.live import LiveSnapshot
from implicit_viz.core.status import status_descriptions
from implicit_viz.gui.colors import (
    FOREGROUND,
    new_plot_widget,
    set_title,
    settle,
    solver_color,
    status_tint,
)
from implicit_viz.gui.legend import add_legend

#: Residuals at or below zero are drawn here on the log axis.
RESIDUAL_FLOOR = 1e-300
#: (key of ``SolverTrace.row()``, column header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("solver", "solver"),
    ("outcome", "outcome"),
    ("iterations", "iterations"),
    ("residual", "residual"),
    ("f_evals", "f-evals"),
    ("time_ms", "time (ms)"),
    ("observed_rate", "observed rate"),
    ("predicted_rate", "predicted rate"),
    ("spectral_radius", "ρ(df/dz*)"),
    ("z", "z*"),
)
_TEXT_COLUMNS = {"solver", "outcome", "z"}


def format_cell(value: Any) -> str:
    """Table text: "—" for None, integers as they are, floats to 3 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else "—"
    return str(value)


def plotted_residuals(residuals: np.ndarray) -> np.ndarray:
    """What the log plot draws: non-finite -> NaN (a gap), zero -> :data:`RESIDUAL_FLOOR`."""
    r = np.asarray(residuals, dtype=float)
    return np.where(np.isfinite(r), np.maximum(r, RESIDUAL_FLOOR), np.nan)


class ResidualView(QWidget):
    """Log-scale residual curves of every solver above the results table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._plot = new_plot_widget("step", "||f(z) - z||")
        pi = self._plot.getPlotItem()
        pi.setLogMode(x=False, y=True)
        self._legend = add_legend(self._plot)
        self._tol_line = pg.InfiniteLine(
            angle=0,
            movable=False,
            pen=pg.mkPen("#555555", width=1, style=Qt.PenStyle.DashLine),
            label="tol",
            labelOpts={
                "position": 0.98,
                "color": FOREGROUND,
                "fill": (255, 255, 255, 200),
                "anchors": [(1, 0), (1, 0)],
            },
        )
        self._tol_line.setZValue(10)  # above the curves: its label's white box stays readable
        pi.addItem(self._tol_line, ignoreBounds=False)
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._key: tuple = ()
        self._title = ""

        self._table = QTableWidget(0, len(COLUMNS))
        self._table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self._table.verticalHeader().setVisible(False)
        self._table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self._table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self._table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._table.horizontalHeader().setStretchLastSection(True)
        self._descriptions = status_descriptions()
        self._row_styles: dict[int, tuple[str, str]] = {}

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._plot)
        splitter.addWidget(self._table)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([380, 150])
        # header + three solver rows visible by default
        self._table.setMinimumHeight(4 * (self.fontMetrics().height() + 8) + 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._splitter = splitter

    # -- public -----------------------------------------------------------------------------
    def show_snapshot(self, snap: LiveSnapshot) -> None:
        """Draw every solver's residuals, the tolerance line, and fill the table."""
        key = tuple((t.solver, t.label) for t in snap.traces)
        if key != self._key:
            self._make_curves(key)
        for trace in snap.traces:
            r = trace.residuals
            self._curves[trace.solver].setData(
                np.arange(r.shape[0], dtype=float), plotted_residuals(r)
            )
        self._tol_line.setPos(math.log10(snap.tol) if snap.tol > 0 else 0.0)
        title = f"{snap.spec_name}: residuals (tol = {snap.tol:.3g})"
        if title != self._title:
            set_title(self._plot, title)
            self._title = title
        self._fill_table(snap)
        settle(self._plot)

    def table(self) -> QTableWidget:
        return self._table

    def curves(self) -> dict[str, pg.PlotDataItem]:
        """Residual curve per solver name."""
        return dict(self._curves)

    def tol_line(self) -> pg.InfiniteLine:
        """The tolerance line; its position is ``log10(tol)`` (the axis is logarithmic)."""
        return self._tol_line

    def plot_widgets(self) -> dict[str, pg.PlotWidget]:
        return {"residuals": self._plot}

    def current_plot(self) -> pg.PlotWidget:
        return self._plot

    # -- internals --------------------------------------------------------------------------
    def _make_curves(self, key: tuple) -> None:
        pi = self._plot.getPlotItem()
        for curve in self._curves.values():
            pi.removeItem(curve)
        self._legend.clear()
        self._curves = {}
        for solver, label in key:
            curve = pg.PlotDataItem(
                pen=pg.mkPen(solver_color(solver), width=2), connect="finite", name=label
            )
            pi.addItem(curve)
            self._curves[solver] = curve
        self._key = key

    def _cell(self, row: int, col: int) -> QTableWidgetItem:
        item = self._table.item(row, col)
        if item is None:
            item = QTableWidgetItem()
            key = COLUMNS[col][0]
            align = Qt.AlignmentFlag.AlignVCenter
            align |= (
                Qt.AlignmentFlag.AlignLeft if key in _TEXT_COLUMNS else Qt.AlignmentFlag.AlignRight
            )
            item.setTextAlignment(align)
            self._table.setItem(row, col, item)
        return item

    def _style_row(self, row: int, solver: str, status: str) -> None:
        """Solver colour swatch; outcome tinted (unless converged) with its description as tip."""
        self._cell(row, 0).setData(Qt.ItemDataRole.DecorationRole, QColor(solver_color(solver)))
        outcome = self._cell(row, 1)
        tint = status_tint(status)
        outcome.setBackground(QBrush(QColor(tint)) if tint else QBrush())
        outcome.setForeground(QBrush(QColor(FOREGROUND)) if tint else QBrush())
        outcome.setToolTip(f"{status}: {self._descriptions.get(status, '')}")

    def _fill_table(self, snap: LiveSnapshot) -> None:
        table = self._table
        changed = table.rowCount() != len(snap.traces)
        if changed:
            table.setRowCount(len(snap.traces))
            self._row_styles.clear()
        for row, trace in enumerate(snap.traces):
            values = trace.row()
            for col, (key, _) in enumerate(COLUMNS):
                cell = self._cell(row, col)
                text = format_cell(values[key])
                if cell.text() != text:
                    cell.setText(text)
                    changed = True
            style = (trace.solver, trace.status)
            if self._row_styles.get(row) != style:
                self._style_row(row, *style)
                self._row_styles[row] = style
        if changed:
            table.resizeColumnsToContents()
