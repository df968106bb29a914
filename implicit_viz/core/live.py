"""One interactive solve, as the app's live plots need it: plain NumPy data, no torch, no Qt.

The app's worker thread calls :func:`run_live` with a :class:`LiveRequest` (the spec, the slider
values, the solver panel's :class:`SolverSettings`) and sends the returned :class:`LiveSnapshot`
to the views. Everything a view draws is in the snapshot, so views hold no numerics:

- per solver (:class:`SolverTrace`): iterates ``(T + 1, D)``, residuals ``(T + 1,)``, outcome in
  words, iterations, f-evals, time, observed rate, spectral radius of ``df/dz`` at ``z*``;
- for ``dim == 1``, the map drawn on a grid for the cobweb diagram (:class:`CobwebCurve`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from implicit_viz.core.solver_settings import SolverSettings
from implicit_viz.core.status import Status
from implicit_viz.core.sweep_text import format_point

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.compiled_map import FixedPointMap
    from implicit_viz.core.result import SolveResult
    from implicit_viz.core.spec import Spec

#: Points of the map's curve in a cobweb diagram.
COBWEB_POINTS = 400
#: Newton and Broyden hold a D x D matrix per step: left out of a live solve above this dim
#: (a step takes minutes there), or sooner where the memory budget cannot hold it.
MAX_MATRIX_DIM = 4096
#: A live solve records every iterate of every solver; refused above this many bytes.
MAX_LIVE_TRACE_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class LiveRequest:
    """One solve the app asks for.

    ``values`` are slider values (param name -> number); ``seeds`` are seed controls (random
    tensor name -> seed); ``overrides`` set other targets of
    :meth:`~implicit_viz.core.spec.Spec.with_overrides` (``"z0[1]"``, ``"x[0]"``, ``"W[0,1]"``),
    e.g. from a click on a basins map. All override the spec. ``request_id`` comes back in the
    snapshot so the app can drop answers to stale requests.
    """

    spec: Spec
    values: Mapping[str, float] = field(default_factory=dict)
    seeds: Mapping[str, int] = field(default_factory=dict)
    settings: SolverSettings = field(default_factory=SolverSettings)
    request_id: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverTrace:
    """One solver's run, as NumPy arrays (float64) and plain numbers.

    ``trajectory`` is ``(T + 1, D)``: the iterates at steps ``0..T`` where ``T = iterations``;
    ``residuals`` is ``(T + 1,)``: ``||f(z) - z||_2`` at those steps (non-finite once it blew up).
    Numbers that do not apply are NaN (``observed_rate``, ``spectral_radius``, ``lyapunov``).
    """

    solver: str
    label: str
    status: str
    status_code: int
    message: str
    iterations: int
    residual: float
    period: int
    f_evals: int
    time_s: float
    observed_rate: float
    spectral_radius: float
    lyapunov: float
    z: np.ndarray
    trajectory: np.ndarray
    residuals: np.ndarray
    cycle: np.ndarray | None = None
    #: The linear rate this solver should show near z* (``Solver.predicted_rate``), NaN where
    #: theory gives none (history-dependent or superlinear methods) or no z* was reached.
    predicted_rate: float = math.nan
    #: End-of-budget evidence (NaN where not measured): the Lyapunov estimate's uncertainty,
    #: the residual's fitted factor per step, the steps still needed (``converging``).
    lyapunov_err: float = math.nan
    rate: float = math.nan
    steps_needed: float = math.nan

    def row(self) -> dict[str, Any]:
        """The results-table row: plain, JSON-ready values (None where not applicable)."""

        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "solver": self.label,
            "outcome": self.message,
            "iterations": self.iterations,
            "residual": num(self.residual),
            "f_evals": self.f_evals,
            "time_ms": self.time_s * 1e3,
            "observed_rate": num(self.observed_rate),
            "predicted_rate": num(self.predicted_rate),
            "spectral_radius": num(self.spectral_radius),
            "z": format_point(self.z) if self.status_code == int(Status.CONVERGED) else None,
        }


def distinct_fixed_points(traces: tuple[SolverTrace, ...], tol: float) -> str:
    """A note when converged solvers reached different fixed points (``""`` when they agree):
    points within ``same_point_radius(tol) (1 + ||z||_inf)`` of each other are one, the rule
    by which the diagnostics reuse one solver's Jacobian for another."""
    from implicit_viz.core.diagnostics import same_point_radius

    groups: list[tuple[np.ndarray, list[str]]] = []
    for t in traces:
        if t.status_code != int(Status.CONVERGED) or not np.isfinite(t.z).all():
            continue
        for point, names in groups:
            scale = same_point_radius(tol) * (1 + float(np.abs(point).max(initial=0.0)))
            if float(np.abs(t.z - point).max(initial=0.0)) <= scale:
                names.append(t.solver)
                break
        else:
            groups.append((t.z, [t.solver]))
    if len(groups) < 2:
        return ""
    parts = [f"{' and '.join(names)} at z* = {format_point(p)}" for p, names in groups]
    return "different fixed points: " + "; ".join(parts)


