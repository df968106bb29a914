"""A batched backtracking (Armijo) line search on ``phi(z) = 0.5 ||g(z)||^2``, ``g = f(z) - z``.

Every element of the batch gets its own step length: the trials run on the elements still
searching (masks and index sets, no Python loop over elements), so one element that backtracks
ten times costs the others nothing. Newton's and Broyden's globalized steps
(:mod:`~implicit_viz.core.solvers.newton`, :mod:`~implicit_viz.core.solvers.broyden`) use it.

Why a line search rather than MINPACK's trust region (dogleg): with one direction per element
the batched search is a handful of masked vector operations per trial, while a trust region
needs, per element and per trial, a new constrained step from the Jacobian (a dogleg between
the Cauchy and the Newton points, or a Levenberg-Marquardt solve). The line search keeps the
method the user picked recognisable (the full step is tried first and taken whenever it
decreases ``phi`` enough, so near a root it *is* Newton's or Broyden's method), and on the
Moré-Garbow-Hillstrom problems it reaches as many roots as SciPy's ``hybr`` (see
``benchmarks/bench_mgh.py``).

The rule (Dennis and Schnabel, *Numerical Methods for Unconstrained Optimization and Nonlinear
Equations*, 1983, algorithm A6.3.1): accept the step length ``t`` when

    phi(z + t p) <= phi(z) + c1 t slope,     c1 = 1e-4,

``slope`` being the derivative of ``phi`` along ``p`` at ``t = 0`` (negative for a descent
direction); otherwise the minimiser of the quadratic through ``phi(0)``, ``slope`` and
``phi(t)`` is tried next, kept within ``[0.1 t, 0.5 t]`` (``0.1 t`` after a non-finite trial),
until ``t`` falls below the element's ``t_min``: the search then fails for that element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.batchops import col_sqnorm

#: Sufficient-decrease constant of the Armijo rule.
ARMIJO_C1 = 1e-4
#: Bounds of the next trial step as fractions of the last one.
SHRINK_MIN, SHRINK_MAX = 0.1, 0.5
#: At most this many trials per search (a backstop: ``t_min`` ends a search much sooner).
MAX_TRIALS = 60


def step_tol(dtype: torch.dtype) -> float:
    """Relative step below which a trial no longer moves ``z`` meaningfully: ``eps^(2/3)``
    (Dennis and Schnabel's ``steptol``), about 4e-11 in float64 and 2e-5 in float32."""
    return float(torch.finfo(dtype).eps) ** (2.0 / 3.0)


@dataclass
class SearchResult:
    """The outcome per element, batch-last.

    Attributes
    ----------
    z, fz : Tensor (D, B)
        The accepted trial point and its image; where the search failed, the point it started
        from and its image (unchanged).
    t : Tensor (B,)
        The accepted step length; 0 where the search failed.
    ok : Tensor (B,) bool
        Whether a step length was accepted.
    trials : Tensor (B,) int64
        Map evaluations the search spent on each element (trial points).
    """

    z: torch.Tensor
    fz: torch.Tensor
    t: torch.Tensor
    ok: torch.Tensor
    trials: torch.Tensor


def half_sq_residual(z: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    """``phi = 0.5 ||f(z) - z||^2`` per column: ``(D, B)`` -> ``(B,)``."""
    return 0.5 * col_sqnorm(fz - z)


def backtrack(
    f: Any,
    z: torch.Tensor,
    fz: torch.Tensor,
    p: torch.Tensor,
    slope: torch.Tensor,
    t0: torch.Tensor | float,
    t_min: torch.Tensor | float,
    search: torch.Tensor | None = None,
    phi0: torch.Tensor | None = None,
) -> SearchResult:
    """Backtrack along ``p`` from ``z`` for every element with ``search`` set.

    Parameters
    ----------
    f : BatchLastMap
        ``(D, n) -> (D, n)``; its ``take`` gives the map on a subset of the rows.
    z, fz : Tensor (D, B)
        The current points and their images.
    p : Tensor (D, B)
        The search directions.
    slope : Tensor (B,)
        ``d phi(z + t p) / dt`` at ``t = 0`` (exact, or the value a Newton direction would give).
    t0 : float or Tensor (B,)
        The first trial step length (1: the full step).
    t_min : float or Tensor (B,)
        The search fails for an element once its next trial step would be shorter than this.
    search : Tensor (B,) bool, optional
        Elements to search (default all); the others fail at once, with no evaluation.
    phi0 : Tensor (B,), optional
        ``phi(z)`` where the caller has it already.

    Returns
    -------
    SearchResult
    """
    b = z.shape[1]
    dev = z.device
    # step lengths are choices, like masks: held constant for autograd (unrolled backprop
    # differentiates the accepted trial points, never the choice between them)
    phi0 = (half_sq_residual(z, fz) if phi0 is None else phi0).detach()
    slope = slope.detach()
    t = torch.as_tensor(t0, dtype=z.dtype, device=dev).detach().expand(b).clone()
    t_min = torch.as_tensor(t_min, dtype=z.dtype, device=dev).detach().expand(b)
    pending = torch.isfinite(phi0) & torch.isfinite(slope) & torch.isfinite(p).all(dim=0)
    if search is not None:
        pending &= search
    ok = torch.zeros(b, dtype=torch.bool, device=dev)
    trials = torch.zeros(b, dtype=torch.int64, device=dev)
    z_out, fz_out = z.clone(), fz.clone()
    for _ in range(MAX_TRIALS):
        idx = pending.nonzero().squeeze(1)
        if not idx.numel():
            break
        whole = idx.numel() == b
        ti, pi, s0, q0 = (
            (t, p, slope, phi0) if whole else (t[idx], p[:, idx], slope[idx], phi0[idx])
        )
        zi = z if whole else z[:, idx]
        zt = zi + ti * pi
        ft = f(zt) if whole else f.take(idx)(zt)
        qt = half_sq_residual(zt, ft).detach()
        good = torch.isfinite(qt) & (qt <= q0 + ARMIJO_C1 * ti * s0)
        if whole and bool(good.all()):  # the common case: every first trial accepted
            return SearchResult(zt, ft, ti, good, trials + 1)
        # next trial: the minimiser of the quadratic through phi(0), slope, phi(t), safeguarded
        curv = qt - q0 - s0 * ti
        t_quad = -s0 * ti * ti / (2 * curv)
        t_next = torch.minimum(torch.maximum(t_quad, SHRINK_MIN * ti), SHRINK_MAX * ti)
        t_next = torch.where(torch.isfinite(qt) & (curv > 0), t_next, SHRINK_MIN * ti)
        trials.index_add_(0, idx, torch.ones_like(idx))
        acc = idx[good]
        if acc.numel():
            z_out[:, acc] = zt[:, good]
            fz_out[:, acc] = ft[:, good]
            ok[acc] = True
        t = t.index_put((idx,), torch.where(good, ti, t_next))  # not in place: ti is saved
        pending[idx] = ~good & (t_next >= t_min[idx])
    return SearchResult(z_out, fz_out, torch.where(ok, t, torch.zeros_like(t)), ok, trials)
