"""Colours of sweep pictures (NumPy only), shared by the CLI's PNG and the app's basins view.

Each basin has its own hue, shaded by iterations (darker = more steps); diverged, max_iter
(no verdict), chaotic, quasi-periodic and not-yet-solved cells have colours of their own,
still-converging cells a light version of the converged blue, periodic cells a warm colour per
period. :func:`legend` lists what appears in a picture. :func:`sweep_picture` colours a
(partial) result the way the app draws it, :func:`shade_strip` shows the shading by iterations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from implicit_viz.core.status import Status

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.sweep import SweepResult

RGB = tuple[int, int, int]

#: Hues for basins 0, 1, 2, ... (cycled).
BASIN_COLORS: list[RGB] = [
    (31, 119, 180),
    (44, 160, 44),
    (148, 103, 189),
    (23, 190, 207),
    (140, 86, 75),
    (188, 189, 34),
    (65, 105, 225),
    (0, 128, 128),
    (107, 142, 35),
    (147, 112, 219),
]
#: Converged cells when basins are not resolved (the fixed point moves with the params).
CONVERGED_COLOR: RGB = (31, 119, 180)
#: Periodic cells by period 2, 3, ..., 9; longer periods share :data:`LONG_PERIOD_COLOR`, so
#: no two periods in a legend ever share a colour (hovering a cell tells its exact period).
PERIOD_COLORS: list[RGB] = [
    (255, 215, 0),
    (255, 140, 0),
    (255, 99, 71),
    (220, 20, 60),
    (255, 105, 180),
    (210, 105, 30),
    (240, 128, 128),
    (255, 160, 122),
]
#: Periods from ``2 + len(PERIOD_COLORS)`` (10) on.
LONG_PERIOD_COLOR: RGB = (178, 34, 34)
LONG_PERIOD = 2 + len(PERIOD_COLORS)
STATUS_COLORS: dict[Status, RGB] = {
    Status.NOT_RUN: (128, 128, 128),
    Status.DIVERGED: (25, 25, 25),
    Status.MAX_ITER: (235, 235, 235),
    Status.CHAOTIC: (199, 21, 133),
    # a light version of the converged blue: converging, just out of budget
    Status.CONVERGING: (166, 206, 227),
    # a light lavender: apart from the warm periodic colours and from chaotic's dark magenta
    # in hue and in lightness (the pair differs in lightness under every colour deficiency)
    Status.QUASI_PERIODIC: (184, 172, 214),
}


#: Outcomes with a colour of their own, in the order a legend lists them.
LEGEND_ORDER = (
    Status.CONVERGING,
    Status.QUASI_PERIODIC,
    Status.CHAOTIC,
    Status.MAX_ITER,
    Status.DIVERGED,
    Status.NOT_RUN,
)
#: Legend words where the label alone says too little.
LEGEND_WORDS = {
    Status.CONVERGING: "still converging (out of budget)",
    Status.QUASI_PERIODIC: "quasi-periodic",
    Status.MAX_ITER: "max_iter (no verdict)",
}


def period_color(k: int) -> RGB:
    """The colour of period ``k``: one of its own for 2..9, one shared colour from 10 on."""
    if k >= LONG_PERIOD:
        return LONG_PERIOD_COLOR
    return PERIOD_COLORS[max(k, 2) - 2]


def basin_color(i: int) -> RGB:
    return BASIN_COLORS[i % len(BASIN_COLORS)]


#: Cells coloured per chunk of :func:`cell_colors` (bounds its float temporaries).
_CHUNK_CELLS = 1 << 18


def cell_colors(
    status: np.ndarray,
    iterations: np.ndarray,
    basin: np.ndarray,
    period: np.ndarray,
    max_iter: int,
    shade: bool = True,
) -> np.ndarray:
    """RGB image ``(ny, nx, 3)`` uint8 for per-cell arrays of a sweep.

    Converged cells take their basin's hue (one hue if ``basin`` is -1), scaled from full
    brightness (1 step) to 35 % (``max_iter`` steps) on a log scale when ``shade``. Colours are
    looked up in tables, a block of rows at a time: beyond the uint8 image, memory stays small
    at any grid size (the inputs may be views, e.g. flipped ``a[::-1]``).
    """
    out = np.empty((*status.shape, 3), np.uint8)
    if not status.size:
        return out
    rows = status.shape[0] if status.ndim else 1
    cols = max(status.size // max(rows, 1), 1)
    step = max(1, _CHUNK_CELLS // cols)
    flat = out.reshape(rows, cols, 3)
    views = [np.reshape(a, (rows, cols)) for a in (status, iterations, basin, period)]
    for r0 in range(0, rows, step):
        chunk = [v[r0 : r0 + step].ravel() for v in views]
        rgb = _chunk_colors(*chunk, max_iter=max_iter, shade=shade)
        flat[r0 : r0 + step] = rgb.reshape(-1, cols, 3)
    return out


_BASIN_LUT = np.array([*BASIN_COLORS, CONVERGED_COLOR], float)
_PERIOD_LUT = np.array([*PERIOD_COLORS, LONG_PERIOD_COLOR], float)


def _chunk_colors(
    status: np.ndarray,
    iterations: np.ndarray,
    basin: np.ndarray,
    period: np.ndarray,
    max_iter: int,
    shade: bool,
) -> np.ndarray:
    """:func:`cell_colors` of flat arrays: ``(n, 3)`` uint8."""
    out = np.zeros((len(status), 3), np.float64)
    conv = status == int(Status.CONVERGED)
    if conv.any():
        b = basin[conv].astype(np.int64)
        hues = _BASIN_LUT[np.where(b >= 0, b % len(BASIN_COLORS), len(BASIN_COLORS))]
        if shade:
            t = np.log1p(iterations[conv].astype(float)) / np.log1p(max(max_iter, 1))
            hues = hues * (1.0 - 0.65 * np.clip(t, 0, 1))[:, None]
        out[conv] = hues
    per = status == int(Status.PERIODIC)
    if per.any():
        k = np.clip(period[per].astype(np.int64), 2, LONG_PERIOD) - 2
        out[per] = _PERIOD_LUT[k]
    for st, rgb in STATUS_COLORS.items():
        m = status == int(st)
        if m.any():
            out[m] = rgb
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def legend(
    status: np.ndarray, basin: np.ndarray, period: np.ndarray, fixed_points: np.ndarray
) -> list[tuple[str, RGB]]:
    """Labels and colours of what a picture shows, in a fixed order."""
    items: list[tuple[str, RGB]] = []
    conv = status == int(Status.CONVERGED)
    if conv.any():
        ids = _unique_where(basin, conv)
        if (ids < 0).all():
            items.append(("converged", CONVERGED_COLOR))
        for i in ids[ids >= 0][:12]:
            pt = ", ".join(f"{v:.3g}" for v in fixed_points[int(i)][:3])
            more = ", ..." if fixed_points.shape[1] > 3 else ""
            items.append((f"basin {int(i)}: z* = ({pt}{more})", basin_color(int(i))))
    ks = _unique_where(period, status == int(Status.PERIODIC))
    for k in ks[ks < LONG_PERIOD]:
        items.append((f"periodic, k = {int(k)}", period_color(int(k))))
    long = [int(k) for k in ks[ks >= LONG_PERIOD]]
    if long:
        shown = ", ".join(map(str, long[:4])) + (", ..." if len(long) > 4 else "")
        items.append((f"periodic, k >= {LONG_PERIOD} ({shown})", LONG_PERIOD_COLOR))
    for st in LEGEND_ORDER:
        if (status == int(st)).any():
            items.append((LEGEND_WORDS.get(st, st.label.replace("_", " ")), STATUS_COLORS[st]))
    return items


def _unique_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``np.unique(values[mask])``, a block at a time (no copy of the whole selection)."""
    v, m = np.ravel(values), np.ravel(mask)
    parts = [
        np.unique(v[i : i + _CHUNK_CELLS][m[i : i + _CHUNK_CELLS]])
        for i in range(0, v.size, _CHUNK_CELLS)
    ]
    return np.unique(np.concatenate(parts)) if parts else v[:0]