@dataclass(frozen=True)
class CobwebCurve:
    """The map of a 1-D spec on a grid: ``x (N,)``, ``fx (N,)`` (NaN where f is not finite)."""

    x: np.ndarray
    fx: np.ndarray


@dataclass(frozen=True)
class LiveSnapshot:
    """Everything the live plots draw for one request."""

    request_id: int
    spec_name: str
    dim: int
    tol: float
    device: str
    dtype: str
    values: dict[str, float]
    traces: tuple[SolverTrace, ...]
    cobweb: CobwebCurve | None
    wall_s: float
    results: tuple[SolveResult, ...] = field(default=(), repr=False, compare=False)
    #: Solvers left out and why, e.g. ``("newton skipped: dim 5000 needs ...",)``.
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the status bar: what ran, where, how long, and each outcome in words."""
        parts = [f"{t.label}: {t.message}" for t in self.traces] + list(self.notes)
        return (
            f"{self.spec_name} on {self.device} ({self.dtype}) in {self.wall_s * 1e3:.1f} ms — "
            + "; ".join(parts)
        )


def outcome_message(
    status: Status,
    iterations: int,
    period: int,
    lyapunov: float,
    *,
    lyapunov_err: float = math.nan,
    rate: float = math.nan,
    steps_needed: float = math.nan,
) -> str:
    """The outcome in words, e.g. ``"converged in 9 steps"``, ``"periodic, period 2"``,
    ``"still converging at rate 0.968, about 190 more steps"``."""
    pm = f" ± {lyapunov_err:.2g}" if math.isfinite(lyapunov_err) else ""
    if status == Status.CONVERGED:
        return f"converged in {iterations} step{'s' if iterations != 1 else ''}"
    if status == Status.DIVERGED:
        if iterations == 0:
            return "diverged at the start: z0 or f(z0) is not finite, or beyond the bound"
        return f"diverged at step {iterations}"
    if status == Status.PERIODIC:
        return f"periodic with period {period}"
    if status == Status.CHAOTIC:
        return f"chaotic (Lyapunov exponent {lyapunov:.3g}{pm} per step)"
    if status == Status.CONVERGING:
        more = f", about {steps_needed:,.0f} more steps" if math.isfinite(steps_needed) else ""
        return f"still converging at rate {rate:.4g}{more} (out of budget at {iterations})"
    if status == Status.QUASI_PERIODIC:
        return f"quasi-periodic: an invariant circle (Lyapunov exponent {lyapunov:.2g}{pm})"
    if status == Status.MAX_ITER:
        return f"no convergence in {iterations} steps, no verdict (max_iter)"
    return "not run (cancelled)"


class MapCache:
    """Keeps the last compiled map, so that moving a slider does not recompile the spec.

    Keyed on the spec with its param values removed, the seeds, device and dtype; a slider move
    only rebinds the param values (:meth:`FixedPointMap.with_values`).
    """

    def __init__(self) -> None:
        self._key: Any = None
        self._fmap: FixedPointMap | None = None

    def get(self, spec: Spec, seeds: Mapping[str, int], device: str, dtype: str) -> FixedPointMap:

        from implicit_viz.core.compiled_map import compile_spec

        stripped = replace(spec, params=tuple(replace(p, value=p.min) for p in spec.params))
        key = (stripped, tuple(sorted(seeds.items())), device, dtype)
        if key != self._key or self._fmap is None:
            seeded = spec.with_overrides({f"{name}.seed": int(s) for name, s in seeds.items()})
            self._fmap = compile_spec(seeded, device=device, dtype=dtype)
            self._key = key
        return self._fmap


def run_live(
    request: LiveRequest,
    *,
    cache: MapCache | None = None,
    cancel: Callable[[], bool] | None = None,
) -> LiveSnapshot:
    """Solve ``request`` with every chosen solver, traces on, and package it for the views.

    Raises :class:`~implicit_viz.core.errors.SpecError` for values outside their ranges or a spec
    that does not compile, :class:`~implicit_viz.core.errors.SolverError` for bad options.
    A solve that blows up (NaN, inf) is not an error: it is a ``diverged`` trace.
    """
    from implicit_viz.core.driver import compare
    from implicit_viz.core.sweep import cell_options

    t0 = time.perf_counter()
    settings = request.settings
    settings.check()
    spec = request.spec.with_overrides(request.overrides) if request.overrides else request.spec
    values = {p.name: p.value for p in spec.params}
    values.update({k: float(v) for k, v in request.values.items()})
    spec.with_overrides(values)  # checks names and ranges with the spec's own messages
    settings, notes = _fit_solvers(spec.dim, settings)
    _check_size(spec.dim, settings)
    fmap = (cache or MapCache()).get(spec, request.seeds, settings.device, settings.dtype)
    if values:
        fmap = fmap.with_values(**values)

    # the same stopping rules as a Basins sweep's cell (one answer per cell), records on
    options = replace(
        cell_options(spec, settings), trace=True, history=True, cycles=True, diagnostics=True
    )
    results = compare(
        fmap,
        list(settings.solvers),
        options=options,
        solver_options=settings.solver_options(),
        cancel=cancel,
    )
    traces = tuple(_trace(r, settings) for r in results)
    for r in results:
        skipped = r.extra.get("diagnostics_skipped")
        if skipped and skipped not in notes:
            notes = (*notes, skipped)
    apart = distinct_fixed_points(traces, settings.tol)
    if apart:
        notes = (*notes, apart)
    cobweb = _cobweb(fmap, traces) if spec.dim == 1 and traces else None
    dev = str(fmap.device)
    return LiveSnapshot(
        request_id=request.request_id,
        spec_name=spec.name,
        dim=spec.dim,
        tol=settings.tol,
        device=dev,
        dtype=str(fmap.dtype).replace("torch.", ""),
        values=values,
        traces=traces,
        cobweb=cobweb,
        wall_s=time.perf_counter() - t0,
        results=tuple(results),
        notes=notes,
    )


def _fit_solvers(dim: int, settings: SolverSettings) -> tuple[SolverSettings, tuple[str, ...]]:
    """Leave out solvers with a D x D matrix per step (``Solver.dense_matrix``: Newton,
    Broyden) where their state would exceed
    the memory budget of :func:`~implicit_viz.core.limits.check_memory`, or above
    :data:`MAX_MATRIX_DIM` (steps there take minutes), with a note saying why; raise when no
    solver is left."""

    from implicit_viz.core.errors import LimitError, SolverError
    from implicit_viz.core.limits import check_memory, format_bytes
    from implicit_viz.core.solvers import available_solvers, solver_class

    big = []
    for name in (n for n in settings.solvers if solver_class(n).dense_matrix):
        need = settings.build(name).state_bytes(1, dim, settings.dtype)
        try:
            check_memory(name, need)
        except LimitError:
            big.append((name, need))
            continue
        if dim > MAX_MATRIX_DIM:
            big.append((name, need))
    if not big:
        return settings, ()
    names = [n for n, _ in big]
    why = (
        f"{' and '.join(names)} skipped: at dim {dim} each step needs a {dim} x {dim} matrix "
        f"({format_bytes(max(b for _, b in big))}); live solves allow them up to dim "
        f"{MAX_MATRIX_DIM} within the memory limit"
    )
    rest = tuple(n for n in settings.solvers if n not in names)
    if not rest:
        light = [n for n in available_solvers() if not solver_class(n).dense_matrix]
        raise SolverError(f"{why}: tick {', '.join(light[:-1])} or {light[-1]}")
    return replace(settings, solvers=rest), (why,)


def _check_size(dim: int, settings: SolverSettings) -> None:
    """Refuse live solves that would need absurd memory, naming the cause."""
    from implicit_viz.core.errors import SolverError

    itemsize = 8 if settings.dtype == "float64" else 4
    need = (settings.max_iter + 1) * dim * itemsize * len(settings.solvers)
    if need > MAX_LIVE_TRACE_BYTES:
        raise SolverError(
            f"recording {settings.max_iter + 1} steps of dim {dim} for {len(settings.solvers)} "
            f"solver(s) would take {need / 1024**2:.0f} MiB; lower max_iter"
        )


def _scalar(t: Any) -> float:
    if t is None:
        return math.nan
    return float(t[0])


def _trace(r: SolveResult, settings: SolverSettings) -> SolverTrace:
    st = Status(int(r.status[0]))
    n = int(r.iterations[0])
    traj = r.trajectory[0, : n + 1].detach().cpu().double().numpy()  # type: ignore[index]
    res = r.residuals[0, : n + 1].detach().cpu().double().numpy()
    lyap = _scalar(r.lyapunov)
    period = int(r.period[0])
    cycle = r.cycle[0, :period].detach().cpu().double().numpy() if st == Status.PERIODIC else None
    return SolverTrace(
        solver=r.solver,
        label=settings.label(r.solver),
        status=st.label,
        status_code=int(st),
        message=outcome_message(
            st,
            n,
            period,
            lyap,
            lyapunov_err=_scalar(r.lyapunov_err),
            rate=_scalar(r.rate),
            steps_needed=_scalar(r.steps_needed),
        ),
        iterations=n,
        residual=float(r.residual[0]),
        period=period,
        f_evals=int(r.f_evals[0]),
        time_s=float(r.time_s),
        observed_rate=_scalar(r.observed_rate),
        predicted_rate=_scalar(r.predicted_rate),
        spectral_radius=_scalar(r.spectral_radius),
        lyapunov=lyap,
        z=r.z[0].detach().cpu().double().numpy(),
        trajectory=traj,
        residuals=res,
        cycle=cycle,
        lyapunov_err=_scalar(r.lyapunov_err),
        rate=_scalar(r.rate),
        steps_needed=_scalar(r.steps_needed),
    )


def _cobweb(fmap: FixedPointMap, traces: tuple[SolverTrace, ...]) -> CobwebCurve:
    """f on a grid spanning the iterates (finite ones), with a margin; at most |z| <= 1e3."""
    import torch

    pts = np.concatenate([t.trajectory[:, 0] for t in traces])
    pts = pts[np.isfinite(pts) & (np.abs(pts) <= 1e3)]
    if pts.size == 0:
        lo, hi = -1.0, 1.0
    else:
        lo, hi = float(pts.min()), float(pts.max())
    span = max(hi - lo, 1e-3 * max(1.0, abs(lo), abs(hi)), 1e-6)
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    x = np.linspace(lo, hi, COBWEB_POINTS)
    with torch.no_grad():
        z = torch.as_tensor(x, dtype=fmap.dtype, device=fmap.device).unsqueeze(0)  # (1, N)
        fx = fmap.batch_last(z)[0].detach().cpu().double().numpy()
    fx = np.where(np.isfinite(fx), fx, np.nan)
    return CobwebCurve(x=x, fx=fx)
