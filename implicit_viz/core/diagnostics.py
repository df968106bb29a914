"""Diagnostics of a solve: ``df/dz`` at the final iterate, predicted and observed rates.

- spectral radius ``rho(df/dz)`` and 2-norm ``||df/dz||_2`` at ``z*``: naive iteration converges
  locally iff ``rho < 1``, at rate about ``rho``; ``||df/dz||_2 < 1`` makes ``f`` a local
  contraction in the Euclidean norm;
- predicted rate: what the solver's linear theory says (``rho`` for naive iteration,
  ``max |1 - beta + beta lambda|`` for damped; NaN for superlinear methods);
- observed rate: the geometric mean of the last residual ratios ``r_{k+1} / r_k``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from implicit_viz.core.cost import META, count, dense_linalg_flops
from implicit_viz.core.errors import LimitError
from implicit_viz.core.jacobians import jacobian, jacobian_batch_last, jacobian_bytes
from implicit_viz.core.limits import MAX_DIAGNOSTIC_FLOPS, check_cost, check_memory
from implicit_viz.core.solvers.base import eigenvalues
from implicit_viz.core.status import Status

if TYPE_CHECKING:
    from implicit_viz.core.compiled_map import FixedPointMap
    from implicit_viz.core.result import SolveResult
    from implicit_viz.core.solvers.base import Solver
    from implicit_viz.core.spec import Spec


@dataclass(frozen=True)
class JacobianInfo:
    """``df/dz`` summaries at points ``z: (B, D)``: eigenvalues ``(B, D)`` complex, 2-norms ``(B,)``."""

    z: torch.Tensor
    eigvals: torch.Tensor
    norm: torch.Tensor

    @property
    def spectral_radius(self) -> torch.Tensor:
        return self.eigvals.abs().amax(dim=-1).to(self.norm.dtype)


def observed_rate(
    residuals: torch.Tensor, iterations: torch.Tensor, window: int = 5
) -> torch.Tensor:
    """Geometric-mean residual ratio over the last ``window`` steps of each element.

    Parameters
    ----------
    residuals : Tensor (B, T + 1)
        Residual histories (NaN after an element stopped).
    iterations : Tensor (B,)
        Steps each element took.

    Returns
    -------
    Tensor (B,)
        ``(r_n / r_{n-w})^(1/w)`` with ``n`` the last step and ``w = min(window, n)``;
        NaN where fewer than two steps were taken or a residual is zero or non-finite.
    """
    b = residuals.shape[0]
    n = iterations.clamp(max=residuals.shape[1] - 1)
    w = torch.clamp(n, max=window)
    ar = torch.arange(b, device=residuals.device)
    r_end = residuals[ar, n]
    r_start = residuals[ar, n - w]
    rate = (r_end / r_start) ** (1.0 / w.clamp(min=1).to(residuals.dtype))
    ok = (w >= 2) & torch.isfinite(rate) & (r_start > 0) & (r_end > 0)
    return torch.where(ok, rate, torch.full_like(rate, float("nan")))


def jacobian_at(fmap: FixedPointMap, z: torch.Tensor) -> torch.Tensor:
    """``df/dz`` at ``z: (B, D)`` -> ``(B, D, D)``, using the map's per-row values."""
    with torch.no_grad():
        return jacobian(fmap, z)


def jacobian_info(fmap: FixedPointMap, z: torch.Tensor) -> JacobianInfo:
    """Eigenvalues and 2-norm of ``df/dz`` at each row of ``z: (B, D)``."""
    jac = jacobian_at(fmap, z)
    finite = torch.isfinite(jac).all(dim=(-1, -2))
    safe = torch.where(finite[:, None, None], jac, torch.zeros_like(jac))
    norm = torch.linalg.matrix_norm(safe, ord=2)
    norm = torch.where(finite, norm, torch.full_like(norm, float("nan")))
    return JacobianInfo(z=z, eigvals=eigenvalues(jac), norm=norm)


def add_diagnostics(
    result: SolveResult,
    fmap: FixedPointMap,
    solver: Solver,
    known: JacobianInfo | None = None,
) -> SolveResult:
    """A copy of ``result`` with spectral radius, Jacobian norm, predicted and observed rates.

    Jacobian-based numbers are computed at converged elements and at the last iterate of
    still-converging ones (NaN elsewhere), and skipped
    (all NaN, the reason in ``extra["diagnostics_skipped"]``) when the dense Jacobians would
    exceed the memory budget or their cost :data:`MAX_DIAGNOSTIC_FLOPS` (see
    :func:`check_diagnostic_cost`): diagnostics are a bonus, never worth a long wait. ``known`` (same batch size) holds
    Jacobian summaries already computed, e.g. by another solver: they are reused for elements
    whose ``z*`` lies within ``max(1e-6, 100 tol) (1 + ||z*||)`` of the known point (solvers
    stopped by the same tolerance land that close to each other).
    """
    b, d = result.z.shape
    nan = torch.full((b,), float("nan"), dtype=result.z.dtype, device=result.z.device)
    rho, norm, pred = nan.clone(), nan.clone(), nan.clone()
    # at z*, and at the last iterate of an element still converging when the budget ended
    # (close to its z*: its observed rate is then set beside rho and the predicted rate)
    conv = (result.status == int(Status.CONVERGED)) | (result.status == int(Status.CONVERGING))
    skipped = None
    if bool(conv.any()):
        try:
            check_diagnostic_cost(fmap, int(conv.sum()))
        except LimitError as exc:
            skipped = f"diagnostics skipped: {exc.message}"
    if skipped is None and bool(conv.any()):
        eig = torch.full((b, d), complex(float("nan"), 0.0), device=result.z.device)
        eig = eig.to(torch.complex128 if result.z.dtype == torch.float64 else torch.complex64)
        todo = conv.clone()
        if known is not None:
            scale = 1 + result.z.abs().amax(dim=-1)
            radius = same_point_radius(result.options.tol)
            near = (result.z - known.z).abs().amax(dim=-1) <= radius * scale
            reuse = conv & near & torch.isfinite(known.norm)
            eig[reuse] = known.eigvals[reuse].to(eig.dtype)
            norm[reuse] = known.norm[reuse]
            todo = todo & ~reuse
        if bool(todo.any()):
            idx = todo.nonzero().squeeze(1)
            fm = fmap.take(idx) if fmap.batch is not None else fmap
            info = jacobian_info(fm, result.z[idx])
            eig[idx] = info.eigvals.to(eig.dtype)
            norm[idx] = info.norm
        rho = torch.where(conv, eig.abs().amax(dim=-1).to(rho.dtype), rho)
        p = solver.predicted_rate(eig)
        if p is not None:
            pred = torch.where(conv, p.to(pred.dtype), pred)
    else:
        eig = None
    if result.options.history:
        obs = observed_rate(result.residuals, result.iterations)
    else:
        obs = torch.full_like(nan, float("nan"))
    extra = dict(result.extra)
    if skipped is not None:
        extra["diagnostics_skipped"] = skipped
    if eig is not None:
        extra["jacobian_info"] = JacobianInfo(z=result.z, eigvals=eig, norm=norm)
    return replace(
        result,
        spectral_radius=rho,
        jac_norm=norm,
        predicted_rate=pred,
        observed_rate=obs,
        extra=extra,
    )


