"""The general driver loop: any solver, with its state; per-step history and trace; ``rtol``.

:class:`GeneralLoop` holds the working batch and takes it through one step at a time with the
shared pieces (:mod:`.pieces`); :func:`run_general` runs it to the end for
:func:`~implicit_viz.core.driver.solve` (compacting finished rows away), and
:func:`~implicit_viz.core.driver.iterate` runs it step by step (without compaction).

Working rows that stop are written out at once (by index) and marked dead; dead rows keep
stepping, unobserved, until the next compaction drops them, so a step costs the map, the
residual and a handful of cheap tests, whatever the batch is doing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from implicit_viz.core.batchops import col_norm, col_sqnorm
from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.cycles import is_test_step, last_test_step
from implicit_viz.core.driver.pieces import (
    PERIODIC,
    Ring,
    Working,
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


class GeneralLoop:
    """One solve's working batch, stepped by :meth:`observe` (the tests at step ``k``) and
    :meth:`advance` (the step to ``k + 1``), and closed by :meth:`end`.

    ``f`` is a batch-last map ``(D, Bw) -> (D, Bw)`` (with ``take`` when the loop compacts),
    ``z_start`` the start ``(B, D)``. With ``history`` / ``trace`` on, per step the residuals
    ``(T+1, B)`` and iterates ``(T+1, D, B)`` are recorded (NaN once a row has stopped).
    ``keep_fz``: the outputs keep each finished row's image too (for :meth:`snapshot`).
    """

    def __init__(
        self, f: Any, slv: Solver, z_start: torch.Tensor, opts: SolveOptions, keep_fz: bool = False
    ) -> None:
        b, d = z_start.shape
        dev, dt = z_start.device, z_start.dtype
        nan = float("nan")
        t_max = opts.max_iter
        self.slv, self.opts = slv, opts
        self.out = Outputs.empty(b, d, dt, dev, keep_fz=keep_fz)
        self.hist = torch.full((t_max + 1 if opts.history else 0, b), nan, dtype=dt, device=dev)
        self.traj = torch.full((t_max + 1, d, b), nan, dtype=dt, device=dev) if opts.trace else None
        self.step_times = torch.full((t_max + 1,), nan, dtype=torch.float64) if opts.trace else None
        self.t0 = time.perf_counter()

        self.f = f
        self.z = z_start.T.contiguous()
        self.fz = f(self.z)
        self.state = slv.init(f, self.z, self.fz)
        self.work = Working(b, dev)
        h = opts.max_period + 2  # ring of the last iterates, enough for periods up to max_period
        self.ring = Ring(h, self.z)
        self.cycles = cycle_watch(slv, f, self.z, opts)
        # With sparse cycle tests (windowed) only the h steps before each test are recorded, and
        # compaction (after a test) starts a fresh ring instead of gathering the old one, which
        # is the costly part for large batches.
        self.windowed = opts.period_every >= h
        self.last_test = last_test_step(opts)
        self.lyap_from = start_twin(slv, f, opts)
        self.twin: TwinOrbit | None = None
        self.window_from = start_window(opts)
        self.trend: ResidualTrend | None = None  # the residual's fall over the end window
        self.sq = self.z.new_empty(b)  # squared residuals of the working rows at this step
        self.check_point = False

    @property
    def n_live(self) -> int:
        return self.work.n_live

    def observe(self, k: int) -> None:
        """Step ``k``'s record and tests: rows that converged, diverged or (confirmed) turned
        periodic at step ``k`` are written out; new cycle candidates are found."""
        opts, work, ring, cycles = self.opts, self.work, self.ring, self.cycles
        z, fz = self.z, self.fz
        sq = col_sqnorm(fz - z)  # (Bw,)
        self.sq = sq
        if k == self.window_from:
            self.trend = new_trend(k, z, opts)
        if self.trend is not None:
            self.trend.add(k, sq)
        if opts.history or self.traj is not None:
            self._record(k, sq)
        h = ring.h
        confirming = cycles.confirm_at is not None and k <= cycles.confirm_at
        pe = opts.period_every
        if not self.windowed or (-k) % pe < h or 0 <= self.last_test - k < h or confirming:
            ring.record(k, z)
        else:
            ring.count = 0

        thr2 = (opts.tol + opts.rtol * col_norm(fz)) ** 2 if opts.rtol else opts.tol**2
        self.check_point = is_test_step(k, opts)
        bound = opts.div_bound if self.check_point or k == opts.max_iter else None
        key = stop_key(sq, z, bound)
        if work.n_live < work.width:
            key.masked_fill_(work.dead, float("inf"))
        stop = key <= thr2
        if z.device.type != "cpu" or bool(stop.any()):
            sel = stop.nonzero().squeeze(1)
            if sel.numel():
                self._finish(sel, k, stop_codes(sq[sel], thr2 if not opts.rtol else thr2[sel]))
        if k == cycles.confirm_at:
            sel, per, pts = cycles.confirm(ring, k, opts, work.live, self.slv.iteration_map(self.f))
            if sel.numel():
                if pts is not None:
                    self.out.add_cycles(work.global_rows(sel), pts)
                self._finish(sel, k, PERIODIC)
                self.out.period[work.global_rows(sel)] = per
        if self.check_point and work.n_live:
            cycles.test(ring, k, opts, work.dead)

    def _record(self, k: int, sq: torch.Tensor) -> None:
        work, rows = self.work, self.work.rows
        dead = work.dead if work.n_live < work.width else None
        if self.opts.history:
            rec = sq.sqrt()
            if dead is not None:
                rec = rec.masked_fill(dead, float("nan"))
            if rows is None:
                self.hist[k] = rec
            else:
                self.hist[k, rows] = rec
        if self.traj is not None:
            zrec = self.z if dead is None else self.z.masked_fill(dead, float("nan"))
            if rows is None:
                self.traj[k] = zrec
            else:
                self.traj[k][:, rows] = zrec
            self.step_times[k] = time.perf_counter() - self.t0  # type: ignore[index]

    def _finish(self, sel: torch.Tensor, k: int, code: torch.Tensor | int) -> None:
        """Write working rows ``sel (n,)`` out as stopped at step ``k`` with ``code``."""
        z, fz = self.z.index_select(1, sel), self.fz.index_select(1, sel)
        extra = self.slv.extra_f_evals(self.state)
        extra = None if extra is None else extra.index_select(0, sel)
        self.out.write(self.work.global_rows(sel), z, self.sq[sel], code, k, fz, extra)
        self.work.stop(sel)

    def in_window(self, k: int) -> bool:
        """Whether a windowed ring is still read (it starts afresh at compaction)."""
        pe = self.opts.period_every
        return self.windowed and bool(
            ((-k) % pe < self.ring.h and k % pe)
            or 0 <= self.last_test - k < self.ring.h
            or self.cycles.confirm_at is not None
        )

    def compact(self, k: int) -> None:
        """Drop the stopped working rows."""
        keep = self.work.live.nonzero().squeeze(1)
        self.work.compact(keep)
        self.z, self.fz, self.sq = self.z[:, keep], self.fz[:, keep], self.sq[keep]
        self.state = self.slv.take(self.state, keep)
        self.f = self.f.take(keep)
        ring = self.ring
        ring.compact(keep, k, 0 if self.windowed else min(ring.count, ring.h))
        self.cycles.compact(keep)
        if self.twin is not None:
            self.twin.take(keep)
        if self.trend is not None:
            self.trend.take(keep)

    def advance(self, k: int) -> None:
        """The step from ``k`` to ``k + 1`` (the Lyapunov twin starts at its step)."""
        if k == self.lyap_from:
            self.twin = new_twin(self.z, self.opts)
        self.z, self.fz, self.state = advance(
            self.slv, self.f, self.z, self.fz, self.state, self.twin
        )

    def end(self, k: int, cancelled: bool = False) -> None:
        """Rows still running at step ``k``: out of budget (or cancelled); the end window's
        evidence (residual trend, Lyapunov halves) gives their verdict."""
        sel = self.work.live.nonzero().squeeze(1)
        if not sel.numel():
            return
        near_map = None
        if self.twin is not None:
            slv, f = self.slv, self.f
            near_map = lambda rows: slv.iteration_map(f.take(rows))  # noqa: E731
        code, ev = end_codes(sel, self.twin, self.opts, cancelled, self.trend, near_map, self.z)
        self.out.write_evidence(self.work.global_rows(sel), ev)
        self._finish(sel, k, code)

    def snapshot(self) -> tuple[torch.Tensor, ...]:
        """Every element now, batch-first copies: ``z (B, D)``, ``fz (B, D)``, residual ``(B,)``
        and status ``(B,)`` (``not_run`` while running); finished rows as they stopped."""
        out, work = self.out, self.work
        if work.n_live == work.width and work.rows is None:  # all running: the working batch
            status = out.status.clone()
            return self.z.T.clone(), self.fz.T.clone(), self.sq.sqrt(), status
        z, fz, res = out.z.clone(), out.fz.clone(), out.residual.clone()  # type: ignore[union-attr]
        sel = work.live.nonzero().squeeze(1)
        if sel.numel():
            g = work.global_rows(sel)
            z[:, g] = self.z[:, sel]
            fz[:, g] = self.fz[:, sel]
            res[g] = self.sq[sel].sqrt()
        return z.T.contiguous(), fz.T.contiguous(), res, out.status.clone()


def run_general(
    fmap: FixedPointMap,
    slv: Solver,
    z_start: torch.Tensor,
    opts: SolveOptions,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SolveResult:
    """Solve every row of ``z_start (B, D)`` with the general loop."""
    dev = fmap.device
    sync_every = 1 if dev.type == "cpu" else 8
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    loop = GeneralLoop(fmap.as_batch_last(), slv, z_start, opts)
    loop.t0 = t0
    cancelled = False
    k = 0
    for k in range(opts.max_iter + 1):
        loop.observe(k)
        if k == opts.max_iter or loop.n_live == 0:
            break
        if k % sync_every == 0:
            if cancel is not None and cancel():
                cancelled = True
                break
            if progress is not None and (loop.check_point or sync_every != 1):
                progress(k, loop.n_live)
            work = loop.work
            if work.n_live < work.width and k % opts.compact_every == 0 and not loop.in_window(k):
                loop.compact(k)
        loop.advance(k)
    loop.end(k, cancelled)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t0
    traj, times = loop.traj, loop.step_times
    return to_result(
        loop.out,
        fmap,
        slv,
        opts,
        elapsed,
        residuals=loop.hist[: k + 1].T.contiguous() if opts.history else None,
        trajectory=None if traj is None else traj[: k + 1].permute(2, 0, 1).contiguous(),
        step_time_s=None if times is None else times[: k + 1],
    )
