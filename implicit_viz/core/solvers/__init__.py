"""The solver registry: one signature, five solvers.

``get_solver("anderson", m=5)`` builds a solver from its name and options;
``available_solvers()`` lists the names in a stable order for combo boxes and CLI choices.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from implicit_viz.core.errors import SolverError, unknown_name
from implicit_viz.core.solvers.base import Solver

_REGISTRY: dict[str, type[Solver]] = {}
_ORDER = ("fixed_point", "damped", "anderson", "newton", "broyden")


def register_solver(name: str):
    """Class decorator: register a :class:`Solver` subclass under ``name``."""

    def deco(cls: type[Solver]) -> type[Solver]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise SolverError(f"a solver named '{name}' is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_solvers() -> list[str]:
    """Registered solver names, the five built-ins first."""
    _load_builtins()
    return sorted(_REGISTRY, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


def solver_class(name: str) -> type[Solver]:
    """The class registered under ``name``; :class:`SolverError` lists the known names."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("solver", name, available_solvers()) from None


def describe_solver(name: str) -> dict[str, Any] | None:
    """What solver ``name`` is and what its options mean (types, ranges, defaults), for
    self-describing files; None for a name not registered (any more)."""
    try:
        return solver_class(name).describe()
    except SolverError:
        return None


def solver_options(name: str) -> dict[str, Any]:
    """Option names of a solver with their defaults, e.g. ``{"m": 5, "lam": 1e-4, "beta": 1.0}``."""
    return {f.name: f.default for f in fields(solver_class(name))}


def get_solver(name: str, **options: Any) -> Solver:
    """Build solver ``name`` with ``options``; unknown options raise :class:`SolverError`."""
    cls = solver_class(name)
    known = solver_options(name)
    bad = set(options) - set(known)
    if bad:
        allowed = ", ".join(known) or "none"
        raise SolverError(
            f"{name}: unknown option(s) {', '.join(sorted(bad))} (options: {allowed})"
        )
    coerced = {key: coerce_option(name, key, known[key], value) for key, value in options.items()}
    return cls(**coerced)


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def coerce_option(solver: str, key: str, default: Any, value: Any) -> Any:
    """``value`` as the type of ``default``; :class:`SolverError` naming ``solver.key`` for a bool
    given for a number, a non-integral int, a NaN or infinite float, or text that is no number.

    A switch (a bool ``default``) takes a bool, the text ``true``/``false``, ``yes``/``no``,
    ``1``/``0`` (any case) or the integers 0 and 1, and refuses anything else:
    ``"newton.line_search: needs true or false, got 2"``."""
    if isinstance(default, bool):
        return _coerce_switch(solver, key, value)
    if default is None or not isinstance(default, (int, float)):
        return value
    kind = "an integer" if isinstance(default, int) else "a number"

    def bad(why: str = "") -> SolverError:
        return SolverError(f"{solver}.{key}: needs {kind}, got {value!r}{why}")

    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise bad()
    try:
        num = float(value)
    except (TypeError, ValueError, OverflowError):
        raise bad() from None
    if not math.isfinite(num):
        raise bad(" (NaN and infinity are not allowed)")
    if isinstance(default, float):
        return num
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    if not num.is_integer():
        raise bad(" (not a whole number)")
    return int(num)


def _coerce_switch(solver: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(int(value))
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    raise SolverError(f"{solver}.{key}: needs true or false, got {value!r}")


def _load_builtins() -> None:
    if all(n in _REGISTRY for n in _ORDER):
        return
    from implicit_viz.core.solvers import anderson, broyden, damped, fixed_point, newton  # noqa: F401


def check_spec_solver_section(section: Mapping[str, Any]) -> None:
    """Check a spec's ``[solver]`` section against the registry: every name in ``solvers`` is a
    registered solver and every ``[solver.NAME]`` table builds that solver. Raises
    :class:`~implicit_viz.core.errors.SpecError` naming the field: ``solver.solvers``,
    ``solver.NAME`` (unknown solver or option) or ``solver.NAME.OPTION`` (a bad value)."""
    from implicit_viz.core.errors import SpecError

    for name in section.get("solvers", []):
        try:
            solver_class(name)
        except SolverError as exc:
            raise SpecError(str(exc), field="solver.solvers") from None
    for key, table in section.items():
        if not isinstance(table, Mapping):
            continue
        try:
            get_solver(key, **dict(table))
        except (SolverError, TypeError, ValueError, OverflowError) as exc:
            message, field = str(exc), f"solver.{key}"
            m = re.match(rf"{re.escape(key)}(\.(\w+))?: ", message)
            if m:  # "anderson.m: needs ..." -> field solver.anderson.m
                message = message[m.end() :]
                if m.group(2) and m.group(2) in table:
                    field = f"solver.{key}.{m.group(2)}"
            raise SpecError(message, field=field) from None


__all__ = [
    "Solver",
    "available_solvers",
    "check_spec_solver_section",
    "coerce_option",
    "describe_solver",
    "get_solver",
    "register_solver",
    "solver_class",
    "solver_options",
]
