"""Broyden's ("good") quasi-Newton method on ``g(z) = f(z) - z``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.limits import itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.options import option


@register_solver("broyden")
@dataclass(frozen=True)
class Broyden(Solver):
    """Quasi-Newton with a dense inverse-Jacobian estimate ``H`` updated by Sherman-Morrison.

    ``H`` starts at ``-I`` (so the first step is ``z <- f(z)``); each step takes
    ``z <- z - beta H g`` and applies the good-Broyden update
    ``H += (dz - H dg) (dz^T H) / (dz^T H dg)``, skipped where the denominator vanishes.
    No Jacobian is evaluated. Memory ``D^2`` per element.
    """

    beta: float = option(
        1.0,
        low=0,
        high=1,
        low_open=True,
        label="step β",
        help="fraction of the quasi-Newton step taken (1: the full step)",
    )
    label = "Broyden's method"
    summary = "Broyden's quasi-Newton method (no Jacobian evaluations)"
    color = "#CC79A7"  # Okabe-Ito reddish purple
    dense_matrix = True

    def state_bytes(self, batch: int, dim: int, dtype: object) -> int:
        """Bytes of ``H`` and the two ``(B, D, D)`` temporaries of its update."""
        return 3 * batch * dim * dim * itemsize(dtype)

    # H is stored batch-first, (B, D, D), for batched matmuls; ``take`` slices dimension 0.
    def init(self, f, z, fz):
        d, b = z.shape
        self.check_dense_state(z, "Broyden's inverse Jacobians")
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        return -eye.expand(b, d, d).clone()

    def state_summary(self, state) -> dict[str, Any]:
        """``{"h_change": largest ||H + I||_F over the batch}``: how far the inverse-Jacobian
        estimate has moved from its start ``-I``."""
        d = state.shape[-1]
        eye = torch.eye(d, dtype=state.dtype, device=state.device)
        return {"h_change": float(torch.linalg.matrix_norm(state + eye).amax())}

    def take(self, state, index):
        return state[index]

    def step(self, f, z, fz, state):
        h = state  # (B, D, D)
        g = (fz - z).T.unsqueeze(-1)  # (B, D, 1)
        dz = -self.beta * (h @ g)  # (B, D, 1)
        z_new = z + dz.squeeze(-1).T
        fz_new = f(z_new)
        dg = (fz_new - z_new).T.unsqueeze(-1) - g
        h_dg = h @ dg  # (B, D, 1)
        dz_h = dz.transpose(1, 2) @ h  # (B, 1, D)
        denom = (dz * h_dg).sum(dim=(1, 2))  # (B,)
        scale = dz.abs().amax(dim=(1, 2)) * h_dg.abs().amax(dim=(1, 2))
        ok = torch.isfinite(denom) & (denom.abs() > 1e-12 * scale + torch.finfo(z.dtype).tiny)
        coef = torch.where(ok, denom, torch.ones_like(denom)).reciprocal() * ok
        h = h + ((dz - h_dg) * coef[:, None, None]) @ dz_h
        return z_new, fz_new, h
