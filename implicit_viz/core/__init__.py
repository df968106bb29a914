"""Compute backend of implicit_viz: specs, batched solvers, outcomes, diagnostics. No Qt.

Typical use::

    from implicit_viz.core import load_spec, compile_spec, solve, compare

    spec = load_spec("tanh_layer")                 # a preset name or a .toml path
    fmap = compile_spec(spec.with_values(a=1.2), device="cpu", dtype="float64")
    result = solve(fmap, "anderson", tol=1e-8)     # SolveResult, batch-first tensors
    results = compare(fmap)                        # every registered solver

Names resolve lazily, so importing this package does not import torch until a name that needs
it is used (the CLI's ``presets`` and ``--help`` stay fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpecError": "implicit_viz.core.errors",
    "SolverError": "implicit_viz.core.errors",
    "Status": "implicit_viz.core.status",
    "status_names": "implicit_viz.core.status",
    "Spec": "implicit_viz.core.spec",
    "parse_spec": "implicit_viz.core.spec",
    "load_spec": "implicit_viz.core.spec",
    "parse_target": "implicit_viz.core.spec",
    "list_presets": "implicit_viz.core.presets",
    "preset_names": "implicit_viz.core.presets",
    "compile_spec": "implicit_viz.core.compiled_map",
    "FixedPointMap": "implicit_viz.core.compiled_map",
    "SolveOptions": "implicit_viz.core.result",
    "SolveResult": "implicit_viz.core.result",
    "solve": "implicit_viz.core.driver",
    "compare": "implicit_viz.core.driver",
    "get_solver": "implicit_viz.core.solvers",
    "available_solvers": "implicit_viz.core.solvers",
    "register_solver": "implicit_viz.core.solvers",
    "jacobian": "implicit_viz.core.jacobians",
    "Axis": "implicit_viz.core.sweep",
    "SweepRequest": "implicit_viz.core.sweep",
    "SweepResult": "implicit_viz.core.sweep",
    "iter_sweep": "implicit_viz.core.sweep",
    "sweep_options": "implicit_viz.core.sweep",
    "GradRequest": "implicit_viz.core.gradients",
    "GradReport": "implicit_viz.core.gradients",
    "gradient_lab": "implicit_viz.core.gradients",
    "jacobian_at": "implicit_viz.core.diagnostics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'implicit_viz.core' has no attribute '{name}'") from None
    return getattr(importlib.import_module(module), name)
