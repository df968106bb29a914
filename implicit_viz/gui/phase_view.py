"""Where the iterates go: a phase portrait (``dim >= 2``) or a cobweb diagram (``dim == 1``).

Phase portrait: for every solver, the path of its iterates in the plane of two chosen components
``(z_i, z_j)`` (a line with a small dot per iterate), the start (hollow square), the last finite
iterate (star) and, for a periodic trace, the points of its cycle (hollow diamonds). Markers of
all solvers share three scatter items, to keep redraws cheap. Two spin boxes choose ``i`` and ``j``;
changing them redraws the last snapshot.

Cobweb: the map ``f`` on a grid (``snap.cobweb``), the diagonal ``y = z``, and for every solver
the staircase of its iterates: from ``(z_k, z_k)`` up to ``(z_k, z_{k+1})`` and across to
``(z_{k+1}, z_{k+1})``; the end ``(z*, z*)`` and any cycle points are marked on the diagonal.
For plain fixed-point iteration ``z_{k+1} = f(z_k)``, so its corners lie on the curve; the other
solvers' steps are not steps of ``f``, so their staircases are dashed.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from implicit_viz.core.live import LiveSnapshot, SolverTrace
from implicit_viz.gui.colors import (
    FOREGROUND,
    new_plot_widget,
    plottable,
    set_title,
    settle,
    solver_color,
)
from implicit_viz.gui.legend import add_legend

_GREY = "#777777"


def _finite(a: np.ndarray) -> np.ndarray:
    """NaN (a gap) for non-finite values and those beyond ``PLOT_LIMIT`` (pyqtgraph's range
    arithmetic overflows near the largest float)."""
    return plottable(a)


def _last_finite(points: np.ndarray) -> np.ndarray:
    """The last row of ``points (N, 2)`` with both coordinates finite, as ``(0 or 1, 2)``."""
    ok = np.flatnonzero(np.isfinite(points).all(axis=1))
    return points[ok[-1:]] if ok.size else np.empty((0, 2))


def staircase(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cobweb corners of 1-D iterates ``z (T+1,)``: ``(z0,z0), (z0,z1), (z1,z1), (z1,z2), ...``."""
    doubled = np.repeat(np.asarray(z, dtype=float), 2)
    return doubled[:-1], doubled[1:]


class _SolverItems:
    """One solver's path: a line (in the legend) and, in a phase portrait, a dot per iterate."""

    def __init__(self, solver: str, label: str, cobweb: bool) -> None:
        color = solver_color(solver)
        style = (
            Qt.PenStyle.DashLine if cobweb and solver != "fixed_point" else Qt.PenStyle.SolidLine
        )
        pen = pg.mkPen(color, width=1.5, style=style)
        self.path = pg.PlotCurveItem(pen=pen, connect="finite", name=label)
        self.dots = (
            None if cobweb else pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(color))
        )

    def items(self) -> list[pg.GraphicsObject]:
        return [self.path] if self.dots is None else [self.path, self.dots]


class _Markers:
    """Start, end and cycle points of every solver, in three shared scatter items.

    One item per kind instead of one per solver and kind: each pyqtgraph item costs time on every
    redraw. Every point carries its solver's name as data.
    """

    def __init__(self) -> None:
        self.start = pg.ScatterPlotItem(symbol="s", size=9)
        self.end = pg.ScatterPlotItem(symbol="star", size=16)
        self.cycle = pg.ScatterPlotItem(symbol="d", size=13)
        self._style: dict[str, tuple] = {}

    def items(self) -> list[pg.ScatterPlotItem]:
        return [self.start, self.end, self.cycle]

    def set_solvers(self, solvers: list[str]) -> None:
        white, none = pg.mkBrush("#FFFFFF"), pg.mkBrush(None)
        edge = pg.mkPen(FOREGROUND, width=0.5)
        self._style = {
            s: (pg.mkPen(solver_color(s), width=2), pg.mkBrush(solver_color(s)), white, none, edge)
            for s in solvers
        }

    def draw(self, points: dict[str, dict[str, np.ndarray]]) -> None:
        """``points[kind][solver]``: ``(n, 2)`` finite points of that kind for that solver."""
        for kind, item in (("start", self.start), ("end", self.end), ("cycle", self.cycle)):
            pos, pens, brushes, names = [], [], [], []
            for solver, pts in points[kind].items():
                pen, fill, white, none, edge = self._style[solver]
                pos.append(pts)
                n = len(pts)
                names += [solver] * n
                if kind == "start":
                    pens += [pen] * n
                    brushes += [white] * n
                elif kind == "end":
                    pens += [edge] * n
                    brushes += [fill] * n
                else:
                    pens += [pen] * n
                    brushes += [none] * n
            xy = np.concatenate(pos) if pos else np.empty((0, 2))
            item.setData(pos=xy, pen=pens, brush=brushes, data=names)


