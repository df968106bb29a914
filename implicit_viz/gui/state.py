"""The app's model: what the window holds and solves, in one place. Plain data, no Qt.

:class:`AppState` holds the spec text (as typed), the spec it parses to, slider values, seeds,
start and tensor overrides (a click on a basins map), the solver panel's settings and each
tab's settings. :meth:`AppState.problem` resolves them into one :class:`Problem`: the live
solve, the Basins sweep and the Gradients lab all take the map they solve from it, so they
cannot drift apart. A session file is a dump of the state (:mod:`implicit_viz.gui.session`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from implicit_viz.core.live import LiveRequest, SolverSettings
from implicit_viz.core.spec import Spec

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.gradients import GradRequest
    from implicit_viz.core.sweep import Axis, SweepRequest


@dataclass(frozen=True)
class Problem:
    """The problem every view solves: a spec with the window's values applied.

    Attributes
    ----------
    spec : Spec
        The spec as parsed from the editor's text.
    values : dict
        Slider values, param name -> number.
    seeds : dict
        Seed boxes, random tensor name -> seed.
    overrides : dict
        Other targets set from outside the sliders: ``{"z0[1]": 0.5, "x[0]": 1.01}``.
    settings : SolverSettings
        The solver panel.
    """

    spec: Spec
    values: Mapping[str, float] = field(default_factory=dict)
    seeds: Mapping[str, int] = field(default_factory=dict)
    overrides: Mapping[str, float] = field(default_factory=dict)
    settings: SolverSettings = field(default_factory=SolverSettings)

    def assignments(self) -> dict[str, Any]:
        """Every override of the spec, for :meth:`Spec.with_overrides`: the targets, then the
        slider values, then the seeds (``"W.seed"``)."""
        out: dict[str, Any] = dict(self.overrides)
        out.update(self.values)
        out.update({f"{name}.seed": int(s) for name, s in self.seeds.items()})
        return out

    @cached_property
    def resolved(self) -> Spec:
        """The spec with :meth:`assignments` applied: the map the Basins sweep starts from and
        the Gradients lab differentiates. Raises :class:`~implicit_viz.core.errors.SpecError`
        for a value the spec refuses."""
        assignments = self.assignments()
        return self.spec.with_overrides(assignments) if assignments else self.spec

    def live_request(self) -> LiveRequest:
        """The live solve of this problem (its map cache keeps the compiled spec across
        slider moves, so the parts travel separately)."""
        return LiveRequest(
            spec=self.spec,
            values=dict(self.values),
            seeds=dict(self.seeds),
            settings=self.settings,
            overrides=dict(self.overrides),
        )

    def forward_solver(self) -> tuple[str, dict[str, Any]]:
        """The solver the Gradients lab unrolls (:func:`forward_solver`)."""
        return forward_solver(self.settings)

    def sweep_request(self, x: Axis, y: Axis | None, orbit: int = 0) -> SweepRequest:
        """The Basins sweep of this problem over axes ``x`` (and ``y``): the first chosen
        solver with its options, the panel's tol (raised to what float32 resolves) and
        max_iter, the spec's other stopping rules. Not validated (see ``core.sweep.validate``)."""
        from implicit_viz.core.sweep import SweepRequest, cell_options

        st = self.settings
        solver = st.solvers[0] if st.solvers else "fixed_point"
        options = cell_options(self.resolved, st)
        return SweepRequest(
            spec=self.resolved,
            x=x,
            y=y,
            solver=solver,
            solver_options=dict(st.options.get(solver, {})),
            options=options,
            device=st.device,
            dtype=st.dtype,
            orbit=orbit,
        )

    def grad_request(self, wrt: tuple[str, ...], loss: str, k: int) -> GradRequest:
        """The Gradients lab on this problem (the same map as the live solve: values, seeds
        and start/tensor overrides applied), unrolling :meth:`forward_solver`."""
        from implicit_viz.core.gradients import GradRequest

        solver, options = self.forward_solver()
        return GradRequest(
            spec=self.resolved,
            wrt=wrt,
            loss=loss or "sum",
            solver=solver,
            solver_options=options,
            unroll_max=k,
            device=self.settings.device,
            dtype=self.settings.dtype,
        )

    def marker(self) -> dict[str, float]:
        """Where this problem sits on any sweep axis: the start ``z0[i]``, the small tensors'
        elements, the values and overrides."""
        from implicit_viz.core.sweep_axes import tensor_element_values

        out = {f"z0[{i}]": v for i, v in enumerate(self.spec.start)}
        try:
            out.update(tensor_element_values(self.spec, self.seeds))
        except (ValueError, OSError):  # a seed the spec refuses: no marker on tensor axes
            pass
        out.update(self.values)
        out.update(self.overrides)
        return out


