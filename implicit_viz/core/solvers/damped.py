"""Damped (relaxed) iteration ``z <- (1 - beta) z + beta f(z)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.options import option


@register_solver("damped")
@dataclass(frozen=True)
class Damped(Solver):
    """``z <- (1 - beta) z + beta f(z)``; rate ``rho((1 - beta) I + beta df/dz)``.

    ``beta`` in (0, 2): below 1 it damps oscillation (eigenvalues near -1), above 1 it
    over-relaxes.
    """

    beta: float = option(
        0.5,
        low=0,
        high=2,
        low_open=True,
        high_open=True,
        label="damping β",
        symbol="β",
        help="weight of f(z) in each step: below 1 damps oscillation, above 1 over-relaxes",
    )
    label = "damped iteration"
    summary = "damped iteration z <- (1-beta) z + beta f(z)"
    color = "#56B4E9"  # Okabe-Ito sky blue
    stateless = True

    def step(self, f, z, fz, state):
        z_new = torch.lerp(z, fz, self.beta)
        return z_new, f(z_new), state

    def iteration_map(self, f):
        return _DampedMap(f, self.beta)

    def predicted_rate(self, eigvals: torch.Tensor) -> torch.Tensor:
        # eigenvalues of (1 - beta) I + beta J are 1 - beta + beta * lambda
        return (1 - self.beta + self.beta * eigvals).abs().amax(dim=-1)


class _DampedMap:
    """``z -> (1 - beta) z + beta f(z)`` as a batch-last map with ``take``."""

    __slots__ = ("beta", "f")

    def __init__(self, f, beta: float) -> None:
        self.f = f
        self.beta = beta

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return torch.lerp(z, self.f(z), self.beta)

    def take(self, index: torch.Tensor) -> _DampedMap:
        return _DampedMap(self.f.take(index), self.beta)