class PhaseView(QWidget):
    """Phase portrait of two components (``dim >= 2``) or cobweb diagram (``dim == 1``)."""

    componentsChanged = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._spin_i = QSpinBox()
        self._spin_j = QSpinBox()
        for spin, value, tip in (
            (self._spin_i, 0, "component on the horizontal axis"),
            (self._spin_j, 1, "component on the vertical axis"),
        ):
            spin.setRange(0, 1)
            spin.setValue(value)
            spin.setPrefix("z_")
            spin.setToolTip(tip)
            spin.valueChanged.connect(self._on_spin)
        self._controls = QWidget()
        row = QHBoxLayout(self._controls)
        row.setContentsMargins(4, 2, 4, 0)
        row.addWidget(QLabel("horizontal:"))
        row.addWidget(self._spin_i)
        row.addSpacing(12)
        row.addWidget(QLabel("vertical:"))
        row.addWidget(self._spin_j)
        row.addStretch(1)

        self._plot = new_plot_widget("z_0", "z_1")
        self._legend = add_legend(self._plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._controls)
        layout.addWidget(self._plot, 1)

        self._snap: LiveSnapshot | None = None
        self._requested: tuple[int, int] | None = None
        self._key: tuple = ()
        self._solver_items: dict[str, _SolverItems] = {}
        self._markers = _Markers()
        self._curve = pg.PlotDataItem(pen=pg.mkPen(FOREGROUND, width=2), name="f(z)")
        self._diagonal = pg.PlotDataItem(
            pen=pg.mkPen(_GREY, width=1, style=Qt.PenStyle.DashLine), name="y = z"
        )
        self._title = ""

    # -- public -----------------------------------------------------------------------------
    def show_snapshot(self, snap: LiveSnapshot) -> None:
        """Draw ``snap``: cobweb when ``snap.dim == 1``, else the chosen components' plane."""
        self._snap = snap
        if snap.dim >= 2:
            self._fit_spins(snap.dim)
        self._controls.setVisible(snap.dim >= 2)
        self._redraw()

    def components(self) -> tuple[int, int]:
        """The components ``(i, j)`` on the horizontal and vertical axes.

        A choice made with :meth:`set_components` that the shown snapshot cannot take yet (before
        the first snapshot, or beyond its dim) is returned as chosen until a snapshot settles it.
        """
        if self._requested is not None:
            return self._requested
        return self._spin_i.value(), self._spin_j.value()

    def set_components(self, i: int, j: int) -> None:
        """Choose the components drawn and redraw the last snapshot (no new solve).

        Components beyond the shown snapshot's dim are kept for the next snapshot, which uses them
        if its dim allows and falls back to ``(0, 1)`` otherwise.
        """
        i, j = max(0, int(i)), max(0, int(j))
        old = self.components()
        snap = self._snap
        if snap is not None and snap.dim >= 2 and max(i, j) < snap.dim:
            self._requested = None
            self._set_spins(i, j)
            self._redraw()
        else:
            self._requested = (i, j)
        if self.components() != old:
            self.componentsChanged.emit(*self.components())

    def mode(self) -> str:
        """``"cobweb"`` for a 1-D snapshot, ``"phase"`` otherwise."""
        return "cobweb" if self._snap is not None and self._snap.dim == 1 else "phase"

    def solver_items(self, solver: str) -> _SolverItems:
        """The items of one solver: ``path`` (a line) and ``dots`` (None in a cobweb)."""
        return self._solver_items[solver]

    def marker_points(self, kind: str) -> dict[str, np.ndarray]:
        """Drawn ``"start"``, ``"end"`` or ``"cycle"`` points by solver, each ``(n, 2)``."""
        item = getattr(self._markers, kind)
        x, y = item.getData()
        names = item.data["data"]
        out: dict[str, np.ndarray] = {}
        for solver in self._solver_items:
            sel = np.array([n == solver for n in names], dtype=bool)
            out[solver] = np.column_stack([x[sel], y[sel]]) if sel.any() else np.empty((0, 2))
        return out

    def cobweb_items(self) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        """The map curve and the diagonal of the cobweb diagram."""
        return self._curve, self._diagonal

    def plot_widgets(self) -> dict[str, pg.PlotWidget]:
        return {"phase": self._plot}

    def current_plot(self) -> pg.PlotWidget:
        return self._plot

    # -- internals --------------------------------------------------------------------------
    def _set_spins(self, i: int, j: int, dim: int | None = None) -> None:
        for spin, v in ((self._spin_i, i), (self._spin_j, j)):
            spin.blockSignals(True)
            if dim is not None:
                spin.setRange(0, dim - 1)
            spin.setValue(v)
            spin.blockSignals(False)

    def _fit_spins(self, dim: int) -> None:
        """Spin box ranges follow ``dim``; components out of range fall back to (0, 1)."""
        old = self.components()
        i, j = old if max(old) < dim else (0, 1)
        self._requested = None
        self._set_spins(i, j, dim)
        if self.components() != old:
            self.componentsChanged.emit(*self.components())

    def _on_spin(self, _value: int) -> None:
        self._requested = None
        self._redraw()
        self.componentsChanged.emit(*self.components())

    def _rebuild(self, key: tuple) -> None:
        """Create the items for this mode and solver set (and legend entries)."""
        pi = self._plot.getPlotItem()
        pi.clear()
        self._legend.clear()
        cobweb = key[0] == "cobweb"
        if cobweb:
            # The view follows the iterates and the diagonal, not f's full range on the grid.
            pi.addItem(self._curve, ignoreBounds=True)
            pi.addItem(self._diagonal)
        self._solver_items = {}
        for solver, label in key[1]:
            items = _SolverItems(solver, label, cobweb)
            for item in items.items():
                pi.addItem(item)
            self._solver_items[solver] = items
        self._markers.set_solvers([solver for solver, _ in key[1]])
        for item in self._markers.items():
            pi.addItem(item)
        # Marker meanings in the legend (grey samples, not in the plot).
        grey = pg.mkPen(_GREY, width=2)
        samples = [
            (
                pg.ScatterPlotItem(symbol="s", size=9, pen=grey, brush=pg.mkBrush("#FFFFFF")),
                "start",
            ),
            (pg.ScatterPlotItem(symbol="star", size=14, brush=pg.mkBrush(_GREY)), "end"),
        ]
        if key[2]:
            samples.append((pg.ScatterPlotItem(symbol="d", size=12, pen=grey, brush=None), "cycle"))
        for sample, text in samples:
            self._legend.addItem(sample, text)
        self._key = key

    def _redraw(self) -> None:
        snap = self._snap
        if snap is None:
            return
        cobweb = snap.dim == 1
        has_cycle = any(t.cycle is not None for t in snap.traces)
        key = ("cobweb" if cobweb else "phase", tuple((t.solver, t.label) for t in snap.traces))
        key = (*key, has_cycle)
        if key != self._key:
            self._rebuild(key)
        if cobweb:
            self._draw_cobweb(snap)
        else:
            self._draw_phase(snap)
        settle(self._plot)

    def _set_title(self, text: str) -> None:
        if text != self._title:
            set_title(self._plot, text)
            self._title = text

    def _set_labels(self, x: str, y: str) -> None:
        pi = self._plot.getPlotItem()
        if pi.getAxis("bottom").labelText != x:
            pi.setLabel("bottom", x, color=FOREGROUND)
        if pi.getAxis("left").labelText != y:
            pi.setLabel("left", y, color=FOREGROUND)

    def _draw_phase(self, snap: LiveSnapshot) -> None:
        i, j = self.components()
        self._set_labels(f"z_{i}", f"z_{j}")
        self._set_title(f"{snap.spec_name}: iterates in the (z_{i}, z_{j}) plane")
        marks: dict[str, dict[str, np.ndarray]] = {"start": {}, "end": {}, "cycle": {}}
        for trace in snap.traces:
            items = self._solver_items[trace.solver]
            pts = _finite(trace.trajectory[:, [i, j]])
            items.path.setData(pts[:, 0], pts[:, 1])
            items.dots.setData(pos=pts[np.isfinite(pts).all(axis=1)])
            self._collect(marks, trace, pts, [i, j])
        self._markers.draw(marks)

    def _draw_cobweb(self, snap: LiveSnapshot) -> None:
        self._set_labels("z", "f(z)")
        self._set_title(f"{snap.spec_name}: cobweb of z ↦ f(z)")
        cob = snap.cobweb
        keep = np.isfinite(_finite(cob.x)) if cob is not None else np.zeros(0, bool)
        if keep.any():
            x = cob.x[keep]
            self._curve.setData(x, _finite(cob.fx)[keep], connect="finite")
            self._diagonal.setData([x[0], x[-1]], [x[0], x[-1]])
        marks: dict[str, dict[str, np.ndarray]] = {"start": {}, "end": {}, "cycle": {}}
        for trace in snap.traces:
            z = _finite(trace.trajectory[:, 0])
            sx, sy = staircase(z)
            self._solver_items[trace.solver].path.setData(sx, sy)
            self._collect(marks, trace, np.column_stack([z, z]), [0, 0])
        self._markers.draw(marks)

    @staticmethod
    def _collect(
        marks: dict[str, dict[str, np.ndarray]], trace: SolverTrace, pts: np.ndarray, cols: list
    ) -> None:
        """Add a trace's start, last finite point and cycle points (``pts``: ``(T+1, 2)``)."""
        ok = np.isfinite(pts).all(axis=1)
        marks["start"][trace.solver] = pts[:1] if ok[:1].all() else np.empty((0, 2))
        marks["end"][trace.solver] = _last_finite(pts)
        if trace.cycle is not None and trace.cycle.size:
            cyc = _finite(trace.cycle[:, cols])
            marks["cycle"][trace.solver] = cyc[np.isfinite(cyc).all(axis=1)]
