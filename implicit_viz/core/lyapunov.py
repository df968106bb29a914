"""Largest Lyapunov exponents of iterations, by Benettin's twin-orbit method.

A neighbour at distance ``eps = sqrt(machine eps) (1 + ||z||_inf)`` is carried along each
orbit and renormalised to that distance every second step, along the direction it grew in; the
exponent is the mean log growth per step (natural log). Negative: the orbit contracts (a
fixed point or a cycle); about 0: a quasi-periodic orbit; positive: chaos.

The driver's loops (:mod:`implicit_viz.core.driver`, through its shared pieces) carry a
:class:`TwinOrbit` beside the working batch over the last ``lyapunov_steps`` steps of the
budget, so the orbit itself costs nothing extra; only the twin is evaluated. The twin keeps the
two halves of that window apart, so each estimate comes with an uncertainty (the halves are two
independent estimates). :class:`ResidualTrend` fits the log residual over the same window (two
halves too), and :func:`end_verdict` turns both into the label of a row still running at the
end of the budget: still converging, chaotic, quasi-periodic, or no verdict.
:func:`lyapunov_estimate` runs an orbit and its twin on their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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
    unit vector (seeded), so an estimate does not depend on the batch. With ``split`` (steps),
    the log growth of the first ``split`` steps is also kept apart: :meth:`halves` gives the
    estimates over those steps and over the rest.
    """

    def __init__(self, z: torch.Tensor, split: int | None = None) -> None:
        d, b = z.shape
        gen = torch.Generator().manual_seed(0)
        v = torch.randn(d, 1, generator=gen, dtype=torch.float64)
        v = (v / v.norm()).to(z)
        self.eps = torch.finfo(z.dtype).eps ** 0.5 * (1 + col_absmax(z))  # (B,)
        self.log_sq = torch.zeros(b, dtype=z.dtype, device=z.device)  # sum of log(growth^2)
        self.steps = 0
        self.renorms = 0
        # the split point is a renormalisation step (a multiple of RENORM_EVERY)
        self.split = None if not split else max(RENORM_EVERY, split - split % RENORM_EVERY)
        self.log_sq_a: torch.Tensor | None = None  # log growth up to the split
        self.renorms_a = 0
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
        if self.steps == self.split:
            self.log_sq_a = self.log_sq.clone()
            self.renorms_a = self.renorms

    def take(self, keep: torch.Tensor) -> None:
        """Keep the twins of orbits ``keep (n,)`` (the working batch was compacted)."""
        twin = take_cols(self.twin, keep)
        self.eps = self.eps.index_select(0, keep)
        self.log_sq = self.log_sq.index_select(0, keep)
        if self.log_sq_a is not None:
            self.log_sq_a = self.log_sq_a.index_select(0, keep)
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
        return _per_step(log_sq, eps, self.renorms)

    def halves(self, sel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The estimates ``(n,)`` over the first ``split`` steps and over the steps after them
        (to the last renormalisation), of orbits ``sel`` (all when None); None before the
        second half has a renormalisation."""
        if self.log_sq_a is None or self.renorms <= self.renorms_a:
            return None
        log_sq, log_a, eps = self.log_sq, self.log_sq_a, self.eps
        if sel is not None:
            log_sq, log_a = log_sq.index_select(0, sel), log_a.index_select(0, sel)
            eps = eps.index_select(0, sel)
        first = _per_step(log_a, eps, self.renorms_a)
        second = _per_step(log_sq - log_a, eps, self.renorms - self.renorms_a)
        return first, second


def _per_step(log_sq: torch.Tensor, eps: torch.Tensor, renorms: int) -> torch.Tensor:
    """Mean log growth per step from ``renorms`` logged ``|dz|^2 = (eps * growth)^2``; NaN
    where not finite."""
    lam = (log_sq * 0.5 - renorms * eps.log()) / (RENORM_EVERY * renorms)
    return torch.where(torch.isfinite(lam), lam, torch.full_like(lam, float("nan")))


def lyapunov_estimate(step_map: StepMap, z: torch.Tensor, steps: int) -> torch.Tensor:
    """Largest Lyapunov exponent of ``z -> step_map(z)`` along the orbits from ``z (D, n)``
    over ``steps`` steps: ``(n,)``. ``step_map`` takes batches of ``n`` rows."""
    twin = TwinOrbit(z)
    for _ in range(steps):
        z = step_map(z)
        twin.advance(step_map, z)
    return twin.exponent()


# ---------------------------------------------------------------------------------------------
# The end of the budget: residual trend, near cycles, the verdict
# ---------------------------------------------------------------------------------------------

#: Still converging: both half-window slopes of ``log ||f(z) - z||`` below ``-CONVERGING_SLOPE``
#: per step (a rate below ``exp(-0.005) = 0.995``) ...
CONVERGING_SLOPE = 0.005
#: ... and within this fraction of each other (a geometric fall, not a wobble).
HALVES_AGREE = 0.25
#: The uncertainty of a Lyapunov estimate is at least ``LAMBDA_FLOOR / steps``: on an invariant
#: circle the log growth along the orbit stays bounded (its finite-window estimate is O(1/n)).
LAMBDA_FLOOR = 2.0
#: Quasi-periodic needs the orbit's closest return within ``max_period`` steps to stay this far
#: (relative, ``/(1 + ||z||_inf)``) or this far against its step (:func:`near_cycle`): closer,
#: it may be a slow approach to a cycle.
NEAR_CYCLE = 0.01
NEAR_STEP = 0.02


class ResidualTrend:
    """Least-squares fits of ``y = log ||f(z) - z||_2`` against the step over the two halves of
    an end window ``[start, start + window]``, for a batch ``(B,)`` of rows (all running when it
    starts). Per step it costs four elementwise operations on ``(B,)``."""

    def __init__(self, start: int, window: int, like: torch.Tensor) -> None:
        b = like.shape[-1]
        self.start, self.mid = start, start + max(window // 2, 1)
        self.sy = like.new_zeros(2, b)  # sums of log(sq) per half
        self.sky = like.new_zeros(2, b)  # sums of (k - start) log(sq) per half
        self.n = [0, 0]
        self.sk = [0.0, 0.0]
        self.skk = [0.0, 0.0]
        self.last = start
        self._buf = like.new_empty(b)
        self._tiny = torch.finfo(like.dtype).tiny

    def add(self, k: int, sq: torch.Tensor) -> None:
        """Add step ``k``'s squared residuals ``sq (B,)``."""
        if self._buf.shape != sq.shape:
            self._buf = sq.new_empty(sq.shape)
        y = torch.clamp_min(sq, self._tiny, out=self._buf).log_()
        h = int(k >= self.mid)
        kr = float(k - self.start)
        self.sy[h].add_(y)
        self.sky[h].add_(y, alpha=kr)
        self.n[h] += 1
        self.sk[h] += kr
        self.skk[h] += kr * kr
        self.last = k

    def take(self, keep: torch.Tensor) -> None:
        """Keep rows ``keep (n,)`` (the working batch was compacted)."""
        self.sy = self.sy.index_select(1, keep)
        self.sky = self.sky.index_select(1, keep)

    def fit(
        self, sel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Slopes of ``log ||f(z) - z||`` per step over the first half, the second half and the
        whole window, and the fitted log residual at the last step, for rows ``sel (n,)``; None
        while a half has fewer than two steps."""
        if min(self.n) < 2:
            return None
        sy, sky = self.sy.index_select(1, sel) * 0.5, self.sky.index_select(1, sel) * 0.5

        def line(n: float, sk: float, skk: float, y: torch.Tensor, ky: torch.Tensor):
            den = n * skk - sk * sk
            slope = (n * ky - sk * y) / den
            return slope, (y - slope * sk) / n  # slope, intercept at k = start

        sa, _ = line(self.n[0], self.sk[0], self.skk[0], sy[0], sky[0])
        sb, _ = line(self.n[1], self.sk[1], self.skk[1], sy[1], sky[1])
        s, c = line(sum(self.n), sum(self.sk), sum(self.skk), sy.sum(0), sky.sum(0))
        return sa, sb, s, c + s * float(self.last - self.start)


def near_cycle(step_map: StepMap, z: torch.Tensor, max_period: int) -> torch.Tensor:
    """Whether the orbit from ``z (D, n)`` comes back close to ``z`` within ``2..max_period``
    steps, ``(n,)`` bool: its closest return ``d = min_q ||f^q(z) - z||_inf`` is below
    ``NEAR_CYCLE (1 + ||z||_inf)`` and below ``NEAR_STEP ||f(z) - z||_inf`` (small against
    the orbit's own step too, so that a small invariant circle is not taken for a cycle)."""
    best = torch.full_like(z[0], float("inf"))
    zz = step_map(z)
    step = col_absmax(zz - z)
    for _ in range(2, max_period + 1):
        zz = step_map(zz)
        best = torch.fmin(best, col_absmax(zz - z))
    return (best < NEAR_CYCLE * (1 + col_absmax(z))) & (best < NEAR_STEP * step)


@dataclass
class EndEvidence:
    """What the end of the budget shows for rows still running, each ``(n,)`` (None when not
    measured): ``lyapunov`` (mean of the two half-window estimates, or the whole window's),
    ``lyapunov_err`` (its uncertainty: ``max(|half1 - half2|, LAMBDA_FLOOR / steps)``),
    ``rate`` (the residual's fitted factor per step over the window) and ``steps_needed``
    (steps beyond the budget to reach tol at that rate; NaN unless still converging)."""

    lyapunov: torch.Tensor | None = None
    lyapunov_err: torch.Tensor | None = None
    rate: torch.Tensor | None = None
    steps_needed: torch.Tensor | None = None


def end_verdict(
    sel: torch.Tensor,
    twin: TwinOrbit | None,
    trend: ResidualTrend | None,
    tol: float,
    chaos_threshold: float,
    near_return: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, EndEvidence]:
    """Status codes ``(n,)`` of working rows ``sel (n,)`` still running at the end of the
    budget, and their evidence:

    * ``converging``: the residual falls geometrically: both half-window slopes of its log
      below ``-CONVERGING_SLOPE`` and within ``HALVES_AGREE`` of each other, and no positive
      Lyapunov estimate;
    * ``chaotic``: ``lyapunov - lyapunov_err > chaos_threshold`` (the uncertainty excludes 0);
    * ``quasi_periodic``: ``|lyapunov| <= lyapunov_err`` and, when ``near_return`` is given
      (rows -> bool, see :func:`near_cycle`), no close return within ``max_period`` steps;
    * ``max_iter``: no verdict.
    """
    from implicit_viz.core.status import Status

    code = torch.full_like(sel, int(Status.MAX_ITER))
    ev = EndEvidence()
    lam = err = None
    if twin is not None and twin.steps:
        lam = twin.exponent(sel)  # the whole window: the mean of the halves when they are equal
        halves = twin.halves(sel)
        if halves is not None:
            a, b = halves
            floor = LAMBDA_FLOOR / (twin.renorms * RENORM_EVERY)
            err = torch.clamp_min((a - b).abs(), floor)
        ev.lyapunov, ev.lyapunov_err = lam, err
    conv = torch.zeros_like(sel, dtype=torch.bool)
    fit = trend.fit(sel) if trend is not None else None
    if fit is not None:
        sa, sb, s, y_end = fit
        ev.rate = s.exp()
        conv = (sa < -CONVERGING_SLOPE) & (sb < -CONVERGING_SLOPE)
        conv &= (sa - sb).abs() <= HALVES_AGREE * torch.maximum(sa.abs(), sb.abs())
        if lam is not None:
            conv &= ~(lam >= 0)
        need = ((math.log(tol) - y_end) / s).ceil().clamp_min(1)
        ev.steps_needed = torch.where(conv, need, torch.full_like(need, float("nan")))
        code.masked_fill_(conv, int(Status.CONVERGING))
    if lam is not None and err is not None:
        chaotic = (lam - err > chaos_threshold) & ~conv
        code.masked_fill_(chaotic, int(Status.CHAOTIC))
        qp = (lam.abs() <= err) & ~conv & ~chaotic
        if near_return is not None and bool(qp.any()):
            rows = qp.nonzero().squeeze(1)
            qp[rows] = ~near_return(sel.index_select(0, rows))
        code.masked_fill_(qp, int(Status.QUASI_PERIODIC))
    return code, ev
