"""Newton's method on ``g(z) = z - f(z)`` with the Jacobian from autograd."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from implicit_viz.core.jacobians import jacobian_batch_last, jacobian_bytes
from implicit_viz.core.limits import itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.options import option


@register_solver("newton")
@dataclass(frozen=True)
class Newton(Solver):
    """``z <- z - damping * (I - df/dz)^-1 (z - f(z))``.

    Quadratic convergence near a simple root. Where ``I - df/dz`` is singular (or the step is
    not finite) the element takes a plain iteration step ``z <- f(z)`` instead.
    """

    damping: float = option(
        1.0,
        low=0,
        high=1,
        low_open=True,
        label="step damping",
        help="fraction of the Newton step taken (1: the full step)",
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
        self.check_dense_state(z, "Newton's Jacobians", f)
        return None

    def step(self, f, z, fz, state):
        d = z.shape[0]
        jac = jacobian_batch_last(f, z).permute(2, 0, 1)  # (B, D, D)
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        g = (z - fz).T.unsqueeze(-1)  # (B, D, 1)
        delta, info = torch.linalg.solve_ex(eye - jac, g)
        delta = delta.squeeze(-1).T  # (D, B)
        ok = (info == 0) & torch.isfinite(delta).all(dim=0)
        z_new = torch.where(ok, z - self.damping * delta, fz)
        return z_new, f(z_new), state
