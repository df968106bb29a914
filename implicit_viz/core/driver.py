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

from implicit_viz.core.diagnostics import add_diagnostics, known_info
from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.problem import FixedPointMap
from implicit_viz.core.result import MAX_TRACE_BYTES, SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver, get_solver
from implicit_viz.core.status import Status

log = logging.getLogger(__name__)

#: A cycle's mismatch after one period must be below this fraction of its points' spread.
_CYCLE_REL = 1e-3

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
        The compiled map (:func:`implicit_viz.core.problem.compile_spec`). If it carries per-row
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
    need = (t_steps + 1) * b * itemsize * (1 + (d if opts.trace else 0))
    if need > MAX_TRACE_BYTES:
        raise SolverError(
            f"recording {t_steps + 1} steps of {b} elements{' with trace' if opts.trace else ''} "
            f"would take {need / 1024**3:.1f} GiB; lower max_iter or the batch size"
            + (", or turn the trace off" if opts.trace else "")
        )

    with torch.no_grad():
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
    dev, dt = fmap.device, fmap.dtype
    b, d = z_start.shape
    nan = float("nan")
    t_max = opts.max_iter
    sync_every = 1 if dev.type == "cpu" else 8
    h = 2 * opts.max_period + 1

    # outputs, global rows
    hist = torch.full((t_max + 1, b), nan, dtype=dt, device=dev)
    traj = torch.full((t_max + 1, d, b), nan, dtype=dt, device=dev) if opts.trace else None
    step_times = torch.full((t_max + 1,), nan, dtype=torch.float64) if opts.trace else None
    out_z = torch.empty(d, b, dtype=dt, device=dev)
    out_fz = torch.empty(d, b, dtype=dt, device=dev)
    out_status = torch.zeros(b, dtype=torch.int64, device=dev)
    out_iters = torch.zeros(b, dtype=torch.int64, device=dev)
    out_period = torch.zeros(b, dtype=torch.int64, device=dev)
    cycle = torch.full((b, opts.max_period, d), nan, dtype=dt, device=dev)

    f = fmap.as_batch_last()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()

    z = z_start.T.contiguous()
    fz = f(z)
    state = slv.init(f, z, fz)
    rows: torch.Tensor | None = None  # global index of each working row; None = identity
    bw = b
    done = torch.zeros(bw, dtype=torch.bool, device=dev)
    status = torch.zeros(bw, dtype=torch.int64, device=dev)
    iters = torch.zeros(bw, dtype=torch.int64, device=dev)
    period = torch.zeros(bw, dtype=torch.int64, device=dev)
    ring = z.new_empty(h, d, bw)
    n_done = 0
    cancelled = False
    k = 0

    def write_back(sel: torch.Tensor | None) -> None:
        """Copy working rows ``sel`` (all if None) into the outputs."""
        idx = rows if sel is None else (rows[sel] if rows is not None else sel)
        zs = z if sel is None else z[:, sel]
        fzs = fz if sel is None else fz[:, sel]
        vals = [(out_status, status), (out_iters, iters), (out_period, period)]
        if idx is None:
            out_z.copy_(zs)
            out_fz.copy_(fzs)
            for o, v in vals:
                o.copy_(v)
        else:
            out_z[:, idx] = zs
            out_fz[:, idx] = fzs
            for o, v in vals:
                o[idx] = v if sel is None else v[sel]

    cpu = sync_every == 1
    inf = float("inf")
    for k in range(t_max + 1):
        res = torch.linalg.vector_norm(fz - z, dim=0)
        masked = bool(n_done) or not cpu
        rec = res.masked_fill(done, nan) if masked else res
        if rows is None:
            hist[k] = rec
        else:
            hist[k, rows] = rec
        if traj is not None:
            zrec = z.masked_fill(done, nan) if masked else z
            if rows is None:
                traj[k] = zrec
            else:
                traj[k][:, rows] = zrec
            step_times[k] = time.perf_counter() - t0  # type: ignore[index]
        ring[k % h] = z

        thr = opts.tol + opts.rtol * torch.linalg.vector_norm(fz, dim=0) if opts.rtol else opts.tol
        check_point = k >= 4 and (k % opts.period_every == 0 or k == t_max)
        if cpu and not check_point:
            # Cheap test: is every live element still above tolerance and finite? (NaN fails
            # both comparisons, so it counts as an event.)
            if n_done:
                event = not bool(((res > thr) & (res < inf) | done).all())
            elif opts.rtol:
                event = not bool(((res > thr) & (res < inf)).all())
            else:
                lo, hi = torch.aminmax(res)
                event = not (float(lo) > thr and float(hi) < inf)
        else:
            event = True
        if event:
            live = ~done
            conv = (res <= thr) & live
            bad = ~torch.isfinite(res)
            if check_point:
                bad = bad | (z.abs().amax(dim=0) > opts.div_bound)
            bad = bad & live & ~conv
            status = torch.where(
                conv, int(Status.CONVERGED), torch.where(bad, int(Status.DIVERGED), status)
            )
            newly = conv | bad
            iters = torch.where(newly, k, iters)
            done = done | newly
            if check_point:
                found, per, ordered = _detect_period(ring, k, h, opts, done)
                if found is not None:
                    status = torch.where(found, int(Status.PERIODIC), status)
                    period = torch.where(found, per, period)
                    iters = torch.where(found, k, iters)
                    done = done | found
                    _store_cycles(cycle, rows, found, per, ordered)
            if cpu:
                n_done = int(done.sum())

        if k == t_max:
            break
        if k % sync_every == 0:
            if not cpu:
                n_done = int(done.sum())
            if n_done == bw:
                break
            if cancel is not None and cancel():
                cancelled = True
                break
            if progress is not None and (check_point or not cpu):
                progress(k, bw - n_done)
            if n_done and k % opts.compact_every == 0:
                fin = done.nonzero().squeeze(1)
                write_back(fin)
                keep = (~done).nonzero().squeeze(1)
                rows = keep if rows is None else rows[keep]
                z, fz = z[:, keep], fz[:, keep]
                state = slv.take(state, keep)
                f = f.take(keep)
                status, iters, period = status[keep], iters[keep], period[keep]
                ring = ring[..., keep]
                done = torch.zeros(keep.shape[0], dtype=torch.bool, device=dev)
                bw = int(keep.shape[0])
                n_done = 0

        z_new, fz_new, state = slv.step(f, z, fz, state)
        if n_done or not cpu:
            z = torch.where(done, z, z_new)
            fz = torch.where(done, fz, fz_new)
        else:
            z, fz = z_new, fz_new

    live = ~done
    end_code = int(Status.NOT_RUN if cancelled else Status.MAX_ITER)
    status = torch.where(live, end_code, status)
    iters = torch.where(live, k, iters)
    lyap_w = None
    step_map = slv.iteration_map(f)
    if not cancelled and opts.lyapunov_steps and step_map is not None and bool(live.any()):
        sel = live.nonzero().squeeze(1)
        lyap_w = torch.full((bw,), nan, dtype=dt, device=dev)
        lyap_w[sel] = lyapunov_estimate(step_map, sel, z[:, sel], opts.lyapunov_steps)
        chaotic = live & (lyap_w > opts.chaos_threshold)
        status = torch.where(chaotic, int(Status.CHAOTIC), status)
    write_back(None)
    lyapunov = torch.full((b,), nan, dtype=dt, device=dev)
    if lyap_w is not None:
        if rows is None:
            lyapunov = lyap_w
        else:
            lyapunov[rows] = lyap_w
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t0
    steps_run = k

    residual = torch.linalg.vector_norm(out_fz - out_z, dim=0)
    max_p = int(out_period.max()) if b else 0
    result = SolveResult(
        solver=slv.name,
        solver_options=slv.options(),
        options=opts,
        z=out_z.T.contiguous(),
        status=out_status,
        iterations=out_iters,
        residual=residual,
        residuals=hist[: steps_run + 1].T.contiguous(),
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


def _detect_period(
    ring: torch.Tensor, k: int, h: int, opts: SolveOptions, done: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Test live rows for a cycle of period 2..max_period in the last iterates.

    Returns ``(found (Bw,) bool, period (Bw,) int64, ordered (n, D, Bw))`` with ``ordered[t]``
    the iterate ``t`` steps back, or Nones when there is too little history.
    """
    avail = min(k + 1, h)
    p_max = min(opts.max_period, (avail - 1) // 2)
    if p_max < 2:
        return None, None, None
    idx = torch.tensor([(k - t) % h for t in range(2 * p_max + 1)], device=ring.device)
    ordered = ring.index_select(0, idx)  # (2P+1, D, Bw)
    z_t = ordered[0]
    thr = opts.period_tol * (1 + z_t.abs().amax(dim=0))  # (Bw,)
    d1 = (ordered[2 : p_max + 1] - z_t).abs().amax(dim=1)  # p = 2..P: z_T vs z_{T-p}
    d2 = (ordered[2 : p_max + 1] - ordered[4 : 2 * p_max + 1 : 2]).abs().amax(dim=1)
    spread = (ordered[0] - ordered[1]).abs().amax(dim=0)
    # A cycle repeats to within thr, and its mismatch is tiny beside the distance between its
    # points. The second test rejects a slow alternating approach to a fixed point (multiplier
    # near -1), whose iterates two steps apart differ by a fixed fraction of the step.
    tight = torch.minimum(thr, _CYCLE_REL * spread)
    hit = (d1 <= tight) & (d2 <= tight)  # (P-1, Bw)
    found = hit.any(dim=0) & (spread > 10 * thr) & ~done & torch.isfinite(spread)
    per = hit.to(torch.int8).argmax(dim=0) + 2
    return found, per, ordered


def lyapunov_estimate(
    step_map: Callable[[torch.Tensor], torch.Tensor],
    rows: torch.Tensor,
    z: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Largest Lyapunov exponent of an iteration along the orbit from ``z: (D, n)``.

    Benettin's twin-orbit method: a neighbour at relative distance ``sqrt(eps)`` is carried
    along and renormalised every step; the exponent is the mean log growth per step (natural
    log). Negative: the orbit contracts (fixed point or cycle); about 0: quasi-periodic;
    positive: chaos. ``step_map`` works on the working batch; ``rows`` selects the rows of ``z``.

    Returns
    -------
    Tensor (n,)
    """
    f = step_map.take(rows) if hasattr(step_map, "take") else step_map
    d, n = z.shape
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(d, n, generator=gen, dtype=torch.float64).to(z)
    v = v / torch.linalg.vector_norm(v, dim=0).clamp_min(1e-300)
    eps = torch.finfo(z.dtype).eps ** 0.5 * (1 + z.abs().amax(dim=0))
    total = torch.zeros(n, dtype=z.dtype, device=z.device)
    for _ in range(steps):
        z1 = f(z)
        z2 = f(z + eps * v)
        dz = z2 - z1
        grow = torch.linalg.vector_norm(dz, dim=0)
        total = total + torch.log(grow.clamp_min(torch.finfo(z.dtype).tiny) / eps)
        v = dz / grow.clamp_min(torch.finfo(z.dtype).tiny)
        z = z1
    lam = total / steps
    return torch.where(torch.isfinite(lam), lam, torch.full_like(lam, float("nan")))


def _store_cycles(
    cycle: torch.Tensor,
    rows: torch.Tensor | None,
    found: torch.Tensor,
    per: torch.Tensor,
    ordered: torch.Tensor,
) -> None:
    sel = found.nonzero().squeeze(1)
    if sel.numel() == 0:
        return
    for p in per[sel].unique().tolist():
        s = sel[per[sel] == p]
        pts = ordered[:p, :, s].flip(0).permute(2, 0, 1)  # (n, p, D), oldest first
        g = s if rows is None else rows[s]
        cycle[g, :p] = pts
