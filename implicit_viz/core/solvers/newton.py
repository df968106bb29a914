"""Newton's method on ``g(z) = z - f(z)`` with the Jacobian from autograd, globalized by a
backtracking line search (:mod:`~implicit_viz.core.solvers.linesearch`) unless asked for the
plain method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from implicit_viz.core.batchops import col_absmax
from implicit_viz.core.jacobians import jacobian_batch_last, jacobian_bytes
from implicit_viz.core.limits import itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.linesearch import backtrack, step_tol
from implicit_viz.core.solvers.options import option


class NewtonState(NamedTuple):
    """The globalized Newton's state, batch-last: ``extra (B,)`` int64, the map evaluations
    spent beyond one per step so far; ``stalled (B,)`` bool, elements where neither search found
    a step or that creep towards a stationary point of ``phi`` that is no root (they stay put
    and search no more); ``last_move (B,)`` the relative length of the last step,
    ``||dz||_inf / (1 + ||z||_inf)``."""

    extra: torch.Tensor
    stalled: torch.Tensor
    last_move: torch.Tensor


@register_solver("newton")
@dataclass(frozen=True)
class Newton(Solver):
    """``z <- z - t (I - df/dz)^-1 (z - f(z))``, the step length ``t`` chosen per element.

    With ``line_search`` (the default) the method is globalized: the full step ``t = damping``
    is tried first and kept when it decreases ``phi = 0.5 ||f(z) - z||^2`` enough (Armijo);
    otherwise ``t`` backtracks (:func:`~implicit_viz.core.solvers.linesearch.backtrack`). Near a
    simple root the full step is always accepted, so the convergence stays quadratic. Where
    ``I - df/dz`` is singular (or the Newton step is not finite, or not a descent direction of
    ``phi``) the element searches along the steepest descent direction of ``phi`` instead.
    Where the search along the Newton direction fails (no acceptable ``t`` above the length at
    which ``z`` stops moving: typically a nearly singular ``I - df/dz``, as where two
    Chebyquad unknowns meet), the element searches once more in the same step, along the
    Levenberg-Marquardt direction ``-(A^T A + mu I)^-1 A^T g`` with ``A = I - df/dz`` and
    ``mu = ||g||``, which turns from Newton's step towards steepest descent as ``phi`` grows. An
    element for which both fail, or that creeps (the relative gradient of ``phi`` and the
    relative length of its last step both below ``eps^(1/3)``: a local minimum of ``phi`` that is
    not a root), stays where it is, at no further cost (``stalled``); it never reports ``converged`` there, as its residual stays put. Each trial costs a map evaluation, counted in ``f_evals``.

    Without ``line_search`` it is the plain (damped) Newton iteration
    ``t = damping`` always, as taught: it may diverge or cycle far from a root, and where
    ``I - df/dz`` is singular the element takes a plain iteration step ``z <- f(z)``.
    """

    damping: float = option(
        1.0,
        low=0,
        high=1,
        low_open=True,
        label="step damping",
        help="fraction of the Newton step taken (1: the full step); with the line search, "
        "the first step length tried",
    )
    line_search: bool = option(
        True,
        label="line search",
        help="backtrack along the Newton step until ||f(z) - z|| decreases enough (Armijo); "
        "off: the plain Newton iteration, which can diverge far from a root",
    )
    label = "Newton's method"
    summary = "Newton's method with the Jacobian from autograd"
    color = "#D55E00"  # Okabe-Ito vermillion
    jac_evals_per_step = 1
    dense_matrix = True

    def state_bytes(self, batch: int, dim: int, dtype: object) -> int:
        """Bytes of a step's Jacobians by autograd and the dense solve with them."""
        return jacobian_bytes(dim, batch, dtype) + 2 * batch * dim * dim * itemsize(dtype)

    def init(self, f, z, fz):
        """None for the plain method; with the line search, a :class:`NewtonState`."""
        self.check_dense_state(z, "Newton's Jacobians", f)
        if not self.line_search:
            return None
        b = z.shape[1]
        return NewtonState(
            torch.zeros(b, dtype=torch.int64, device=z.device),
            torch.zeros(b, dtype=torch.bool, device=z.device),
            torch.full((b,), float("inf"), dtype=z.dtype, device=z.device),
        )

    def extra_f_evals(self, state):
        return state.extra if isinstance(state, NewtonState) else None

    def state_summary(self, state) -> dict[str, Any]:
        """``{"stalled": elements where no step decreases ||f(z) - z||}`` with the line search."""
        return {"stalled": int(state.stalled.sum())} if isinstance(state, NewtonState) else {}

    def step(self, f, z, fz, state):
        d = z.shape[0]
        jac = jacobian_batch_last(f, z).permute(2, 0, 1)  # (B, D, D)
        a = torch.eye(d, dtype=z.dtype, device=z.device) - jac  # Jacobian of g = z - f(z)
        g = (z - fz).T.unsqueeze(-1)  # (B, D, 1)
        delta, info = torch.linalg.solve_ex(a, g)
        delta = delta.squeeze(-1).T  # (D, B)
        ok = (info == 0) & torch.isfinite(delta).all(dim=0)
        if not self.line_search:
            z_new = torch.where(ok, z - self.damping * delta, fz)
            return z_new, f(z_new), state
        return self._globalized(f, z, fz, a, g, -delta, ok, state)

    def _globalized(self, f, z, fz, a, g, p, ok, state: NewtonState):
        """The line-search step along the Newton direction ``p (D, B)`` (where ``ok``) or the
        steepest descent direction of ``phi``; ``a (B, D, D)`` is the Jacobian of ``g``, ``g``
        the residual ``(B, D, 1)``."""
        extra, stalled, last_move = state
        grad = (a.transpose(1, 2) @ g).squeeze(-1).T  # (D, B): the gradient of phi
        # creeping towards a stationary point of phi that is no root: the relative gradient
        # (Dennis and Schnabel's stopping test, without their floor on phi, so that it cannot
        # fire near a root, where it grows like 1 / ||g||) and the relative length of the last
        # step are both below eps^(1/3) (a short step from a nearly singular Jacobian can
        # still move z far, out of a valley: Brown's almost-linear function, n = 30)
        phi = 0.5 * (g * g).sum(dim=(1, 2)).detach()
        tiny, gtol = torch.finfo(z.dtype).tiny, torch.finfo(z.dtype).eps ** (1 / 3)
        rel_grad = col_absmax(grad * z.abs().clamp(min=1.0)).detach() / phi.clamp(min=tiny)
        stalled = stalled | ((rel_grad <= gtol) & (last_move <= gtol))
        slope = (grad * p).sum(dim=0)
        newton = ok & (slope < 0)
        t0: torch.Tensor | float = self.damping
        if not bool(newton.all()):
            # steepest descent where the Newton step is unusable: t0 is the Cauchy step, the
            # minimiser of the linear model of g along -grad
            a_grad = (a @ grad.T.unsqueeze(-1)).squeeze(-1).T
            cauchy = col_sqnorm_safe(grad) / col_sqnorm_safe(a_grad)
            p = torch.where(newton, p, -grad)
            slope = torch.where(newton, slope, -(grad * grad).sum(dim=0))
            t0 = torch.where(newton, torch.full_like(slope, self.damping), cauchy)
        t_min = step_tol(z.dtype) * (1 + col_absmax(z)) / col_absmax(p)
        res = backtrack(f, z, fz, p, slope, t0, t_min, search=~stalled)
        z_new, fz_new, trials, moved = res.z, res.fz, res.trials, res.ok
        failed = ~res.ok & (trials > 0)
        if bool(failed.any()):
            # a Levenberg-Marquardt direction, mu = ||g||: between Newton's and steepest descent
            mu = (g * g).sum(dim=(1, 2)).sqrt()
            ata = a.transpose(1, 2) @ a + mu[:, None, None] * torch.eye(
                a.shape[1], dtype=a.dtype, device=a.device
            )
            lm, info = torch.linalg.solve_ex(ata, grad.T.unsqueeze(-1))
            p2 = -lm.squeeze(-1).T
            slope2 = (grad * p2).sum(dim=0)
            again = failed & (info == 0) & (slope2 < 0)
            t_min2 = step_tol(z.dtype) * (1 + col_absmax(z)) / col_absmax(p2)
            res2 = backtrack(f, z, fz, p2, slope2, 1.0, t_min2, search=again)
            z_new = torch.where(res2.ok, res2.z, z_new)
            fz_new = torch.where(res2.ok, res2.fz, fz_new)
            trials = trials + res2.trials
            moved = moved | res2.ok
        # rows whose search could not start (non-finite residual, step or slope): the plain
        # iteration step, one evaluation (the driver stops them as diverged when non-finite)
        lost = (trials == 0) & ~stalled
        if bool(lost.any()):
            idx = lost.nonzero().squeeze(1)
            z_new[:, idx] = fz[:, idx]
            fz_new[:, idx] = f.take(idx)(fz[:, idx]) if idx.numel() < z.shape[1] else f(fz)
        # the driver counts one evaluation per step: add what the step really cost, minus one
        extra = extra + trials + lost - 1
        # an element that found no step stays where it is, and would find none again
        move = (col_absmax(z_new - z) / (1 + col_absmax(z))).detach()
        return z_new, fz_new, NewtonState(extra, stalled | (~moved & ~lost), move)


def col_sqnorm_safe(v: torch.Tensor) -> torch.Tensor:
    """``||v||^2`` per column ``(D, B) -> (B,)``, at least the smallest normal number."""
    return (v * v).sum(dim=0).clamp_(min=torch.finfo(v.dtype).tiny)
