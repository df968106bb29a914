"""A plot's legend: made with the app's look, laid out in as many columns as its plot holds, and
moved to the corner where it hides the least data.

:func:`add_legend` makes one; :func:`place_legend` (called by
:func:`implicit_viz.gui.colors.settle` after each snapshot, and on each resize) lays it out and
moves it. The corner is chosen by NumPy-only geometry: a view's plotted points as fractions of
the visible range (0..1 each way, y up) and the legend's size as fractions of the plot; line
segments are sampled along their length, so a curve that only passes through a corner counts
there too.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pyqtgraph as pg

# --------------------------------------------------------------------------------------------
# Where the legend hides the least data (NumPy only)
# --------------------------------------------------------------------------------------------


#: Corners in order of preference when several are equally empty.
CORNERS: tuple[str, ...] = ("top-right", "top-left", "bottom-right", "bottom-left")
#: Spacing of the samples along a segment, as a fraction of the plot.
SAMPLE_STEP = 0.01
#: At most this many samples for all curves together (more are thinned evenly).
MAX_SAMPLES = 20_000


def sample_polyline(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points along the polyline ``(xs, ys)`` (plot fractions) every :data:`SAMPLE_STEP`,
    vertices included; segments with a non-finite end are skipped (the curve has a gap)."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    if xs.size < 2:
        ok = np.isfinite(xs) & np.isfinite(ys)
        return xs[ok], ys[ok]
    x0, y0, x1, y1 = xs[:-1], ys[:-1], xs[1:], ys[1:]
    ok = np.isfinite(x0) & np.isfinite(y0) & np.isfinite(x1) & np.isfinite(y1)
    x0, y0, x1, y1 = x0[ok], y0[ok], x1[ok], y1[ok]
    length = np.hypot(x1 - x0, y1 - y0)
    n = np.clip(np.ceil(length / SAMPLE_STEP), 1, 200).astype(int)  # samples per segment
    seg = np.repeat(np.arange(len(n)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    t = (np.arange(int(n.sum())) - start) / np.repeat(n, n)
    px = np.concatenate([x0[seg] + t * (x1 - x0)[seg], x1[-1:] if len(x1) else x1])
    py = np.concatenate([y0[seg] + t * (y1 - y0)[seg], y1[-1:] if len(y1) else y1])
    lone = np.isfinite(xs) & np.isfinite(ys)  # isolated finite points between gaps
    return np.concatenate([px, xs[lone]]), np.concatenate([py, ys[lone]])


def corner_counts(xs: np.ndarray, ys: np.ndarray, width: float, height: float) -> dict[str, int]:
    """How many points fall under a ``width x height`` box (plot fractions) in each corner."""
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    inside = (xs >= 0) & (xs <= 1) & (ys >= 0) & (ys <= 1)
    xs, ys = xs[inside], ys[inside]
    left, right = xs <= width, xs >= 1 - width
    bottom, top = ys <= height, ys >= 1 - height
    return {
        "top-right": int((top & right).sum()),
        "top-left": int((top & left).sum()),
        "bottom-right": int((bottom & right).sum()),
        "bottom-left": int((bottom & left).sum()),
    }


def emptiest_corner(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    width: float,
    height: float,
    points: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> str:
    """The corner (one of :data:`CORNERS`) where a legend of ``width x height`` (plot
    fractions) covers the fewest samples of ``curves`` (polylines) and ``points`` (markers);
    ties go to the earlier corner in :data:`CORNERS`."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for cx, cy in curves:
        sx, sy = sample_polyline(cx, cy)
        xs.append(sx)
        ys.append(sy)
    for px, py in points:
        xs.append(np.asarray(px, dtype=float))
        ys.append(np.asarray(py, dtype=float))
    if not xs:
        return CORNERS[0]
    ax, ay = np.concatenate(xs), np.concatenate(ys)
    if ax.size > MAX_SAMPLES:
        keep = np.linspace(0, ax.size - 1, MAX_SAMPLES).astype(int)
        ax, ay = ax[keep], ay[keep]
    counts = corner_counts(ax, ay, width, height)
    return min(CORNERS, key=lambda c: (counts[c], CORNERS.index(c)))


# --------------------------------------------------------------------------------------------
# The legend of a plot (pyqtgraph)
# --------------------------------------------------------------------------------------------


def add_legend(pw: pg.PlotWidget, columns: int = 1) -> pg.LegendItem:
    """A legend with dark text on a translucent white box, ``columns`` entries a row. After each
    new snapshot (:func:`~implicit_viz.gui.colors.settle`) and each resize of the plot it moves to
    the corner where it hides the least data; once the user drags it, it stays where it was put."""
    import pyqtgraph as pg

    from implicit_viz.gui.colors import FOREGROUND  # colors.py imports this module

    legend = pw.getPlotItem().addLegend(
        offset=(-10, 10),
        labelTextColor=FOREGROUND,
        brush=pg.mkBrush(255, 255, 255, 150),
        pen=pg.mkPen("#BBBBBB"),
        colCount=columns,
    )
    legend.auto_place = True  # type: ignore[attr-defined]
    legend.corner = "top-right"  # type: ignore[attr-defined]
    legend.base_columns = columns  # type: ignore[attr-defined]
    # A weak reference: the handler must not make a reference cycle with the legend (Qt
    # objects freed by Python's cycle collector at an arbitrary moment can deadlock Qt).
    ref = weakref.ref(legend)
    drag = type(legend).mouseDragEvent

    def on_drag(ev) -> None:  # the user's choice wins from now on
        item = ref()
        if item is not None:
            item.auto_place = False
            drag(item, ev)

    legend.mouseDragEvent = on_drag
    # ... and the plot's size changes (a pane squeezed by a tab): placed again then too
    plot_ref = weakref.ref(pw)

    def on_resize(*_args) -> None:
        plot = plot_ref()
        if plot is not None:
            place_legend(plot)

    pw.getPlotItem().getViewBox().sigResized.connect(on_resize)
    return legend


