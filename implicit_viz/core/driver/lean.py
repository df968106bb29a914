"""A lean driver loop for stateless solvers (naive and damped iteration): the hot path of sweeps.

:func:`implicit_viz.core.driver.solve` hands a solve here instead of to the general loop
(:mod:`.general`) when :func:`lean_applies`: the solver is ``stateless`` (no state, one map
evaluation per step) and nothing per step is recorded (``history`` and ``trace`` off, as
sweeps run) and the tolerance is absolute (``rtol = 0``). The outcome is the general loop's,
element for element: both stop rows with the same pieces (:mod:`.pieces`: stop test, cycle
ring and confirmation, Lyapunov twin and end rule, solver step) and write them out into the
same :class:`~.rows.Outputs`. Only the bookkeeping is leaner:

* the stop test is four elementwise operations into preallocated buffers and one reduction
  read back; finished rows get a threshold of ``-1`` instead of being masked every step;
* rows that stop are only gathered (``z`` and the squared residual) at the step they stop and
  written out in one batch at the next compaction;
* compaction may also happen while the cycle ring is filling (the few filled slots travel
  with the kept rows), so converged rows leave the batch early;
* the points of cycles are collected sparsely and assembled once at the end (as in the general
  loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from implicit_viz.core.batchops import col_sqnorm_, take_cols
from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.cycles import is_test_step, next_test_step, ring_points
from implicit_viz.core.driver.pieces import (
    PERIODIC,
    Ring,
    RowMap,
    advance,
    cycle_watch,
    end_codes,
    new_trend,
    new_twin,
    start_twin,
    start_window,
    stop_codes,
    stop_key,
)
from implicit_viz.core.driver.rows import Outputs, to_result
from implicit_viz.core.lyapunov import ResidualTrend, TwinOrbit
from implicit_viz.core.result import SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver

#: During a cycle-test window, compact only when at most this many ring slots must be carried
#: (or a quarter of the working rows have stopped).
CARRY_MAX = 8
#: Compact only when at least 1 / this of the working rows have stopped.
_MIN_DEAD_FRACTION = 64


def lean_applies(slv: Solver, opts: SolveOptions) -> bool:
    """Whether :func:`run_lean` can stand in for the general loop for this solve."""
    return slv.stateless and not opts.history and not opts.trace and opts.rtol == 0


class _Work:
    """The working batch: state, per-row values, flags and buffers; everything ``(..., Bw)``.

    Per row: ``thr`` is the squared tolerance while the row runs and negative once it has
    stopped (the lean live mark); ``stop_at`` is the step at which the stop test stopped it,
    until it is written out (then -1). ``ring`` (:class:`~.pieces.Ring`) holds ``z_k`` and
    ``sq_ring[k % h]`` its squared residual for the last ``h`` steps; storage is reused
    across compactions.
    """

    def __init__(
        self,
        f,
        z: torch.Tensor,
        fz: torch.Tensor,
        tol2: float,
        h: int,
        slv: Solver,
        opts: SolveOptions,
    ) -> None:
        bw = z.shape[1]
        self.f = f
        self.z, self.fz = z, fz
        self.map = RowMap()
        self.h = h
        self.ring = Ring(h, z)
        self._sq_store = z.new_empty(h * bw)
        self._views(bw)
        self.thr = z.new_full((bw,), tol2)
        self.stop_at = z.new_zeros(bw)
        self.slv = slv
        self.cycles = cycle_watch(slv, f, z, opts)
        self.twin: TwinOrbit | None = None  # over the last steps of the budget
        self.trend: ResidualTrend | None = None  # the residual's fall over those steps

    def _views(self, bw: int) -> None:
        d, h = self.z.shape[0], self.h
        self.sq_ring = self._sq_store[: h * bw].view(h, bw)
        self.diff = self.z.new_empty(d, bw)
        self.key = self.z.new_empty(bw)
        self.hit = self.z.new_empty(bw)

    @property
    def width(self) -> int:
        return int(self.z.shape[1])

    def n_live(self) -> int:
        return int((self.thr >= 0).sum())

    def stop_test(self, k: int, check: bool, div_bound: float) -> None:
        """Record ``z_k`` and its squared residual; rows that stop at step k (converged,
        non-finite, or beyond ``div_bound`` at a check point) get ``stop_at = k`` and a
        negative ``thr``. No value is read back."""
        self.ring.record(k, self.z)
        sq = self.sq_ring[k % self.h]
        col_sqnorm_(torch.sub(self.fz, self.z, out=self.diff), out=sq)
        stop_key(sq, self.z, div_bound if check else None, out=self.key)
        torch.le(self.key, self.thr, out=self.hit)  # 1.0 where a running row stops
        self.stop_at.add_(self.hit, alpha=float(k))
        self.thr.add_(self.hit, alpha=-2.0)

    def flush(self, out: Outputs, tol2: float) -> None:
        """Write out the rows stopped by the stop test since the last flush (converged when
        ``sq <= tol2``, else diverged); their ``z`` and residual come from the rings."""
        sel = ((self.thr < 0) & (self.stop_at >= 0)).nonzero().squeeze(1)
        if not sel.numel():
            return
        steps = self.stop_at.index_select(0, sel).to(torch.int64)
        slots = steps % self.h
        # ring[slot_i, :, sel_i] and sq_ring[slot_i, sel_i] as gathers on the flat storage
        # (advanced indexing of the (h, D, Bw) ring is several times slower)
        z = ring_points(self.ring.ring, slots, sel).T  # (D, n)
        sq = self.sq_ring.reshape(-1).index_select(0, slots * self.width + sel)
        out.write(self.map.global_rows(sel), z, sq, stop_codes(sq, tol2), steps)
        self.stop_at.index_fill_(0, sel, -1.0)

    def compact(self, keep: torch.Tensor, k: int, carry: int) -> None:
        """Keep rows ``keep`` (everything written out); the ring keeps its ``carry`` newest
        slots (up to step k)."""
        self.map.compact(keep)
        self.z, self.fz = take_cols(self.z, keep), take_cols(self.fz, keep)
        self.f = self.f.take(keep)
        self.ring.compact(keep, k, carry)
        self._views(int(keep.shape[0]))
        self.thr = self.thr.index_select(0, keep)
        self.stop_at = self.stop_at.index_select(0, keep)
        self.cycles.compact(keep)
        if self.twin is not None:
            self.twin.take(keep)
        if self.trend is not None:
            self.trend.take(keep)


def _carry(opts: SolveOptions, h: int, k: int, ring_count: int, confirm_at: int | None) -> int:
    """Ring slots up to step k that the next cycle test (or confirmation) still reads."""
    reads = [s for s in (next_test_step(k, opts), confirm_at) if s is not None]
    if not reads:
        return 0
    return max(0, min(ring_count, h, k - min(reads) + h))


def _worth_compacting(w: _Work, n_live: int, carry: int) -> bool:
    """Compact when enough rows have stopped to pay for the gathers (more when ring slots
    must travel with the kept rows)."""
    dead = w.width - n_live
    return dead * _MIN_DEAD_FRACTION >= w.width and (carry <= CARRY_MAX or 4 * dead >= w.width)


def run_lean(
    fmap: FixedPointMap,
    slv: Solver,
    z_start: torch.Tensor,
    opts: SolveOptions,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SolveResult:
    """Solve every row of ``z_start (B, D)``; the general loop's outcome (see module doc)."""
    dev, dt = fmap.device, fmap.dtype
    b, d = z_start.shape
    t_max = opts.max_iter
    h = opts.max_period + 2
    # Stopped rows are read back from the ring, so they are written out before it wraps.
    flush_every = max(1, min(opts.compact_every, h - 1))
    tol2 = opts.tol**2
    out = Outputs.empty(b, d, dt, dev)

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    f = fmap.as_batch_last()
    z = z_start.T.contiguous()
    w = _Work(f, z, f(z), tol2, h, slv, opts)
    lyap_from = start_twin(slv, f, opts)
    window_from = start_window(opts)
    cancelled = False
    k = 0
    for k in range(t_max + 1):
        check = is_test_step(k, opts)
        w.stop_test(k, check or k == t_max, opts.div_bound)
        if k == window_from:
            w.trend = new_trend(k, w.z, opts)
        if w.trend is not None:
            w.trend.add(k, w.sq_ring[k % h])
        n_live = -1  # unknown until counted
        if k == w.cycles.confirm_at:
            _confirm_cycles(w, out, opts, k)
            n_live = w.n_live()
        if check:
            n_live = w.n_live()
            if n_live:
                w.cycles.test(w.ring, k, opts, w.thr < 0)
        if k == t_max:
            break
        compact_now = k % opts.compact_every == 0
        if k % flush_every == 0 or compact_now:
            w.flush(out, tol2)
            n_live = w.n_live() if n_live < 0 else n_live
        if n_live == 0:
            break
        if cancel is not None and cancel():
            cancelled = True
            break
        if progress is not None and check:
            progress(k, n_live)
        if compact_now and n_live > 0:
            carry = _carry(opts, h, k, w.ring.count, w.cycles.confirm_at)
            if _worth_compacting(w, n_live, carry):
                w.compact((w.thr >= 0).nonzero().squeeze(1), k, carry)
        if k == lyap_from:
            w.twin = new_twin(w.z, opts)
        w.z, w.fz, _ = advance(slv, w.f, w.z, w.fz, None, w.twin)

    w.flush(out, tol2)
    _finish_live(w, slv, out, opts, k, cancelled)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return to_result(out, fmap, slv, opts, time.perf_counter() - t0)


