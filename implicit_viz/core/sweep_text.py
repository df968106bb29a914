"""A sweep's result in words: the status line of a finished sweep, the note of a cancelled one,
and one cell described for the pointer hovering over it. Pure functions of a
:class:`~implicit_viz.core.sweep.SweepResult`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from implicit_viz.core.status import Status
from implicit_viz.core.sweep_axes import cell_assignments

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.sweep import SweepResult

#: Periods named in the status line before "..." .
STATUS_PERIODS = 6
#: Outcome words where the label alone says too little.
_WORDS = {"converging": "still converging", "quasi_periodic": "quasi-periodic"}


def format_point(z: np.ndarray, limit: int = 4) -> str:
    """``"(0.5, -1.2, 3, 4, ...)"``: the first ``limit`` components to 4 significant digits."""
    z = np.asarray(z, dtype=float).ravel()
    vals = ", ".join(f"{v:.4g}" for v in z[:limit])
    return f"({vals}{', ...' if len(z) > limit else ''})"


def status_text(result: SweepResult) -> str:
    """``"512 x 512 cells, 1.8 s: 43.8 % converged, 2 fixed points, periods 5, 6"``; a
    cancelled sweep's text starts with :func:`cancel_note`."""
    ny, nx = result.status.shape
    summary = result.summary()
    size = f"{nx} cells" if result.request.y is None else f"{nx} x {ny} cells"
    parts = [f"{summary['outcome_fractions']['converged'] * 100:.1f} % converged"]
    for name in ("converging", "periodic", "quasi_periodic", "chaotic", "max_iter", "diverged"):
        frac = summary["outcome_fractions"][name]
        if frac > 0:
            parts.append(f"{frac * 100:.1f} % {_WORDS.get(name, name.replace('_', ' '))}")
    if result.basins_resolved:
        k = summary["n_fixed_points"]
        if k:
            parts.append(f"{k} fixed point{'s' if k != 1 else ''}")
    else:
        parts.append("fixed point moves with the params")
    periods = list(summary["period_histogram"])
    if periods:
        shown = ", ".join(str(p) for p in periods[:STATUS_PERIODS])
        more = f", ... ({len(periods)} in all)" if len(periods) > STATUS_PERIODS else ""
        parts.append(f"period{'s' if len(periods) > 1 else ''} {shown}{more}")
    text = f"{size}, {result.elapsed_s:.1f} s: " + ", ".join(parts)
    if result.cancelled:
        text = f"{cancel_note(result)}; " + text
    return text


def cancel_note(result: SweepResult) -> str:
    """``"cancelled: 1234 of 65536 cells solved"``."""
    return f"cancelled: {int(result.done.sum())} of {result.status.size} cells solved"


def cell_description(result: SweepResult, ix: int, iy: int) -> str:
    """One cell in words: axis values, outcome, iterations, period, fixed point, Lyapunov."""
    where = ", ".join(f"{k} = {v:.5g}" for k, v in cell_assignments(result, ix, iy).items())
    code = int(result.status[iy, ix])
    if code == int(Status.NOT_RUN):
        return f"{where}: not solved"
    label = Status(code).label
    word = _WORDS.get(label, label.replace("_", " "))
    its = int(result.iterations[iy, ix])
    text = f"{where}: {word} after {its} step{'s' if its != 1 else ''}"
    if code == int(Status.PERIODIC):
        text += f", period {int(result.period[iy, ix])}"
    if code == int(Status.CONVERGED):
        b = int(result.basin[iy, ix])
        if b >= 0 and b < len(result.fixed_points):
            text += f", basin {b}: z* = {format_point(result.fixed_points[b])}"
        elif result.z is not None:
            text += f", z* = {format_point(result.z[iy, ix])}"
    elif result.z is not None and code != int(Status.DIVERGED):
        text += f", last z = {format_point(result.z[iy, ix])}"
    if code == int(Status.CONVERGING):
        rate, need = _cell(result, "rate", ix, iy), _cell(result, "steps_needed", ix, iy)
        if math.isfinite(rate):
            text += f", rate {rate:.4g}"
        if math.isfinite(need):
            text += f", about {need:,.0f} more steps"
    lyap = float(result.lyapunov[iy, ix])
    if math.isfinite(lyap):
        err = _cell(result, "lyapunov_err", ix, iy)
        text += f", Lyapunov {lyap:.3g}" + (f" ± {err:.2g}" if math.isfinite(err) else "")
    return text


def _cell(result: SweepResult, name: str, ix: int, iy: int) -> float:
    """Cell ``(iy, ix)`` of the optional per-cell array ``name`` (NaN without it)."""
    arr = getattr(result, name, None)
    return math.nan if arr is None else float(arr[iy, ix])
