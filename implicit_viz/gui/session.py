"""A session file: everything needed to reopen the app in the same state. Plain data, no Qt.

A session is one JSON document::

    {"format": "implicit-viz-session", "version": 1,
     "spec_text": "...", "spec_path": null,
     "values": {"a": 0.9}, "seeds": {"W": 0},
     "solver": {"solvers": [...], "tol": 1e-6, ...},
     "view": {"phase_components": [0, 1], "trajectory_tab": 1, ...},
     "overrides": {"z0[1]": 0.5}}

The spec is stored as its text (exactly as typed, even when it does not parse), so a session
never loses work. :func:`read_session` checks the structure and raises :class:`SessionError`
naming what is wrong; it never half-applies a corrupt file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from implicit_viz.core.jsonsafe import json_safe
from implicit_viz.core.live import SolverSettings

FORMAT = "implicit-viz-session"
VERSION = 1
SUFFIX = ".ivsession"
#: Larger files are refused before parsing.
MAX_BYTES = 20 * 1024**2


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
        }

    @classmethod
    def from_dict(cls, data: Any) -> Session:
        """Validate and build; :class:`SessionError` names the first bad entry."""
        if not isinstance(data, dict):
            raise SessionError("not a session: the top level must be a JSON object")
        if data.get("format") != FORMAT:
            raise SessionError(f"not a session: 'format' must be '{FORMAT}'")
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise SessionError(
                f"unsupported session version {version!r} (this app reads {VERSION})"
            )
        text = data.get("spec_text")
        if not isinstance(text, str):
            raise SessionError("'spec_text' must be a string")
        path = data.get("spec_path")
        if path is not None and not isinstance(path, str):
            raise SessionError("'spec_path' must be a string or null")
        values = _mapping(data.get("values", {}), "values")
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SessionError(f"values.{k} must be a finite number, got {v!r}")
        seeds = _mapping(data.get("seeds", {}), "seeds")
        for k, v in seeds.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise SessionError(f"seeds.{k} must be an integer, got {v!r}")
        try:
            solver = SolverSettings.from_dict(_mapping(data.get("solver", {}), "solver"))
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        view = _mapping(data.get("view", {}), "view")
        overrides = _mapping(data.get("overrides", {}), "overrides")
        for k, v in overrides.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SessionError(f"overrides.{k} must be a finite number, got {v!r}")
        return cls(
            spec_text=text,
            spec_path=path,
            values={k: float(v) for k, v in values.items()},
            seeds={k: int(v) for k, v in seeds.items()},
            solver=solver,
            view=dict(view),
            overrides={k: float(v) for k, v in overrides.items()},
        )


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SessionError(f"'{name}' must be an object with string keys")
    return value


def write_session(path: str | Path, session: Session) -> Path:
    """Write ``session`` as JSON; :class:`SessionError` when the path cannot be written."""
    p = Path(path).expanduser()
    text = json.dumps(session.to_dict(), indent=2, allow_nan=False)
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(p)  # a crash mid-write never leaves a truncated session behind
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise SessionError(f"cannot write session {p}: {exc.strerror or exc}") from None
    return p


def read_session(path: str | Path) -> Session:
    """Read and validate a session file; :class:`SessionError` says what is wrong with it."""
    p = Path(path).expanduser()
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SessionError(f"{p}: {size / 1024**2:.0f} MB is too large for a session file")
        raw = p.read_bytes()
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
    try:
        return Session.from_dict(data)
    except SessionError as exc:
        raise SessionError(f"{p}: {exc}") from None
