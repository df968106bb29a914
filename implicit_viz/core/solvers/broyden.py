"""Broyden's ("good") quasi-Newton method on ``g(z) = f(z) - z``, globalized by a backtracking
line search with restarts unless asked for the plain method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from implicit_viz.core.batchops import col_absmax
from implicit_viz.core.limits import itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.linesearch import backtrack, half_sq_residual, step_tol
from implicit_viz.core.solvers.options import option

#: A quasi-Newton direction from a stale ``H`` is given up on (and ``H`` restarted) once the
#: line search would go below this step length: a short step along a poor direction gains
#: little, and SciPy's ``nonlin`` line search stops at the same length.
BROYDEN_T_MIN = 1e-2


class BroydenState(NamedTuple):
    """The globalized Broyden's state: ``h (B, D, D)`` the inverse-Jacobian estimate
    (batch-first, for batched matmuls), ``extra (B,)`` int64 the map evaluations beyond one per
    step so far, ``fresh (B,)`` bool whether ``h`` was just rebuilt from a finite-difference
    Jacobian, ``stalled (B,)`` bool elements where even a fresh ``h`` found no step (they stay
    put and search no more)."""

    h: torch.Tensor
    extra: torch.Tensor
    fresh: torch.Tensor
    stalled: torch.Tensor


@register_solver("broyden")
@dataclass(frozen=True)
class Broyden(Solver):
    """Quasi-Newton with a dense inverse-Jacobian estimate ``H`` updated by Sherman-Morrison.

    ``H`` starts at ``-I`` (so the first step is ``z <- f(z)``); each step moves along
    ``p = -H g`` and applies the good-Broyden update
    ``H += (s - H y) (s^T H) / (s^T H y)`` with ``s`` the step taken and ``y`` the change of
    ``g``, skipped where the denominator vanishes. No Jacobian is evaluated. Memory ``D^2`` per
    element.

    With ``line_search`` (the default) the step length ``t`` starts at ``beta`` and backtracks
    until ``phi = 0.5 ||g||^2`` decreases enough (Armijo, with the slope ``-||g||^2`` that a
    Newton direction has). When no ``t >= 0.01`` is accepted, ``H`` no longer describes the map
    and is *restarted*: rebuilt as the inverse of a forward-difference Jacobian of ``g`` at ``z``
    (``D`` map evaluations, counted in ``f_evals``; ``-I`` where that Jacobian is singular),
    and the element stays where it is for that step. Why the finite-difference Jacobian rather
    than ``-I``: ``-H g = g`` is the plain iteration step, no descent direction of ``phi`` in
    general, so a restart to ``-I`` often fails again at once; and why not autograd: Broyden's
    point is a method that only evaluates ``f`` (MINPACK's ``hybrd`` restarts the same way).
    After a restart the search may go down to the step length where ``z`` stops moving; an
    element that fails even then (a local minimum of ``phi``) stays where it is, at no further
    cost (``stalled``), and never reports ``converged`` there.

    Without ``line_search`` it is the plain method: ``t = beta`` always, no restarts.
    """

    beta: float = option(
        1.0,
        low=0,
        high=1,
        low_open=True,
        label="step β",
        help="fraction of the quasi-Newton step taken (1: the full step); with the line "
        "search, the first step length tried",
    )
    line_search: bool = option(
        True,
        label="line search",
        help="backtrack until ||f(z) - z|| decreases enough (Armijo), restarting the inverse "
        "Jacobian from finite differences when that fails; off: the plain Broyden iteration",
    )
    label = "Broyden's method"
    summary = "Broyden's quasi-Newton method (no Jacobian evaluations)"
    color = "#CC79A7"  # Okabe-Ito reddish purple
    dense_matrix = True

    def state_bytes(self, batch: int, dim: int, dtype: object) -> int:
        """Bytes of ``H`` and the two ``(B, D, D)`` temporaries of its update (with the line
        search, two more for a restart's finite differences)."""
        return (5 if self.line_search else 3) * batch * dim * dim * itemsize(dtype)

    def init(self, f, z, fz):
        d, b = z.shape
        self.check_dense_state(z, "Broyden's inverse Jacobians", f if self.line_search else None)
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        h = -eye.expand(b, d, d).clone()
        if not self.line_search:
            return h
        extra = torch.zeros(b, dtype=torch.int64, device=z.device)
        no = torch.zeros(b, dtype=torch.bool, device=z.device)
        return BroydenState(h, extra, no, no.clone())

    def state_summary(self, state) -> dict[str, Any]:
        """``{"h_change": largest ||H + I||_F over the batch}``: how far the inverse-Jacobian
        estimate has moved from its start ``-I``; with the line search also ``"stalled"``, the
        elements where no step decreases ``||f(z) - z||``."""
        h = state.h if isinstance(state, BroydenState) else state
        d = h.shape[-1]
        eye = torch.eye(d, dtype=h.dtype, device=h.device)
        out: dict[str, Any] = {"h_change": float(torch.linalg.matrix_norm(h + eye).amax())}
        if isinstance(state, BroydenState):
            out["stalled"] = int(state.stalled.sum())
        return out

    def take(self, state, index):
        if isinstance(state, BroydenState):
            h, *rest = state
            return BroydenState(h[index], *(r[..., index] for r in rest))
        return state[index]

    def extra_f_evals(self, state):
        return state.extra if isinstance(state, BroydenState) else None

    def step(self, f, z, fz, state):
        if isinstance(state, BroydenState):
            return self._globalized(f, z, fz, state)
        h = state  # (B, D, D)
        g = (fz - z).T.unsqueeze(-1)  # (B, D, 1)
        dz = -self.beta * (h @ g)  # (B, D, 1)
        z_new = z + dz.squeeze(-1).T
        fz_new = f(z_new)
        return z_new, fz_new, _update(h, dz, (fz_new - z_new).T.unsqueeze(-1) - g)

    def _globalized(self, f, z, fz, state: BroydenState):
        h, extra, fresh, stalled = state
        b = z.shape[1]
        g = (fz - z).T.unsqueeze(-1)  # (B, D, 1)
        p = -(h @ g).squeeze(-1).T  # (D, B)
        phi0 = half_sq_residual(z, fz)
        t_min: torch.Tensor | float = BROYDEN_T_MIN
        if bool(fresh.any()):
            # after a restart H is a Newton direction: search down to where z stops moving
            t_floor = step_tol(z.dtype) * (1 + col_absmax(z)) / col_absmax(p)
            t_min = torch.where(fresh, t_floor, torch.full_like(t_floor, BROYDEN_T_MIN))
        res = backtrack(f, z, fz, p, -2 * phi0, self.beta, t_min, search=~stalled, phi0=phi0)
        z_new, fz_new = res.z, res.fz
        h_new = h
        n_ok = int(res.ok.sum())
        if n_ok:
            s = (z_new - z).T.unsqueeze(-1)
            y = (fz_new - z_new).T.unsqueeze(-1) - g
            h_new = _update(h, s, y)
            if n_ok < b:
                h_new = torch.where(res.ok[:, None, None], h_new, h)
        if n_ok == b:  # the common case: every element took a step
            return (
                z_new,
                fz_new,
                BroydenState(h_new, extra + res.trials - 1, torch.zeros_like(fresh), stalled),
            )
        # rows that could not search (non-finite): the plain step, one evaluation
        lost = (res.trials == 0) & ~stalled
        if bool(lost.any()):
            idx = lost.nonzero().squeeze(1)
            zl = z[:, idx] + self.beta * p[:, idx]
            z_new[:, idx] = zl
            fz_new[:, idx] = f.take(idx)(zl) if idx.numel() < b else f(zl)
        # a stale H that found no step is rebuilt from finite differences; z stays
        failed = ~res.ok & ~lost & ~stalled
        restart = failed & ~fresh
        cost = res.trials + lost  # this step's evaluations
        if bool(restart.any()):
            idx = restart.nonzero().squeeze(1)
            h_new = h_new.clone() if h_new is h else h_new
            h_new[idx] = _fd_inverse_jacobian(f, z[:, idx], fz[:, idx], idx, b)
            cost = cost.index_add(0, idx, torch.full_like(idx, z.shape[0]))
        # the driver counts one evaluation per step: add what the step really cost, minus one
        extra = extra + cost - 1
        # failing right after a restart, H is as good as it gets: the element stays put
        return z_new, fz_new, BroydenState(h_new, extra, restart, stalled | (failed & fresh))


def _update(h: torch.Tensor, dz: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
    """The good-Broyden update of ``h (B, D, D)`` for the step ``dz (B, D, 1)`` and the change
    of ``g`` ``dg (B, D, 1)``; rows with a vanishing denominator keep ``h``."""
    h_dg = h @ dg  # (B, D, 1)
    dz_h = dz.transpose(1, 2) @ h  # (B, 1, D)
    denom = (dz * h_dg).sum(dim=(1, 2))  # (B,)
    scale = dz.abs().amax(dim=(1, 2)) * h_dg.abs().amax(dim=(1, 2))
    ok = torch.isfinite(denom) & (denom.abs() > 1e-12 * scale + torch.finfo(h.dtype).tiny)
    coef = torch.where(ok, denom, torch.ones_like(denom)).reciprocal() * ok
    return h + ((dz - h_dg) * coef[:, None, None]) @ dz_h


def _fd_inverse_jacobian(
    f: Any, z: torch.Tensor, fz: torch.Tensor, idx: torch.Tensor, width: int
) -> torch.Tensor:
    """The inverse of the forward-difference Jacobian of ``g = f(z) - z`` at the rows ``idx (n,)``
    of a batch of ``width``: ``z``, ``fz`` ``(D, n)`` -> ``(n, D, D)``; ``-I`` where singular.

    One evaluation of ``f`` on ``D n`` columns (column ``j n + i`` is row ``i`` moved along
    ``e_j`` by ``sqrt(eps) max(|z_j|, 1)``), that is ``D`` evaluations per row."""
    d, n = z.shape
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    h = torch.finfo(z.dtype).eps ** 0.5 * z.abs().clamp(min=1.0)  # (D, n)
    zz = z.repeat(1, d)  # (D, D n)
    steps = eye.repeat_interleave(n, dim=1) * h.repeat(1, d)  # (D, D n)
    zz = zz + steps
    rows = idx.repeat(d)
    fzz = f(zz) if (n == width and d == 1) else f.take(rows)(zz)
    jac = (fzz - fz.repeat(1, d)) / steps.sum(dim=0)  # column j n + i: d f / d z_j of row i
    jac = jac.reshape(d, d, n).permute(2, 0, 1)  # (n, D_i, D_j)
    inv, info = torch.linalg.inv_ex(jac - eye)
    good = (info == 0) & torch.isfinite(inv).all(dim=(1, 2))
    return torch.where(good[:, None, None], inv, -eye.expand(n, d, d))