def sweep_picture(result: SweepResult) -> np.ndarray:
    """Cell colours ``(ny, nx, 3)`` uint8 of a result, as :func:`cell_colors` gives them.

    While a sweep runs, unsolved cells borrow the colour of their preview cell
    (:meth:`SweepResult.filled`); a finished or cancelled result is drawn as it is, unsolved
    cells in the ``not_run`` grey. The app calls it on the sweep's worker thread.
    """
    running = not (result.cancelled or result.complete)

    def arr(name: str) -> np.ndarray:
        return result.filled(name) if running else getattr(result, name)

    return unique_cell_colors(
        arr("status"),
        arr("iterations"),
        arr("basin"),
        arr("period"),
        result.request.options.max_iter,
    )


def unique_cell_colors(
    status: np.ndarray,
    iterations: np.ndarray,
    basin: np.ndarray,
    period: np.ndarray,
    max_iter: int,
) -> np.ndarray:
    """Exactly :func:`cell_colors`, computed once per distinct cell state.

    A cell's colour depends only on its status, and on its basin and iterations (converged) or
    its period (periodic); a grid has a few hundred such states. Colouring those and spreading
    them with one ``np.unique`` keeps the work in NumPy: a cell-by-cell colouring of a 512 x 512
    grid is a 60 ms Python loop, which (on the worker thread) starves the GUI thread of the GIL.
    """
    st = status.astype(np.int64)
    conv = st == int(Status.CONVERGED)
    per = st == int(Status.PERIODIC)
    it = np.where(conv, iterations, 0).astype(np.int64) & 0xFFFFFFFF
    b = np.where(conv, basin.astype(np.int64) + 1, 0) & 0xFFFFFFF
    p = np.where(per, period, 0).astype(np.int64) & 0xFFFF
    key = (st << 60) | (b << 32) | it | p
    _, first, inverse = np.unique(key.ravel(), return_index=True, return_inverse=True)
    flat = [a.reshape(1, -1)[:, first] for a in (status, iterations, basin, period)]
    colors = cell_colors(*flat, max_iter)[0]  # (K, 3)
    return colors[inverse.reshape(status.shape)]


def shade_strip(max_iter: int, basin: int = 0, n: int = 96) -> np.ndarray:
    """``(1, n, 3)`` colours of converged cells of ``basin`` (-1: basins not resolved) from 1 to
    ``max_iter`` iterations, log-spaced: the key to the shading of a picture."""
    its = np.unique(np.rint(np.geomspace(1, max(max_iter, 1), n)).astype(np.int32))
    its = np.interp(np.linspace(0, len(its) - 1, n), np.arange(len(its)), its).astype(np.int32)
    ones = np.ones((1, n), np.int8) * int(Status.CONVERGED)
    return cell_colors(
        ones, its[None, :], np.full((1, n), basin, np.int32), np.zeros((1, n), np.int16), max_iter
    )
