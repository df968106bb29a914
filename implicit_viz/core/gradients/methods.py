"""The gradient methods, each registered once (:mod:`implicit_viz.core.gradients.registry`).

- ``unrolled``: backprop through ``k`` steps of the forward solver from ``z0``;
- ``implicit_exact``: ``(I - J)^T u = dL/dz*`` solved densely, then
  ``dL/dtheta = u^T df/dtheta + dL/dtheta|_direct`` (``J = df/dz`` at ``z*``);
- ``implicit_fixed_point`` / ``implicit_anderson``: the same ``u`` from ``u = J^T u + dL/dz*``
  by fixed-point steps / Anderson acceleration from ``u = 0``, vector-Jacobian products only;
- ``jacobian_free``: ``u = dL/dz*``;
- ``phantom``: backprop through ``k`` damped steps ``z <- (1 - lam) z + lam f(z)`` from ``z*``.

Every step loop polls the run's :class:`~implicit_viz.core.gradients.cancel.CancelPoll`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from implicit_viz.core.driver.pieces import advance
from implicit_viz.core.errors import SolverError
from implicit_viz.core.gradients.binding import _Bound, _linearize, _Linearized
from implicit_viz.core.gradients.cancel import NEVER, CancelPoll
from implicit_viz.core.gradients.meter import SavedTensorMeter
from implicit_viz.core.gradients.registry import available_methods, method_info, register_method
from implicit_viz.core.jacobians import jacobian_batch_last, jacobian_bytes
from implicit_viz.core.limits import check_memory
from implicit_viz.core.solvers import available_solvers, get_solver, solver_class
from implicit_viz.core.solvers.base import Solver


@dataclass
class _Run:
    """One run of a method: its gradient ``(N,)`` and steps; with ``curve``, per step ``k`` the
    gradient, the bytes saved so far and the forward or backward residual."""

    gradient: torch.Tensor
    steps: int
    grads: list[torch.Tensor] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Setup:
    """What the methods share: the bound map, the solvers, the starts ``(D, 1)``, settings."""

    bound: _Bound
    solver: Solver
    phantom: Solver
    anderson: Solver
    z0: torch.Tensor
    z_star: torch.Tensor
    k_max: int
    phantom_steps: int
    backward_tol: float
    own: tuple[torch.Tensor, ...]
    poll: CancelPoll = NEVER

    def run(self, method: str, meter: SavedTensorMeter, curve: bool = False) -> _Run:
        """Run ``method``; with ``curve``, over ``k = 1..k_max`` (methods with a curve)."""
        return method_info(method).compute(self, meter, curve)

    def note(self, method: str) -> str:
        return method_info(method).note(self)


# ------------------------------------------------------------------------------------------------
# The computations
# ------------------------------------------------------------------------------------------------


def _solve_dense(lin: _Linearized, meter: SavedTensorMeter) -> torch.Tensor:
    """``u`` from ``(I - J)^T u = g``, with ``J`` by autograd (its graph is metered)."""
    with meter.active():
        jac = jacobian_batch_last(lin.bound.f, lin.zs.detach())[..., 0]
    eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
    u, info = torch.linalg.solve_ex((eye - jac).T, lin.g)
    if bool(info.any()):
        u = torch.full_like(lin.g, float("nan"))
    return u


def _exact(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> torch.Tensor:
    """The exact implicit gradient ``(N,)`` at ``z_star: (D, 1)``."""
    lin = _linearize(b, z_star, meter)
    return lin.theta_grad(_solve_dense(lin, meter))


def _jacobian_free(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> torch.Tensor:
    lin = _linearize(b, z_star, meter)
    return lin.theta_grad(lin.g)


class _AdjointMap:
    """``u -> J^T u + g`` at ``z*``, batch-last ``(D, 1) -> (D, 1)``, one VJP per call."""

    def __init__(self, lin: _Linearized) -> None:
        self.lin = lin

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.lin.vjp_z(u) + self.lin.g

    def take(self, index: torch.Tensor) -> _AdjointMap:
        return self


def _iterative(
    b: _Bound,
    z_star: torch.Tensor,
    solver: Solver,
    steps: int,
    rel_tol: float,
    meter: SavedTensorMeter,
    curve: bool,
    poll: CancelPoll = NEVER,
) -> _Run:
    """Solve ``u = J^T u + g`` from ``u = 0`` with ``solver``'s steps (VJPs only), at most
    ``steps`` steps, stopping once ``||J^T u + g - u|| <= rel_tol ||g||`` or non-finite.

    A step is the driver's (:func:`~implicit_viz.core.driver.pieces.advance`) and so is the stop
    rule (residual at most the threshold, or not finite), with no bound on
    ``||u||``; not the whole driver loop (:func:`~implicit_viz.core.driver.iterate`), whose
    per-step bookkeeping would triple the time of a small backward solve, and the lab's table
    compares the methods' costs."""
    lin = _linearize(b, z_star, meter)
    h = _AdjointMap(lin)
    thr = rel_tol * float(torch.linalg.vector_norm(lin.g))
    u = torch.zeros_like(lin.g)  # (D, 1)
    hu = lin.g.clone()  # h(0) = g
    us: list[torch.Tensor] = []
    run = _Run(u, 0)
    with torch.no_grad(), meter.active():
        state = solver.init(h, u, hu)
        while run.steps < steps:
            poll.check()
            u, hu, state = advance(solver, h, u, hu, state, None)
            run.steps += 1
            res = float(torch.linalg.vector_norm(hu - u))
            if curve:
                us.append(u.clone())
                run.residuals.append(res)
                run.memory.append(meter.bytes)
            if not res > thr:  # converged, or not finite: the driver's stop rule
                break
    run.gradient = lin.theta_grad(u)
    run.grads = [lin.theta_grad(v) for v in us]
    return run


