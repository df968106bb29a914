"""Step-by-step iteration: :func:`iterate` yields every element's state after every step.

It runs the general loop (:class:`~.general.GeneralLoop`) one step at a time, so elements stop
by exactly :func:`~implicit_viz.core.driver.solve`'s rules (converged, diverged, periodic with
its confirmation; the end-of-budget verdicts), but it never compacts the batch: every :class:`Step` shows all ``B`` elements, finished ones frozen where they stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from implicit_viz.core.compiled_map import FixedPointMap
from implicit_viz.core.driver.general import GeneralLoop
from implicit_viz.core.driver.setup import resolve_solver, start_rows
from implicit_viz.core.errors import SpecError
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import Solver


@dataclass(frozen=True)
class Step:
    """Every element after step ``k`` (``k = 0``: the start), batch-first copies.

    ``z``, ``fz``: ``(B, D)``; ``residual``: ``(B,)``, ``||f(z) - z||``; ``status``: ``(B,)``
    int64 :class:`~implicit_viz.core.status.Status` codes, ``NOT_RUN`` (0) while an element
    still runs; a finished element keeps the ``z``, ``fz`` and residual it stopped at.
    ``solver_state``: a small plain summary of the solver's state
    (:meth:`~implicit_viz.core.solvers.base.Solver.state_summary`).
    """

    k: int
    z: torch.Tensor
    fz: torch.Tensor
    residual: torch.Tensor
    status: torch.Tensor
    solver_state: dict[str, Any]

    @property
    def running(self) -> torch.Tensor:
        """``(B,)`` bool: elements that have not stopped."""
        return self.status == 0


class _SharedMap:
    """A batch-last callable without per-row values, given the ``take`` of a map: the same
    function on any rows."""

    __slots__ = ("f",)

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.f = f

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.f(z)

    def take(self, index: torch.Tensor) -> _SharedMap:
        return self


def iterate(
    fmap_or_f: FixedPointMap | Callable[[torch.Tensor], torch.Tensor],
    solver: str | Solver = "fixed_point",
    z0: Any = None,
    *,
    options: SolveOptions | None = None,
    solver_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[Step]:
    """Iterate ``z = f(z)`` one step at a time: a :class:`Step` for step 0 (the start, after its
    stop test) and after every step, until every element has finished or ``max_iter``.

    Parameters
    ----------
    fmap_or_f : FixedPointMap or callable
        A compiled map, or a batch-last callable ``f: (D, B) -> (D, B)`` (it needs no
        ``take``: it is taken to have no per-row values; then ``z0`` is required).
    solver, solver_options : as for :func:`~implicit_viz.core.driver.solve`.
    z0 : array-like (B, D) or (D,), optional
        Start; default the spec's ``z0`` for every row (a map only).
    options : SolveOptions, optional
        Stopping rules, with keyword ``overrides`` on top; ``history``, ``trace`` and
        ``diagnostics`` are ignored (each Step is the record).

    The last Step agrees with :func:`~implicit_viz.core.driver.solve` element for element:
    status, ``z``, and each element's iteration count is the ``k`` of the first Step where
    its status is set.
    """
    opts = replace(options or SolveOptions(), **overrides)
    opts = replace(opts, history=False, trace=False, diagnostics=False)
    slv = resolve_solver(solver, solver_options)
    with torch.no_grad():  # closed before every yield: the caller's grad mode is its own
        if isinstance(fmap_or_f, FixedPointMap):
            fm = fmap_or_f
            if z0 is None:
                z_start = fm.start(fm.batch or 1)
            else:
                z_start = start_rows(z0, fm.dim, fm.dtype, fm.device, fm.batch)
            f: Any = fm.as_batch_last()
        else:
            if z0 is None:
                raise SpecError("iterate on a plain callable needs z0, (B, D) or (D,)")
            z = torch.as_tensor(z0)
            dt = z.dtype if z.is_floating_point() else torch.get_default_dtype()
            z_start = start_rows(z, z.shape[-1] if z.ndim else 0, dt, z.device)
            f = fmap_or_f if hasattr(fmap_or_f, "take") else _SharedMap(fmap_or_f)
        loop = GeneralLoop(f, slv, z_start, opts, keep_fz=True)
    for k in range(opts.max_iter + 1):
        with torch.no_grad():
            loop.observe(k)
            last = k == opts.max_iter or loop.n_live == 0
            if last:
                loop.end(k)
            z, fz, residual, status = loop.snapshot()
            step = Step(k, z, fz, residual, status, slv.state_summary(loop.state))
        yield step
        if last:
            return
        with torch.no_grad():
            loop.advance(k)