#: Flops of one row's Jacobian by autograd, per compiled map and (dim, dtype): shapes alone
#: decide it, and counting it on meta tensors costs about 0.4 ms, too much for every solve.
_JACOBIAN_FLOPS: weakref.WeakKeyDictionary[Any, dict[tuple[int, torch.dtype], float | None]] = (
    weakref.WeakKeyDictionary()
)


def _jacobian_flops_per_row(fmap: FixedPointMap) -> float | None:
    """Flops of the autograd Jacobian of one row of ``fmap`` (forward on ``D`` copies and the
    backward pass), counted once on meta tensors and remembered; None where an operation has no
    meta kernel."""
    key = (fmap.dim, fmap.dtype)
    known = _JACOBIAN_FLOPS.setdefault(fmap._f, {}) if fmap._f is not None else {}
    if key not in known:
        meta = fmap.to_meta()
        rows = 1 if meta.batch is None else meta.batch
        z = torch.empty(fmap.dim, rows, dtype=fmap.dtype, device=META)
        try:
            _, cost = count(lambda: jacobian_batch_last(meta.as_batch_last(), z))
            known[key] = cost.flops / rows
        except (RuntimeError, ValueError, TypeError, IndexError):
            known[key] = None
    return known[key]


def check_diagnostic_cost(fmap: FixedPointMap, batch: int) -> None:
    """Raise :class:`LimitError` when the Jacobians of ``batch`` rows (by autograd: ``f`` on
    ``D`` copies of each row, and its backward pass) and their eigenvalues and 2-norms would
    take more than the memory budget or :data:`MAX_DIAGNOSTIC_FLOPS`.

    The autograd part is counted on meta tensors (no compute): a map built of many small
    operations (a 2,200-entry vector literal) is cheap to evaluate but costs ``D^2`` per
    operation in the backward pass."""
    d = fmap.dim
    check_memory(
        f"the Jacobians at z* ({batch} x {d} x {d})",
        jacobian_bytes(d, batch, fmap.dtype, fmap.row_bytes()),
        field="diagnostics",
    )
    flops = dense_linalg_flops(d, batch)
    check_cost(
        "computing the eigenvalues of df/dz at z*", flops, MAX_DIAGNOSTIC_FLOPS, field="diagnostics"
    )
    per_row = _jacobian_flops_per_row(fmap)
    if per_row is None:
        return  # an operation without a meta kernel: cost unknown, computed as before
    flops += per_row * batch
    check_cost(
        "computing df/dz at z* and its eigenvalues",
        flops,
        MAX_DIAGNOSTIC_FLOPS,
        field="diagnostics",
    )


def same_point_radius(tol: float) -> float:
    """Two solves stopped by tolerance ``tol`` reached the same fixed point when they lie within
    ``same_point_radius(tol) (1 + ||z*||_inf)`` of each other: ``max(1e-6, 100 tol)``."""
    return max(1e-6, 100 * tol)


def known_info(result: SolveResult) -> JacobianInfo | None:
    """Jacobian summaries carried by a result with diagnostics, for reuse by another solver."""
    info = result.extra.get("jacobian_info")
    return info if isinstance(info, JacobianInfo) else None


#: :func:`spectral_radius_at` answers at most this dim (a hover must not wait on a big Jacobian).
MAX_POINT_DIM = 256


def spectral_radius_at(spec: Spec, z: Any, dtype: str = "float64") -> float:
    """``rho(df/dz)`` of ``spec`` (values as set in it) at one point ``z: (D,)``: what the live
    table shows for a converged solve, for any point, e.g. a sweep cell's ``z*``. NaN where
    ``z`` is not finite or ``dim`` exceeds :data:`MAX_POINT_DIM`."""
    from implicit_viz.core.compiled_map import compile_spec

    zt = torch.as_tensor(np.asarray(z, dtype=np.float64)).reshape(1, -1)
    if spec.dim > MAX_POINT_DIM or zt.shape[1] != spec.dim or not bool(torch.isfinite(zt).all()):
        return float("nan")
    fmap = compile_spec(spec, dtype=dtype)
    info = jacobian_info(fmap, zt.to(fmap.dtype))
    return float(info.eigvals.abs().amax())