def _unroll(
    b: _Bound,
    solver: Solver,
    z0: torch.Tensor,
    steps: int,
    meter: SavedTensorMeter,
    curve: bool,
    poll: CancelPoll = NEVER,
) -> _Run:
    """Backprop through ``steps`` steps of ``solver`` from ``z0: (D, 1)`` (not differentiated).

    With ``curve``, the gradient of ``L(z_k)``, the saved bytes and ``||f(z_k) - z_k||`` after
    every step ``k`` (one backward pass per ``k`` through the retained graph)."""
    f = b.f
    z = z0.detach()
    run = _Run(z, steps)
    with meter.active():
        fz = f(z)
        state = solver.init(f, z, fz)
    for _ in range(steps):
        poll.check()
        with meter.active():
            z, fz, state = solver.step(f, z, fz, state)
        if curve:
            run.memory.append(meter.bytes)
            run.residuals.append(float(torch.linalg.vector_norm((fz - z).detach())))
            run.grads.append(b.grad(b.loss(z).sum(), retain=True))
    run.gradient = run.grads[-1] if curve else b.grad(b.loss(z).sum())
    return run


def _predicted(solver: Solver, eig: torch.Tensor) -> float:
    """``solver``'s predicted linear rate from the eigenvalues ``(1, D)``; NaN where none."""
    rate = solver.predicted_rate(eig) if bool(torch.isfinite(eig).all()) else None
    return float("nan") if rate is None else float(rate[0])


# ------------------------------------------------------------------------------------------------
# The registered methods, in table order (colours: Okabe-Ito)
# ------------------------------------------------------------------------------------------------


