"""A session file: everything needed to reopen the app in the same state. Plain data, no Qt.

A session is one JSON document::

    {"format": "implicit-viz-session", "version": 2,
     "spec_text": "...", "spec_path": null,
     "values": {"a": 0.9}, "seeds": {"W": 0},
     "solver": {"solvers": [...], "tol": 1e-6, "options": {"damped": {"beta": 0.5}}, ...},
     "view": {"phase_components": [0, 1], "trajectory_tab": 1, ...},
     "overrides": {"z0[1]": 0.5},
     "basins": {"x": "a", "x_range": [0, 3], "y": "", "y_range": null, "resolution": 128},
     "gradients": {"wrt": ["W"], "loss": "sum", "k": 50, "auto": true}}

It is a dump of the app's model (:class:`~implicit_viz.gui.state.AppState`). Version-1 files
(no basins or gradients entries; the solver's ``beta`` and ``anderson_m`` in place of
``options``) still open.

The spec is stored as its text (exactly as typed, even when it does not parse), so a session
never loses work. :func:`read_session` checks the whole document (every field's type and range,
seeds in the range of the seed boxes and torch, view indices, nesting depth) and raises
:class:`SessionError` naming what is wrong; it never half-applies a corrupt file.
:meth:`Session.check_against` checks the fields that depend on the spec (view indices against
``dim``) before a window applies anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from implicit_viz.core.files import (
    FileReadError,
    FileWriteError,
    atomic_write_text,
    read_bytes_limited,
)
from implicit_viz.core.jsonsafe import json_safe
from implicit_viz.core.limits import MAX_INPUT_FILE_BYTES
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.spec import MAX_DIM, MAX_SEED, Spec, parse_spec
from implicit_viz.gui.state import (
    K_RANGE,
    RESOLUTION_RANGE,
    AppState,
    BasinsSettings,
    GradientSettings,
)

FORMAT = "implicit-viz-session"
VERSION = 2
SUFFIX = ".ivsession"
#: Larger files are refused before parsing.
MAX_BYTES = 20 * 1024**2
#: Seeds a session may hold: what a seed box shows and ``torch.manual_seed`` takes (int64 >= 0).
SEED_MIN, SEED_MAX = 0, MAX_SEED  # the range a spec accepts
#: Deepest JSON nesting a session needs is 3 (``view.phase_components``); deeper is refused.
MAX_DEPTH = 8
#: The window's view tabs (live, basins, gradients) and the most solver tabs (one per solver).
VIEW_TABS = 3
MAX_SOLVER_TABS = 16
#: Bounds of ``view.window_size`` (pixels) and of names and paths (characters).
WINDOW_SIZE_RANGE = (1, 100_000)
MAX_NAME_CHARS = 256
MAX_PATH_CHARS = 4096


class SessionError(ValueError):
    """A session file that cannot be read or written; the message names the file and problem."""


@dataclass(frozen=True)
class Session:
    """The app's state: spec text, slider values, seeds, solver options, view choices."""

    spec_text: str
    spec_path: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    solver: SolverSettings = field(default_factory=SolverSettings)
    view: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, float] = field(default_factory=dict)
    basins: BasinsSettings = field(default_factory=BasinsSettings)
    gradients: GradientSettings = field(default_factory=GradientSettings)

    @classmethod
    def of(cls, state: AppState) -> Session:
        """The dump of the app's model."""
        return cls(
            spec_text=state.spec_text,
            spec_path=state.spec_path,
            values=dict(state.values),
            seeds=dict(state.seeds),
            solver=state.settings,
            view=dict(state.view),
            overrides=dict(state.overrides),
            basins=state.basins,
            gradients=state.gradients,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "spec_text": self.spec_text,
            "spec_path": self.spec_path,
            "values": dict(self.values),
            "seeds": dict(self.seeds),
            "solver": self.solver.to_dict(),
            "view": json_safe(dict(self.view)),
            "overrides": dict(self.overrides),
            "basins": self.basins.to_dict(),
            "gradients": self.gradients.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Session:
        """Validate the whole document and build; :class:`SessionError` names the first bad
        entry."""
        if not isinstance(data, dict):
            raise SessionError("not a session: the top level must be a JSON object")
        if data.get("format") != FORMAT:
            raise SessionError(f"not a session: 'format' must be '{FORMAT}'")
        _check_depth(data)
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
            raise SessionError(
                f"unsupported session version {version!r} (this app reads version {VERSION})"
            )
        text = data.get("spec_text")
        if not isinstance(text, str):
            raise SessionError("'spec_text' must be a string")
        if len(text) > MAX_INPUT_FILE_BYTES:
            raise SessionError(
                f"'spec_text' has {len(text):,} characters; a spec may have at most "
                f"{MAX_INPUT_FILE_BYTES:,}"
            )
        path = data.get("spec_path")
        if path is not None and (
            not isinstance(path, str) or len(path) > MAX_PATH_CHARS or "\0" in path
        ):
            raise SessionError(
                f"'spec_path' must be null or a file path of at most {MAX_PATH_CHARS} characters"
            )
        values = _numbers(data.get("values", {}), "values")
        seeds = _seeds(data.get("seeds", {}))
        solver = _solver(data.get("solver", {}))
        view = _view(data.get("view", {}))
        overrides = _numbers(data.get("overrides", {}), "overrides")
        basins = _basins(data.get("basins", {}))
        gradients = _gradients(data.get("gradients", {}))
        return cls(
            spec_text=text,
            spec_path=path,
            values=values,
            seeds=seeds,
            solver=solver,
            view=view,
            overrides=overrides,
            basins=basins,
            gradients=gradients,
        )

    def check_against(self, dim: int) -> None:
        """Raise :class:`SessionError` when a view index does not fit a spec of ``dim``."""
        comps = self.view.get("phase_components")
        if comps is not None and dim >= 2 and max(comps) >= dim:
            raise SessionError(
                f"view.phase_components {list(comps)} must lie in 0..{dim - 1} (the spec's dim "
                f"is {dim})"
            )


def _check_depth(data: Any) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` (iteratively: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SessionError(f"nested more than {MAX_DEPTH} levels deep (a session needs 3)")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SessionError(f"'{name}' must be an object with string keys")
    for k in value:
        if not k or len(k) > MAX_NAME_CHARS:
            raise SessionError(f"'{name}' has a key of {len(k)} characters (1..{MAX_NAME_CHARS})")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(value: Any, name: str) -> dict[str, float]:
    out = {}
    for k, v in _mapping(value, name).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SessionError(f"{name}.{k} must be a finite number, got {v!r:.40}")
        try:
            f = float(v)
        except OverflowError:  # an integer beyond the float range
            f = math.inf
        if not math.isfinite(f):
            raise SessionError(f"{name}.{k} must be a finite number, got {v!r:.40}")
        out[k] = f
    return out


def _seeds(value: Any) -> dict[str, int]:
    out = {}
    for k, v in _mapping(value, "seeds").items():
        if not _is_int(v):
            raise SessionError(f"seeds.{k} must be an integer, got {v!r:.40}")
        if not SEED_MIN <= v <= SEED_MAX:
            raise SessionError(
                f"seeds.{k} = {v:.4g} is out of range: a seed lies in {SEED_MIN}..2**63-1"
            )
        out[k] = v
    return out


_SOLVER_TYPES: dict[str, tuple[str, Any]] = {
    "tol": ("a number", (int, float)),
    "max_iter": ("an integer", int),
    "beta": ("a number", (int, float)),  # version 1: damped.beta
    "anderson_m": ("an integer", int),  # version 1: anderson.m
    "device": ("a string", str),
    "dtype": ("a string", str),
}


def _solver(value: Any) -> SolverSettings:
    data = _mapping(value, "solver")
    for key, (what, types) in _SOLVER_TYPES.items():
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
            raise SessionError(f"solver.{key} must be {what}, got {v!r:.40}")
    solvers = data.get("solvers")
    if solvers is not None and (
        not isinstance(solvers, list) or not all(isinstance(s, str) for s in solvers)
    ):
        raise SessionError(f"solver.solvers must be a list of names, got {solvers!r:.60}")
    for name, table in _mapping(data.get("options", {}), "solver.options").items():
        for key, v in _mapping(table, f"solver.options.{name}").items():
            if not isinstance(v, (bool, int, float)):
                raise SessionError(
                    f"solver.options.{name}.{key} must be a number or true/false, got {v!r:.40}"
                )
    try:
        return SolverSettings.from_dict(data)
    except (ValueError, OverflowError) as exc:
        raise SessionError(str(exc)) from None


def _index(value: Any, name: str, stop: int) -> int:
    if not _is_int(value) or not 0 <= value < stop:
        raise SessionError(f"{name} must be an integer in 0..{stop - 1}, got {value!r:.40}")
    return value


def _pair(value: Any, name: str, lo: int, hi: int) -> list[int]:
    if not isinstance(value, list) or len(value) != 2:
        raise SessionError(f"{name} must be a list of two integers, got {value!r:.60}")
    for v in value:
        if not _is_int(v) or not lo <= v <= hi:
            raise SessionError(f"{name} must hold integers in {lo}..{hi}, got {value!r:.60}")
    return list(value)


def _view(value: Any) -> dict[str, Any]:
    """Known view entries checked; unknown entries (a newer app's) are dropped."""
    data = _mapping(value, "view")
    out: dict[str, Any] = {}
    if "phase_components" in data:
        out["phase_components"] = _pair(
            data["phase_components"], "view.phase_components", 0, MAX_DIM - 1
        )
    if "trajectory_tab" in data:
        out["trajectory_tab"] = _index(
            data["trajectory_tab"], "view.trajectory_tab", MAX_SOLVER_TABS
        )
    if "view_tab" in data:
        out["view_tab"] = _index(data["view_tab"], "view.view_tab", VIEW_TABS)
    if "window_size" in data:
        out["window_size"] = _pair(data["window_size"], "view.window_size", *WINDOW_SIZE_RANGE)
    return out


MAX_LOSS_CHARS = 2000


def _target(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise SessionError(f"{name} must be a target name of at most {MAX_NAME_CHARS} characters")
    return value


def _range(value: Any, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise SessionError(f"{name} must be null or a list of two finite numbers")
    return (float(value[0]), float(value[1]))


def _basins(value: Any) -> BasinsSettings:
    """The Basins tab's settings (absent in version 1: the defaults)."""
    data = _mapping(value, "basins") if value else {}
    res = data.get("resolution", BasinsSettings.resolution)
    if not _is_int(res) or not RESOLUTION_RANGE[0] <= res <= RESOLUTION_RANGE[1]:
        lo, hi = RESOLUTION_RANGE
        raise SessionError(f"basins.resolution must be an integer in {lo}..{hi}, got {res!r:.40}")
    return BasinsSettings(
        x=_target(data.get("x", ""), "basins.x"),
        x_range=_range(data.get("x_range"), "basins.x_range"),
        y=_target(data.get("y", ""), "basins.y"),
        y_range=_range(data.get("y_range"), "basins.y_range"),
        resolution=res,
    )


def _gradients(value: Any) -> GradientSettings:
    """The Gradients tab's settings (absent in version 1: the defaults)."""
    data = _mapping(value, "gradients") if value else {}
    wrt = data.get("wrt", [])
    if not isinstance(wrt, list) or not all(
        isinstance(w, str) and len(w) <= MAX_NAME_CHARS for w in wrt
    ):
        raise SessionError(f"gradients.wrt must be a list of names, got {wrt!r:.60}")
    loss = data.get("loss", GradientSettings.loss)
    if not isinstance(loss, str) or len(loss) > MAX_LOSS_CHARS:
        raise SessionError(f"gradients.loss must be text of at most {MAX_LOSS_CHARS} characters")
    k = data.get("k", GradientSettings.k)
    if not _is_int(k) or not K_RANGE[0] <= k <= K_RANGE[1]:
        raise SessionError(f"gradients.k must be an integer in {K_RANGE[0]}..{K_RANGE[1]}")
    auto = data.get("auto", True)
    if not isinstance(auto, bool):
        raise SessionError(f"gradients.auto must be true or false, got {auto!r:.40}")
    return GradientSettings(wrt=tuple(wrt), loss=loss, k=k, auto=auto)


def write_session(path: str | Path, session: Session) -> Path:
    """Write ``session`` as JSON, atomically (a symbolic link is written through);
    :class:`SessionError` when the path cannot be written."""
    p = Path(path).expanduser()
    text = json.dumps(session.to_dict(), indent=2, allow_nan=False)
    try:
        atomic_write_text(p, text)
    except FileWriteError as exc:
        raise SessionError(f"cannot write session {p}: {_why(exc, p)}") from None
    return p


def _why(exc: OSError, p: Path) -> str:
    """The reason in ``exc``'s message without the path (the caller names it)."""
    text = str(exc)
    marker = f"'{p}': "
    return text.split(marker, 1)[1] if marker in text else text


def read_session(path: str | Path) -> Session:
    """Read and validate a session file; :class:`SessionError` says what is wrong with it."""
    p = Path(path).expanduser()
    try:
        raw = read_bytes_limited(p, MAX_BYTES, "session file")
    except FileReadError as exc:
        raise SessionError(str(exc)) from None
    except OSError as exc:
        raise SessionError(f"cannot read session {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SessionError(f"{p} is not a session file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise SessionError(
            f"{p} is corrupt: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (RecursionError, MemoryError):
        raise SessionError(
            f"{p} is corrupt: JSON nested more than {MAX_DEPTH} levels deep"
        ) from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise SessionError(f"{p} is corrupt: {exc}") from None
    try:
        return Session.from_dict(data)
    except SessionError as exc:
        raise SessionError(f"{p}: {exc}") from None


def load_session(path: str | Path) -> tuple[Session, Spec | None]:
    """Read ``path`` and check it whole, against its own spec text too: the session and the
    spec it holds (None when the text does not parse: a session keeps work in progress).
    Raises :class:`SessionError` naming the file and the first problem."""
    session = read_session(path)
    try:
        spec = parse_spec(session.spec_text)
    except (ValueError, RecursionError):  # SpecError/LimitError are ValueErrors
        return session, None
    try:
        session.check_against(spec.dim)
    except SessionError as exc:
        raise SessionError(f"{Path(path).expanduser()}: {exc}") from None
    return session, spec
