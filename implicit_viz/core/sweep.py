"""Parameter-grid sweeps: every cell of a 1-D or 2-D grid is its own fixed-point problem.

An axis varies one target: a scalar param (``a``), an element of a tensor (``x[0]``,
``W[0,1]``) or a component of the start (``z0[1]``). Cells are solved in tiles sized from a
memory budget, each tile one batched call of the driver
(:func:`implicit_viz.core.driver.solve`), so finished cells leave the batch and the grid runs in
bounded memory. A coarse preview (every ``preview``-th cell along each axis) is solved first, so
a picture exists within a fraction of the total time; :func:`iter_sweep` yields after each tile
for progress bars and live views, and stops between tiles (or inside one) when cancelled.

Per cell: outcome (:class:`Status`), iterations, final residual, period, Lyapunov estimate, and
for converged cells a basin id: the index of the distinct fixed point reached (points within
``basin_tol (1 + ||z*||_inf)`` of each other are one). Fixed points are numbered in a canonical
(sorted) order, so results do not depend on the tile size.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.driver import resolve_solver, solve
from implicit_viz.core.errors import SolverError, SpecError, SweepError
from implicit_viz.core.result import SolveOptions, SolveResult
from implicit_viz.core.solver_settings import FLOAT32_MIN_TOL  # noqa: F401  (re-exported)
from implicit_viz.core.spec import Spec, Target, parse_target
from implicit_viz.core.status import Status, status_descriptions, status_names
from implicit_viz.core.sweep_basins import MAX_BASINS, BasinIndex, relabel
from implicit_viz.core.sweep_threads import (
    ChunkRunner,
    chunk_slices,
    concat_results,
    default_threads,
)

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.solver_settings import SolverSettings

MAX_AXIS_CELLS = 16_384
MAX_CELLS = 1 << 26
#: Largest tile (cells). On the CPU a 512 x 512 tanh sweep ran 0.318 s in tiles of 65,536,
#: 0.268 s in 131,072 and 0.263 s in 262,144 (fewer passes of the per-tile work: cycle tests,
#: Lyapunov estimates, write-out); the memory budget still bounds it.
MAX_TILE = 262_144
#: When an axis changes the map itself (a param or tensor), more distinct fixed points than
#: this mean the fixed point moves with the parameter: no basins are assigned.
MAX_BASINS_MAP_AXES = 16
MAX_Z_BYTES = 128 * 1024**2
SWEEP_FORMAT = "implicit_viz.sweep/1"

#: Solve options a sweep uses unless told otherwise: no per-step history, no cycle points
#: (the period is kept), no Jacobian diagnostics, sparse cycle tests (windowed ring),
#: compaction every 16 steps.
SWEEP_OPTIONS = SolveOptions(
    history=False,
    cycles=False,
    diagnostics=False,
    period_every=48,
    compact_every=16,
    lyapunov_steps=64,
)


def sweep_options(spec: Spec, dtype: str = "float32", **overrides: Any) -> SolveOptions:
    """:data:`SWEEP_OPTIONS` with the spec's ``[solver]`` stopping rules and ``overrides``.

    In float32 the spec's ``tol`` is raised to at least
    :data:`~implicit_viz.core.solver_settings.FLOAT32_MIN_TOL`.
    """
    from implicit_viz.core.solver_settings import SolverSection

    opts = SolverSection.of(spec).solve_options(SWEEP_OPTIONS, dtype, **overrides)
    # sparse cycle tests must span the ring of max_period + 2 iterates (see the driver)
    return replace(opts, period_every=max(opts.period_every, opts.max_period + 2))


def cell_options(spec: Spec, settings: SolverSettings) -> SolveOptions:
    """The stopping rules of one cell as the app solves it, in a Basins sweep and in the live
    solve after a click on that cell alike (so both give the same outcome and period):
    :func:`sweep_options` with the solver panel's tol (raised to what float32 resolves) and
    max_iter. The live solve turns on its records (trace, history, cycle points) on top."""
    from implicit_viz.core.solver_settings import fit_tol

    return sweep_options(
        spec,
        settings.dtype,
        tol=fit_tol(settings.tol, settings.dtype),
        max_iter=int(settings.max_iter),
    )


_AXIS = re.compile(r"^\s*(?P<target>.+?)\s*=\s*(?P<lo>[^:]+):(?P<hi>[^:]+):(?P<n>[^:]+)\s*$")


@dataclass(frozen=True)
class Axis:
    """One sweep axis: ``n`` values evenly spaced on ``[lo, hi]`` for ``target``."""

    target: str
    lo: float
    hi: float
    n: int

    @classmethod
    def parse(cls, text: str) -> Axis:
        """``"a=0:3:512"``, ``"x[0]=-2:2:256"`` or ``"z0[1]=-1.5:1.5:400"``."""
        m = _AXIS.match(text)
        if not m:
            raise SweepError(f"cannot read axis '{text}': write TARGET=LO:HI:N, e.g. a=0:3:512")
        try:
            lo, hi = float(m["lo"]), float(m["hi"])
            n = int(m["n"])
        except ValueError:
            raise SweepError(f"axis '{text}': LO and HI must be numbers and N an integer") from None
        return cls(m["target"].replace(" ", ""), lo, hi, n)

    def values(self) -> np.ndarray:
        """The axis values, float64, shape ``(n,)``."""
        return np.linspace(self.lo, self.hi, self.n)

    def __str__(self) -> str:
        return f"{self.target}={self.lo:g}:{self.hi:g}:{self.n}"


@dataclass(frozen=True)
class SweepRequest:
    """Everything a sweep needs; plain data, safe to hand to a worker thread.

    Attributes
    ----------
    spec : Spec
        The map; its values are the base that the axes override.
    x, y : Axis
        Horizontal axis (required) and vertical axis (None for a 1-D sweep).
    solver, solver_options
        Registered solver name and its options.
    options : SolveOptions
        Stopping rules per cell (default :data:`SWEEP_OPTIONS`, with the spec's tol/max_iter).
    device, dtype
        Where and in what precision cells are solved (default cpu, float32).
    memory_budget : int
        Bytes the working set of one tile may take; sets the tile size.
    tile_size : int or None
        Cells per tile, overriding the budget.
    basin_tol : float or None
        Fixed points closer than ``basin_tol (1 + ||z*||_inf)`` are one; default
        ``max(1e-4, 1000 tol)``.
    preview : int
        Stride of the coarse first pass along each axis (1: none).
    orbit : int
        For a 1-D sweep: iterates recorded after the solve, per cell (orbit diagram).
    threads : int or None
        CPU workers, each running torch on one thread, that solve a tile's chunks side by side
        (see :mod:`implicit_viz.core.sweep_threads`); None: up to the calling thread's
        ``torch.get_num_threads()``, at most the usable cores, and for each tile at most the
        cores no other process is using at its start. Results are the same for any value.
    """

    spec: Spec
    x: Axis
    y: Axis | None = None
    solver: str = "fixed_point"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    options: SolveOptions = SWEEP_OPTIONS
    device: str = "cpu"
    dtype: str = "float32"
    memory_budget: int = 512 * 1024**2
    tile_size: int | None = None
    basin_tol: float | None = None
    preview: int = 4
    orbit: int = 0
    threads: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(ny, nx)``; ``ny = 1`` for a 1-D sweep."""
        return (self.y.n if self.y else 1, self.x.n)

    @property
    def cells(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def resolved_basin_tol(self) -> float:
        return self.basin_tol if self.basin_tol is not None else max(1e-4, 1e3 * self.options.tol)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the spec as TOML text)."""
        return {
            "spec": self.spec.to_toml(),
            "spec_name": self.spec.name,
            "x": asdict(self.x),
            "y": asdict(self.y) if self.y else None,
            "solver": self.solver,
            "solver_options": dict(self.solver_options),
            "options": self.options.to_dict(),
            "device": self.device,
            "dtype": self.dtype,
            "memory_budget": self.memory_budget,
            "tile_size": self.tile_size,
            "basin_tol": self.resolved_basin_tol,
            "preview": self.preview,
            "orbit": self.orbit,
        }


@dataclass
class SweepResult:
    """Per-cell arrays of a sweep, shape ``(ny, nx)`` (``ny = 1`` for 1-D), plus the distinct
    fixed points. Cells not solved (cancelled, or not reached yet) have status ``NOT_RUN``.

    Attributes
    ----------
    status : (ny, nx) int8
        :class:`Status` codes.
    iterations : (ny, nx) int32
    residual : (ny, nx) float32
        ``||f(z) - z||_2`` at the last iterate.
    period : (ny, nx) int16
        Cycle length of periodic cells, else 0.
    basin : (ny, nx) int32
        Index into ``fixed_points`` for converged cells, else -1.
    lyapunov : (ny, nx) float32
        Largest Lyapunov exponent (per step) where estimated, else NaN.
    lyapunov_err, rate, steps_needed : (ny, nx) float32 or None
        End-of-budget evidence of cells out of budget (NaN elsewhere): the Lyapunov estimate's
        uncertainty, the residual's fitted factor per step over the end window, and for
        ``converging`` cells the steps still needed to reach tol
        (:class:`~implicit_viz.core.result.SolveResult`).
    fixed_points : (K, D) float64
        The distinct fixed points, in sorted order.
    orbit : (nx, M, D) float32 or None
        1-D sweeps with ``orbit > 0``: the ``M`` iterates after the solve, per cell.
    z : (ny, nx, D) float32 or None
        The last iterate of every cell (kept when it takes at most 128 MB).
    basins_resolved : bool
        False when the fixed point moves continuously with a swept param or tensor (more than
        16 distinct points; 256 when only start components are swept): then ``basin`` is -1
        everywhere and ``fixed_points`` empty; ``z`` still holds each cell's point.
    """

    request: SweepRequest
    x_values: np.ndarray
    y_values: np.ndarray | None
    status: np.ndarray
    iterations: np.ndarray
    residual: np.ndarray
    period: np.ndarray
    basin: np.ndarray
    lyapunov: np.ndarray
    fixed_points: np.ndarray
    orbit: np.ndarray | None = None
    z: np.ndarray | None = None
    lyapunov_err: np.ndarray | None = None
    rate: np.ndarray | None = None
    steps_needed: np.ndarray | None = None
    basins_resolved: bool = True
    cancelled: bool = False
    elapsed_s: float = 0.0
    tile_size: int = 0
    cell_iterations: int = 0

    @property
    def done(self) -> np.ndarray:
        """Mask of solved cells."""
        return self.status != int(Status.NOT_RUN)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def counts(self) -> dict[str, int]:
        """Cells per outcome name."""
        codes = _bincount(self.status, len(Status))
        return {s.label: int(codes[int(s)]) for s in Status}

    def summary(self) -> dict[str, Any]:
        """Fractions of each outcome and each basin, fixed points, and the period histogram."""
        total = self.status.size
        solved = int(self.done.sum())
        counts = self.counts()
        # basin + 1: index 0 counts the cells without a basin (-1)
        per_basin = _bincount(self.basin, len(self.fixed_points) + 1, offset=1)[1:]
        basin_counts = per_basin if per_basin.any() else []
        hist = _period_histogram(self.period, self.status)
        return {
            "cells": total,
            "solved": solved,
            "cancelled": self.cancelled,
            "outcome_fractions": {k: v / total for k, v in counts.items()},
            "outcome_counts": counts,
            "basins_resolved": self.basins_resolved,
            "n_fixed_points": len(self.fixed_points),
            "fixed_points": self.fixed_points.tolist(),
            "basin_fractions": [int(c) / total for c in basin_counts],
            "period_histogram": hist,
            "elapsed_s": self.elapsed_s,
            "cell_iterations": self.cell_iterations,
            "cell_iterations_per_s": self.cell_iterations / self.elapsed_s
            if self.elapsed_s > 0
            else None,
            "tile_size": self.tile_size,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the result with self-describing metadata, as saved to NPZ."""
        out: dict[str, np.ndarray] = {
            "status": self.status,
            "iterations": self.iterations,
            "residual": self.residual,
            "period": self.period,
            "basin": self.basin,
            "lyapunov": self.lyapunov,
            **{k: v for k in _EVIDENCE if (v := getattr(self, k)) is not None},
            "done": self.done,
            "x_values": self.x_values,
            "fixed_points": self.fixed_points,
            "status_names": np.array(json.dumps({str(k): v for k, v in status_names().items()})),
            "metadata": np.array(json.dumps(self.metadata())),
        }
        if self.y_values is not None:
            out["y_values"] = self.y_values
        if self.orbit is not None:
            out["orbit"] = self.orbit
        if self.z is not None:
            out["z"] = self.z
        return out

    def metadata(self) -> dict[str, Any]:
        from implicit_viz import __version__
        from implicit_viz.core.solvers import describe_solver

        return {
            "format": SWEEP_FORMAT,
            "implicit_viz_version": __version__,
            "request": self.request.to_dict(),
            "solver_description": describe_solver(
                str(getattr(self.request.solver, "name", self.request.solver))
            ),
            "x_target": self.request.x.target,
            "y_target": self.request.y.target if self.request.y else None,
            "array_layout": "cell arrays are (ny, nx): row = y index, column = x index",
            "status_codes": {str(k): v for k, v in status_names().items()},
            "status_descriptions": status_descriptions(),
            "basin": "index into fixed_points for converged cells, -1 otherwise",
            "basins_resolved": self.basins_resolved,
            "z": "last iterate of each cell, (ny, nx, D)",
            "lyapunov": "largest Lyapunov exponent per step (natural log), NaN where not estimated",
            "lyapunov_err": "uncertainty of lyapunov per step (gap of its two half-window "
            "estimates, at least 2 / window), NaN where not estimated",
            "rate": "cells out of budget: the residual's fitted factor per step over the end "
            "window (below 1: falling), NaN elsewhere",
            "steps_needed": "converging cells: steps beyond max_iter to reach tol at that rate, "
            "NaN elsewhere",
            "cancelled": self.cancelled,
            "elapsed_s": self.elapsed_s,
            "tile_size": self.tile_size,
            "cell_iterations": self.cell_iterations,
        }

    def filled(self, name: str) -> np.ndarray:
        """Array ``name`` with cells not yet solved copied from the coarse-preview cell of their
        ``preview x preview`` block (its first cell), for drawing a preview; solved cells are
        unchanged."""
        arr = getattr(self, name)
        s = max(self.request.preview, 1)
        if s == 1 or self.complete:
            return arr
        ny, nx = arr.shape
        iy = (np.arange(ny) // s) * s
        ix = (np.arange(nx) // s) * s
        coarse = arr[np.ix_(iy, ix)]
        return np.where(self.done, arr, coarse)


#: Per-cell evidence arrays of cells out of budget (besides ``lyapunov``).
_EVIDENCE = ("lyapunov_err", "rate", "steps_needed")

#: Cells per block when summarising a grid (bounds the temporaries at any grid size).
_SUMMARY_CHUNK = 1 << 22


def _bincount(a: np.ndarray, minlength: int, offset: int = 0) -> np.ndarray:
    """``np.bincount(a.ravel() + offset, minlength)``, a block at a time."""
    flat = a.reshape(-1)
    out = np.zeros(minlength, np.int64)
    for i in range(0, flat.size, _SUMMARY_CHUNK):
        c = np.bincount(flat[i : i + _SUMMARY_CHUNK].astype(np.int64) + offset)
        if len(c) > len(out):
            out = np.concatenate([out, np.zeros(len(c) - len(out), np.int64)])
        out[: len(c)] += c
    return out


def _period_histogram(period: np.ndarray, status: np.ndarray) -> dict[int, int]:
    """Cells per period among the periodic cells, a block at a time."""
    p, st = period.reshape(-1), status.reshape(-1)
    hist: dict[int, int] = {}
    for i in range(0, p.size, _SUMMARY_CHUNK):
        sel = p[i : i + _SUMMARY_CHUNK][st[i : i + _SUMMARY_CHUNK] == int(Status.PERIODIC)]
        for k, c in zip(*np.unique(sel, return_counts=True)):
            hist[int(k)] = hist.get(int(k), 0) + int(c)
    return dict(sorted(hist.items()))


@dataclass(frozen=True)
class SweepProgress:
    """Sent after each tile: cells solved so far, of how many, and the pass (0 preview, 1 rest)."""

    done: int
    total: int
    stage: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def validate(request: SweepRequest) -> list[Target]:
    """Check a request before any work; returns the axis targets. Raises SweepError/SpecError."""
    axes = [request.x] + ([request.y] if request.y else [])
    targets = []
    for ax in axes:
        if ax.n < 1:
            raise SweepError(f"axis {ax.target}: the resolution must be at least 1, got {ax.n}")
        if ax.n > MAX_AXIS_CELLS:
            raise SweepError(f"axis {ax.target}: {ax.n} cells; the limit is {MAX_AXIS_CELLS}")
        _check_range(ax, request.dtype)
        if not ax.lo < ax.hi:
            raise SweepError(
                f"axis {ax.target}: empty range, lo ({ax.lo:g}) must be below hi ({ax.hi:g})"
            )
        t = parse_target(ax.target, request.spec)
        if t.kind == "seed":
            raise SweepError(f"axis {ax.target}: a seed cannot be swept")
        if t.index is None and t.kind != "param":
            raise SweepError(
                f"axis {ax.target}: sweep one element, e.g. {t.name}[0]"
                + ("" if t.kind == "z0" else " or a param")
            )
        targets.append(t)
    if len(targets) == 2 and str(targets[0]) == str(targets[1]):
        raise SweepError(f"both axes sweep {targets[0]}")
    if request.cells > MAX_CELLS:
        raise SweepError(f"{request.cells} cells; the limit is {MAX_CELLS}")
    if request.orbit:
        if request.y is not None:
            raise SweepError("an orbit diagram needs a 1-D sweep (no y axis)")
        if not 1 <= request.orbit <= 4096:
            raise SweepError(f"orbit must lie in 1..4096 iterates, got {request.orbit}")
    if request.preview < 1:
        raise SweepError(f"preview stride must be at least 1, got {request.preview}")
    if request.threads is not None and request.threads < 1:
        raise SweepError(f"threads must be at least 1, got {request.threads}")
    if request.basin_tol is not None and not request.basin_tol > 0:
        raise SweepError(f"basin_tol must be positive, got {request.basin_tol}")
    try:
        resolve_solver(request.solver, request.solver_options)
    except SolverError as exc:
        raise SweepError(str(exc)) from None
    tile_size(request)
    return targets


def _check_range(ax: Axis, dtype: str) -> None:
    """Finite ends, a span that is a finite number, and values the sweep's dtype can hold."""
    if not (math.isfinite(ax.lo) and math.isfinite(ax.hi)):
        raise SweepError(
            f"axis {ax.target}: the range must be finite, got lo={ax.lo:g}, hi={ax.hi:g}"
        )
    if not math.isfinite(ax.hi - ax.lo):
        raise SweepError(
            f"axis {ax.target}: the span hi - lo = {ax.hi:g} - ({ax.lo:g}) overflows; "
            f"the ends may differ by at most {sys.float_info.max:.3g}"
        )
    big = float(np.finfo(dtype).max) if dtype in ("float16", "float32", "float64") else math.inf
    if max(abs(ax.lo), abs(ax.hi)) > big:
        raise SweepError(
            f"axis {ax.target}: the range {ax.lo:g}:{ax.hi:g} does not fit in {dtype} "
            f"(largest {big:.3g}); narrow it or sweep in float64"
        )


def bytes_per_cell(request: SweepRequest) -> int:
    """Estimated working-set bytes of one cell in a tile (solver state included)."""
    d = request.spec.dim
    item = 4 if request.dtype == "float32" else 8
    h = request.options.max_period + 2
    per_row_values = sum(1 for ax in [request.x, request.y] if ax is not None) * max(
        (t.size for t in request.spec.tensors), default=1
    )
    slv = resolve_solver(request.solver, request.solver_options)
    state = -(-slv.state_bytes(1, d, request.dtype) // item)  # as the solver declares it
    if slv.jac_evals_per_step:
        state += 2 * d * per_row_values  # its autograd Jacobians repeat each row's values D times
    words = d * (14 + h) + per_row_values + state + 16
    if request.orbit:
        words += request.orbit * d
    return words * item + 48


def tile_size(request: SweepRequest) -> int:
    """Cells per tile: ``request.tile_size`` or what the memory budget holds (at most MAX_TILE)."""
    need = bytes_per_cell(request)
    if request.tile_size is not None:
        if request.tile_size < 1:
            raise SweepError(f"tile size must be at least 1, got {request.tile_size}")
        return min(request.tile_size, request.cells)
    if request.memory_budget < need:
        raise SweepError(
            f"a memory budget of {request.memory_budget} bytes cannot hold one cell "
            f"({need} bytes for this spec and solver)"
        )
    return max(1, min(request.memory_budget // need, MAX_TILE, request.cells))


def _pass_tiles(request: SweepRequest, tile: int) -> list[Iterator[np.ndarray]]:
    """Flat cell indices (``iy * nx + ix``) of each pass, tile by tile: the coarse preview
    (every ``preview``-th cell along each axis), then the rest, each in row-major order.

    Tiles are generated as they are needed, so no index array of the whole grid is ever held
    (a 8192 x 8192 grid's would be 512 MiB).
    """
    ny, nx = request.shape
    s = request.preview
    total = ny * nx
    if s <= 1 or total <= 4 * s * s:
        return [(np.arange(i, min(i + tile, total)) for i in range(0, total, tile))]
    coarse = (np.arange(0, ny, s)[:, None] * nx + np.arange(0, nx, s)[None, :]).ravel()
    preview = (coarse[i : i + tile] for i in range(0, len(coarse), tile))
    return [preview, _rest_tiles(ny, nx, s, tile)]


def _rest_tiles(ny: int, nx: int, s: int, tile: int) -> Iterator[np.ndarray]:
    """The cells outside the preview subgrid, in row-major order, in tiles of ``tile`` cells."""
    rows = max(1, tile // nx)
    carry = np.zeros(0, np.int64)
    for r0 in range(0, ny, rows):
        flat = np.arange(r0 * nx, min(r0 + rows, ny) * nx)
        keep = ((flat // nx) % s != 0) | ((flat % nx) % s != 0)
        cells = np.concatenate([carry, flat[keep]])
        full = len(cells) // tile * tile
        for i in range(0, full, tile):
            yield cells[i : i + tile]
        carry = cells[full:]
    if len(carry):
        yield carry


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def sweep(
    request: SweepRequest,
    progress: Callable[[SweepProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SweepResult:
    """Run a sweep to the end (or until cancelled) and return its result."""
    last = None
    for last, prog in iter_sweep(request, cancel=cancel):  # noqa: B007 (last is the result)
        if progress is not None:
            progress(prog)
    assert last is not None
    return last


def iter_sweep(
    request: SweepRequest, cancel: Callable[[], bool] | None = None
) -> Iterator[tuple[SweepResult, SweepProgress]]:
    """Solve a sweep tile by tile, yielding ``(result so far, progress)`` after each tile.

    The yielded result is the same object each time, filled in place (copy what you keep).
    When ``cancel()`` returns True the sweep stops, marks the result ``cancelled``, yields it
    once more and returns; unsolved cells keep ``NOT_RUN``.

    On the CPU a tile's cells are solved in chunks on up to ``request.threads`` single-threaded
    workers (:mod:`implicit_viz.core.sweep_threads`), the calling thread among them, so
    ``cancel`` may be called from several threads. Between the tiles it yields, after the sweep
    and once the generator is closed, torch's thread settings are the caller's.
    """
    targets = validate(request)
    threads = request.threads or default_threads(request.device)
    adaptive = request.threads is None
    with ChunkRunner(threads, request.device, adaptive=adaptive) as runner:
        yield from runner.drive(_iter_tiles(request, targets, runner, cancel))


def _iter_tiles(
    request: SweepRequest,
    targets: list[Target],
    runner: ChunkRunner,
    cancel: Callable[[], bool] | None,
) -> Iterator[tuple[SweepResult, SweepProgress]]:
    """The body of :func:`iter_sweep`: tiles solved through ``runner``."""
    t0 = time.perf_counter()
    fmap = compile_spec(request.spec, device=request.device, dtype=request.dtype)
    solver = resolve_solver(request.solver, request.solver_options)
    ny, nx = request.shape
    xs = request.x.values()
    ys = request.y.values() if request.y else None
    tile = tile_size(request)
    d = fmap.dim

    result = SweepResult(
        request=request,
        x_values=xs,
        y_values=ys,
        status=np.zeros((ny, nx), np.int8),
        iterations=np.zeros((ny, nx), np.int32),
        residual=np.full((ny, nx), np.nan, np.float32),
        period=np.zeros((ny, nx), np.int16),
        basin=np.full((ny, nx), -1, np.int32),
        lyapunov=np.full((ny, nx), np.nan, np.float32),
        lyapunov_err=np.full((ny, nx), np.nan, np.float32),
        rate=np.full((ny, nx), np.nan, np.float32),
        steps_needed=np.full((ny, nx), np.nan, np.float32),
        fixed_points=np.zeros((0, d)),
        orbit=np.full((nx, request.orbit, d), np.nan, np.float32) if request.orbit else None,
        z=np.full((ny, nx, d), np.nan, np.float32) if ny * nx * d * 4 <= MAX_Z_BYTES else None,
        tile_size=tile,
    )
    map_axes = any(t.kind != "z0" for t in targets)
    basins = BasinIndex(
        request.resolved_basin_tol, d, MAX_BASINS_MAP_AXES if map_axes else MAX_BASINS
    )
    flat_status = result.status.reshape(-1)
    flat_iters = result.iterations.reshape(-1)
    flat_res = result.residual.reshape(-1)
    flat_period = result.period.reshape(-1)
    flat_lyap = result.lyapunov.reshape(-1)
    flat_basin = result.basin.reshape(-1)
    rank: np.ndarray | None = np.zeros(0, np.int64)  # discovery id -> label (sorted order)

    passes = _pass_tiles(request, tile)
    total = ny * nx
    solved = 0
    cancelled = False
    for stage, tiles in enumerate(passes):
        for idx in tiles:
            if cancel is not None and cancel():
                cancelled = True
                break
            res, orbit = _solve_tile(runner, fmap, solver, request, targets, idx, xs, ys, cancel)
            # a run of consecutive cells (every tile of a sweep without preview) is written
            # through a slice: several times cheaper than an index array
            at = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx
            st = res.status.cpu().numpy()
            flat_status[at] = st
            flat_iters[at] = res.iterations.cpu().numpy()
            flat_res[at] = res.residual.cpu().numpy()
            flat_period[at] = res.period.cpu().numpy()
            if res.lyapunov is not None:
                flat_lyap[at] = res.lyapunov.cpu().numpy()
            for name in _EVIDENCE:
                val = getattr(res, name)
                if val is not None:
                    getattr(result, name).reshape(-1)[at] = val.cpu().numpy()
            conv = st == int(Status.CONVERGED)
            z_np = res.z.cpu().numpy()
            if result.z is not None:
                result.z.reshape(-1, d)[at] = z_np
            ids = None
            if conv.any() and not basins.overflow:
                ids = basins.assign(z_np[conv].astype(np.float64))
            rank = relabel(result, basins, rank)
            if ids is not None and rank is not None:
                flat_basin[idx[conv]] = np.where(ids >= 0, rank[np.maximum(ids, 0)], -1)
            if orbit is not None:
                result.orbit[idx] = orbit  # type: ignore[index]
            result.cell_iterations += int(res.iterations.sum())
            solved += int((st != int(Status.NOT_RUN)).sum())
            if (st == int(Status.NOT_RUN)).any():
                cancelled = True
                break
            result.elapsed_s = time.perf_counter() - t0
            yield result, SweepProgress(solved, total, stage, result.elapsed_s)
        if cancelled:
            break
    result.cancelled = cancelled
    result.elapsed_s = time.perf_counter() - t0
    if cancelled:
        yield result, SweepProgress(solved, total, len(passes), result.elapsed_s)


def _solve_tile(
    runner: ChunkRunner,
    fmap: FixedPointMap,
    solver: Any,
    request: SweepRequest,
    targets: list[Target],
    idx: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray | None,
    cancel: Callable[[], bool] | None,
) -> tuple[SolveResult, np.ndarray | None]:
    """Solve the cells ``idx`` of a tile, chunk by chunk on the runner's workers
    (:func:`~implicit_viz.core.sweep_threads.chunk_slices`); returns the tile's result and, when
    ``request.orbit``, its orbit ``(len(idx), orbit, D)``."""
    nx = request.shape[1]

    def job(cells: np.ndarray) -> Callable[[], tuple[SolveResult, np.ndarray | None]]:
        def run() -> tuple[SolveResult, np.ndarray | None]:
            fm, z0 = _tile_problem(fmap, targets, cells, nx, xs, ys)
            res = solve(fm, solver, z0, options=request.options, cancel=cancel)
            orbit = _orbit(fm, solver, res, request.orbit) if request.orbit else None
            return res, orbit

        return run

    parts = runner.run([job(idx[s]) for s in chunk_slices(len(idx), request.device)])
    orbits = [o for _, o in parts]
    orbit = np.concatenate(orbits) if request.orbit else None  # type: ignore[arg-type]
    return concat_results([r for r, _ in parts]), orbit


def _tile_problem(
    fmap: FixedPointMap,
    targets: list[Target],
    idx: np.ndarray,
    nx: int,
    xs: np.ndarray,
    ys: np.ndarray | None,
) -> tuple[FixedPointMap, torch.Tensor]:
    """The map with per-row values for cells ``idx`` and their start points."""
    ix = idx % nx
    iy = idx // nx
    cols = [xs[ix]] + ([ys[iy]] if ys is not None else [])  # type: ignore[index]
    fm = fmap
    z0 = fmap.start(len(idx))
    for t, vals in zip(targets, cols):
        v = torch.as_tensor(vals, dtype=fmap.dtype, device=fmap.device)
        if t.kind == "param":
            fm = fm.with_values(**{t.name: v})
        elif t.kind == "tensor":
            fm = fm.with_element(t.name, t.index, v)  # type: ignore[arg-type]
        else:  # z0
            z0[:, t.index[0]] = v  # type: ignore[index]
    return fm, z0


def _orbit(fm: FixedPointMap, solver: Any, res: SolveResult, n: int) -> np.ndarray:
    """``n`` iterates after the solve, per cell ``(B, n, D)``: what the solver does there.

    A converged cell sits at its fixed point (``n`` copies of its ``z*``: iterating ``f`` from a
    Newton or Broyden root that ``f`` repels would scatter dots the solver never visits). Other
    cells continue with the solver's own steps: its iteration map where it has one, else
    fresh steps of the solver itself (its state restarted at the last iterate)."""
    f = fm.as_batch_last()
    zz = res.z.T.contiguous()
    out = torch.empty(n, *zz.shape, dtype=zz.dtype, device=zz.device)
    step_map = solver.iteration_map(f)
    with torch.no_grad():
        if step_map is not None:
            for k in range(n):
                zz = step_map(zz)
                out[k] = zz
        else:
            fz = f(zz)
            state = solver.init(f, zz, fz)
            for k in range(n):
                zz, fz, state = solver.step(f, zz, fz, state)
                out[k] = zz
        conv = res.status == int(Status.CONVERGED)
        out[:, :, conv] = res.z.T[:, conv].unsqueeze(0)
    return out.permute(2, 0, 1).cpu().numpy().astype(np.float32)


def axis_label(target: str, spec: Spec) -> str:
    """A readable label for an axis target (param description when there is one)."""
    try:
        t = parse_target(target, spec)
    except SpecError:
        return target
    if t.kind == "param":
        desc = spec.param(t.name).description
        return f"{target} ({desc})" if desc else target
    return target
