"""What a solve returns: :class:`SolveOptions` in, :class:`SolveResult` out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from implicit_viz.core.errors import SolverError
from implicit_viz.core.limits import MAX_TOL
from implicit_viz.core.status import Status

MAX_TRACE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class SolveOptions:
    """Stopping rules and bookkeeping shared by every solver.

    Attributes
    ----------
    tol, rtol : float
        An element converges when ``||f(z) - z||_2 <= tol + rtol * ||f(z)||_2``.
    max_iter : int
        Step budget per element.
    div_bound : float
        An element diverges when an iterate is non-finite or ``||z||_inf > div_bound``.
    period_tol : float
        Cycle test: ``||z_T - z_{T-k}||_inf <= period_tol * (1 + ||z_T||_inf)``, and the same one
        cycle earlier, with the cycle's points at least ten times that far apart.
    max_period : int
        Longest cycle looked for (periods 2..max_period).
    period_every : int
        Steps between cycle tests. A cycle found by a test counts once it still holds
        ``c = min(period_every, 8)`` steps later; the last test runs at ``max_iter - c``.
    trace : bool
        Record ``z`` at every step (``trajectory``).
    history : bool
        Record the residual at every step (``residuals``); sweeps turn it off, and then
        ``residuals`` holds only the final residual, ``(B, 1)``.
    cycles : bool
        Record the points of each detected cycle (``cycle``); sweeps, which keep only the
        period, turn it off, and then ``cycle`` is all NaN, ``(B, 1, D)``.
    diagnostics : bool
        At each converged ``z*``: spectral radius and 2-norm of ``df/dz``, predicted rate.
    compact_every : int
        Steps between removals of finished elements from the working batch.
    lyapunov_steps : int
        The end window: for elements still running at the budget, the residual's fall is
        fitted over this many last steps of the budget (all of them when the budget is
        shorter; 0 turns it off), in two halves, and under naive or damped iteration the
        largest Lyapunov exponent is estimated from a twin orbit carried over the same steps
        (one estimate per half too). They decide ``converging``, ``chaotic``,
        ``quasi_periodic`` or no verdict (``max_iter``); see
        :func:`implicit_viz.core.lyapunov.end_verdict`.
    chaos_threshold : float
        Such an element is ``chaotic`` when its exponent minus its uncertainty exceeds this
        (per step, natural log).
    """

    tol: float = 1e-6
    rtol: float = 0.0
    max_iter: int = 200
    div_bound: float = 1e8
    period_tol: float = 1e-5
    max_period: int = 32
    period_every: int = 8
    trace: bool = False
    history: bool = True
    cycles: bool = True
    diagnostics: bool = True
    compact_every: int = 8
    lyapunov_steps: int = 100
    chaos_threshold: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.tol <= MAX_TOL:
            raise SolverError(f"tol must lie in (0, {MAX_TOL:g}], got {self.tol:g}")
        if not 0 <= self.rtol <= MAX_TOL:
            raise SolverError(f"rtol must lie in [0, {MAX_TOL:g}], got {self.rtol:g}")
        if not 0 <= self.max_iter <= 10_000_000:
            raise SolverError(f"max_iter must lie in 0..10000000, got {self.max_iter}")
        if not self.div_bound > 0:
            raise SolverError(f"div_bound must be positive, got {self.div_bound}")
        if not self.period_tol > 0:
            raise SolverError(f"period_tol must be positive, got {self.period_tol}")
        if not 2 <= self.max_period <= 1024:
            raise SolverError(f"max_period must lie in 2..1024, got {self.max_period}")
        if not 0 <= self.lyapunov_steps <= 100_000:
            raise SolverError(f"lyapunov_steps must lie in 0..100000, got {self.lyapunov_steps}")
        if self.period_every < 1 or self.compact_every < 1:
            raise SolverError("period_every and compact_every must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SolveResult:
    """The outcome of solving a batch, batch-first.

    Returns the *last* iterate of each element (not the lowest-residual one).

    Attributes
    ----------
    z : Tensor (B, D)
        Final iterate of each element (where it stopped).
    status : Tensor (B,) int64
        :class:`Status` codes.
    iterations : Tensor (B,) int64
        Steps taken before the element stopped.
    residual : Tensor (B,)
        ``||f(z) - z||_2`` at the final iterate.
    residuals : Tensor (B, T + 1)
        Residual at steps 0..T (T = steps run); NaN after an element stopped.
    period : Tensor (B,) int64
        Cycle length for periodic elements, 0 elsewhere.
    cycle : Tensor (B, P, D)
        The cycle's points for periodic elements, NaN-padded (P = longest period found, >= 1);
        all NaN, ``(B, 1, D)``, when ``options.cycles`` is off.
    f_evals, jac_evals : Tensor (B,) int64
        Map and Jacobian evaluations per element.
    time_s : float
        Wall time of the solve (diagnostics excluded).
    trajectory : Tensor (B, T + 1, D) or None
        Iterates at steps 0..T when ``options.trace``; NaN after an element stopped.
    step_time_s : Tensor (T + 1,) or None
        Wall time from the start at each step, when ``options.trace``.
    lyapunov : Tensor (B,) or None
        Largest Lyapunov exponent estimate (per step, natural log) for elements that ran out
        of budget under naive or damped iteration; NaN elsewhere.
    lyapunov_err : Tensor (B,) or None
        Its uncertainty (per step): the gap between the two half-window estimates, at least
        ``2 / window``; ``chaotic`` needs ``lyapunov - lyapunov_err > chaos_threshold``,
        ``quasi_periodic`` ``|lyapunov| <= lyapunov_err``. NaN where not estimated.
    rate : Tensor (B,) or None
        For elements out of budget: the residual's fitted factor per step over the end window
        (below 1: falling); NaN elsewhere.
    steps_needed : Tensor (B,) or None
        For ``converging`` elements: steps beyond the budget to reach ``tol`` at that rate;
        NaN elsewhere.
    spectral_radius, jac_norm, predicted_rate, observed_rate : Tensor (B,) or None
        Diagnostics at the final iterate (NaN where not meaningful); see
        :mod:`implicit_viz.core.diagnostics`.
    """

    solver: str
    solver_options: dict[str, Any]
    options: SolveOptions
    z: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    residuals: torch.Tensor
    period: torch.Tensor
    cycle: torch.Tensor
    f_evals: torch.Tensor
    jac_evals: torch.Tensor
    time_s: float
    device: str
    dtype: str
    lyapunov: torch.Tensor | None = None
    lyapunov_err: torch.Tensor | None = None
    rate: torch.Tensor | None = None
    steps_needed: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    step_time_s: torch.Tensor | None = None
    spectral_radius: torch.Tensor | None = None
    jac_norm: torch.Tensor | None = None
    predicted_rate: torch.Tensor | None = None
    observed_rate: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.z.shape[0])

    @property
    def statuses(self) -> list[Status]:
        return [Status(int(s)) for s in self.status.tolist()]

    def element(self, i: int = 0) -> dict[str, Any]:
        """Plain-data summary of element ``i`` (JSON-ready: lists, floats, str)."""

        def num(t: torch.Tensor | None) -> float | None:
            if t is None:
                return None
            v = float(t[i])
            return v if math.isfinite(v) else None

        st = Status(int(self.status[i]))
        n = int(self.iterations[i])
        res_hist = self.residuals[i, : n + 1].tolist()
        out: dict[str, Any] = {
            "solver": self.solver,
            "solver_options": dict(self.solver_options),
            "status": st.label,
            "status_code": int(st),
            "iterations": n,
            "residual": _finite_or_none(float(self.residual[i])),
            "z": [_finite_or_none(v) for v in self.z[i].tolist()],
            "period": int(self.period[i]),
            "cycle": None,
            "f_evals": int(self.f_evals[i]),
            "jac_evals": int(self.jac_evals[i]),
            "time_s": self.time_s,
            "residuals": [_finite_or_none(v) for v in res_hist],
            "spectral_radius": num(self.spectral_radius),
            "jac_norm": num(self.jac_norm),
            "predicted_rate": num(self.predicted_rate),
            "observed_rate": num(self.observed_rate),
            "lyapunov": num(self.lyapunov),
            "lyapunov_err": num(self.lyapunov_err),
            "rate": num(self.rate),
            "steps_needed": num(self.steps_needed),
            "device": self.device,
            "dtype": self.dtype,
        }
        if st == Status.PERIODIC:
            k = int(self.period[i])
            out["cycle"] = [[_finite_or_none(v) for v in p] for p in self.cycle[i, :k].tolist()]
        return out

    def numpy(self) -> dict[str, np.ndarray]:
        """Every per-element array as numpy (CPU), keyed by field name."""
        out: dict[str, np.ndarray] = {}
        for key in (
            "z",
            "status",
            "iterations",
            "residual",
            "residuals",
            "period",
            "cycle",
            "f_evals",
            "jac_evals",
            "trajectory",
            "step_time_s",
            "spectral_radius",
            "jac_norm",
            "predicted_rate",
            "observed_rate",
            "lyapunov",
            "lyapunov_err",
            "rate",
            "steps_needed",
        ):
            v = getattr(self, key)
            if v is not None:
                out[key] = v.detach().cpu().numpy()
        return out


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None
