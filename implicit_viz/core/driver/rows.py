"""Per-element outputs of the driver loops: finished rows are written here by global row, and
the whole is turned into a :class:`~implicit_viz.core.result.SolveResult` at the end."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.diagnostics import add_diagnostics
from implicit_viz.core.lyapunov import EndEvidence
from implicit_viz.core.result import SolveOptions, SolveResult
from implicit_viz.core.solvers import Solver

log = logging.getLogger(__name__)


@dataclass
class Outputs:
    """Per-element results, indexed by global row ``(B,)``; ``z`` (and ``fz``, when kept) are
    ``(D, B)``. Rows not written yet have status 0 (``not_run``). ``extra_f (B,)``: map
    evaluations beyond the solver's ``f_evals_per_step`` per step
    (:meth:`~implicit_viz.core.solvers.base.Solver.extra_f_evals`), None until one is written."""

    z: torch.Tensor
    status: torch.Tensor
    iters: torch.Tensor
    period: torch.Tensor
    residual: torch.Tensor
    lyapunov: torch.Tensor
    lyapunov_err: torch.Tensor
    rate: torch.Tensor
    steps_needed: torch.Tensor
    fz: torch.Tensor | None = None
    extra_f: torch.Tensor | None = None
    cycles: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @classmethod
    def empty(
        cls, b: int, d: int, dt: torch.dtype, dev: torch.device, keep_fz: bool = False
    ) -> Outputs:
        i64 = dict(dtype=torch.int64, device=dev)
        return cls(
            z=torch.empty(d, b, dtype=dt, device=dev),
            status=torch.zeros(b, **i64),
            iters=torch.zeros(b, **i64),
            period=torch.zeros(b, **i64),
            residual=torch.empty(b, dtype=dt, device=dev),
            lyapunov=torch.full((b,), float("nan"), dtype=dt, device=dev),
            lyapunov_err=torch.full((b,), float("nan"), dtype=dt, device=dev),
            rate=torch.full((b,), float("nan"), dtype=dt, device=dev),
            steps_needed=torch.full((b,), float("nan"), dtype=dt, device=dev),
            fz=torch.empty(d, b, dtype=dt, device=dev) if keep_fz else None,
        )

    def write(
        self,
        g: torch.Tensor,
        z: torch.Tensor,
        sq: torch.Tensor,
        code: torch.Tensor | int,
        iters: torch.Tensor | int,
        fz: torch.Tensor | None = None,
        extra_f: torch.Tensor | None = None,
    ) -> None:
        """Rows ``g (n,)`` stopped at ``z (D, n)`` (image ``fz (D, n)``, kept when the outputs
        keep images) with squared residual ``sq (n,)``, status ``code`` after ``iters`` steps;
        ``extra_f (n,)``: their map evaluations beyond the per-step count, where any."""
        if extra_f is not None:
            if self.extra_f is None:
                self.extra_f = torch.zeros_like(self.iters)
            self.extra_f.index_copy_(0, g, extra_f.to(self.iters.dtype))
        self.z.index_copy_(1, g, z)
        if self.fz is not None and fz is not None:
            self.fz.index_copy_(1, g, fz)
        self.residual.index_copy_(0, g, sq.sqrt())
        for dst, val in ((self.status, code), (self.iters, iters)):
            if isinstance(val, int):
                dst.index_fill_(0, g, val)
            else:
                dst.index_copy_(0, g, val.to(dst.dtype))

    def write_evidence(self, g: torch.Tensor, ev: EndEvidence | None) -> None:
        """The end-of-budget evidence of rows ``g (n,)`` (each field ``(n,)`` or None)."""
        if ev is None:
            return
        for name in ("lyapunov", "lyapunov_err", "rate", "steps_needed"):
            val = getattr(ev, name)
            if val is not None:
                getattr(self, name).index_copy_(0, g, val.to(self.residual.dtype))

    def add_cycles(self, g: torch.Tensor, points: torch.Tensor) -> None:
        """Keep the points ``(n, P, D)`` of the cycles of rows ``g (n,)`` (NaN after each row's
        period)."""
        self.cycles.append((g, points))

    def cycle_tensor(self) -> torch.Tensor:
        """``(B, P, D)`` NaN-padded points of the periodic rows, P = longest period (>= 1)."""
        d, b = self.z.shape
        p = max([int(pts.shape[1]) for _, pts in self.cycles], default=1)
        out = torch.full((b, p, d), float("nan"), dtype=self.z.dtype, device=self.z.device)
        for g, pts in self.cycles:
            out[g, : pts.shape[1]] = pts
        return out


def cycle_points(ring: torch.Tensor, per: torch.Tensor, k: int) -> torch.Tensor:
    """The points ``z_{k-p+1} .. z_k`` (oldest first) of rows with period ``per (n,)`` from
    their ring ``(h, D, n)``: ``(n, P, D)``, NaN after each row's own period (P = max)."""
    h = ring.shape[0]
    j = torch.arange(int(per.max()), device=ring.device)
    slot = torch.tensor([(k - lag) % h for lag in range(h)], device=ring.device)  # lag -> slot
    slots = slot[(per[:, None] - 1 - j).clamp_(min=0)]  # (n, P): z_{k-p+1+j} is lag p-1-j
    pts = ring.permute(2, 0, 1).take_along_dim(slots[..., None], dim=1)  # (n, P, D)
    return pts.masked_fill_((j >= per[:, None])[..., None], float("nan"))


def to_result(
    out: Outputs,
    fmap: FixedPointMap,
    slv: Solver,
    opts: SolveOptions,
    elapsed: float,
    *,
    residuals: torch.Tensor | None = None,
    trajectory: torch.Tensor | None = None,
    step_time_s: torch.Tensor | None = None,
) -> SolveResult:
    """The :class:`SolveResult` of a finished loop (with diagnostics when ``opts`` asks).
    ``residuals (B, T+1)``, ``trajectory (B, T+1, D)``, ``step_time_s (T+1,)`` where recorded;
    without ``residuals`` each row's final residual stands in, ``(B, 1)``."""
    z = out.z
    result = SolveResult(
        solver=slv.name,
        solver_options=slv.options(),
        options=opts,
        z=z.T.contiguous(),
        status=out.status,
        iterations=out.iters,
        residual=out.residual,
        residuals=out.residual[:, None] if residuals is None else residuals,
        period=out.period,
        cycle=out.cycle_tensor(),
        f_evals=1 + out.iters * slv.f_evals_per_step + (0 if out.extra_f is None else out.extra_f),
        jac_evals=out.iters * slv.jac_evals_per_step,
        time_s=elapsed,
        device=str(fmap.device),
        dtype=str(fmap.dtype).replace("torch.", ""),
        lyapunov=out.lyapunov,
        lyapunov_err=out.lyapunov_err,
        rate=out.rate,
        steps_needed=out.steps_needed,
        trajectory=trajectory,
        step_time_s=step_time_s,
    )
    if opts.diagnostics:
        result = add_diagnostics(result, fmap, slv)
    log.debug("%s: %d elements, %.3f ms", slv.name, z.shape[1], elapsed * 1e3)
    return result
