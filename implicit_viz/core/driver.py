"""The one driver loop: stopping rules, per-element masks, status codes, traces.

A solver only says how to take one step (:mod:`implicit_viz.core.solvers`); :func:`solve` owns
everything else, so no solver can forget the NaN, divergence, cycle or budget checks.

Per element: converged (residual below tolerance), diverged (non-finite or beyond
``div_bound``), periodic (a cycle of period ``k >= 2``), max_iter (none of these). Finished
elements are frozen by a mask and removed from the working batch every ``compact_every`` steps,
so they stop costing work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from implicit_viz.core.batchops import col_absmax, col_norm, col_sqnorm, take_cols
from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.cycles import (
    confirm_period,
    confirm_step,
    detect_period,
    is_test_step,
    last_test_step,
)
from implicit_viz.core.diagnostics import add_diagnostics, known_info
from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.lyapunov import TwinOrbit, twin_start_step
from implicit_viz.core.result import MAX_TRACE_BYTES, SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver, get_solver
from implicit_viz.core.status import Status

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``progress(step, live_elements)``, called at the driver's check points."""


def resolve_solver(solver: str | Solver, solver_options: Mapping[str, Any] | None = None) -> Solver:
    """A solver instance from a name (with options) or an instance (options must be empty)."""
    if isinstance(solver, Solver):
        if solver_options:
            raise SolverError("pass options either in the solver instance or as solver_options")
        return solver
    return get_solver(solver, **dict(solver_options or {}))


def solve(
    fmap: FixedPointMap,
    solver: str | Solver = "fixed_point",
    z0: Any = None,
    *,
    options: SolveOptions | None = None,
    solver_options: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    **option_overrides: Any,
) -> SolveResult:
    """Solve ``z = f(z)`` for every element of a batch.

    Parameters
    ----------
    fmap : FixedPointMap
        The compiled map (:func:`implicit_viz.core.compiled_map.compile_spec`). If it carries per-row
        values, their row count is the batch size.
    solver : str or Solver
        A registered name (``"fixed_point"``, ``"damped"``, ``"anderson"``, ``"newton"``,
        ``"broyden"``) or an instance.
    z0 : array-like (B, D) or (D,), optional
        Start; default the spec's ``z0`` for every row.
    options : SolveOptions, optional
        Stopping rules; keyword overrides (``tol=1e-8``, ``trace=True``) are applied on top.
    solver_options : mapping, optional
        Options for a solver given by name (``{"m": 5}``).
    progress : callable(step, live), optional
        Called at check points.
    cancel : callable() -> bool, optional
        Polled at check points; when it returns True the solve stops and unfinished elements
        are marked ``NOT_RUN``.

    Returns
    -------
    SolveResult
        Batch-first arrays; the last iterate of each element.
    """
    opts = replace(options or SolveOptions(), **option_overrides)
    slv = resolve_solver(solver, solver_options)
    dev, dt = fmap.device, fmap.dtype

    batch = fmap.batch or 1
    if z0 is None:
        z_start = fmap.start(batch)
    else:
        z_start = torch.as_tensor(z0, dtype=dt, device=dev)
        if z_start.ndim == 1:
            z_start = z_start.unsqueeze(0)
        if z_start.ndim != 2 or z_start.shape[1] != fmap.dim:
            raise SpecError(f"z0 must have shape (B, {fmap.dim}), got {tuple(z_start.shape)}")
        if fmap.batch is not None and z_start.shape[0] == 1 and fmap.batch > 1:
            z_start = z_start.expand(fmap.batch, -1)
    b, d = z_start.shape
    if fmap.batch is not None and fmap.batch != b:
        raise SpecError(f"z0 has {b} rows but the map's per-row values have {fmap.batch}")
    if b == 0:
        raise SolverError("empty batch: nothing to solve")

    t_steps = opts.max_iter
    itemsize = torch.finfo(dt).bits // 8
    need = (t_steps + 1) * b * itemsize * (int(opts.history) + (d if opts.trace else 0))
    if need > MAX_TRACE_BYTES:
        raise SolverError(
            f"recording {t_steps + 1} steps of {b} elements{' with trace' if opts.trace else ''} "
            f"would take {need / 1024**3:.1f} GiB; lower max_iter or the batch size"
            + (", or turn the trace off" if opts.trace else "")
        )

    with torch.no_grad():
        from implicit_viz.core.sweep_loop import lean_applies, run_lean

        if lean_applies(slv, opts):
            return run_lean(fmap, slv, z_start, opts, progress, cancel)
        return _run(fmap, slv, z_start, opts, progress, cancel)


