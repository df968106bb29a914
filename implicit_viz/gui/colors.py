"""Colours and the common look of the live plots.

One colour per solver from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), tints for outcome words in tables, colours for the components of ``z``, and
:func:`new_plot_widget`, a pyqtgraph plot with a white background and dark axes.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pyqtgraph as pg

#: Okabe-Ito colours (yellow left out: it is hard to see on white).
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "bluish_green": "#009E73",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "sky_blue": "#56B4E9",
    "black": "#000000",
}
#: Solvers that declare no colour of their own (``Solver.color``) cycle through these.
_SPARE = (OKABE_ITO["orange"], OKABE_ITO["black"])
#: Light tints behind outcome words (keys: ``Status.label``); converged has none.
STATUS_TINTS: dict[str, str] = {
    "diverged": "#F4C7B8",
    "periodic": "#FBE3A6",
    "max_iter": "#DDDDDD",
    "chaotic": "#EBC6DD",
    "not_run": "#EEEEEE",
}
BACKGROUND = "#FFFFFF"
FOREGROUND = "#202020"


def solver_color(name: str) -> str:
    """Hex colour of a solver by registry name: its own (``Solver.color``), else a stable spare
    colour (also for names not registered)."""
    from implicit_viz.core.errors import SolverError
    from implicit_viz.core.solvers import solver_class

    try:
        own = solver_class(name).color
    except SolverError:
        own = ""
    return own or _SPARE[sum(map(ord, name)) % len(_SPARE)]


def status_tint(status: str) -> str | None:
    """Background tint for an outcome (``Status.label``), or None when it needs no marking."""
    return STATUS_TINTS.get(status)


#: Plotted values beyond +-PLOT_LIMIT become gaps: pyqtgraph's range arithmetic (``mn + mx``,
#: ``mx - mn``) overflows to inf near the largest float and then raises on every paint.
PLOT_LIMIT = 1e300


def plottable(a: np.ndarray) -> np.ndarray:
    """``a`` as float64 with NaN (a gap) where it is not finite or beyond +-:data:`PLOT_LIMIT`."""
    a = np.asarray(a, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(a) <= PLOT_LIMIT, a, np.nan)


def component_colors(n: int) -> list[str]:
    """``n`` hex colours for the components ``z_0 .. z_{n-1}``.

    Up to 8 components get distinct Okabe-Ito colours; more get a sweep of the viridis map.
    """
    if n <= 8:
        base = [*OKABE_ITO.values(), "#F0E442"]
        return base[:n]
    import pyqtgraph as pg

    cmap = pg.colormap.get("viridis")
    lut = cmap.getLookupTable(0.0, 0.9, nPts=n, alpha=False)
    return ["#{:02X}{:02X}{:02X}".format(*map(int, rgb)) for rgb in lut]


def component_colors_at(indices: np.ndarray, n: int) -> list[str]:
    """The colours :func:`component_colors` gives components ``indices`` of ``n`` (``n > 8``),
    without building all ``n``."""
    import pyqtgraph as pg

    cmap = pg.colormap.get("viridis")
    pos = 0.9 * np.asarray(indices, dtype=float) / max(n - 1, 1)
    rgb = cmap.map(pos, mode="byte")[:, :3]
    return ["#{:02X}{:02X}{:02X}".format(*map(int, c)) for c in rgb]


def new_plot_widget(x_label: str, y_label: str) -> pg.PlotWidget:
    """A plot with the app's look: white background, dark axes and labels, no SI prefixes.

    No grid: pyqtgraph's grid costs about 10 ms a redraw, a third of the app's budget.
    """
    import pyqtgraph as pg

    pw = pg.PlotWidget(background=BACKGROUND)
    pi = pw.getPlotItem()
    for name in ("left", "bottom"):
        ax = pi.getAxis(name)
        ax.setPen(pg.mkPen(FOREGROUND))
        ax.setTextPen(pg.mkPen(FOREGROUND))
        ax.enableAutoSIPrefix(False)
    pi.setLabel("bottom", x_label, color=FOREGROUND)
    pi.setLabel("left", y_label, color=FOREGROUND)
    return pw


def add_legend(pw: pg.PlotWidget, columns: int = 1) -> pg.LegendItem:
    """A legend with dark text on a translucent white box. After each new snapshot
    (:func:`settle`) it moves to the corner where it hides the least data; once the user drags
    it, it stays where it was put."""
    import pyqtgraph as pg

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
    import numpy as np
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
    from implicit_viz.gui.legend_place import emptiest_corner

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


def set_title(pw: pg.PlotWidget, text: str) -> None:
    """Set the plot's title in the foreground colour."""
    pw.getPlotItem().setTitle(text, color=FOREGROUND, size="10pt")


def settle(pw: pg.PlotWidget) -> None:
    """Apply auto-range and view transforms now, after new data, rather than during the paint.

    pyqtgraph does this in the paint itself, and the range change then asks for a second paint;
    done beforehand, a new snapshot costs one paint.
    """
    scene = pw.scene()
    if scene is not None:
        scene.prepareForPaint()
    place_legend(pw)
