"""Colours and the common look of the live plots.

One colour per solver from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), tints for outcome words in tables, colours for the components of ``z``, and
:func:`new_plot_widget`, a pyqtgraph plot with a white background and dark axes. Legends are
laid out by :mod:`implicit_viz.gui.legend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from implicit_viz.gui.legend import place_legend

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
    "converging": "#DCEBF5",
    "quasi_periodic": "#E6E1F2",
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
