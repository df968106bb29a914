"""What a solve checks before its loop runs: the solver, the start rows, the recording budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.result import MAX_TRACE_BYTES, SolveOptions
from implicit_viz.core.solvers import Solver, get_solver


def resolve_solver(solver: str | Solver, solver_options: Mapping[str, Any] | None = None) -> Solver:
    """A solver instance from a name (with options) or an instance (options must be empty)."""
    if isinstance(solver, Solver):
        if solver_options:
            raise SolverError("pass options either in the solver instance or as solver_options")
        return solver
    return get_solver(solver, **dict(solver_options or {}))


def start_rows(
    z0: Any,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    batch: int | None = None,
) -> torch.Tensor:
    """The start ``(B, D)`` from ``z0`` given as ``(B, D)`` or ``(D,)``; one row is repeated
    to ``batch`` rows (the map's per-row values), and any other row count must equal it."""
    z_start = torch.as_tensor(z0, dtype=dtype, device=device)
    if z_start.ndim == 1:
        z_start = z_start.unsqueeze(0)
    if z_start.ndim != 2 or z_start.shape[1] != dim:
        raise SpecError(f"z0 must have shape (B, {dim}), got {tuple(z_start.shape)}")
    if batch is not None and z_start.shape[0] == 1 and batch > 1:
        z_start = z_start.expand(batch, -1)
    b = z_start.shape[0]
    if batch is not None and batch != b:
        raise SpecError(f"z0 has {b} rows but the map's per-row values have {batch}")
    if b == 0:
        raise SolverError("empty batch: nothing to solve")
    return z_start


def check_record_size(opts: SolveOptions, batch: int, dim: int, dtype: torch.dtype) -> None:
    """:class:`SolverError` when the per-step history and trace of a solve would pass
    :data:`~implicit_viz.core.result.MAX_TRACE_BYTES`."""
    t_steps = opts.max_iter
    itemsize = torch.finfo(dtype).bits // 8
    need = (t_steps + 1) * batch * itemsize * (int(opts.history) + (dim if opts.trace else 0))
    if need > MAX_TRACE_BYTES:
        raise SolverError(
            f"recording {t_steps + 1} steps of {batch} elements"
            f"{' with trace' if opts.trace else ''} "
            f"would take {need / 1024**3:.1f} GiB; lower max_iter or the batch size"
            + (", or turn the trace off" if opts.trace else "")
        )
