"""A lean driver loop for naive and damped iteration: the hot path of parameter sweeps.

:func:`implicit_viz.core.driver.solve` hands a solve here instead of to the general loop
(``driver._run``) when :func:`lean_applies`: the solver is ``fixed_point`` or ``damped`` (no
state, one map evaluation per step) and nothing per step is recorded (``history`` and
``trace`` off, as sweeps run) and the tolerance is absolute (``rtol = 0``). The outcome is the
general loop's, element for element (same stopping rule, same cycle test with its
confirmation, same Lyapunov estimate, same step arithmetic); only the bookkeeping is leaner:

* the stop test is four elementwise operations into preallocated buffers and one reduction
  read back; finished rows get a threshold of ``-1`` instead of being masked every step;
* rows that stop are only gathered (``z`` and the squared residual) at the step they stop and
  written out in one batch at the next compaction;
* compaction may also happen while the cycle ring is filling (the few filled slots travel
  with the kept rows), so converged rows leave the batch early;
* the points of cycles are collected sparsely and assembled once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from implicit_viz.core.batchops import col_absmax, col_sqnorm_, take_cols
from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.cycles import (
    confirm_period,
    confirm_step,
    detect_period,
    is_test_step,
    next_test_step,
    ring_points,
)
from implicit_viz.core.diagnostics import add_diagnostics
from implicit_viz.core.lyapunov import TwinOrbit, twin_start_step
from implicit_viz.core.result import SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver
from implicit_viz.core.status import Status

#: During a cycle-test window, compact only when at most this many ring slots must be carried
#: (or a quarter of the working rows have stopped).
CARRY_MAX = 8
#: Compact only when at least 1 / this of the working rows have stopped.
_MIN_DEAD_FRACTION = 64

_CONV, _DIV, _PER = int(Status.CONVERGED), int(Status.DIVERGED), int(Status.PERIODIC)


def lean_applies(slv: Solver, opts: SolveOptions) -> bool:
    """Whether :func:`run_lean` can stand in for the general loop for this solve."""
    return slv.stateless and not opts.history and not opts.trace and opts.rtol == 0


@dataclass
class _Outputs:
    """Per-element results, indexed by global row ``(B,)``; ``z`` is ``(D, B)``."""

    z: torch.Tensor
    status: torch.Tensor
    iters: torch.Tensor
    period: torch.Tensor
    residual: torch.Tensor
    lyapunov: torch.Tensor
    cycles: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @classmethod
    def empty(cls, b: int, d: int, dt: torch.dtype, dev: torch.device) -> _Outputs:
        i64 = dict(dtype=torch.int64, device=dev)
        return cls(
            z=torch.empty(d, b, dtype=dt, device=dev),
            status=torch.zeros(b, **i64),
            iters=torch.zeros(b, **i64),
            period=torch.zeros(b, **i64),
            residual=torch.empty(b, dtype=dt, device=dev),
            lyapunov=torch.full((b,), float("nan"), dtype=dt, device=dev),
        )

    def write(
        self,
        g: torch.Tensor,
        z: torch.Tensor,
        sq: torch.Tensor,
        code: torch.Tensor | int,
        iters: torch.Tensor | int,
    ) -> None:
        """Rows ``g (n,)`` stopped at ``z (D, n)`` with squared residual ``sq (n,)``."""
        self.z.index_copy_(1, g, z)
        self.residual.index_copy_(0, g, sq.sqrt())
        for dst, val in ((self.status, code), (self.iters, iters)):
            if isinstance(val, int):
                dst.index_fill_(0, g, val)
            else:
                dst.index_copy_(0, g, val.to(dst.dtype))

    def cycle_tensor(self) -> torch.Tensor:
        """``(B, P, D)`` NaN-padded points of the periodic rows, P = longest period (>= 1)."""
        d, b = self.z.shape
        p = max([int(pts.shape[1]) for _, pts in self.cycles], default=1)
        out = torch.full((b, p, d), float("nan"), dtype=self.z.dtype, device=self.z.device)
        for g, pts in self.cycles:
            out[g, : pts.shape[1]] = pts
        return out


class _Work:
    """The working batch: state, per-row values, flags and buffers; everything ``(..., Bw)``.

    Per row: ``thr`` is the squared tolerance while the row runs and negative once it has
    stopped; ``stop_at`` is the step at which the stop test stopped it, until it is written
    out (then -1). ``ring[k % h]`` holds ``z_k`` and ``sq_ring[k % h]`` its squared residual
    for the last ``h`` steps; ring storage is reused across compactions.
    """

    def __init__(self, f, z: torch.Tensor, fz: torch.Tensor, tol2: float, h: int) -> None:
        d, bw = z.shape
        self.f = f
        self.z, self.fz = z, fz
        self.rows: torch.Tensor | None = None  # global index of each working row
        self.h = h
        self._ring_store = z.new_empty(h * d * bw)
        self._sq_store = z.new_empty(h * bw)
        self.ring_count = 0
        self._views(bw)
        self.thr = z.new_full((bw,), tol2)
        self.stop_at = z.new_zeros(bw)
        self.candidate = torch.zeros(bw, dtype=torch.int64, device=z.device)  # period found
        self.confirm_at: int | None = None  # the step at which candidates are confirmed
        self.twin: TwinOrbit | None = None  # over the last steps of the budget

    def _views(self, bw: int) -> None:
        d, h = self.z.shape[0], self.h
        self.ring = self._ring_store[: h * d * bw].view(h, d, bw)
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
        slot = k % self.h
        self.ring[slot].copy_(self.z)
        self.ring_count += 1
        sq = self.sq_ring[slot]
        col_sqnorm_(torch.sub(self.fz, self.z, out=self.diff), out=sq)
        # nan_to_num sends NaN and inf to 0, below any tolerance: one comparison catches all.
        torch.nan_to_num(sq, nan=0.0, posinf=0.0, out=self.key)
        if check:
            self.key.masked_fill_(col_absmax(self.z) > div_bound, 0.0)
        torch.le(self.key, self.thr, out=self.hit)  # 1.0 where a running row stops
        self.stop_at.add_(self.hit, alpha=float(k))
        self.thr.add_(self.hit, alpha=-2.0)

    def flush(self, out: _Outputs, tol2: float) -> None:
        """Write out the rows stopped by the stop test since the last flush (converged when
        ``sq <= tol2``, else diverged); their ``z`` and residual come from the rings."""
        sel = ((self.thr < 0) & (self.stop_at >= 0)).nonzero().squeeze(1)
        if not sel.numel():
            return
        steps = self.stop_at.index_select(0, sel).to(torch.int64)
        slots = steps % self.h
        # ring[slot_i, :, sel_i] and sq_ring[slot_i, sel_i] as gathers on the flat storage
        # (advanced indexing of the (h, D, Bw) ring is several times slower)
        z = ring_points(self.ring, slots, sel).T  # (D, n)
        sq = self.sq_ring.reshape(-1).index_select(0, slots * self.width + sel)
        code = torch.where(sq <= tol2, _CONV, _DIV)
        out.write(self.global_rows(sel), z, sq, code, steps)
        self.stop_at.index_fill_(0, sel, -1.0)

    def global_rows(self, sel: torch.Tensor) -> torch.Tensor:
        return sel if self.rows is None else self.rows.index_select(0, sel)

    def compact(self, keep: torch.Tensor, k: int, carry: int) -> None:
        """Keep rows ``keep`` (everything written out); the ring keeps its ``carry`` newest
        slots (up to step k)."""
        slots = torch.tensor([(k - j) % self.h for j in range(carry)], device=keep.device)
        kept = take_cols(self.ring.index_select(0, slots), keep) if carry else None
        self.rows = keep if self.rows is None else self.rows.index_select(0, keep)
        self.z, self.fz = take_cols(self.z, keep), take_cols(self.fz, keep)
        self.f = self.f.take(keep)
        self._views(int(keep.shape[0]))
        if kept is not None:
            self.ring[slots] = kept
        self.ring_count = carry
        self.thr = self.thr.index_select(0, keep)
        self.stop_at = self.stop_at.index_select(0, keep)
        self.candidate = self.candidate.index_select(0, keep)
        if self.twin is not None:
            self.twin.take(keep)


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
    out = _Outputs.empty(b, d, dt, dev)

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    f = fmap.as_batch_last()
    z = z_start.T.contiguous()
    w = _Work(f, z, f(z), tol2, h)
    # Lyapunov estimates: a twin orbit over the last lyapunov_steps steps of the budget
    lyap_from = twin_start_step(t_max, opts.lyapunov_steps, slv.iteration_map(f) is not None)
    cancelled = False
    k = 0
    for k in range(t_max + 1):
        check = is_test_step(k, opts)
        w.stop_test(k, check or k == t_max, opts.div_bound)
        n_live = -1  # unknown until counted
        if k == w.confirm_at:
            _confirm_cycles(w, out, opts, k)
            n_live = w.n_live()
        if check:
            n_live = w.n_live()
            if n_live:
                _find_cycles(w, opts, k)
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
            carry = _carry(opts, h, k, w.ring_count, w.confirm_at)
            if _worth_compacting(w, n_live, carry):
                w.compact((w.thr >= 0).nonzero().squeeze(1), k, carry)
        if k == lyap_from:
            w.twin = TwinOrbit(w.z)
        w.z, w.fz, _ = slv.step(w.f, w.z, w.fz, None)
        if w.twin is not None:
            w.twin.advance(slv.iteration_map(w.f), w.z)

    w.flush(out, tol2)
    _finish_live(w, out, opts, k, cancelled)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return _result(out, slv, opts, time.perf_counter() - t0, dev, dt, fmap)


def _find_cycles(w: _Work, opts: SolveOptions, k: int) -> None:
    """The cycle test at a test step: rows with a cycle become candidates, confirmed (or
    not) at :func:`~implicit_viz.core.cycles.confirm_step`."""
    found, per = detect_period(w.ring, k, w.h, opts, w.thr < 0, w.ring_count)
    if found is None or not bool(found.any()):
        w.candidate.zero_()
        return
    w.candidate = per
    w.confirm_at = confirm_step(k, opts)


def _confirm_cycles(w: _Work, out: _Outputs, opts: SolveOptions, k: int) -> None:
    """Candidates whose cycle still holds at step k are periodic: written out."""
    w.confirm_at = None
    rows = ((w.candidate > 0) & (w.thr >= 0)).nonzero().squeeze(1)
    per = w.candidate.index_select(0, rows)
    w.candidate.zero_()
    if not rows.numel():
        return
    ok = confirm_period(w.ring, k, w.h, opts, rows, per) & (per + 2 <= w.ring_count)
    sel, p_sel = rows[ok], per[ok]
    if not sel.numel():
        return
    g = w.global_rows(sel)
    if opts.cycles:
        out.cycles.append((g, _cycle_points(take_cols(w.ring, sel), p_sel, k)))
    out.write(g, w.z[:, sel], w.sq_ring[k % w.h][sel], _PER, k)
    out.period[g] = p_sel
    w.thr.index_fill_(0, sel, -1.0)
    w.stop_at.index_fill_(0, sel, -1.0)


def _cycle_points(ring: torch.Tensor, per: torch.Tensor, k: int) -> torch.Tensor:
    """The points ``z_{k-p+1} .. z_k`` (oldest first) of rows with period ``per (n,)`` from
    their ring ``(h, D, n)``: ``(n, P, D)``, NaN after each row's own period (P = max)."""
    h = ring.shape[0]
    j = torch.arange(int(per.max()), device=ring.device)
    slot = torch.tensor([(k - lag) % h for lag in range(h)], device=ring.device)  # lag -> slot
    slots = slot[(per[:, None] - 1 - j).clamp_(min=0)]  # (n, P): z_{k-p+1+j} is lag p-1-j
    pts = ring.permute(2, 0, 1).take_along_dim(slots[..., None], dim=1)  # (n, P, D)
    return pts.masked_fill_((j >= per[:, None])[..., None], float("nan"))