@register_method(
    "unrolled",
    label="unrolled backprop",
    color="#0072B2",  # blue
    summary="backprop through k steps of the forward solver from z0",
    note=lambda s: f"{s.solver.name}, {s.k_max} steps from z0",
    curve=True,
    rate_k_factor=True,
    predicted_rate=lambda s, eig: _predicted(s.solver, eig),
)
def _unrolled(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    return _unroll(s.bound, s.solver, s.z0, s.k_max, meter, curve, s.poll)


@register_method(
    "implicit_exact",
    label="implicit (exact)",
    color="#000000",  # black
    summary="implicit function theorem, (I - J)^T u = dL/dz* solved densely",
    note=lambda s: "dense solve of (I - J)^T u = dL/dz*",
)
def _implicit_exact(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    return _Run(_exact(s.bound, s.z_star, meter), 0)


@register_method(
    "implicit_fixed_point",
    label="implicit (fixed-point)",
    color="#D55E00",  # vermillion
    summary="u = J^T u + dL/dz* by fixed-point steps from u = 0 (VJPs only)",
    note=lambda s: "u = J^T u + dL/dz*, fixed-point steps",
    curve=True,
    residual_kind="backward",
    predicted_rate=lambda s, eig: _predicted(get_solver("fixed_point"), eig),
)
def _implicit_fixed_point(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    slv = get_solver("fixed_point")
    return _iterative(s.bound, s.z_star, slv, s.k_max, s.backward_tol, meter, curve, s.poll)


@register_method(
    "implicit_anderson",
    label="implicit (Anderson)",
    color="#009E73",  # bluish green
    summary="u = J^T u + dL/dz* by Anderson acceleration from u = 0 (VJPs only)",
    note=lambda s: f"u = J^T u + dL/dz*, Anderson m={s.anderson.m}",  # type: ignore[attr-defined]
    curve=True,
    residual_kind="backward",
)
def _implicit_anderson(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    return _iterative(s.bound, s.z_star, s.anderson, s.k_max, s.backward_tol, meter, curve, s.poll)


@register_method(
    "jacobian_free",
    label="Jacobian-free",
    color="#E69F00",  # orange
    summary="u = dL/dz*: no linear solve at all",
    note=lambda s: "u = dL/dz*",
)
def _jacobian_free_method(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    return _Run(_jacobian_free(s.bound, s.z_star, meter), 1)


@register_method(
    "phantom",
    label="phantom",
    color="#CC79A7",  # reddish purple
    summary="backprop through k damped steps z <- (1 - lam) z + lam f(z) from z*",
    note=lambda s: f"{s.phantom_steps} damped steps from z*, lam={s.phantom.beta}",  # type: ignore[attr-defined]
    curve=True,
    predicted_rate=lambda s, eig: _predicted(s.phantom, eig),
)
def _phantom(s: _Setup, meter: SavedTensorMeter, curve: bool) -> _Run:
    steps = s.k_max if curve else s.phantom_steps
    return _unroll(s.bound, s.phantom, s.z_star, steps, meter, curve, s.poll)


#: Methods in table order.
METHODS: tuple[str, ...] = available_methods()
#: Methods with a curve over k (steps of the unroll or of the backward iteration).
CURVE_METHODS: tuple[str, ...] = tuple(m for m in METHODS if method_info(m).curve)


# ------------------------------------------------------------------------------------------------
# Checks before any work
# ------------------------------------------------------------------------------------------------


def _check_memory(dim: int, dtype: torch.dtype, backward: Solver) -> None:
    """Refuse, before any work, a lab whose backward Anderson history or dense ``D x D``
    Jacobians (the exact method, the reference, the conditioning) exceed the memory budget."""
    backward.check_history(  # type: ignore[attr-defined]
        1, dim, dtype, field="backward_m", hint="lower the backward Anderson memory m"
    )
    need = max(jacobian_bytes(dim, 1, dt) + 3 * dim * dim * 8 for dt in (dtype, torch.float64))
    check_memory(
        f"the dense Jacobians of the gradient lab (dim {dim})",
        need,
        field="dim",
        hint="the lab compares against a dense D x D solve: use a smaller dim",
    )


def _check_unrollable(b: _Bound, solver: Solver) -> None:
    """Fail early, with a clear message, when autograd cannot go through the solver's steps:
    at once when the solver says so (``unrollable`` False), else by a 3-step probe (for a
    solver that claims it wrongly)."""
    others = [n for n in available_solvers() if solver_class(n).unrollable and n != solver.name]
    listed = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else "".join(others)
    instead = f"; unroll {listed} instead" if others else ""
    if not solver.unrollable:
        raise SolverError(
            f"unrolled backprop through '{solver.name}' is not possible: its steps are not "
            f"differentiable by autograd (it declares unrollable = False){instead}"
        )
    try:
        _unroll(b, solver, b.fmap.start(1).T.contiguous(), 3, SavedTensorMeter(False), False)
    except RuntimeError as exc:
        why = str(exc).splitlines()[0]
        hint = "it writes its state in place" if "inplace" in why else why
        raise SolverError(
            f"unrolled backprop through '{solver.name}' is not possible: {hint}, which autograd "
            f"cannot differentiate{instead}"
        ) from None
