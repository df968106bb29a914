"""Newton's method on ``g(z) = z - f(z)`` with the Jacobian from autograd."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from implicit_viz.core.errors import SolverError
from implicit_viz.core.jacobians import jacobian_batch_last, jacobian_bytes
from implicit_viz.core.limits import itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver


@register_solver("newton")
@dataclass(frozen=True)
class Newton(Solver):
    """``z <- z - damping * (I - df/dz)^-1 (z - f(z))``.

    Quadratic convergence near a simple root. Where ``I - df/dz`` is singular (or the step is
    not finite) the element takes a plain iteration step ``z <- f(z)`` instead.
    """

    damping: float = 1.0
    summary = "Newton's method with the Jacobian from autograd"
    jac_evals_per_step = 1

    def __post_init__(self) -> None:
        if not 0 < self.damping <= 1:
            raise SolverError(f"newton: damping must lie in (0, 1], got {self.damping}")

    @staticmethod
    def state_bytes(batch: int, dim: int, dtype: object) -> int:
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
