"""The registry of gradient methods: each declared once, with what the lab, the CLI and the GUI
need to know about it (name, label, colour, whether it has a curve over ``k``, how to compute
it). The built-ins live in :mod:`implicit_viz.core.gradients.methods`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from implicit_viz.core.errors import SolverError, unknown_name

if TYPE_CHECKING:
    import torch

    from implicit_viz.core.gradients.meter import SavedTensorMeter
    from implicit_viz.core.gradients.methods import _Run, _Setup

#: ``compute(setup, meter, curve) -> run``: with ``curve``, a run over ``k = 1..K`` steps.
Compute = Callable[["_Setup", "SavedTensorMeter", bool], "_Run"]


@dataclass(frozen=True)
class GradMethod:
    """One gradient method.

    Attributes
    ----------
    name : str
        Its key in reports and exports, e.g. ``"implicit_fixed_point"``.
    label : str
        Its name for people, e.g. ``"implicit (fixed-point)"``.
    color : str
        Hex colour of its curve, level and table row (Okabe-Ito, like the solvers').
    summary : str
        One line: what it computes.
    compute : callable
        ``compute(setup, meter, curve) -> _Run``.
    note : callable
        ``note(setup) -> str``: the settings it ran with, for the method table.
    curve : bool
        Whether it draws a convergence curve over ``k`` (unrolled, backward or phantom steps).
    residual_kind : "forward" or "backward"
        Which residual its curve records: ``||f(z_k) - z_k||`` or ``||J^T u_k + g - u_k||``.
    rate_k_factor : bool
        Fit its error decay as ``k rho^k`` (unrolling from ``z0``) instead of ``rho^k``.
    predicted_rate : callable or None
        ``predicted_rate(setup, eigvals) -> float``: the rate linear theory predicts for its
        curve from the eigenvalues ``(1, D)`` of ``df/dz`` at ``z*``; None: no prediction.
    """

    name: str
    label: str
    color: str
    summary: str
    compute: Compute
    note: Callable[[_Setup], str]
    curve: bool = False
    residual_kind: Literal["forward", "backward"] = "forward"
    rate_k_factor: bool = False
    predicted_rate: Callable[[_Setup, torch.Tensor], float] | None = None


_REGISTRY: dict[str, GradMethod] = {}


def register_method(
    name: str,
    *,
    label: str,
    color: str,
    summary: str,
    note: Callable[[_Setup], str],
    curve: bool = False,
    residual_kind: Literal["forward", "backward"] = "forward",
    rate_k_factor: bool = False,
    predicted_rate: Callable[[_Setup, torch.Tensor], float] | None = None,
) -> Callable[[Compute], Compute]:
    """Decorator: register the function it wraps as gradient method ``name`` (table order is
    registration order)."""

    def deco(compute: Compute) -> Compute:
        if name in _REGISTRY:
            raise SolverError(f"a gradient method named '{name}' is already registered")
        _REGISTRY[name] = GradMethod(
            name=name,
            label=label,
            color=color,
            summary=summary,
            compute=compute,
            note=note,
            curve=curve,
            residual_kind=residual_kind,
            rate_k_factor=rate_k_factor,
            predicted_rate=predicted_rate,
        )
        return compute

    return deco


def available_methods() -> tuple[str, ...]:
    """Registered method names in table order."""
    _load_builtins()
    return tuple(_REGISTRY)


def method_info(name: str) -> GradMethod:
    """The method registered under ``name``; :class:`SolverError` lists the known names."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("gradient method", name, list(_REGISTRY)) from None


def _load_builtins() -> None:
    from implicit_viz.core.gradients import methods  # noqa: F401  (registers the built-ins)