#: Anchor (item corner, parent corner) and offset in pixels of each legend corner.
_ANCHORS = {
    "top-right": ((1, 0), (1, 0), (-10, 10)),
    "top-left": ((0, 0), (0, 0), (10, 10)),
    "bottom-right": ((1, 1), (1, 1), (-10, -10)),
    "bottom-left": ((0, 1), (0, 1), (10, -10)),
}


def _plotted(pi) -> tuple[list, list]:
    """The curves (polylines) and marker points of a plot in fractions of its visible range."""
    import pyqtgraph as pg

    (x0, x1), (y0, y1) = pi.getViewBox().viewRange()
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    curves, points = [], []
    for item in pi.listDataItems():
        if not item.isVisible():
            continue
        x, y = item.getData()
        if x is None or y is None or not len(x):
            continue
        fx = (np.asarray(x, float) - x0) / sx
        fy = (np.asarray(y, float) - y0) / sy
        if isinstance(item, pg.ScatterPlotItem) or (
            isinstance(item, pg.PlotDataItem) and item.opts.get("pen") is None
        ):
            points.append((fx, fy))
        else:
            curves.append((fx, fy))
    for item in pi.items:
        if isinstance(item, pg.InfiniteLine) and item.isVisible():
            v = item.value()
            if item.angle % 180 == 0:  # horizontal
                curves.append((np.array([0.0, 1.0]), np.full(2, (v - y0) / sy)))
            elif item.angle % 180 == 90:
                curves.append((np.full(2, (v - x0) / sx), np.array([0.0, 1.0])))
    return curves, points


#: A legend taller than this share of its plot spreads its entries over more columns.
_TALL_LEGEND = 0.5


def legend_width(legend, columns: int) -> float:
    """Width in pixels the legend's entries take laid out in ``columns`` columns (row by row,
    as pyqtgraph fills them): per column the sample and the widest label text, plus the
    grid's spacing. From the text itself, not the labels' boxes, which the grid stretches."""
    gap = max(legend.layout.horizontalSpacing(), 0.0)
    widths = [
        (sample.boundingRect().width(), label.item.boundingRect().width())
        for sample, label in legend.items
    ]
    per_column = [
        max(s for s, _ in widths[j::columns]) + max(t for _, t in widths[j::columns])
        for j in range(min(columns, len(widths)))
    ]
    return sum(per_column) + gap * (2 * len(per_column) - 1)


def legend_columns_that_fit(legend, width: float, most: int) -> int:
    """The most columns, up to ``most``, that lay the legend out within ``width`` pixels
    (1 when even one column is wider)."""
    cols = max(1, most)
    while cols > 1 and legend_width(legend, cols) > width:
        cols -= 1
    return cols


def _fit_rows(legend, view_width: float, view_height: float) -> None:
    """The legend's own column count, or, when that would make it taller than
    :data:`_TALL_LEGEND` of the plot (a plot squeezed by its neighbours), the fewest columns
    that make it short enough; never more columns than the plot's width holds, so the legend
    is never wider than its plot."""
    n = len(legend.items)
    base = getattr(legend, "base_columns", 1)
    if n <= 1:
        return
    row_height = legend.height() / max(legend.rowCount, 1)
    fits = legend_columns_that_fit(legend, view_width - 40, n)  # margins and the legend's box
    want = min(base, fits)
    while want < min(n, fits) and row_height * math.ceil(n / want) > _TALL_LEGEND * view_height:
        want += 1
    if want != legend.columnCount:
        legend.setColumnCount(want)


def place_legend(pw: pg.PlotWidget) -> str | None:
    """Move the plot's legend (one made by :func:`add_legend`) to the corner where it hides
    the fewest plotted samples; returns that corner, or None when it was left alone."""
    pi = pw.getPlotItem()
    legend = pi.legend
    if legend is None or not getattr(legend, "auto_place", False) or not legend.isVisible():
        return None
    vb = pi.getViewBox()
    w, h = vb.width(), vb.height()
    if w <= 0 or h <= 0:
        return None
    _fit_rows(legend, w, h)
    curves, points = _plotted(pi)
    corner = emptiest_corner(curves, (legend.width() + 10) / w, (legend.height() + 10) / h, points)
    if corner != legend.corner:
        item_pos, parent_pos, offset = _ANCHORS[corner]
        legend.anchor(itemPos=item_pos, parentPos=parent_pos, offset=offset)
        legend.corner = corner
    return corner