def _confirm_cycles(w: _Work, out: Outputs, opts: SolveOptions, k: int) -> None:
    """Candidates whose cycle still holds at step k (and is a true cycle) are periodic: written
    out."""
    step_map = w.slv.iteration_map(w.f)
    sel, per, pts = w.cycles.confirm(w.ring, k, opts, w.thr >= 0, step_map)
    if not sel.numel():
        return
    g = w.map.global_rows(sel)
    if pts is not None:
        out.add_cycles(g, pts)
    out.write(g, w.z[:, sel], w.sq_ring[k % w.h][sel], PERIODIC, k)
    out.period[g] = per
    w.thr.index_fill_(0, sel, -1.0)
    w.stop_at.index_fill_(0, sel, -1.0)


def _finish_live(
    w: _Work, slv: Solver, out: Outputs, opts: SolveOptions, k: int, cancelled: bool
) -> None:
    """Rows still running: out of budget (or cancelled); the end window's evidence (residual
    trend, Lyapunov halves) gives their verdict."""
    sel = (w.thr >= 0).nonzero().squeeze(1)
    if not sel.numel():
        return
    near_map = None if w.twin is None else (lambda rows: slv.iteration_map(w.f.take(rows)))
    code, ev = end_codes(sel, w.twin, opts, cancelled, w.trend, near_map, w.z)
    g = w.map.global_rows(sel)
    out.write_evidence(g, ev)
    out.write(g, w.z[:, sel], w.sq_ring[k % w.h][sel], code, k)
