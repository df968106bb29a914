"""The gradient lab: every registered method against the float64 reference, with curves over
``k``, the conditioning at ``z*``, an ill-posedness verdict and warnings."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from implicit_viz.core.device import resolve_device, resolve_dtype
from implicit_viz.core.driver import resolve_solver, solve
from implicit_viz.core.errors import SolverError
from implicit_viz.core.gradients.binding import _bind, loss_expression
from implicit_viz.core.gradients.cancel import CancelPoll
from implicit_viz.core.gradients.compare import _cosine, _curve, _np, _rel_error
from implicit_viz.core.gradients.meter import SavedTensorMeter, _measure
from implicit_viz.core.gradients.methods import _check_memory, _check_unrollable, _Setup
from implicit_viz.core.gradients.reference import _reference
from implicit_viz.core.gradients.registry import available_methods, method_info
from implicit_viz.core.gradients.report import (
    ForwardInfo,
    GradCurve,
    GradReport,
    MethodResult,
    Reference,
)
from implicit_viz.core.gradients.request import GradRequest
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.status import Status

log = logging.getLogger(__name__)

#: Below this smallest singular value of ``I - J`` (relative to the largest) the implicit
#: gradient is called ill-posed.
SINGULAR_REL = 1e-6


def gradient_lab(request: GradRequest, *, cancel: Callable[[], bool] | None = None) -> GradReport:
    """Compute the gradient of ``request.loss`` at ``z*`` by every registered method and compare.

    ``cancel`` is polled between methods and at every step of the step loops (unrolling,
    backward iterations, the forward and reference solves); once it returns True the lab
    raises :class:`~implicit_viz.core.errors.Cancelled`. It may block (a pause): time spent
    inside it is left out of the methods' timings.

    Raises :class:`SpecError` for an unknown ``wrt`` name or a bad loss (not an expression, not
    one number), :class:`SolverError` for bad options or a solver autograd cannot unroll
    (one that says ``unrollable = False``, or whose steps fail a 3-step autograd probe). A map
    that is not a contraction at ``z*`` is no error: the report says ``ill_posed`` and why.
    """
    poll = CancelPoll(cancel)
    spec = request.spec
    device = resolve_device(request.device)
    if device.type == "mps" and request.dtype == "float64":
        raise SolverError("mps has no float64: use float32 there")
    dtype = resolve_dtype(request.dtype)
    loss_text = loss_expression(request.loss, spec)
    tol = request.tol if request.tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    eps = float(torch.finfo(dtype).eps)

    b = _bind(spec, request.wrt, loss_text, device, dtype)
    solver = resolve_solver(request.solver, request.solver_options)
    backward = get_solver("anderson", m=request.backward_m, lam=request.backward_lam)
    _check_memory(spec.dim, dtype, backward)
    _check_unrollable(b, solver)
    opts = SolveOptions(tol=tol, max_iter=request.max_iter, diagnostics=False, lyapunov_steps=0)
    poll.check()
    fwd = solve(b.fmap, solver, options=opts, cancel=poll.for_driver)
    poll.after_solve()
    z_fwd = fwd.z.T.contiguous()  # (D, 1)
    with torch.no_grad():
        fwd_loss = float(b.loss(z_fwd)[0])
    forward = ForwardInfo(
        solver=solver.name,
        tol=tol,
        max_iter=request.max_iter,
        status=Status(int(fwd.status[0])).label,
        iterations=int(fwd.iterations[0]),
        residual=float(fwd.residual[0]),
        time_s=fwd.time_s,
        z=_np(fwd.z[0]),
        loss=fwd_loss,
    )
    reference, z_ref, (rho, smin, smax, eig) = _reference(
        request, loss_text, device, forward, z_fwd, poll
    )

    setup = _Setup(
        bound=b,
        solver=solver,
        phantom=get_solver("damped", beta=request.phantom_lam),
        anderson=backward,
        z0=b.fmap.start(1).T.contiguous(),
        z_star=z_fwd,
        k_max=request.unroll_max,
        phantom_steps=request.phantom_steps,
        backward_tol=request.backward_tol if request.backward_tol is not None else 100 * eps,
        # the map's own values are no memory for backward: they exist anyway
        own=(*b.fmap.values.values(), *b.fmap._constants.values(), *b.loss_consts.values()),
        poll=poll,
    )
    ref = reference.gradient
    names = available_methods()
    methods = []
    for name in names:
        poll.check()
        m = _measure(
            lambda mt, n=name: setup.run(n, mt), device, request.time_repeats, setup.own, poll
        )
        g = _np(m.value.gradient)
        methods.append(
            MethodResult(
                method=name,
                gradient=g,
                rel_error=_rel_error(g, ref),
                cosine=_cosine(g, ref),
                time_s=m.time_s,
                memory_bytes=m.memory_bytes,
                device_peak_bytes=m.device_peak_bytes,
                steps=m.value.steps,
                note=setup.note(name),
            )
        )
    eig = eig.to(device)
    curves = []
    for name in names:
        info = method_info(name)
        if not info.curve:
            continue
        poll.check()
        predicted = math.nan if info.predicted_rate is None else info.predicted_rate(setup, eig)
        meter = SavedTensorMeter(exclude=setup.own)
        run = info.compute(setup, meter, True)
        meter.release()
        curves.append(_curve(name, run, ref, setup.k_max, 1e3 * eps, predicted))

    ill, message = _ill_posed(reference, rho, smin, smax, curves)
    warnings = _warnings(forward, reference, tol, z_fwd, z_ref)
    log.debug("gradient lab on %s: rho %.3g, ill-posed %s", spec.name, rho, ill)
    return GradReport(
        request=request,
        loss_text=loss_text,
        wrt=b.wrt,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        forward=forward,
        reference=reference,
        methods=tuple(methods),
        curves=tuple(curves),
        spectral_radius=rho,
        sigma_min=smin,
        sigma_max=smax,
        ill_posed=ill,
        ill_posed_message=message,
        warnings=tuple(warnings),
    )


def _ill_posed(
    ref: Reference, rho: float, smin: float, smax: float, curves: Sequence[GradCurve] = ()
) -> tuple[bool, str]:
    """Whether the implicit gradient is ill-posed at the reference ``z*``, and why: no fixed
    point found, ``df/dz`` not finite, ``sigma_min(I - J) <= SINGULAR_REL max(sigma_max, 1)``,
    or ``rho(J) >= 1``; for the last, what the backward iterations (``curves``) actually did."""
    if ref.status != Status.CONVERGED.label:
        return True, (
            f"no fixed point found: the float64 reference solve ended '{ref.status}' at "
            f"residual {ref.residual:.2e}, so there is no z* to differentiate at"
        )
    if not (math.isfinite(rho) and math.isfinite(smin)):
        return True, "df/dz at z* is not finite: the implicit gradient is undefined"
    if smin <= SINGULAR_REL * max(smax, 1.0):
        return True, (
            f"I - df/dz is singular at z* to working precision (smallest singular value "
            f"{smin:.2e}, largest {smax:.2e}): the implicit gradient is ill-posed"
        )
    if rho >= 1:
        backward = "; ".join(_backward_outcome(c) for c in curves if c.residual_kind == "backward")
        return True, (
            f"not a contraction at z*: the spectral radius of df/dz is {rho:.4g} >= 1, so z* "
            "repels the forward iteration"
            + (f" ({backward})" if backward else "")
            + f"; the implicit gradient (sigma_min(I - df/dz) = {smin:.2e}) describes no "
            "stable equilibrium"
        )
    return False, ""


def _backward_outcome(c: GradCurve) -> str:
    """What one backward iteration did, from its residuals: e.g. ``"implicit_fixed_point: the
    backward residual grew from 1.2e+00 to 3.4e+05 in 50 steps"`` or ``"implicit_anderson:
    reached a backward residual of 1.3e-13 in 12 steps (it solves the linear system all the
    same)"``."""
    r = np.asarray(c.residual, dtype=float)[: max(c.steps_used, 1)]
    finite = r[np.isfinite(r)]
    n = int(c.steps_used)
    if finite.size == 0:
        return f"{c.method}: the backward iteration u = J^T u + dL/dz* is not finite"
    first, last = float(finite[0]), float(finite[-1])
    if finite.size < r.size:
        return f"{c.method}: the backward iteration blew up (not finite) within {n} steps"
    if last > first:
        return (
            f"{c.method}: the backward residual grew from {first:.1e} to {last:.1e} in {n} "
            "steps (u = J^T u + dL/dz* diverges)"
        )
    return (
        f"{c.method}: reached a backward residual of {last:.1e} in {n} steps (it solves the "
        "linear system all the same)"
    )


def _warnings(
    fwd: ForwardInfo, ref: Reference, tol: float, z_fwd: torch.Tensor, z_ref: torch.Tensor
) -> list[str]:
    out = []
    if fwd.status != Status.CONVERGED.label:
        out.append(
            f"the forward solve ended '{fwd.status}' at residual {fwd.residual:.2e} (tol "
            f"{tol:g}): the implicit and phantom gradients are taken at a point that is not z*"
        )
    gap = float((z_fwd.double().cpu() - z_ref.double().cpu()).abs().max())
    scale = 1 + float(z_ref.abs().max())
    if fwd.status == Status.CONVERGED.label and not gap <= 1e-3 * scale:
        out.append(
            f"the forward solve reached another point than the reference (max gap {gap:.2e}): "
            "the map may have several fixed points"
        )
    fd = ref.fd
    if fd.fd.size and not np.isfinite(fd.fd).all():
        out.append("finite differences could not check the reference: perturbed solves failed")
    elif fd.fd.size and not fd.rel_error <= 1e-5:
        out.append(
            f"finite differences disagree with the reference gradient (relative error "
            f"{fd.rel_error:.2e} over {fd.fd.size} checks)"
        )
    return out
