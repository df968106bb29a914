"""Argument helpers shared by the subcommands: spec loading, --set, --opt, device, output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from implicit_viz.core.errors import SolverError, SpecError, SweepError


class CLIError(Exception):
    """A usage problem the CLI reports in one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe_error(exc: BaseException) -> tuple[str | None, int]:
    """One clear message and an exit code for a backend error; (None, 0) if unexpected."""
    from implicit_viz.core.export import ExportError

    if isinstance(exc, SpecError):
        return exc.pretty(), 2
    if isinstance(exc, (SolverError, SweepError)):
        return str(exc), 2
    if isinstance(exc, ExportError):
        return str(exc), 1
    if isinstance(exc, ValueError):  # device and dtype names
        return str(exc), 2
    if isinstance(exc, MemoryError):
        return "out of memory: lower the batch, max_iter or dim", 1
    return None, 0


def spec_file_place(exc: BaseException, spec_arg: str | None) -> str | None:
    """``"FILE:LINE:COL"`` of a :class:`SpecError` in the spec file the user named (as a
    compiler would print it, the same line and column the app's editor marks), or None: not
    a spec error, a preset name rather than a file, or a place that cannot be told."""
    if not isinstance(exc, SpecError) or not spec_arg:
        return None
    from pathlib import Path

    from implicit_viz.core.error_place import locate_error

    path = Path(spec_arg)
    if not path.is_file():
        return None
    try:
        place = locate_error(path.read_text(encoding="utf-8"), exc)
    except (OSError, UnicodeDecodeError):
        return None
    return None if place is None else f"{spec_arg}:{place.line}:{place.column}"


def add_spec_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="a spec file (.toml) or a preset name")
    p.add_argument(
        "--set",
        dest="assignments",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a param (a=1.2), a tensor element (x[0]=0.3, W[0,1]=0.5), the start "
        "(z0[1]=0.5, z0=0.1,0.2) or a seed (W.seed=3); repeatable",
    )


def add_compute_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="default float64"
    )


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1.2", "x[0]=0.3"]`` -> ``{"a": "1.2", "x[0]": "0.3"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CLIError(f"--set needs NAME=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def load_spec_with_overrides(spec_arg: str, assignments: Sequence[str]):
    from implicit_viz.core.spec import load_spec

    spec = load_spec(spec_arg)
    overrides = parse_assignments(assignments)
    return spec.with_overrides(overrides) if overrides else spec


def check_writable(path: str, suffixes: Sequence[str]) -> None:
    """Fail before any work when ``path`` has the wrong suffix or its folder cannot take it."""
    import os
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise CLIError(f"{path}: use a file name ending in {', '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"cannot write '{path}': folder '{parent}' does not exist", exit_code=1)
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write '{path}': folder '{parent}' is not writable", exit_code=1)
    if p.is_dir():
        raise CLIError(f"cannot write '{path}': it is a folder", exit_code=1)


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    return v if math.isfinite(v) else None


def print_json(doc: Any) -> None:
    """Write exactly one JSON document to stdout (NaN/inf become null)."""
    from implicit_viz.core.jsonsafe import json_safe

    sys.stdout.write(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
