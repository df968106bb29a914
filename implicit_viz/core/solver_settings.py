"""Which solvers run and with what settings: the spec's ``[solver]`` section, read in one place,
and the app's :class:`SolverSettings`.

A spec's ``[solver]`` section holds stopping rules (``tol``, ``max_iter``, ``div_bound``, ...),
a ``solvers`` list and one ``[solver.NAME]`` table of options per solver. :class:`SolverSection`
reads and checks it once; the CLI, the sweep engine, the live solve and the app all take their
stopping rules, names and per-solver options from it. Option names, types and ranges come from
the solver classes themselves (:meth:`~implicit_viz.core.solvers.base.Solver.option_specs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from implicit_viz.core.limits import MAX_TOL

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.result import SolveOptions
    from implicit_viz.core.spec import Spec

#: Stopping rules a spec's ``[solver]`` section may set (fields of ``SolveOptions``).
SPEC_SOLVE_KEYS = ("tol", "rtol", "max_iter", "div_bound", "period_tol", "max_period")
#: float32 cannot resolve residuals much below this: a spec's tighter ``tol`` is raised to it
#: where a computation runs in float32 (an explicit tol from the user is kept as given).
FLOAT32_MIN_TOL = 1e-6
#: The app records every iterate of a live solve: its step budget stops here.
MAX_LIVE_ITER = 100_000

Options = dict[str, dict[str, Any]]


def fit_tol(tol: float, dtype: str) -> float:
    """``tol`` raised to :data:`FLOAT32_MIN_TOL` in float32 (which cannot resolve residuals
    below it), unchanged otherwise."""
    if str(dtype).replace("torch.", "") == "float32":
        return max(float(tol), FLOAT32_MIN_TOL)
    return float(tol)


class SettingsError(ValueError):
    """A solver setting out of range; ``field`` names it (``"tol"``, ``"anderson.m"``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SolverSection:
    """A spec's ``[solver]`` section, checked against the solver registry.

    Attributes
    ----------
    solvers : tuple of str
        The names the spec lists (empty: it lists none).
    stopping : dict
        The stopping rules it sets (keys of :data:`SPEC_SOLVE_KEYS`).
    options : dict
        Per-solver options of its ``[solver.NAME]`` tables, ``{"anderson": {"m": 3}}``.
    """

    solvers: tuple[str, ...] = ()
    stopping: dict[str, Any] = field(default_factory=dict)
    options: Options = field(default_factory=dict)

    @classmethod
    def of(cls, spec_or_section: Spec | Mapping[str, Any]) -> SolverSection:
        """Read a spec's section (or the section itself). Raises
        :class:`~implicit_viz.core.errors.SpecError` naming the field for an unknown solver or a
        bad option (:func:`~implicit_viz.core.solvers.check_spec_solver_section`)."""
        from implicit_viz.core.solvers import check_spec_solver_section

        section = getattr(spec_or_section, "solver", spec_or_section)
        check_spec_solver_section(section)
        return cls(
            solvers=tuple(str(n) for n in section.get("solvers", ())),
            stopping={k: section[k] for k in SPEC_SOLVE_KEYS if k in section},
            options={k: dict(v) for k, v in section.items() if isinstance(v, Mapping)},
        )

    def stopping_rules(self, dtype: str = "float64") -> dict[str, Any]:
        """The stopping rules, with ``tol`` raised to :data:`FLOAT32_MIN_TOL` in float32."""
        rules = dict(self.stopping)
        if "tol" in rules:
            rules["tol"] = fit_tol(rules["tol"], dtype)
        return rules

    def solve_options(
        self, base: SolveOptions | None = None, dtype: str = "float64", **overrides: Any
    ) -> SolveOptions:
        """``base`` (default ``SolveOptions()``) with the section's stopping rules, then the
        ``overrides`` that are not None."""
        from dataclasses import replace

        from implicit_viz.core.result import SolveOptions

        rules = self.stopping_rules(dtype)
        rules.update({k: v for k, v in overrides.items() if v is not None})
        return replace(base or SolveOptions(), **rules)

    def names(self, default: Iterable[str] = ()) -> tuple[str, ...]:
        """The listed solvers, else ``default``."""
        return self.solvers or tuple(default)

    def options_for(self, names: Iterable[str]) -> Options:
        """The options of each of ``names`` that the section sets (``{}`` where none)."""
        return {n: dict(self.options.get(n, {})) for n in names}


@dataclass(frozen=True)
class SolverSettings:
    """What the app's solver panel sets: which solvers run, their options, where.

    Attributes
    ----------
    solvers : tuple of str
        Registry names, in the order they run.
    tol : float
        Absolute tolerance on ``||f(z) - z||_2``.
    max_iter : int
        Step budget per solver, at most :data:`MAX_LIVE_ITER`.
    options : dict
        Per-solver options that differ from the solver's defaults, ``{"damped": {"beta": 0.7}}``;
        ranges as the solver declares them (:meth:`Solver.option_specs`).
    device, dtype : str
        Where and in what precision (``"cpu"``, ``"cuda"``; ``"float64"``, ``"float32"``).
    """

    solvers: tuple[str, ...] = ("fixed_point", "anderson", "newton")
    tol: float = 1e-6
    max_iter: int = 200
    options: Options = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float64"

    def option(self, solver: str, name: str) -> Any:
        """The value of ``solver``'s option ``name``: set here, else the solver's default."""
        from implicit_viz.core.solvers import solver_options

        return self.options.get(solver, {}).get(name, solver_options(solver)[name])

    def solver_options(self, names: Iterable[str] | None = None) -> Options:
        """Per-solver options for :func:`~implicit_viz.core.driver.compare` (of ``names``,
        default the chosen solvers)."""
        return {
            n: dict(self.options.get(n, {})) for n in (self.solvers if names is None else names)
        }

    def build(self, name: str) -> Any:
        """The :class:`~implicit_viz.core.solvers.base.Solver` ``name`` with these options."""
        from implicit_viz.core.solvers import get_solver

        return get_solver(name, **self.options.get(name, {}))

    def label(self, name: str) -> str:
        """``"damped (β=0.5)"``, ``"anderson (m=5)"``, or the bare name."""
        return self.build(name).tag()

    def to_dict(self) -> dict[str, Any]:
        return {
            "solvers": list(self.solvers),
            "tol": self.tol,
            "max_iter": self.max_iter,
            "options": {k: dict(v) for k, v in self.options.items() if v},
            "device": self.device,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolverSettings:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing keys take defaults.
        Version-1 sessions' ``beta`` and ``anderson_m`` become ``damped.beta`` and
        ``anderson.m``. Raises ``ValueError`` naming the field when a value has the wrong type
        or range."""
        d = cls()

        def get(key: str, conv: Any) -> Any:
            value = data.get(key, getattr(d, key))
            if isinstance(value, bool) or (conv is not str and isinstance(value, str)):
                raise ValueError(f"solver settings: bad {key} {value!r}")
            try:
                return conv(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"solver settings: bad {key} {value!r}") from None

        solvers = data.get("solvers", d.solvers)
        if isinstance(solvers, str) or not isinstance(solvers, (list, tuple)):
            raise ValueError(f"solver settings: solvers must be a list of names, got {solvers!r}")
        options = data.get("options", {})
        if not isinstance(options, Mapping) or not all(
            isinstance(v, Mapping) for v in options.values()
        ):
            raise ValueError(
                f"solver settings: options must map solver names to tables, got {options!r}"
            )
        options = {str(k): dict(v) for k, v in options.items()}
        for old, (solver, name) in _V1_KEYS.items():
            if old in data:
                options.setdefault(solver, {})[name] = data[old]
        out = cls(
            solvers=tuple(str(s) for s in solvers),
            tol=get("tol", float),
            max_iter=get("max_iter", int),
            options=options,
            device=get("device", str),
            dtype=get("dtype", str),
        )
        out.check()
        return out

    @classmethod
    def from_spec(cls, section: SolverSection, current: SolverSettings) -> SolverSettings:
        """``current`` with what the spec's section sets: its solver list (where it lists any),
        its ``tol`` and ``max_iter`` (else the defaults), its per-solver options on top of
        ``current``'s. Not checked: call :meth:`check`."""
        options = {k: dict(v) for k, v in current.options.items()}
        for name, table in section.options.items():
            options.setdefault(name, {}).update(table)
        return cls(
            solvers=section.names(current.solvers),
            tol=float(section.stopping.get("tol", cls.tol)),
            max_iter=int(section.stopping.get("max_iter", cls.max_iter)),
            options=options,
            device=current.device,
            dtype=current.dtype,
        )

    def check(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range: unknown solvers, tol,
        max_iter, an option outside the range its solver declares (or, for options without an
        upper end, beyond the panel's ``panel_max``), dtype."""
        from implicit_viz.core.errors import SolverError
        from implicit_viz.core.solvers import available_solvers, get_solver, solver_class

        known = available_solvers()
        bad = [s for s in self.solvers if s not in known]
        if bad:
            raise SettingsError(
                f"unknown solver(s) {', '.join(bad)}; known: {', '.join(known)}", "solvers"
            )
        if not 0 < self.tol <= MAX_TOL:
            raise SettingsError(f"tol must lie in (0, {MAX_TOL:g}], got {self.tol:g}", "tol")
        if not 1 <= self.max_iter <= MAX_LIVE_ITER:
            raise SettingsError(
                f"max_iter must lie in 1..{MAX_LIVE_ITER}, got {self.max_iter}", "max_iter"
            )
        for name, table in self.options.items():
            try:
                get_solver(name, **table)
            except SolverError as exc:
                message = str(exc)
                opt = message.partition(":")[0].partition(".")[2]
                raise SettingsError(message, f"{name}.{opt}" if opt in table else name) from None
            for spec in solver_class(name).option_specs():
                value = table.get(spec.name, spec.default)
                if spec.high is None and spec.panel_max is not None and value > spec.panel_max:
                    lo = spec.ui_min
                    span = (
                        f"{lo:g}..{spec.panel_max:g}"
                        if spec.kind is int
                        else f"[{lo:g}, {spec.panel_max:g}]"
                    )
                    raise SettingsError(
                        f"{name}.{spec.name} must lie in {span}, got {value}",
                        f"{name}.{spec.name}",
                    )
        if self.dtype not in ("float64", "float32"):
            raise SettingsError(f"dtype must be float64 or float32, got {self.dtype}", "dtype")


#: Keys of version-1 session files, and the option each now is.
_V1_KEYS = {"beta": ("damped", "beta"), "anderson_m": ("anderson", "m")}
