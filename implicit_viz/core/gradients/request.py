"""What the gradient lab is asked: :class:`GradRequest` and the bounds it checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.spec import Spec

#: Most unrolled, backward or phantom steps a request may ask for.
MAX_UNROLL = 5_000


@dataclass(frozen=True)
class GradRequest:
    """What to differentiate, how, and with which settings.

    Attributes
    ----------
    spec : Spec
        The map.
    wrt : tuple of str
        Params and tensors of the spec to differentiate with respect to.
    loss : str
        ``"sum"`` (``sum(z*)``), ``"l2"`` (``0.5 ||z* - target||^2`` with ``target`` the spec's
        tensor of that name, or zeros when it has none) or an expression in the spec's language
        over ``z`` and the spec's names that gives one number, e.g. ``"dot(z, x[0:2])"``.
    solver, solver_options
        The forward solver (a registered name with its options, or an instance), unrolled by
        the ``unrolled`` method; it must be differentiable by autograd (see
        :func:`gradient_lab`).
    unroll_max : int
        ``K``: the curves run over ``k = 1..K`` unrolled / backward steps (cost grows as ``K^2``
        for the unrolled curve: one backward pass per ``k``).
    tol, max_iter
        The forward solve that gives ``z*`` to the implicit and phantom methods. ``tol`` None:
        1e-10 in float64, 1e-5 in float32.
    device, dtype
        Where and in which precision the methods run (the reference is always float64).
    phantom_steps, phantom_lam
        Phantom gradient: ``k`` steps of ``z <- (1 - lam) z + lam f(z)`` from ``z*``.
    backward_m, backward_lam
        Anderson options of the ``implicit_anderson`` backward solve.
    backward_tol : float or None
        The backward iterations stop when ``||J^T u + g - u|| <= backward_tol ||g||``
        (``g = dL/dz*``); None: 100 eps of the dtype. The curves then hold the last value.
    fd_max_entries, fd_samples
        Finite-difference check of the reference: every entry of a param/tensor with at most
        ``fd_max_entries`` entries; of a larger one, ``fd_samples`` random entries and one random
        direction.
    seed : int
        Seeds the random finite-difference entries and directions.
    time_repeats : int
        Each method is timed this many times (without the memory hooks); the best is reported.
    """

    spec: Spec
    wrt: tuple[str, ...]
    loss: str = "sum"
    solver: str | Solver = "fixed_point"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    unroll_max: int = 50
    tol: float | None = None
    max_iter: int = 1000
    device: str = "cpu"
    dtype: str = "float64"
    phantom_steps: int = 5
    phantom_lam: float = 0.5
    backward_m: int = 5
    backward_lam: float = 1e-4
    backward_tol: float | None = None
    fd_max_entries: int = 16
    fd_samples: int = 4
    seed: int = 0
    time_repeats: int = 3

    def __post_init__(self) -> None:
        wrt = (self.wrt,) if isinstance(self.wrt, str) else tuple(self.wrt)
        object.__setattr__(self, "wrt", tuple(dict.fromkeys(wrt)))
        object.__setattr__(self, "solver_options", dict(self.solver_options))
        if not self.wrt:
            raise SpecError("name at least one param or tensor to differentiate", field="wrt")
        if not 1 <= self.unroll_max <= MAX_UNROLL:
            raise SolverError(f"unroll_max must lie in 1..{MAX_UNROLL}, got {self.unroll_max}")
        if self.tol is not None and not (self.tol > 0 and math.isfinite(self.tol)):
            raise SolverError(f"tol must be a positive number, got {self.tol}")
        if not 0 <= self.max_iter <= 10_000_000:
            raise SolverError(f"max_iter must lie in 0..10000000, got {self.max_iter}")
        if not 1 <= self.phantom_steps <= MAX_UNROLL:
            raise SolverError(
                f"phantom_steps must lie in 1..{MAX_UNROLL}, got {self.phantom_steps}"
            )
        if not 0 < self.phantom_lam <= 1:
            raise SolverError(f"phantom_lam must lie in (0, 1], got {self.phantom_lam}")
        if self.backward_tol is not None and not self.backward_tol >= 0:
            raise SolverError(f"backward_tol must be non-negative, got {self.backward_tol}")
        if self.fd_max_entries < 0 or self.fd_samples < 0:
            raise SolverError("fd_max_entries and fd_samples must be non-negative")
        if self.time_repeats < 1:
            raise SolverError(f"time_repeats must be at least 1, got {self.time_repeats}")

    def options(self) -> dict[str, Any]:
        """The settings as plain data (the spec left out)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "spec"}
        out["wrt"] = list(self.wrt)
        if isinstance(self.solver, Solver):
            out["solver"], out["solver_options"] = self.solver.name, self.solver.options()
        else:
            out["solver_options"] = dict(self.solver_options)
        return out
