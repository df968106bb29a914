"""Comparing a gradient with the reference: relative error, cosine, and the curves over ``k``
with their fitted and predicted rates."""

from __future__ import annotations

import math

import numpy as np
import torch

from implicit_viz.core.gradients.methods import _Run
from implicit_viz.core.gradients.registry import method_info
from implicit_viz.core.gradients.report import GradCurve


def _rel_error(g: np.ndarray, ref: np.ndarray) -> float:
    """``||g - ref|| / ||ref||`` (the absolute error when ``ref`` is zero)."""
    diff = float(np.linalg.norm(np.asarray(g, dtype=np.float64) - ref))
    den = float(np.linalg.norm(ref))
    return diff / den if den > 0 else diff


def _cosine(g: np.ndarray, ref: np.ndarray) -> float:
    g = np.asarray(g, dtype=np.float64)
    den = float(np.linalg.norm(g) * np.linalg.norm(ref))
    return float(g @ ref) / den if den > 0 and math.isfinite(den) else float("nan")


def fit_rate(errors: np.ndarray, floor: float = 0.0, *, k_factor: bool = False) -> float:
    """Geometric decay rate of ``errors[k-1]`` over ``k = 1..K``.

    ``exp`` of the least-squares slope of ``log error`` (``log(error / k)`` with ``k_factor``)
    on the middle half of the decaying part: the steps before the curve first comes within a
    factor 30 of its smallest value (or of ``floor``). NaN with fewer than 3 points.

    ``k_factor`` suits unrolling from ``z0``: there the iterate and its derivative converge
    together and the gradient error behaves like ``C k rho^k`` (a double eigenvalue of the
    joint iteration), not ``C rho^k``.
    """
    e = np.asarray(errors, dtype=np.float64)
    finite = np.isfinite(e) & (e > 0)
    if finite.sum() < 3:
        return float("nan")
    thr = max(floor, 30 * float(e[finite].min()))
    stop = len(e)
    for i, v in enumerate(e):
        if not (np.isfinite(v) and v > thr):
            stop = i
            break
    lo, hi = stop // 4, stop - stop // 4
    if hi - lo < 3:
        return float("nan")
    k = np.arange(lo + 1, hi + 1, dtype=np.float64)
    y = np.log(e[lo:hi]) - (np.log(k) if k_factor else 0.0)
    slope = np.polyfit(k, y, 1)[0]
    return float(np.exp(slope))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _curve(
    method: str, run: _Run, ref: np.ndarray, k_max: int, floor: float, predicted: float
) -> GradCurve:
    """Curve arrays over ``k = 1..k_max`` from a run with ``curve=True``; a run that stopped
    early holds its last value. The rate is fitted on the error of a forward curve (as
    ``k rho^k`` where the method says so: ``unrolled``), on the residual of a backward one."""
    n = len(run.grads)
    idx = np.minimum(np.arange(k_max), n - 1)
    grads = [_np(g) for g in run.grads]
    errs = np.array([_rel_error(grads[j], ref) for j in idx])
    info = method_info(method)
    kind = info.residual_kind
    if kind == "forward":
        rate = fit_rate(errs[:n], floor, k_factor=info.rate_k_factor)
    else:
        rate = fit_rate(np.asarray(run.residuals, dtype=np.float64))
    return GradCurve(
        method=method,
        k=np.arange(1, k_max + 1),
        rel_error=errs,
        cosine=np.array([_cosine(grads[j], ref) for j in idx]),
        memory_bytes=np.asarray(run.memory, dtype=np.int64)[idx],
        residual=np.asarray(run.residuals, dtype=np.float64)[idx],
        residual_kind=kind,
        rate=rate,
        predicted_rate=predicted,
        steps_used=n,
    )
