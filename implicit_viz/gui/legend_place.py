"""Where a plot's legend hides the least data: the emptiest corner. No Qt.

A view hands in its plotted points as fractions of the visible range (0..1 each way, y up)
and the legend's size as fractions of the plot; line segments are sampled along their length,
so a curve that only passes through a corner counts there too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
