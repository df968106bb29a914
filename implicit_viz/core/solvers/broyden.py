"""Broyden's ("good") quasi-Newton method on ``g(z) = f(z) - z``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from implicit_viz.core.errors import SolverError
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver


@register_solver("broyden")
@dataclass(frozen=True)
class Broyden(Solver):
    """Quasi-Newton with a dense inverse-Jacobian estimate ``H`` updated by Sherman-Morrison.

    ``H`` starts at ``-I`` (so the first step is ``z <- f(z)``); each step takes
    ``z <- z - beta H g`` and applies the good-Broyden update
    ``H += (dz - H dg) (dz^T H) / (dz^T H dg)``, skipped where the denominator vanishes.
    No Jacobian is evaluated. Memory ``D^2`` per element.
    """

    beta: float = 1.0
    summary = "Broyden's quasi-Newton method (no Jacobian evaluations)"

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise SolverError(f"broyden: beta must lie in (0, 1], got {self.beta}")

    def init(self, f, z, fz):
        d, b = z.shape
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        return -eye.unsqueeze(-1).repeat(1, 1, b)  # H: (D, D, B)

    def step(self, f, z, fz, state):
        h = state
        g = fz - z
        dz = -self.beta * torch.einsum("ijb,jb->ib", h, g)
        z_new = z + dz
        fz_new = f(z_new)
        dg = (fz_new - z_new) - g
        h_dg = torch.einsum("ijb,jb->ib", h, dg)  # (D, B)
        dz_h = torch.einsum("ib,ijb->jb", dz, h)  # (D, B) = (dz^T H)^T
        denom = (dz * h_dg).sum(dim=0)  # (B,)
        scale = dz.abs().amax(dim=0) * h_dg.abs().amax(dim=0)
        ok = torch.isfinite(denom) & (denom.abs() > 1e-12 * scale + torch.finfo(z.dtype).tiny)
        coef = torch.where(
            ok, 1.0 / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(denom)
        )
        h = h + (dz - h_dg).unsqueeze(1) * (dz_h * coef).unsqueeze(0)
        return z_new, fz_new, h