def compare(
    fmap: FixedPointMap,
    solvers: list[str | Solver] | None = None,
    z0: Any = None,
    *,
    options: SolveOptions | None = None,
    solver_options: Mapping[str, Mapping[str, Any]] | None = None,
    cancel: Callable[[], bool] | None = None,
    **option_overrides: Any,
) -> list[SolveResult]:
    """Solve the same problem with several solvers (default: all registered), in order.

    ``solver_options`` maps a solver name to its options. Diagnostics share one Jacobian
    evaluation per distinct ``z*``: solvers that reach the same point reuse it.
    """
    from implicit_viz.core.solvers import available_solvers

    opts = replace(options or SolveOptions(), **option_overrides)
    names = list(solvers) if solvers else available_solvers()
    per_solver = dict(solver_options or {})
    results: list[SolveResult] = []
    info = None
    for s in names:
        slv = resolve_solver(s, None if isinstance(s, Solver) else per_solver.get(s))
        r = solve(fmap, slv, z0, options=replace(opts, diagnostics=False), cancel=cancel)
        if opts.diagnostics:
            r = add_diagnostics(r, fmap, slv, known=info)
            info = info or known_info(r)
        results.append(replace(r, options=opts))
    return results


def _run(
    fmap: FixedPointMap,
    slv: Solver,
    z_start: torch.Tensor,
    opts: SolveOptions,
    progress: ProgressFn | None,
    cancel: Callable[[], bool] | None,
) -> SolveResult:
    """The loop. Working rows that stop are written out at once (by index) and marked dead;
    dead rows keep stepping, unobserved, until the next compaction drops them, so a step costs
    the map, the residual and a handful of cheap tests, whatever the batch is doing."""
    dev, dt = fmap.device, fmap.dtype
    b, d = z_start.shape
    nan, inf = float("nan"), float("inf")
    t_max = opts.max_iter
    sync_every = 1 if dev.type == "cpu" else 8
    h = opts.max_period + 2  # ring of the last iterates, enough for periods up to max_period
    tol2 = opts.tol**2

    # outputs, indexed by global row
    hist = torch.full((t_max + 1 if opts.history else 0, b), nan, dtype=dt, device=dev)
    traj = torch.full((t_max + 1, d, b), nan, dtype=dt, device=dev) if opts.trace else None
    step_times = torch.full((t_max + 1,), nan, dtype=torch.float64) if opts.trace else None
    out_z = torch.empty(d, b, dtype=dt, device=dev)
    out_fz = torch.empty(d, b, dtype=dt, device=dev)
    out_status = torch.zeros(b, dtype=torch.int64, device=dev)
    out_iters = torch.zeros(b, dtype=torch.int64, device=dev)
    out_period = torch.zeros(b, dtype=torch.int64, device=dev)
    lyapunov = torch.full((b,), nan, dtype=dt, device=dev)
    cycle = torch.full((b, opts.max_period if opts.cycles else 1, d), nan, dtype=dt, device=dev)

    f = fmap.as_batch_last()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()

    z = z_start.T.contiguous()
    fz = f(z)
    state = slv.init(f, z, fz)
    rows: torch.Tensor | None = None  # global index of each working row; None = identity
    bw = b
    live = torch.ones(bw, dtype=torch.bool, device=dev)
    dead_mask = torch.zeros(bw, dtype=torch.bool, device=dev)  # ~live, kept in step
    n_live = bw
    candidate = torch.zeros(bw, dtype=torch.int64, device=dev)  # period found, unconfirmed
    confirm_at: int | None = None  # the step at which candidates are confirmed
    ring = z.new_empty(h, d, bw)
    ring_count = 0
    windowed = opts.period_every >= h
    last_test = last_test_step(opts)
    # Lyapunov estimates: a twin orbit over the last lyapunov_steps steps of the budget
    lyap_from = twin_start_step(t_max, opts.lyapunov_steps, slv.iteration_map(f) is not None)
    twin: TwinOrbit | None = None
    cancelled = False
    k = 0

    def finish(sel: torch.Tensor, code: torch.Tensor | int, per: torch.Tensor | None = None):
        """Write working rows ``sel`` (indices) out as stopped at step k with ``code``."""
        g = sel if rows is None else rows[sel]
        out_z[:, g] = z[:, sel]
        out_fz[:, g] = fz[:, sel]
        out_status[g] = code
        out_iters[g] = k
        if per is not None:
            out_period[g] = per
        live[sel] = False
        dead_mask[sel] = True

    for k in range(t_max + 1):
        g_res = fz - z
        sq = col_sqnorm(g_res)  # squared residual, (Bw,)
        if opts.history or traj is not None:
            dead = ~live if n_live < bw else None
            if opts.history:
                rec = sq.sqrt()
                if dead is not None:
                    rec = rec.masked_fill(dead, nan)
                if rows is None:
                    hist[k] = rec
                else:
                    hist[k, rows] = rec
            if traj is not None:
                zrec = z if dead is None else z.masked_fill(dead, nan)
                if rows is None:
                    traj[k] = zrec
                else:
                    traj[k][:, rows] = zrec
                step_times[k] = time.perf_counter() - t0  # type: ignore[index]
        # Iterates for cycle tests. With sparse tests (windowed) only the h steps before each
        # test are recorded, and compaction (after a test) starts a fresh ring instead of
        # gathering the old one, which is the costly part for large batches.
        confirming = confirm_at is not None and k <= confirm_at
        if not windowed or (-k) % opts.period_every < h or 0 <= last_test - k < h or confirming:
            ring[k % h] = z
            ring_count += 1
        else:
            ring_count = 0

        # Stop test: converged (below tolerance) or non-finite. nan_to_num sends NaN and inf
        # to 0, below any tolerance, so one comparison catches both; dead rows get +inf.
        thr2 = (opts.tol + opts.rtol * col_norm(fz)) ** 2 if opts.rtol else tol2
        key = sq.nan_to_num(nan=0.0, posinf=0.0)
        check_point = is_test_step(k, opts)
        if check_point or k == t_max:
            key = key.masked_fill(col_absmax(z) > opts.div_bound, 0.0)
        if n_live < bw:
            key = key.masked_fill(dead_mask, inf)
        stop = key <= thr2
        if sync_every != 1 or bool(stop.any()):
            sel = stop.nonzero().squeeze(1)
            if sel.numel():
                conv = sq[sel] <= thr2 if not opts.rtol else sq[sel] <= thr2[sel]
                code = torch.where(conv, int(Status.CONVERGED), int(Status.DIVERGED))
                finish(sel, code)
                n_live -= int(sel.numel())
        if k == confirm_at:
            # A cycle counts once it still holds a few steps after the test that found it: a
            # chaotic orbit passing close to an unstable cycle matches once and moves on.
            confirm_at = None
            sel = ((candidate > 0) & live).nonzero().squeeze(1)
            if sel.numel():
                per = candidate[sel]
                ok = confirm_period(ring, k, h, opts, sel, per) & (per + 2 <= ring_count)
                sel, per = sel[ok], per[ok]
            if sel.numel():
                if opts.cycles:
                    confirmed = torch.zeros_like(live)
                    confirmed[sel] = True
                    _store_cycles(cycle, rows, confirmed, candidate, ring, k, h)
                finish(sel, int(Status.PERIODIC), per)
                n_live -= int(sel.numel())
            candidate.zero_()
        if check_point and n_live:
            found, per = detect_period(ring, k, h, opts, ~live, ring_count)
            if found is not None and bool(found.any()):
                candidate = per
                confirm_at = confirm_step(k, opts)
            else:
                candidate.zero_()

        if k == t_max or n_live == 0:
            break
        if k % sync_every == 0:
            if cancel is not None and cancel():
                cancelled = True
                break
            if progress is not None and (check_point or sync_every != 1):
                progress(k, n_live)
            # (a windowed ring starts afresh at compaction, so not while it is still read)
            in_window = windowed and (
                ((-k) % opts.period_every < h and k % opts.period_every)
                or 0 <= last_test - k < h
                or confirm_at is not None
            )
            if n_live < bw and k % opts.compact_every == 0 and not in_window:
                keep = live.nonzero().squeeze(1)
                rows = keep if rows is None else rows[keep]
                z, fz = z[:, keep], fz[:, keep]
                state = slv.take(state, keep)
                f = f.take(keep)
                if windowed:
                    ring = z.new_empty(h, d, keep.shape[0])
                    ring_count = 0
                else:
                    ring = ring[..., keep]
                bw = int(keep.shape[0])
                live = torch.ones(bw, dtype=torch.bool, device=dev)
                dead_mask = torch.zeros(bw, dtype=torch.bool, device=dev)
                candidate = candidate[keep]
                if twin is not None:
                    twin.take(keep)

        if k == lyap_from:
            twin = TwinOrbit(z)
        z, fz, state = slv.step(f, z, fz, state)
        if twin is not None:
            twin.advance(slv.iteration_map(f), z)

    # Rows still running: out of budget (or cancelled). Lyapunov estimates tell chaos apart.
    sel = live.nonzero().squeeze(1)
    if sel.numel():
        code = torch.full_like(sel, int(Status.NOT_RUN if cancelled else Status.MAX_ITER))
        if not cancelled and twin is not None and twin.steps:
            lam = twin.exponent(sel)
            lyapunov[sel if rows is None else rows[sel]] = lam
            code = torch.where(lam > opts.chaos_threshold, int(Status.CHAOTIC), code)
        finish(sel, code)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t0
    steps_run = k

    residual = col_norm(out_fz - out_z)
    max_p = int(out_period.max()) if b else 0
    result = SolveResult(
        solver=slv.name,
        solver_options=slv.options(),
        options=opts,
        z=out_z.T.contiguous(),
        status=out_status,
        iterations=out_iters,
        residual=residual,
        residuals=hist[: steps_run + 1].T.contiguous() if opts.history else residual[:, None],
        period=out_period,
        cycle=cycle[:, : max(max_p, 1)].contiguous(),
        f_evals=1 + out_iters * slv.f_evals_per_step,
        jac_evals=out_iters * slv.jac_evals_per_step,
        time_s=elapsed,
        device=str(dev),
        dtype=str(dt).replace("torch.", ""),
        lyapunov=lyapunov,
        trajectory=None if traj is None else traj[: steps_run + 1].permute(2, 0, 1).contiguous(),
        step_time_s=None if step_times is None else step_times[: steps_run + 1],
    )
    if opts.diagnostics:
        result = add_diagnostics(result, fmap, slv)
    log.debug("%s: %d elements, %d steps, %.3f ms", slv.name, b, steps_run, elapsed * 1e3)
    return result


def _store_cycles(
    cycle: torch.Tensor,
    rows: torch.Tensor | None,
    found: torch.Tensor,
    per: torch.Tensor,
    ring: torch.Tensor,
    k: int,
    h: int,
) -> None:
    """Copy the ``p`` points ``z_{T-p+1} .. z_T`` (oldest first) of newly periodic rows."""
    sel = found.nonzero().squeeze(1)
    if sel.numel() == 0:
        return
    for p in per[sel].unique().tolist():
        s = sel[per[sel] == p]
        slots = torch.tensor([(k - p + 1 + j) % h for j in range(p)], device=ring.device)
        pts = take_cols(ring, s)[slots].permute(2, 0, 1)  # (n, p, D)
        g = s if rows is None else rows[s]
        cycle[g, :p] = pts
