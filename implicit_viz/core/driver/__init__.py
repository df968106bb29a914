"""The driver: stopping rules, per-element masks, status codes, traces.

A solver only says how to take one step (:mod:`implicit_viz.core.solvers`); the driver owns
everything else, so no solver can forget the NaN, divergence, cycle or budget checks.

Per element: converged (residual below tolerance), diverged (non-finite or beyond
``div_bound``), periodic (a cycle of period ``k >= 2``), or, at the end of the budget,
converging, quasi-periodic, chaotic or max_iter (no verdict). Finished elements are frozen by a mask and removed from the working
batch every ``compact_every`` steps, so they stop costing work.

Modules: :mod:`.pieces` (the rules, shared by every loop), :mod:`.rows` (per-element outputs),
:mod:`.general` (the general loop: any solver, history, trace, ``rtol``), :mod:`.lean` (the
fast path for stateless solvers with nothing recorded per step), :mod:`.stepping`
(:func:`iterate`, one :class:`Step` at a time), :mod:`.setup` (checks before a loop runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.diagnostics import add_diagnostics, known_info
from implicit_viz.core.driver import lean
from implicit_viz.core.driver.general import run_general
from implicit_viz.core.driver.setup import check_record_size, resolve_solver, start_rows
from implicit_viz.core.driver.stepping import Step, iterate
from implicit_viz.core.result import SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver

__all__ = ["ProgressFn", "Step", "compare", "iterate", "resolve_solver", "solve"]

ProgressFn = Callable[[int, int], None]
"""``progress(step, live_elements)``, called at the driver's check points."""


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
        The compiled map (:func:`implicit_viz.core.compiled_map.compile_spec`). If it carries
        per-row values, their row count is the batch size.
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
    if z0 is None:
        z_start = start_rows(fmap.start(fmap.batch or 1), fmap.dim, fmap.dtype, fmap.device)
    else:
        z_start = start_rows(z0, fmap.dim, fmap.dtype, fmap.device, fmap.batch)
    b, d = z_start.shape
    check_record_size(opts, b, d, fmap.dtype)

    with torch.no_grad():
        # looked up on the module at call time, so tests can stand in for either loop
        if lean.lean_applies(slv, opts):
            return lean.run_lean(fmap, slv, z_start, opts, progress, cancel)
        return run_general(fmap, slv, z_start, opts, progress, cancel)


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
