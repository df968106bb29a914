"""Iterates against the step: one tab per solver, one curve per component ``z_i``.

A tab plots ``trace.trajectory[:, i]`` against the step ``0..T`` for every component ``i``, with
a legend when ``dim <= 8`` and a viridis sweep over components otherwise. The tab's title holds
the outcome in words. Plots and curves (``PlotCurveItem``: lighter than ``PlotDataItem``, which
matters at dim 64) are reused across snapshots (only ``setData``), and tabs that are not visible
are redrawn when they are next shown. Non-finite values are gaps in the curves.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from implicit_viz.core.live import LiveSnapshot, SolverTrace
from implicit_viz.gui.colors import (
    add_legend,
    component_colors,
    new_plot_widget,
    set_title,
    settle,
)

#: Largest dim that gets a legend and thicker lines.
LEGEND_MAX_DIM = 8


class _SolverPage:
    """One solver's plot and its component curves."""

    def __init__(self) -> None:
        self.plot = new_plot_widget("step", "z_i")
        self.legend: pg.LegendItem | None = None
        self.curves: list[pg.PlotCurveItem] = []
        self.title = ""

    def _make_curves(self, dim: int) -> None:
        pi = self.plot.getPlotItem()
        for c in self.curves:
            pi.removeItem(c)
        if self.legend is not None:
            self.legend.clear()
        small = dim <= LEGEND_MAX_DIM
        if small and self.legend is None:
            self.legend = add_legend(self.plot, columns=1 if dim <= 4 else 2)
        if self.legend is not None:
            self.legend.setVisible(small)
        width = 2.0 if small else 1.0
        self.curves = []
        for i, color in enumerate(component_colors(dim)):
            curve = pg.PlotCurveItem(
                pen=pg.mkPen(color, width=width),
                connect="finite",
                name=f"z_{i}" if small else None,
            )
            pi.addItem(curve)
            self.curves.append(curve)

    def draw(self, trace: SolverTrace) -> None:
        traj = trace.trajectory
        dim = traj.shape[1] if traj.ndim == 2 else 0
        if dim != len(self.curves):
            self._make_curves(dim)
        steps = np.arange(traj.shape[0], dtype=float)
        values = np.where(np.isfinite(traj), traj, np.nan)
        for i, curve in enumerate(self.curves):
            curve.setData(steps, values[:, i])
        title = f"{trace.label}: {trace.message}"
        if title != self.title:
            set_title(self.plot, title)
            self.title = title


class TrajectoryView(QWidget):
    """Tabs of ``z_i`` against the step, one tab per solver in the snapshot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self._pages: dict[str, _SolverPage] = {}
        self._order: tuple[str, ...] = ()
        self._traces: dict[str, SolverTrace] = {}
        self._stale: set[str] = set()
        self.tabs.currentChanged.connect(self._on_tab_changed)

    # -- public -----------------------------------------------------------------------------
    def show_snapshot(self, snap: LiveSnapshot) -> None:
        """Draw every solver's iterates; the visible tab now, the others when shown."""
        names = tuple(t.solver for t in snap.traces)
        if names != self._order:
            self._set_tabs(names)
        self._traces = {t.solver: t for t in snap.traces}
        self._stale = set(names)
        for index, trace in enumerate(snap.traces):
            if self.tabs.tabText(index) != trace.label:
                self.tabs.setTabText(index, trace.label)
            self.tabs.setTabToolTip(index, trace.message)
        self._draw_current()

    def solvers(self) -> tuple[str, ...]:
        """Solver names of the tabs, in order."""
        return self._order

    def curves(self, solver: str) -> list[pg.PlotCurveItem]:
        """The component curves of one solver's tab (drawn up to date)."""
        self._flush(solver)
        return list(self._pages[solver].curves)

    def tab_widget(self) -> QTabWidget:
        return self.tabs

    def plot_widgets(self) -> dict[str, pg.PlotWidget]:
        """``{"trajectory: <solver>": plot}`` for every tab, all drawn up to date."""
        for name in self._order:
            self._flush(name)
        return {f"trajectory: {name}": self._pages[name].plot for name in self._order}

    def current_plot(self) -> pg.PlotWidget | None:
        """The plot of the visible tab (None before the first snapshot)."""
        index = self.tabs.currentIndex()
        if index < 0:
            return None
        name = self._order[index]
        self._flush(name)
        return self._pages[name].plot

    # -- internals --------------------------------------------------------------------------
    def _set_tabs(self, names: tuple[str, ...]) -> None:
        """Lay out one tab per solver, reusing pages; keep the visible solver if it stays."""
        index = self.tabs.currentIndex()
        current = self._order[index] if 0 <= index < len(self._order) else None
        self.tabs.blockSignals(True)
        try:
            while self.tabs.count():
                self.tabs.removeTab(0)
            for name in list(self._pages):
                if name not in names:
                    self._pages.pop(name).plot.deleteLater()
            for name in names:
                page = self._pages.get(name)
                if page is None:
                    page = self._pages[name] = _SolverPage()
                self.tabs.addTab(page.plot, name)
            self._order = names
            if current in names:
                self.tabs.setCurrentIndex(names.index(current))
            elif names:
                self.tabs.setCurrentIndex(0)
        finally:
            self.tabs.blockSignals(False)

    def _flush(self, name: str) -> None:
        if name in self._stale:
            self._stale.discard(name)
            self._pages[name].draw(self._traces[name])

    def _draw_current(self) -> None:
        index = self.tabs.currentIndex()
        if 0 <= index < len(self._order):
            self._flush(self._order[index])
            settle(self._pages[self._order[index]].plot)

    def _on_tab_changed(self, _index: int) -> None:
        self._draw_current()
