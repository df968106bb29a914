"""Naive fixed-point iteration ``z <- f(z)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver


@register_solver("fixed_point")
@dataclass(frozen=True)
class FixedPoint(Solver):
    """``z <- f(z)``. Converges near ``z*`` at rate ``rho(df/dz)`` when that is below 1."""

    label = "naive iteration"
    summary = "naive iteration z <- f(z)"
    color = "#0072B2"  # Okabe-Ito blue
    stateless = True

    def step(self, f, z, fz, state):
        return fz, f(fz), state

    def iteration_map(self, f):
        return f

    def predicted_rate(self, eigvals: torch.Tensor) -> torch.Tensor:
        return eigvals.abs().amax(dim=-1)
