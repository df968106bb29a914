"""Argument helpers shared by the subcommands: spec loading, --set, --opt, device, output.

Numeric options are read by the converters below (:func:`positive_float`, :func:`int_in`, ...),
so NaN, infinity, a negative or an absurd value is refused while the arguments are parsed, in one
line that names the option (``argument --tol: needs a positive finite number, got 'nan'``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import typing
from collections.abc import Sequence
from typing import Any

from implicit_viz.core.errors import LimitError, SolverError, SpecError, SweepError


class CLIError(Exception):
    """A usage problem the CLI reports in one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one :class:`CLIError` line (exit 2) instead
    of printing its usage and exiting, so that ``--json`` still gets its JSON document."""

    def error(self, message: str) -> typing.NoReturn:
        raise CLIError(f"{message} (see {self.prog} --help)", exit_code=2)


def describe_error(exc: BaseException) -> tuple[str | None, int]:
    """One clear message and an exit code for a backend error; (None, 0) if unexpected.

    Bad input and refused limits exit 2; files that cannot be written (and other OS errors)
    exit 1.
    """
    from implicit_viz.core.export import ExportError
    from implicit_viz.core.files import FileReadError, FileWriteError

    if isinstance(exc, SpecError):
        return exc.pretty(), 2
    if isinstance(exc, (SolverError, SweepError, LimitError)):
        return str(exc), 2
    if isinstance(exc, ExportError):
        return str(exc), 1
    if isinstance(exc, FileReadError):
        return str(exc), 2
    if isinstance(exc, FileWriteError):
        return str(exc), 1
    if isinstance(exc, OSError):
        where = f"'{exc.filename}': " if exc.filename else ""
        return f"{where}{(exc.strerror or str(exc) or type(exc).__name__).lower()}", 1
    if isinstance(exc, ValueError):  # device and dtype names
        return str(exc), 2
    if isinstance(exc, MemoryError):
        return "out of memory: lower the batch, max_iter or dim", 1
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read", 2
    return None, 0


def spec_file_place(exc: BaseException, spec_arg: str | None) -> str | None:
    """``"FILE:LINE:COL"`` of a :class:`SpecError` in the spec file the user named (as a
    compiler would print it, the same line and column the app's editor marks), or None: not
    a spec error, a preset name rather than a file, or a place that cannot be told."""
    if not isinstance(exc, SpecError) or not spec_arg:
        return None
    from pathlib import Path

    from implicit_viz.core.error_place import locate_error
    from implicit_viz.core.files import read_text_limited

    path = Path(spec_arg)
    try:
        if not path.is_file():
            return None
        place = locate_error(read_text_limited(path, what="spec file"), exc)
    except (OSError, ValueError):
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
    p.add_argument(
        "--device",
        default="cpu",
        type=device_name,
        help="cpu, cuda, cuda:N, mps or auto (default cpu)",
    )
    p.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="default float64"
    )


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1.2", "x[0]=0.3"]`` -> ``{"a": "1.2", "x[0]": "0.3"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CLIError(f"--set needs NAME=VALUE, got '{clip(item)}'")
        out[key.strip()] = value.strip()
    return out


def load_spec_with_overrides(spec_arg: str, assignments: Sequence[str]):
    from implicit_viz.core.spec import load_spec

    spec = load_spec(spec_arg)
    overrides = parse_assignments(assignments)
    return spec.with_overrides(overrides) if overrides else spec


def check_device(name: str) -> None:
    """Fail before any work when ``--device`` names a device this machine does not have."""
    from implicit_viz.core.device import resolve_device

    try:
        resolve_device(name)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None


def check_writable(path: str, suffixes: Sequence[str], option: str = "--out") -> None:
    """Fail before any work when ``path`` (the value of ``option``) has the wrong suffix or its
    folder cannot take it."""
    import os
    from pathlib import Path

    from implicit_viz.core.files import resolve_target

    if not str(path).strip():
        raise CLIError(f"{option} needs a file name, got an empty one")
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise CLIError(f"{option} {path}: use a file name ending in {', '.join(suffixes)}")
    target = resolve_target(p)  # a symlink is written through: its target's folder counts
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(
            f"{option}: cannot write '{path}': folder '{parent}' does not exist", exit_code=1
        )
    if not os.access(parent, os.W_OK):
        raise CLIError(
            f"{option}: cannot write '{path}': folder '{parent}' is not writable", exit_code=1
        )
    if p.is_dir():
        raise CLIError(f"{option}: cannot write '{path}': it is a folder", exit_code=1)


# ------------------------------------------------------------------------------------------------
# Converters for numeric options (argparse ``type=``): one message naming the option
# ------------------------------------------------------------------------------------------------


def clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, for a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs {what}, got '{clip(text)}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"needs {what}, got '{clip(text)}'")
    return v


def positive_float(text: str) -> float:
    """A finite number above 0 (``--basin-tol``, ``--phantom-lam``)."""
    v = _float(text, "a positive finite number")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"needs a positive finite number, got {v:g}")
    return v


def tolerance(text: str) -> float:
    """A tolerance: above 0 and at most :data:`~implicit_viz.core.limits.MAX_TOL` (``--tol``)."""
    from implicit_viz.core.limits import MAX_TOL

    v = positive_float(text)
    if v > MAX_TOL:
        raise argparse.ArgumentTypeError(f"needs a tolerance in (0, {MAX_TOL:g}], got {v:g}")
    return v


def nonnegative_float(text: str) -> float:
    """A finite number at or above 0 (``--rtol``)."""
    v = _float(text, "a finite number >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"needs a finite number >= 0, got {v:g}")
    return v


def fraction(text: str) -> float:
    """A number in (0, 1] (``--phantom-lam``)."""
    v = _float(text, "a number in (0, 1]")
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"needs a number in (0, 1], got {v:g}")
    return v


def int_in(lo: int, hi: int | None = None):
    """A converter for an integer in ``lo..hi`` (``hi`` None: no upper bound)."""
    span = f"{lo}..{hi:,}" if hi is not None else f">= {lo}"

    def convert(text: str) -> int:
        try:
            n = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"needs an integer {span}, got '{clip(text)}'"
            ) from None
        if n < lo or (hi is not None and n > hi):
            shown = str(n) if abs(n) < 10**15 else f"{float(n):.3g}"
            raise argparse.ArgumentTypeError(f"needs an integer {span}, got {shown}")
        return n

    convert.__name__ = "integer"
    return convert


def device_name(text: str) -> str:
    """A device name as typed (checked against the machine by the backend): not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a device: cpu, cuda, cuda:N, mps or auto")
    return text.strip()


def memory_mb(text: str) -> float:
    """``--memory-mb``: at least 1 MB and at most the memory budget of
    :func:`~implicit_viz.core.limits.memory_budget` (``IMPLICIT_VIZ_MEMORY_MB`` raises it)."""
    from implicit_viz.core.limits import MEMORY_ENV, memory_budget

    top = memory_budget() / 1024**2
    what = f"a number of MB in 1..{top:.0f} (the memory budget; {MEMORY_ENV} changes it)"
    v = _float(text, what)
    if not 1 <= v <= top:
        raise argparse.ArgumentTypeError(f"needs {what}, got {v:.6g}")
    return v


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
    from implicit_viz.core.files import FileWriteError
    from implicit_viz.core.jsonsafe import json_safe

    try:
        sys.stdout.write(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
        sys.stdout.flush()  # a full or closed stdout fails here, inside the error handling
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise FileWriteError(f"cannot write to standard output: {reason}") from None
