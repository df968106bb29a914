"""Largest Lyapunov exponents of iterations, by Benettin's twin-orbit method.

A neighbour at distance ``eps = sqrt(machine eps) (1 + ||z||_inf)`` is carried along each
orbit and renormalised to that distance every step, along the direction it grew in; the
exponent is the mean log growth per step (natural log). Negative: the orbit contracts (a
fixed point or a cycle); about 0: a quasi-periodic orbit; positive: chaos.

The driver loops carry a :class:`TwinOrbit` beside the working batch over the last
``lyapunov_steps`` steps of the budget, so the orbit itself costs nothing extra; only the twin
is evaluated. :func:`lyapunov_estimate` runs an orbit and its twin on their own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from implicit_viz.core.batchops import col_absmax, col_sqnorm_, take_cols

StepMap = Callable[[torch.Tensor], torch.Tensor]


class TwinOrbit:
    """Twins of a batch of orbits ``(D, B)``, started at the orbits' current iterates.

    Call :meth:`advance` once per step of the orbits, with the map they step by and their new
    iterates; :meth:`exponent` is the estimate over the steps taken so far. All directions
    start along one fixed unit vector (seeded), so an estimate does not depend on the batch.
    """

    def __init__(self, z: torch.Tensor) -> None:
        d, b = z.shape
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(d, 1, generator=gen, dtype=torch.float64)
        v = (v / v.norm()).to(z)
        self.eps = torch.finfo(z.dtype).eps ** 0.5 * (1 + col_absmax(z))  # (B,)
        self.twin = torch.addcmul(z, v, self.eps)  # (D, B)
        self.log_sq = torch.zeros(b, dtype=z.dtype, device=z.device)  # sum of log(growth^2)
        self.steps = 0
        self._floor = torch.finfo(z.dtype).tiny ** 0.5  # squared distances below count as it
        self._buffers(d, b)

    def _buffers(self, d: int, b: int) -> None:
        self._dz = self.twin.new_empty(d, b)
        self._dz2 = self.twin.new_empty(d, b)
        self._sq = self.twin.new_empty(b)
        self._grown: torch.Tensor | None = None  # growth^2 of the step before, not yet logged

    def advance(self, step_map: StepMap, z_next: torch.Tensor) -> None:
        """Step the twins by ``step_map`` and compare them with the orbits' next iterates
        ``z_next (D, B)``; each twin is then put back at distance ``eps`` from its orbit."""
        nxt = step_map(self.twin)
        dz, sq = self._dz, self._sq
        torch.sub(nxt, z_next, out=dz)
        col_sqnorm_(dz, out=sq, scratch=self._dz2).clamp_min_(self._floor)
        # log(growth^2) of two steps at once: the floor keeps their product a normal number
        if self._grown is None:
            self._grown = sq.clone()
        else:
            self.log_sq.add_(self._grown.mul_(sq).log_())
            self._grown = None
        torch.addcmul(z_next, dz, sq.rsqrt_().mul_(self.eps), out=self.twin)
        self.steps += 1

    def take(self, keep: torch.Tensor) -> None:
        """Keep the twins of orbits ``keep (n,)`` (the working batch was compacted)."""
        grown = self._grown
        self.eps = self.eps.index_select(0, keep)
        self.log_sq = self.log_sq.index_select(0, keep)
        self.twin = take_cols(self.twin, keep)
        self._buffers(self.twin.shape[0], int(keep.shape[0]))
        if grown is not None:
            self._grown = grown.index_select(0, keep)

    def exponent(self, sel: torch.Tensor | None = None) -> torch.Tensor:
        """The estimates (per step) of orbits ``sel (n,)`` (all when None): ``(n,)``, NaN
        where not finite or where no step was taken."""
        log_sq, eps = self.log_sq, self.eps
        if self._grown is not None:  # an odd number of steps: the last one is not logged yet
            log_sq = log_sq + self._grown.log()
        if sel is not None:
            log_sq, eps = log_sq.index_select(0, sel), eps.index_select(0, sel)
        if not self.steps:
            return torch.full_like(log_sq, float("nan"))
        lam = log_sq * (0.5 / self.steps) - eps.log()
        return torch.where(torch.isfinite(lam), lam, torch.full_like(lam, float("nan")))


def lyapunov_estimate(step_map: StepMap, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Largest Lyapunov exponent of ``z -> step_map(z)`` along the orbits from ``z (D, n)``
    over ``steps`` steps: ``(n,)``. ``step_map`` takes batches of ``n`` rows."""
    twin = TwinOrbit(z)
    for _ in range(steps):
        z = step_map(z)
        twin.advance(step_map, z)
    return twin.exponent()
