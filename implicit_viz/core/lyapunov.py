"""Largest Lyapunov exponents of iterations, by Benettin's twin-orbit method.

A neighbour at distance ``eps = sqrt(machine eps) (1 + ||z||_inf)`` is carried along each
orbit and renormalised to that distance every second step, along the direction it grew in; the
exponent is the mean log growth per step (natural log). Negative: the orbit contracts (a
fixed point or a cycle); about 0: a quasi-periodic orbit; positive: chaos.

The driver's loops (:mod:`implicit_viz.core.driver`, through its shared pieces) carry a
:class:`TwinOrbit` beside the working batch over the last ``lyapunov_steps`` steps of the budget, so the orbit itself costs nothing extra; only the twin
is evaluated. :func:`lyapunov_estimate` runs an orbit and its twin on their own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from implicit_viz.core.batchops import col_absmax, col_sqnorm_, take_cols

StepMap = Callable[[torch.Tensor], torch.Tensor]


def twin_start_step(max_iter: int, lyapunov_steps: int, has_map: bool) -> int | None:
    """The step at which a driver loop starts its :class:`TwinOrbit`: ``lyapunov_steps``
    before the budget's end (at 0 when the budget is shorter); None for no estimate (turned
    off, or a solver that iterates no map of ``z`` alone)."""
    if not lyapunov_steps or not has_map:
        return None
    return max(0, max_iter - lyapunov_steps)


#: Steps between renormalisations of a twin: it grows (or shrinks) freely over that many
#: steps, which is still linear at its distance ``eps`` and halves the bookkeeping.
RENORM_EVERY = 2


class TwinOrbit:
    """Twins of a batch of orbits ``(D, B)``, started at the orbits' current iterates.

    Call :meth:`advance` once per step of the orbits, with the map they step by and their new
    iterates; :meth:`exponent` is the estimate over the steps taken so far (up to the last
    renormalisation, every :data:`RENORM_EVERY` steps). All directions start along one fixed
    unit vector (seeded), so an estimate does not depend on the batch.
    """

    def __init__(self, z: torch.Tensor) -> None:
        d, b = z.shape
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(d, 1, generator=gen, dtype=torch.float64)
        v = (v / v.norm()).to(z)
        self.eps = torch.finfo(z.dtype).eps ** 0.5 * (1 + col_absmax(z))  # (B,)
        self.log_sq = torch.zeros(b, dtype=z.dtype, device=z.device)  # sum of log(growth^2)
        self.steps = 0
        self.renorms = 0
        self._tiny = torch.finfo(z.dtype).tiny
        self._buffers(d, b)
        self.twin = torch.addcmul(z, v, self.eps, out=self._twin)  # (D, B)

    def _buffers(self, d: int, b: int) -> None:
        self._twin = self.eps.new_empty(d, b)
        self._dz = self.eps.new_empty(d, b)
        self._dz2 = self.eps.new_empty(d, b)
        self._sq = self.eps.new_empty(b)

    def advance(self, step_map: StepMap, z_next: torch.Tensor) -> None:
        """Step the twins by ``step_map``; every :data:`RENORM_EVERY` steps compare them with
        the orbits' iterates ``z_next (D, B)`` and put each back at distance ``eps`` from its
        orbit, along the direction it grew in."""
        nxt = step_map(self.twin)
        self.steps += 1
        if self.steps % RENORM_EVERY:
            self.twin = nxt
            return
        dz, sq = self._dz, self._sq
        torch.sub(nxt, z_next, out=dz)
        col_sqnorm_(dz, out=sq, scratch=self._dz2).clamp_min_(self._tiny)
        self.log_sq.add_(sq.log())
        self.twin = torch.addcmul(z_next, dz, sq.rsqrt_().mul_(self.eps), out=self._twin)
        self.renorms += 1

    def take(self, keep: torch.Tensor) -> None:
        """Keep the twins of orbits ``keep (n,)`` (the working batch was compacted)."""
        twin = take_cols(self.twin, keep)
        self.eps = self.eps.index_select(0, keep)
        self.log_sq = self.log_sq.index_select(0, keep)
        self._buffers(twin.shape[0], int(keep.shape[0]))
        self.twin = self._twin.copy_(twin)

    def exponent(self, sel: torch.Tensor | None = None) -> torch.Tensor:
        """The estimates (per step) of orbits ``sel (n,)`` (all when None) over the steps up
        to the last renormalisation: ``(n,)``, NaN where not finite or where there was none."""
        log_sq, eps = self.log_sq, self.eps
        if sel is not None:
            log_sq, eps = log_sq.index_select(0, sel), eps.index_select(0, sel)
        if not self.renorms:
            return torch.full_like(log_sq, float("nan"))
        # each renormalisation logged |dz|^2 = (eps * growth)^2
        lam = (log_sq * 0.5 - self.renorms * eps.log()) / (RENORM_EVERY * self.renorms)
        return torch.where(torch.isfinite(lam), lam, torch.full_like(lam, float("nan")))


def lyapunov_estimate(step_map: StepMap, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Largest Lyapunov exponent of ``z -> step_map(z)`` along the orbits from ``z (D, n)``
    over ``steps`` steps: ``(n,)``. ``step_map`` takes batches of ``n`` rows."""
    twin = TwinOrbit(z)
    for _ in range(steps):
        z = step_map(z)
        twin.advance(step_map, z)
    return twin.exponent()
