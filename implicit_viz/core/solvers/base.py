"""The solver interface: a solver says how to take one step; the driver does everything else.

All states are batch-last: ``z`` and ``fz`` are ``(D, B)`` and every tensor in a solver's state
has the batch as its last dimension, so the driver can drop finished rows with :meth:`take`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from implicit_viz.core.jacobians import BatchLastMap
from implicit_viz.core.limits import check_memory
from implicit_viz.core.solvers.options import OptionSpec, option_specs

State = Any


@dataclass(frozen=True)
class Solver:
    """Base class: frozen dataclass of the solver's own settings, with ``init`` and ``step``.

    A subclass declares everything the rest of the program needs to know about it, so adding a
    solver touches no other file: its options as :func:`~implicit_viz.core.solvers.options.option`
    fields (type, range, default, help: the solver panel, ``--opt``, sessions and exports read
    them), and the class attributes below.
    """

    name: ClassVar[str] = ""
    #: Name for people, e.g. ``"Anderson acceleration"``.
    label: ClassVar[str] = ""
    #: One-line description for tables and the GUI.
    summary: ClassVar[str] = ""
    #: Colour of its curves and table rows (hex); empty: a spare colour is picked.
    color: ClassVar[str] = ""
    #: Map evaluations each step costs (per element).
    f_evals_per_step: ClassVar[int] = 1
    #: Jacobian evaluations each step costs (per element).
    jac_evals_per_step: ClassVar[int] = 0
    #: Whether a step holds a dense ``D x D`` matrix per element (a Jacobian or an estimate of
    #: one): such solvers get a size limit (:meth:`state_bytes`, the live solve's dim cap).
    dense_matrix: ClassVar[bool] = False
    #: Whether autograd can backprop through its steps (unrolled gradients).
    unrollable: ClassVar[bool] = True
    #: Whether it keeps no state between steps (``init`` returns None) and a step is a function
    #: of ``(z, f(z))`` alone with one map evaluation: the driver's lean loop then applies.
    stateless: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for spec in self.option_specs():
            spec.check(self.name, getattr(self, spec.name))

    @classmethod
    def option_specs(cls) -> tuple[OptionSpec, ...]:
        """Every option with its type, range, default and help, in declaration order."""
        return option_specs(cls)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What the program knows about the solver, JSON-ready (for ``--json`` and exports)."""
        return {
            "name": cls.name,
            "label": cls.label or cls.name,
            "summary": cls.summary,
            "options": [o.to_dict() for o in cls.option_specs()],
            "dense_matrix": cls.dense_matrix,
            "unrollable": cls.unrollable,
            "f_evals_per_step": cls.f_evals_per_step,
            "jac_evals_per_step": cls.jac_evals_per_step,
        }

    def tag(self) -> str:
        """The name with its shown options, e.g. ``"damped (β=0.5)"``, ``"anderson (m=5)"``."""
        shown = [f"{o.symbol}={getattr(self, o.name):g}" for o in self.option_specs() if o.symbol]
        return f"{self.name} ({', '.join(shown)})" if shown else self.name

    def init(self, f: BatchLastMap, z: torch.Tensor, fz: torch.Tensor) -> State:
        """The state before the first step. ``z``, ``fz``: (D, B)."""
        return None

    def step(
        self, f: BatchLastMap, z: torch.Tensor, fz: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """One step: returns ``(z_new, f(z_new), state)``, each of the input's shape."""
        raise NotImplementedError

    def extra_f_evals(self, state: State) -> torch.Tensor | None:
        """Map evaluations each working row has spent beyond ``f_evals_per_step`` per step so
        far, ``(Bw,)`` int64 (line-search trials, finite-difference Jacobians), read from
        ``state`` by the driver when a row stops and added to its ``f_evals``; None (the
        default) where every step costs exactly ``f_evals_per_step``."""
        return None

    def state_summary(self, state: State) -> dict[str, Any]:
        """A small plain summary of ``state`` for step-by-step views (JSON-ready values), e.g.
        how much history is in use; ``{}`` for solvers without state."""
        return {}

    def iteration_map(self, f: BatchLastMap) -> BatchLastMap | None:
        """The map ``z -> z_next`` this solver iterates, when it is a map of ``z`` alone (used
        for Lyapunov estimates); None for solvers with memory or Jacobians."""
        return None

    def state_bytes(self, batch: int, dim: int, dtype: object) -> int:
        """Bytes the solver's state and a step's temporaries take for ``batch`` rows of ``dim``
        beyond the iterate itself (0: none)."""
        return 0

    def check_dense_state(self, z: torch.Tensor, what: str, f: BatchLastMap | None = None) -> None:
        """:class:`~implicit_viz.core.errors.LimitError` (field ``solver``) before a solver with
        dense ``D x D`` state starts on ``z: (D, B)`` whose state would pass the memory budget;
        with ``f``, the rows its autograd Jacobians repeat count too."""
        d, b = z.shape
        rows = 2 * d * b * f.row_bytes() if f is not None and hasattr(f, "row_bytes") else 0
        check_memory(
            f"{what} (B={b}, {d} x {d}, {str(z.dtype).replace('torch.', '')})",
            self.state_bytes(b, d, z.dtype) + rows,
            field="solver",
            hint="use anderson, damped or fixed_point at this dim (no D x D matrix)",
        )

    def take(self, state: State, index: torch.Tensor) -> State:
        """Keep only the rows ``index`` of every tensor in ``state`` (batch is the last dim)."""
        return _take(state, index)

    def predicted_rate(self, eigvals: torch.Tensor) -> torch.Tensor | None:
        """Linear convergence rate this solver should show near ``z*``, from the eigenvalues
        ``(B, D)`` (complex) of ``df/dz`` there; None where no simple prediction exists
        (superlinear or history-dependent methods)."""
        return None

    def options(self) -> dict[str, Any]:
        """The solver's settings as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _take(state: State, index: torch.Tensor) -> State:
    if isinstance(state, torch.Tensor):
        return state[..., index]
    if isinstance(state, tuple):
        return (
            type(state)(*(_take(s, index) for s in state))
            if hasattr(state, "_fields")
            else tuple(_take(s, index) for s in state)
        )
    if isinstance(state, list):
        return [_take(s, index) for s in state]
    if isinstance(state, dict):
        return {k: _take(v, index) for k, v in state.items()}
    return state


def eigenvalues(mat: torch.Tensor) -> torch.Tensor:
    """Complex eigenvalues of each matrix in ``(B, D, D)`` -> ``(B, D)``; NaN where not finite."""
    finite = torch.isfinite(mat).all(dim=(-1, -2))
    safe = torch.where(finite[:, None, None], mat, torch.zeros_like(mat))
    eig = torch.linalg.eigvals(safe)
    return torch.where(finite[:, None], eig, torch.full_like(eig, complex(float("nan"), 0.0)))


def spectral_radius(mat: torch.Tensor) -> torch.Tensor:
    """``max |eig|`` of each matrix in ``(B, D, D)`` -> ``(B,)``; NaN where not finite."""
    return eigenvalues(mat).abs().amax(dim=-1).to(mat.dtype)