#: The Basins tab's resolution (cells per axis) and the Gradients tab's K (steps of its curves).
RESOLUTION_RANGE = (2, 4096)
K_RANGE = (1, 200)


@dataclass(frozen=True)
class BasinsSettings:
    """The Basins tab: axis targets (``""``: the default / none), their ranges, resolution."""

    x: str = ""
    x_range: tuple[float, float] | None = None
    y: str = ""
    y_range: tuple[float, float] | None = None
    resolution: int = 128

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "x_range": None if self.x_range is None else list(self.x_range),
            "y": self.y,
            "y_range": None if self.y_range is None else list(self.y_range),
            "resolution": self.resolution,
        }


@dataclass(frozen=True)
class GradientSettings:
    """The Gradients tab: what to differentiate (``wrt``), the loss, ``K`` and auto re-run."""

    wrt: tuple[str, ...] = ()
    loss: str = "sum"
    k: int = 50
    auto: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"wrt": list(self.wrt), "loss": self.loss, "k": self.k, "auto": self.auto}


@dataclass
class AppState:
    """Everything the window holds; views read it, controls write it."""

    spec_text: str = ""
    spec_path: str | None = None
    #: The preset the text came from, if any.
    preset_key: str | None = None
    #: The last spec the text parsed to (None before the first).
    spec: Spec | None = None
    values: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    overrides: dict[str, float] = field(default_factory=dict)
    settings: SolverSettings = field(default_factory=SolverSettings)
    basins: BasinsSettings = field(default_factory=BasinsSettings)
    gradients: GradientSettings = field(default_factory=GradientSettings)
    #: View choices that are not about the problem (phase components, tabs, window size).
    view: dict[str, Any] = field(default_factory=dict)

    def problem(self) -> Problem | None:
        """The problem every view solves now (None before a spec parsed)."""
        if self.spec is None:
            return None
        return Problem(
            spec=self.spec,
            values=dict(self.values),
            seeds=dict(self.seeds),
            overrides=dict(self.overrides),
            settings=self.settings,
        )

    def set_overrides(self, overrides: Mapping[str, float]) -> None:
        """Replace the start/tensor overrides with those ``spec`` has (others are dropped)."""
        self.overrides = valid_overrides(self.spec, dict(overrides)) if self.spec else {}

    def copy(self) -> AppState:
        return replace(
            self,
            values=dict(self.values),
            seeds=dict(self.seeds),
            overrides=dict(self.overrides),
            view=dict(self.view),
        )


def forward_solver(settings: SolverSettings) -> tuple[str, dict[str, Any]]:
    """The solver the Gradients lab unrolls: the first chosen one that autograd can unroll
    (``Solver.unrollable``), else ``fixed_point``, with its options."""
    from implicit_viz.core.solvers import solver_class

    name = next((s for s in settings.solvers if solver_class(s).unrollable), None)
    name = name or "fixed_point"
    return name, dict(settings.options.get(name, {}))


def valid_overrides(spec: Spec, overrides: Mapping[str, float]) -> dict[str, float]:
    """The overrides that still name a start component or tensor element of ``spec`` (a new
    spec may lack an old target, or have a smaller ``dim``); params and seeds are not
    overrides (they have their own controls)."""
    from implicit_viz.core.errors import SpecError
    from implicit_viz.core.spec import parse_target

    keep = {}
    for key, value in overrides.items():
        try:
            target = parse_target(key, spec)
            spec.with_overrides({key: value})
        except SpecError:
            continue
        if target.kind not in ("param", "seed"):
            keep[key] = value
    return keep
