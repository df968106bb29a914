"""A solver's options, declared once: type, range, default and help.

Each option of a :class:`~implicit_viz.core.solvers.base.Solver` is a dataclass field made by
:func:`option`; :func:`option_specs` reads them back as :class:`OptionSpec` rows. The solver
panel builds its spin boxes from them, the CLI checks ``--opt`` with them, sessions and exports
store them, and :meth:`OptionSpec.check` is the one range check every path runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from implicit_viz.core.errors import SolverError

_META_KEY = "implicit_viz.option"


@dataclass(frozen=True)
class OptionSpec:
    """One solver option.

    Attributes
    ----------
    name : str
        Field name, e.g. ``"beta"``.
    kind : type
        ``int``, ``float`` or ``bool`` (a switch: no range, ``low`` and ``high`` unused).
    default : int, float or bool
    low, high : float or None
        Range ends (None: unbounded on that side).
    low_open, high_open : bool
        Whether an end is excluded: ``beta`` in ``(0, 2)`` has both open.
    label : str
        Short name for a form, e.g. ``"damping β"``.
    symbol : str
        How the option appears in a solver's label, e.g. ``"β"`` in ``"damped (β=0.5)"``;
        empty: the option is not shown there.
    help : str
        One sentence for tooltips and ``--help``.
    panel_max : float or None
        Upper end of the GUI control where ``high`` is None (a spin box needs one).
    """

    name: str
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    label: str = ""
    help: str = ""
    panel_max: float | None = None
    symbol: str = ""

    def range_text(self) -> str:
        """``"(0, 2)"``, ``"[1, inf)"``, ``"(0, 1]"``; ``"{false, true}"`` for a switch."""
        if self.kind is bool:
            return "{false, true}"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{left}{lo}, {hi}{right}"

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (NaN never does)."""
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def check(self, solver: str, value: Any) -> None:
        """:class:`SolverError` ``"solver.name: must lie in (0, 2), got 3"`` when out of range
        or of the wrong type (``"solver.name: needs true or false, got 2"`` for a switch)."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SolverError(f"{solver}.{self.name}: needs true or false, got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SolverError(f"{solver}.{self.name}: needs a number, got {value!r}")
        if self.kind is int and not float(value).is_integer():
            raise SolverError(f"{solver}.{self.name}: needs an integer, got {value!r}")
        if not self.contains(value):
            raise SolverError(
                f"{solver}.{self.name}: must lie in {self.range_text()}, got {value!r}"
            )

    @property
    def ui_max(self) -> float:
        """Upper end for a GUI control: ``high``, else ``panel_max``, else a large number (1 for
        a switch)."""
        if self.kind is bool:
            return 1.0
        if self.high is not None:
            return self.high
        return self.panel_max if self.panel_max is not None else 1e9

    @property
    def ui_min(self) -> float:
        """Lower end for a GUI control (an open end is approached, not reached; 0 for a
        switch)."""
        if self.kind is bool:
            return 0.0
        return -1e9 if self.low is None else self.low

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, for exports and ``implicit-viz solvers --json``."""
        return {
            "name": self.name,
            "type": self.kind.__name__,
            "default": self.default,
            "range": self.range_text(),
            "label": self.label or self.name,
            "help": self.help,
        }


def option(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    label: str = "",
    help: str = "",
    panel_max: float | None = None,
    symbol: str = "",
) -> Any:
    """A dataclass field for a solver option (see :class:`OptionSpec` for the arguments)."""
    meta = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "label": label,
        "help": help,
        "panel_max": panel_max,
        "symbol": symbol,
    }
    return dataclasses.field(default=default, metadata={_META_KEY: meta})


def option_specs(cls: type) -> tuple[OptionSpec, ...]:
    """The :class:`OptionSpec` of every option field of solver class ``cls``, in order."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META_KEY, {})
        if isinstance(f.default, bool):
            kind: type = bool
        elif isinstance(f.default, int):
            kind = int
        else:
            kind = float
        out.append(OptionSpec(name=f.name, kind=kind, default=f.default, **meta))
    return tuple(out)
