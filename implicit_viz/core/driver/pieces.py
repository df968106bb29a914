"""The rules every driver loop applies to its working batch, in one place.

The general loop (:mod:`.general`), the lean loop (:mod:`.lean`) and the stepping generator
(:mod:`.stepping`) all stop rows with these pieces, so they cannot drift apart:

* the stop test: converged (squared residual at most the threshold), non-finite, or beyond
  ``div_bound`` (:func:`stop_key`, :func:`stop_codes`);
* the live mask and compaction of the working rows (:class:`Working`);
* the cycle test: a ring of the last iterates (:class:`Ring`), candidates found at test steps,
  confirmed a few steps later and polished to a true cycle (:class:`CycleWatch`);
* the Lyapunov twin orbit and the residual trend over the last steps of the budget, and the
  rule for rows still running at the end (:func:`start_twin`, :func:`start_window`,
  :func:`end_codes`);
* one step of the solver, the twin carried along (:func:`advance`).

All tensors are batch-last: ``z`` is ``(D, Bw)`` over the ``Bw`` working rows.
"""

from __future__ import annotations

from typing import Any

import torch

from implicit_viz.core.batchops import col_absmax, take_cols
from implicit_viz.core.cycle_polish import polish_applies, polish_cycles
from implicit_viz.core.cycles import confirm_period, confirm_step, detect_period
from implicit_viz.core.driver.rows import cycle_points
from implicit_viz.core.lyapunov import (
    EndEvidence,
    ResidualTrend,
    TwinOrbit,
    end_verdict,
    near_cycle,
    twin_start_step,
)
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import Solver
from implicit_viz.core.status import Status

CONVERGED, DIVERGED, PERIODIC = int(Status.CONVERGED), int(Status.DIVERGED), int(Status.PERIODIC)


# ---------------------------------------------------------------------------------------------
# The stop test
# ---------------------------------------------------------------------------------------------


