"""Iterates against the step: one tab per solver, one curve per component ``z_i``.

A tab plots ``trace.trajectory[:, i]`` against the step ``0..T`` for every component ``i``, with
a legend when ``dim <= 8`` and a viridis sweep over components otherwise. The tab's title holds
the outcome in words. Plots and curves (``PlotCurveItem``: lighter than ``PlotDataItem``, which
matters at dim 64) are reused across snapshots (only ``setData``), and tabs that are not visible
are redrawn when they are next shown. Non-finite values (and values beyond
:data:`~implicit_viz.gui.colors.PLOT_LIMIT`) are gaps in the curves.

At most :data:`MAX_CURVES` components are drawn (each curve costs time on the GUI thread on
every redraw: 65536 of them froze the window for over a minute): above that, the ones whose
iterates span the widest range, ties spread evenly over the indices
(:func:`chosen_components`), and a note above the plot says how many of how many are drawn.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from implicit_viz.core.live import LiveSnapshot, SolverTrace
from implicit_viz.gui.colors import (
    component_colors,
    component_colors_at,
    new_plot_widget,
    plottable,
    set_title,
    settle,
)
from implicit_viz.gui.legend import add_legend

#: Largest dim that gets a legend and thicker lines.
LEGEND_MAX_DIM = 8
#: Most components drawn as curves; a larger dim draws this many (:func:`chosen_components`).
MAX_CURVES = 200
#: How the drawn components are chosen, for the note above the plot.
CHOICE_RULE = "the ones that move most (ties spread evenly)"
#: The rule in full, the note's tooltip.
CHOICE_TIP = (
    "Each curve costs time on every redraw, so at most {most} components are drawn: those "
    "whose iterates span the widest range (max - min over the steps; one that reaches inf "
    "first, one never finite last); among equal spans, indices spread evenly over 0..dim-1."
)


def chosen_components(traj: np.ndarray, most: int = MAX_CURVES) -> np.ndarray:
    """Indices (ascending) of the components of ``traj (T, D)`` drawn as curves.

    All of them when ``D <= most``. Otherwise the ``most`` whose iterates span the widest range
    (max - min of the finite ones; a component that reaches +-inf ranks first, one never finite
    last); among equal spans, indices closest to an even spread over ``0..D-1`` first, so that
    a map moving every component alike shows an even sample.
    """
    dim = traj.shape[1] if traj.ndim == 2 else 0
    if dim <= most:
        return np.arange(dim)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = np.fmax.reduce(traj, axis=0)  # fmax/fmin skip NaN
        lo = np.fmin.reduce(traj, axis=0)
        span = hi - lo
    never = np.isnan(hi)
    span = np.where(np.isnan(span), np.inf, span)  # inf - inf: it blew up
    span[never] = -1.0
    idx = np.arange(dim)
    spread = (idx * most) % dim  # 0 for the evenly spread indices round(k * dim / most)
    order = np.lexsort((spread, -span))
    return np.sort(order[:most])


def choice_note(drawn: int, dim: int) -> str:
    """The note shown when not every component is drawn ("" when all are)."""
    if drawn >= dim:
        return ""
    return f"{drawn} of {dim:,} components drawn: {CHOICE_RULE}"


class _SolverPage:
    """One solver's plot and its component curves."""

    def __init__(self) -> None:
        self.plot = new_plot_widget("step", "z_i")
        self.legend: pg.LegendItem | None = None
        self.curves: list[pg.PlotCurveItem] = []
        #: The component each curve draws, and the dim they were chosen from.
        self.components: np.ndarray = np.arange(0)
        self.dim = 0
        self.title = ""

    def _make_curves(self, dim: int, count: int) -> None:
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
        self.curves = []
        for i in range(count):
            curve = pg.PlotCurveItem(connect="finite", name=f"z_{i}" if small else None)
            pi.addItem(curve)
            self.curves.append(curve)
        self.components = np.arange(0)

    def _set_components(self, dim: int, chosen: np.ndarray) -> None:
        """Colour each curve by its component's place in ``0..dim-1`` (pens only change when
        the choice does)."""
        if dim == self.dim and np.array_equal(chosen, self.components):
            return
        width = 2.0 if dim <= LEGEND_MAX_DIM else 1.0
        if len(chosen) == dim:
            colors = component_colors(dim)
        else:
            colors = component_colors_at(chosen, dim)
        for curve, color in zip(self.curves, colors, strict=True):
            curve.setPen(pg.mkPen(color, width=width))
        self.components, self.dim = chosen, dim

    def draw(self, trace: SolverTrace) -> None:
        traj = trace.trajectory
        dim = traj.shape[1] if traj.ndim == 2 else 0
        chosen = chosen_components(traj) if traj.ndim == 2 else np.arange(0)
        if len(chosen) != len(self.curves) or (dim <= LEGEND_MAX_DIM) != (
            self.dim <= LEGEND_MAX_DIM
        ):
            self._make_curves(dim, len(chosen))
        self._set_components(dim, chosen)
        steps = np.arange(traj.shape[0], dtype=float)
        values = plottable(traj[:, chosen]) if len(chosen) else traj
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
        #: Says how many components are drawn and how they were chosen (hidden when all are).
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #8a5a00; padding: 1px 4px;")
        self.note.setVisible(False)
        self.note.setToolTip(CHOICE_TIP.format(most=MAX_CURVES))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.note)
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
            page = self._pages[self._order[index]]
            self._flush(self._order[index])
            note = choice_note(len(page.curves), page.dim)
            if note != self.note.text():
                self.note.setText(note)
            self.note.setVisible(bool(note))
            settle(page.plot)

    def _on_tab_changed(self, _index: int) -> None:
        self._draw_current()