def _finish_live(w: _Work, out: _Outputs, opts: SolveOptions, k: int, cancelled: bool) -> None:
    """Rows still running: out of budget (or cancelled); Lyapunov estimates tell chaos apart."""
    sel = (w.thr >= 0).nonzero().squeeze(1)
    if not sel.numel():
        return
    code = torch.full_like(sel, int(Status.NOT_RUN if cancelled else Status.MAX_ITER))
    g = w.global_rows(sel)
    if not cancelled and w.twin is not None and w.twin.steps:
        lam = w.twin.exponent(sel)
        out.lyapunov[g] = lam
        code = torch.where(lam > opts.chaos_threshold, int(Status.CHAOTIC), code)
    out.write(g, w.z[:, sel], w.sq_ring[k % w.h][sel], code, k)


def _result(
    out: _Outputs,
    slv: Solver,
    opts: SolveOptions,
    elapsed: float,
    dev: torch.device,
    dt: torch.dtype,
    fmap: FixedPointMap,
) -> SolveResult:
    result = SolveResult(
        solver=slv.name,
        solver_options=slv.options(),
        options=opts,
        z=out.z.T.contiguous(),
        status=out.status,
        iterations=out.iters,
        residual=out.residual,
        residuals=out.residual[:, None],
        period=out.period,
        cycle=out.cycle_tensor(),
        f_evals=1 + out.iters * slv.f_evals_per_step,
        jac_evals=out.iters * slv.jac_evals_per_step,
        time_s=elapsed,
        device=str(dev),
        dtype=str(dt).replace("torch.", ""),
        lyapunov=out.lyapunov,
    )
    if opts.diagnostics:
        result = add_diagnostics(result, fmap, slv)
    return result