def stop_key(
    sq: torch.Tensor, z: torch.Tensor, div_bound: float | None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The stop test's key ``(Bw,)`` from the squared residuals ``sq (Bw,)`` at ``z (D, Bw)``: a
    row stops where ``key <= thr2`` (its squared tolerance). NaN and inf go to 0, below any
    tolerance, so one comparison catches non-finite rows too; with ``div_bound`` (at check
    points) rows beyond it get 0 as well. Written into ``out`` when given."""
    key = torch.nan_to_num(sq, nan=0.0, posinf=0.0, out=out)
    if div_bound is not None:
        key.masked_fill_(col_absmax(z) > div_bound, 0.0)
    return key


def stop_codes(sq: torch.Tensor, thr2: torch.Tensor | float) -> torch.Tensor:
    """Status of rows the stop test stopped, from their squared residuals ``sq (n,)``:
    converged where ``sq <= thr2``, else diverged (non-finite or beyond the bound)."""
    return torch.where(sq <= thr2, CONVERGED, DIVERGED)


# ---------------------------------------------------------------------------------------------
# Working rows
# ---------------------------------------------------------------------------------------------


class RowMap:
    """The global row of each working row: ``rows (Bw,)``, None while the working batch is the
    whole batch; compaction keeps some of the working rows."""

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None

    def global_rows(self, sel: torch.Tensor) -> torch.Tensor:
        """Global rows of working rows ``sel (n,)``."""
        return sel if self.rows is None else self.rows.index_select(0, sel)

    def compact(self, keep: torch.Tensor) -> None:
        """Keep working rows ``keep (n,)``."""
        self.rows = keep if self.rows is None else self.rows.index_select(0, keep)


class Working(RowMap):
    """Which working rows still run: ``live (Bw,)`` bool and its complement ``dead (Bw,)``
    side by side (the stop test masks with ``dead`` every step), and their global rows.

    (The lean loop keeps its own live mark, a negative threshold, and uses a :class:`RowMap`.)
    """

    def __init__(self, width: int, device: torch.device) -> None:
        super().__init__()
        self._reset(width, device)

    def _reset(self, width: int, device: torch.device) -> None:
        self.width = width
        self.live = torch.ones(width, dtype=torch.bool, device=device)
        self.dead = torch.zeros(width, dtype=torch.bool, device=device)
        self.n_live = width

    def stop(self, sel: torch.Tensor) -> None:
        """Mark working rows ``sel (n,)`` (indices) as stopped."""
        self.live[sel] = False
        self.dead[sel] = True
        self.n_live -= int(sel.numel())

    def compact(self, keep: torch.Tensor) -> None:
        """Keep working rows ``keep (n,)`` (all of them live)."""
        super().compact(keep)
        self._reset(int(keep.shape[0]), keep.device)


# ---------------------------------------------------------------------------------------------
# The cycle test
# ---------------------------------------------------------------------------------------------


class Ring:
    """The last ``h`` iterates of the working rows: ``ring[t % h]`` holds ``z_t``, ``(h, D, Bw)``.

    ``count`` is how many consecutive iterates up to the current step are recorded. The storage
    is allocated once and reused across compactions."""

    def __init__(self, h: int, z: torch.Tensor) -> None:
        d, bw = z.shape
        self.h = h
        self._store = z.new_empty(h * d * bw)
        self.count = 0
        self._view(d, bw)

    def _view(self, d: int, bw: int) -> None:
        self.ring = self._store[: self.h * d * bw].view(self.h, d, bw)

    def record(self, k: int, z: torch.Tensor) -> None:
        """Record ``z_k (D, Bw)``."""
        self.ring[k % self.h].copy_(z)
        self.count += 1

    def compact(self, keep: torch.Tensor, k: int, carry: int) -> None:
        """Keep the columns ``keep (n,)``, and of the recorded iterates only the ``carry`` newest
        (up to step ``k``): the ring then counts ``carry`` iterates."""
        h = self.h
        slots = torch.tensor([(k - j) % h for j in range(carry)], device=keep.device)
        kept = take_cols(self.ring.index_select(0, slots), keep) if carry else None
        self._view(self.ring.shape[1], int(keep.shape[0]))
        if kept is not None:
            self.ring[slots] = kept
        self.count = carry


class CycleWatch:
    """Cycle candidates of the working rows, found by the test at a test step and confirmed
    at :func:`~implicit_viz.core.cycles.confirm_step`: a chaotic orbit passing close to an
    unstable cycle matches once and moves on, a cycle still holds.

    With ``polish`` (:func:`cycle_watch` decides: the solver iterates a map of ``z`` alone, of
    a size the polish handles), the test reports the smallest matching lag and each confirmed
    candidate is polished (:func:`~implicit_viz.core.cycle_polish.polish_cycles`): it counts
    only when a cycle of that minimal period exists where the orbit ends and the orbit is on it
    or converging to it. Without, the ring test's verdict stands (its period the smallest
    divisor of the lag that nearly matches)."""

    def __init__(self, width: int, device: torch.device, polish: bool = False) -> None:
        self.candidate = torch.zeros(width, dtype=torch.int64, device=device)  # period, or 0
        self.confirm_at: int | None = None  # the step at which candidates are confirmed
        self.polish = polish

    def test(self, ring: Ring, k: int, opts: SolveOptions, done: torch.Tensor) -> None:
        """The cycle test at step ``k`` on the rows not ``done (Bw,)``: new candidates."""
        found, per = detect_period(
            ring.ring, k, ring.h, opts, done, ring.count, divisors=not self.polish
        )
        if found is None or not bool(found.any()):
            self.candidate.zero_()
            return
        self.candidate = per
        self.confirm_at = confirm_step(k, opts)

    def confirm(
        self, ring: Ring, k: int, opts: SolveOptions, live: torch.Tensor, step_map: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """At the confirmation step ``k``: the ``live (Bw,)`` candidates whose cycle still
        holds (and, when polishing, is a true cycle: ``step_map`` is the solver's iteration
        map of the working rows), as working rows ``(n,)``, their periods ``(n,)`` and, when
        ``opts.cycles``, the cycle points ``(n, P, D)`` (oldest first, ending at the point the
        orbit is at; NaN after each row's period), else None. Candidates are cleared."""
        self.confirm_at = None
        sel = ((self.candidate > 0) & live).nonzero().squeeze(1)
        per = self.candidate.index_select(0, sel)
        self.candidate.zero_()
        pts = None
        if sel.numel():
            ok = confirm_period(ring.ring, k, ring.h, opts, sel, per) & (per + 2 <= ring.count)
            sel, per = sel[ok], per[ok]
        if not sel.numel():
            return sel, per, pts
        if self.polish and step_map is not None:
            pol = polish_cycles(step_map, ring.ring, k, ring.count, sel, per, opts, opts.cycles)
            sel, per = sel[pol.ok], pol.period[pol.ok]
            pts = None if pol.points is None else pol.points[pol.ok]
        elif opts.cycles:
            pts = cycle_points(take_cols(ring.ring, sel), per, k)
        return sel, per, pts

    def compact(self, keep: torch.Tensor) -> None:
        self.candidate = self.candidate.index_select(0, keep)


def cycle_watch(slv: Solver, f: Any, z: torch.Tensor, opts: SolveOptions) -> CycleWatch:
    """The :class:`CycleWatch` of a loop on working rows ``z (D, Bw)`` with map ``f``: it
    polishes candidates when :func:`~implicit_viz.core.cycle_polish.polish_applies`."""
    d, bw = z.shape
    polish = polish_applies(slv.iteration_map(f), d, opts.max_period)
    return CycleWatch(bw, z.device, polish=polish)


# ---------------------------------------------------------------------------------------------
# Steps, the Lyapunov twin and the end of the budget
# ---------------------------------------------------------------------------------------------


def start_twin(slv: Solver, f: Any, opts: SolveOptions) -> int | None:
    """The step at which a loop starts its :class:`~implicit_viz.core.lyapunov.TwinOrbit`
    (``lyapunov_steps`` before the end of the budget), None for no Lyapunov estimate."""
    return twin_start_step(opts.max_iter, opts.lyapunov_steps, slv.iteration_map(f) is not None)


def advance(
    slv: Solver, f: Any, z: torch.Tensor, fz: torch.Tensor, state: Any, twin: TwinOrbit | None
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """One step of ``slv`` on the working batch, the twin orbit (if any) carried along."""
    z, fz, state = slv.step(f, z, fz, state)
    if twin is not None:
        twin.advance(slv.iteration_map(f), z)
    return z, fz, state


def start_window(opts: SolveOptions) -> int | None:
    """The step at which the end window starts (``lyapunov_steps`` before the end of the budget,
    at 0 when the budget is shorter): the residual trend is fitted from there, for any solver.
    None when turned off (``lyapunov_steps = 0``)."""
    return twin_start_step(opts.max_iter, opts.lyapunov_steps, True)


def new_twin(z: torch.Tensor, opts: SolveOptions) -> TwinOrbit:
    """The twin orbit of the working rows ``z (D, Bw)``, its window split in two halves."""
    return TwinOrbit(z, split=min(opts.lyapunov_steps, opts.max_iter) // 2)


def new_trend(k: int, z: torch.Tensor, opts: SolveOptions) -> ResidualTrend:
    """The residual trend of the working rows ``z (D, Bw)`` from step ``k`` to the budget."""
    return ResidualTrend(k, opts.max_iter - k, z[0])


def end_codes(
    sel: torch.Tensor,
    twin: TwinOrbit | None,
    opts: SolveOptions,
    cancelled: bool,
    trend: ResidualTrend | None = None,
    near_map: Any = None,
    z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, EndEvidence | None]:
    """Status of working rows ``sel (n,)`` still running when the loop ends, and the evidence
    (:func:`~implicit_viz.core.lyapunov.end_verdict`): ``converging``, ``chaotic``,
    ``quasi_periodic`` or ``max_iter`` (no verdict); ``not_run`` when cancelled (evidence None).

    ``near_map(rows)`` gives the iteration map of working rows ``rows`` and ``z (D, Bw)`` the
    working iterates: with both, a quasi-periodic verdict also needs the orbit's closest return
    within ``max_period`` steps to stay away (looked at past the budget, for those rows only).
    """
    if cancelled:
        return torch.full_like(sel, int(Status.NOT_RUN)), None
    near = None
    if near_map is not None and z is not None:

        def near(rows: torch.Tensor) -> torch.Tensor:
            return near_cycle(near_map(rows), z.index_select(1, rows), opts.max_period)

    return end_verdict(sel, twin, trend, opts.tol, opts.chaos_threshold, near)
