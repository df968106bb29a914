"""The float64 reference: ``z*`` to 1e-12 (polished by Newton), the exact implicit gradient
there, a check by central finite differences, and the conditioning of ``I - J`` at ``z*``."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch

from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import LimitError
from implicit_viz.core.gradients.binding import _bind, _Bound
from implicit_viz.core.gradients.cancel import NEVER, CancelPoll
from implicit_viz.core.gradients.compare import _np, _rel_error
from implicit_viz.core.gradients.meter import SavedTensorMeter
from implicit_viz.core.gradients.methods import _exact
from implicit_viz.core.gradients.report import FDCheck, ForwardInfo, Reference
from implicit_viz.core.gradients.request import GradRequest
from implicit_viz.core.jacobians import jacobian_batch_last
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers.base import eigenvalues
from implicit_viz.core.status import Status

REF_TOL = 1e-12
REF_MAX_ITER = 10_000


def _reference(
    request: GradRequest,
    loss_text: str,
    device: torch.device,
    forward: ForwardInfo,
    z_fwd: torch.Tensor,
    poll: CancelPoll = NEVER,
) -> tuple[Reference, torch.Tensor, tuple[float, float, float, torch.Tensor]]:
    """The float64 reference (a fresh compile; CPU when ``device`` is mps), its ``z*`` (D, 1)
    and the conditioning there: ``rho(J)``, ``sigma_min`` and ``sigma_max`` of ``I - J``, the
    eigenvalues of ``J`` ``(1, D)``. Raises :class:`~implicit_viz.core.errors.Cancelled` when
    ``poll`` says so."""
    t0 = time.perf_counter()
    ref_device = device if device.type != "mps" else torch.device("cpu")
    rb = _bind(request.spec, request.wrt, loss_text, ref_device, torch.float64)
    converged = forward.status == Status.CONVERGED.label
    hint = z_fwd.to(device=ref_device, dtype=torch.float64)
    z_ref, status, solver, residual = _reference_solve(rb, request, hint, converged, poll)
    poll.check()
    grad = _exact(rb, z_ref, SavedTensorMeter(False))
    fd = _fd_check(rb, z_ref, grad, request, poll)
    conditioning = _conditioning(rb, z_ref)
    with torch.no_grad():
        loss = float(rb.loss(z_ref)[0])
    reference = Reference(
        gradient=_np(grad),
        z=_np(z_ref[:, 0]),
        residual=residual,
        status=status,
        solver=solver,
        loss=loss,
        fd=fd,
        time_s=time.perf_counter() - t0,
    )
    return reference, z_ref, conditioning


def _reference_solve(
    b: _Bound,
    request: GradRequest,
    hint: torch.Tensor,
    forward_converged: bool,
    poll: CancelPoll = NEVER,
) -> tuple[torch.Tensor, str, str, float]:
    """``z*`` to 1e-12. After a converged forward solve: the request's solver from ``z0`` (the
    same point, tighter), else Newton from the forward result. Otherwise Newton from the forward
    result or from ``z0``, Anderson from ``z0``, and the request's solver last. The first that
    converges wins (polished by Newton), else the lowest residual. Returns
    ``(z (D, 1), status, solver, residual)``."""
    opts = SolveOptions(
        tol=REF_TOL, rtol=1e-14, max_iter=REF_MAX_ITER, diagnostics=False, lyapunov_steps=0
    )
    own = (request.solver, {}, None)
    if isinstance(request.solver, str):
        own = (request.solver, dict(request.solver_options), None)
    polish = [("newton", {}, hint.T)] if bool(torch.isfinite(hint).all()) else []
    others = [("newton", {}, None), ("anderson", {}, None)]
    tries = [own, *polish, *others] if forward_converged else [*polish, *others, own]
    best = None
    for slv, sopts, z0 in tries:
        o = opts if slv != "newton" else replace(opts, max_iter=200)
        res = solve(b.fmap, slv, z0, options=o, solver_options=sopts, cancel=poll.for_driver)
        poll.after_solve()
        status = Status(int(res.status[0]))
        resid = float(res.residual[0])
        found = (res.z.T.contiguous(), status.label, res.solver, resid)
        if status == Status.CONVERGED:
            return _polish(b, found, poll)
        if best is None or (math.isfinite(resid) and not resid >= best[3]):
            best = found
    assert best is not None
    return best


def _polish(
    b: _Bound, found: tuple[torch.Tensor, str, str, float], poll: CancelPoll = NEVER
) -> tuple[torch.Tensor, str, str, float]:
    """A few Newton steps from a converged ``z*``, kept where they lower the residual (to
    round-off, far below the 1e-12 the solve stopped at)."""
    opts = SolveOptions(tol=1e-300, max_iter=3, diagnostics=False, lyapunov_steps=0)
    res = solve(b.fmap, "newton", found[0].T, options=opts, cancel=poll.for_driver)
    poll.after_solve()
    resid = float(res.residual[0])
    if resid < found[3]:
        return res.z.T.contiguous(), found[1], f"{found[2]} + newton", resid
    return found


def _fd_check(
    b: _Bound,
    z_star: torch.Tensor,
    exact: torch.Tensor,
    request: GradRequest,
    poll: CancelPoll = NEVER,
) -> FDCheck:
    """Central differences of ``L(z*(theta))``, each ``z*(theta +- h d)`` by Newton from
    ``z*`` (all perturbations in one batch)."""
    rng = np.random.default_rng(request.seed)
    n = b.size
    labels: list[str] = []
    dirs: list[np.ndarray] = []
    for w in b.wrt:
        idx = list(np.ndindex(*w.shape)) if w.shape else [()]
        if w.size <= request.fd_max_entries:
            picks = range(w.size)
        else:
            picks = sorted(rng.choice(w.size, size=min(request.fd_samples, w.size), replace=False))
        for i in picks:
            d = np.zeros(n)
            d[w.offset + int(i)] = 1.0
            dirs.append(d)
            labels.append(w.name + (f"[{','.join(map(str, idx[int(i)]))}]" if w.shape else ""))
        if w.size > request.fd_max_entries:
            d = np.zeros(n)
            v = rng.standard_normal(w.size)
            d[w.offset : w.offset + w.size] = v / np.linalg.norm(v)
            dirs.append(d)
            labels.append(f"{w.name}.dir")
    if not dirs:
        empty = np.zeros(0)
        return FDCheck((), empty, empty, float("nan"), float("nan"))
    theta = b.values_flat().cpu().numpy()
    scale = max(1.0, float(np.abs(theta).max()))
    h = float(np.finfo(np.float64).eps ** (1 / 3)) * scale
    dmat = np.stack(dirs)  # (P, N)
    rows = np.concatenate([theta + h * dmat, theta - h * dmat])  # (2P, N)
    plain = replace(b.fmap, values={k: v.detach() for k, v in b.fmap.values.items()})
    per_row = {
        w.name: torch.as_tensor(rows[:, w.offset : w.offset + w.size]).reshape(-1, *w.shape)
        for w in b.wrt
    }
    fm = plain.with_values(**per_row)
    opts = SolveOptions(tol=1e-14, max_iter=60, diagnostics=False, lyapunov_steps=0)
    with torch.no_grad():
        solved = _newton_in_chunks(fm, z_star.T.expand(rows.shape[0], -1), opts, poll)
        if solved is None:  # not even one perturbed copy fits the memory budget: no check
            empty = np.zeros(0)
            return FDCheck((), empty, empty, float("nan"), h)
        z_rows, residual = solved
        losses = b.loss(z_rows.T.contiguous(), fm).double().cpu().numpy()
    ok = residual.cpu().numpy() < 1e-10
    losses = np.where(ok, losses, np.nan)
    p = dmat.shape[0]
    fd = (losses[:p] - losses[p:]) / (2 * h)
    ex = dmat @ exact.double().cpu().numpy()
    return FDCheck(tuple(labels), fd, ex, _rel_error(fd, ex), h)


def _newton_in_chunks(
    fm: FixedPointMap, z0: torch.Tensor, opts: SolveOptions, poll: CancelPoll = NEVER
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Newton on the rows of ``fm`` from ``z0: (P, D)``, in as few chunks as the memory budget
    allows (each perturbed copy of a large tensor is repeated ``D`` times by the Jacobian);
    ``(z, residual)`` or None when one row alone is over the budget."""
    total = z0.shape[0]
    chunk = total
    while True:
        try:
            parts = []
            for lo in range(0, total, chunk):
                idx = torch.arange(lo, min(lo + chunk, total))
                res = solve(
                    fm.take(idx),
                    "newton",
                    z0[lo : lo + chunk],
                    options=opts,
                    cancel=poll.for_driver,
                )
                poll.after_solve()
                parts.append((res.z, res.residual))
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        except LimitError:
            if chunk == 1:
                return None
            chunk = max(1, chunk // 2)


def _conditioning(b: _Bound, z_star: torch.Tensor) -> tuple[float, float, float, torch.Tensor]:
    """``rho(J)``, ``sigma_min(I - J)``, ``sigma_max(I - J)`` and the eigenvalues ``(1, D)``."""
    jac = jacobian_batch_last(b.f, z_star.detach())[..., 0]
    eig = eigenvalues(jac[None])
    if not bool(torch.isfinite(jac).all()):
        return math.nan, math.nan, math.nan, eig
    eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
    sv = torch.linalg.svdvals(eye - jac)
    rho = float(eig.abs().amax())
    return rho, float(sv.min()), float(sv.max()), eig
