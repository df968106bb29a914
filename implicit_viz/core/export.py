"""Traces of solves to CSV, NPZ and JSON (shared by the GUI and the CLI).

Every file describes itself: it carries the spec (TOML text), the solve options, each solver's
options, and the names of the status codes, so a reader needs no other document.

- JSON: ``{"format": "implicit_viz.trace/1", "spec": ..., "results": [...]}``, one entry per
  solver and element with its residuals and trajectory.
- NPZ: arrays stacked over solvers ``S`` and padded with NaN to the longest run ``T``:
  ``z (S, B, D)``, ``status (S, B)``, ``iterations``, ``residual``, ``residuals (S, B, T+1)``,
  ``trajectory (S, B, T+1, D)``, ``period``, ``f_evals``, ``jac_evals``, diagnostics; ``solvers``
  names the rows; ``metadata`` is a JSON string (spec, options, status codes).
- CSV: one row per solver, element and step (``solver, element, step, residual, z_0 ...``) after
  ``#`` comment lines holding the metadata as JSON.

Every file is written atomically (:mod:`implicit_viz.core.files`): to a temporary file beside it,
renamed into place once complete, so a failure, a full disk or a Ctrl-C leaves the old file as it
was; a symbolic link is written through. A sweep's JSON is streamed array by array and row by
row, never built whole in memory, and refused above :data:`MAX_SWEEP_JSON_BYTES` (use NPZ).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from implicit_viz import __version__
from implicit_viz.core.files import FileWriteError, atomic_open
from implicit_viz.core.jsonsafe import json_safe
from implicit_viz.core.limits import format_bytes
from implicit_viz.core.result import SolveResult
from implicit_viz.core.spec import Spec
from implicit_viz.core.status import status_descriptions, status_names

TRACE_FORMAT = "implicit_viz.trace/1"
TRACE_SUFFIXES = (".csv", ".npz", ".json")
_PER_ELEMENT = (
    "status",
    "iterations",
    "residual",
    "period",
    "f_evals",
    "jac_evals",
    "spectral_radius",
    "jac_norm",
    "predicted_rate",
    "observed_rate",
    "lyapunov",
    "lyapunov_err",
    "rate",
    "steps_needed",
)


class ExportError(OSError):
    """A file could not be written (bad path, no permission, unknown format)."""


#: What the end-of-budget arrays of a trace hold (the metadata's ``arrays``).
EVIDENCE_DESCRIPTIONS = {
    "lyapunov": "largest Lyapunov exponent per step (natural log) of elements out of budget "
    "under naive or damped iteration, not a number elsewhere (null in JSON)",
    "lyapunov_err": "uncertainty of lyapunov per step (gap of its two half-window estimates, "
    "at least 2 / window), not a number where not estimated (null in JSON)",
    "rate": "elements out of budget: the residual's fitted factor per step over the end window "
    "(below 1: falling), not a number elsewhere (null in JSON)",
    "steps_needed": "converging elements: steps beyond max_iter to reach tol at that rate, "
    "not a number elsewhere (null in JSON)",
}


def metadata(spec: Spec | None, results: Sequence[SolveResult]) -> dict[str, Any]:
    """The self-description every export carries."""
    from implicit_viz.core.solvers import describe_solver

    first = results[0] if results else None
    return {
        "format": TRACE_FORMAT,
        "implicit_viz_version": __version__,
        "spec_name": spec.name if spec else None,
        "spec": spec.to_toml() if spec else None,
        "options": first.options.to_dict() if first else None,
        "solvers": {r.solver: r.solver_options for r in results},
        "solver_descriptions": {r.solver: describe_solver(r.solver) for r in results},
        "device": first.device if first else None,
        "dtype": first.dtype if first else None,
        "status_codes": {str(k): v for k, v in status_names().items()},
        "status_descriptions": status_descriptions(),
        "arrays": EVIDENCE_DESCRIPTIONS,
    }


def trace_json(spec: Spec | None, results: Sequence[SolveResult]) -> dict[str, Any]:
    """A JSON-ready dict: metadata plus, per solver and element, its summary and trajectory."""
    out = metadata(spec, results)
    entries = []
    for r in results:
        for i in range(r.batch):
            e = r.element(i)
            e["element"] = i
            n = e["iterations"]
            if r.trajectory is not None:
                e["trajectory"] = [
                    [_num(v) for v in row] for row in r.trajectory[i, : n + 1].tolist()
                ]
            entries.append(e)
    out["results"] = entries
    return out


def trace_arrays(spec: Spec | None, results: Sequence[SolveResult]) -> dict[str, np.ndarray]:
    """The NPZ content: arrays stacked over solvers, NaN-padded to the longest run."""
    if not results:
        raise ExportError("nothing to export: no results")
    s = len(results)
    b, d = results[0].z.shape
    t = max(r.residuals.shape[1] for r in results)
    arrays: dict[str, np.ndarray] = {
        "solvers": np.array([r.solver for r in results]),
        "metadata": np.array(json.dumps(metadata(spec, results))),
        "z": np.stack([r.z.detach().cpu().numpy() for r in results]),
    }
    for key in _PER_ELEMENT:
        vals = [getattr(r, key) for r in results]
        if all(v is None for v in vals):
            continue
        arrays[key] = np.stack(
            [np.full(b, np.nan) if v is None else v.detach().cpu().numpy() for v in vals]
        )
    res = np.full((s, b, t), np.nan)
    for j, r in enumerate(results):
        res[j, :, : r.residuals.shape[1]] = r.residuals.detach().cpu().numpy()
    arrays["residuals"] = res
    if any(r.trajectory is not None for r in results):
        traj = np.full((s, b, t, d), np.nan)
        for j, r in enumerate(results):
            if r.trajectory is not None:
                traj[j, :, : r.trajectory.shape[1]] = r.trajectory.detach().cpu().numpy()
        arrays["trajectory"] = traj
    return arrays


def trace_csv(spec: Spec | None, results: Sequence[SolveResult]) -> str:
    """CSV text: ``#`` metadata lines, a header, one row per solver, element and step."""
    buf = io.StringIO()
    meta = metadata(spec, results)
    spec_toml = meta.pop("spec")
    buf.write(f"# implicit_viz trace ({TRACE_FORMAT}); metadata as JSON on the next line\n")
    buf.write("# " + json.dumps(meta) + "\n")
    if spec_toml:
        for line in spec_toml.splitlines():
            buf.write("# spec> " + line + "\n")
    d = results[0].z.shape[1] if results else 0
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["solver", "element", "step", "status", "residual", *[f"z_{i}" for i in range(d)]]
    )
    for r in results:
        statuses = r.statuses
        for i in range(r.batch):
            n = int(r.iterations[i])
            res = r.residuals[i, : n + 1].tolist()
            traj = r.trajectory[i, : n + 1].tolist() if r.trajectory is not None else None
            for k in range(n + 1):
                zs = traj[k] if traj is not None else ([""] * d)
                if traj is None and k == n:
                    zs = r.z[i].tolist()
                writer.writerow(
                    [r.solver, i, k, statuses[i].label, _csv_num(res[k]), *map(_csv_num, zs)]
                )
    return buf.getvalue()


Writer = Callable[[BinaryIO], object]


def write_file(path: str | Path, writers: Mapping[str, Writer]) -> Path:
    """Write ``path`` atomically with the writer registered for its suffix (``{".npz": fn}``,
    each ``fn(fh)`` writing to a binary file object).

    Raises :class:`ExportError` naming the path and the reason: an unknown suffix, a missing
    folder, no permission, a full disk. On any failure (KeyboardInterrupt included) an existing
    file at ``path`` is left as it was and no temporary file remains.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in writers:
        raise ExportError(
            f"cannot write '{p}': unknown format '{suffix or '(none)'}'; use {', '.join(writers)}"
        )
    try:
        with atomic_open(p) as fh:
            writers[suffix](fh)
    except ExportError:
        raise
    except FileWriteError as exc:
        raise ExportError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot write '{p}': {_reason(exc)}") from None
    return p


def write_npz(p: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Compressed NPZ of ``arrays`` at ``p``, written atomically."""
    return write_file(p, {Path(p).suffix.lower(): lambda fh: _npz(fh, arrays)})


def write_json(p: str | Path, doc: Any, indent: int | None = None) -> Path:
    """Strict JSON at ``p``, written atomically (NaN and inf are errors: make them null first)."""
    return write_file(p, {Path(p).suffix.lower(): lambda fh: _json(fh, doc, indent)})


def _npz(fh: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    # numpy streams each array into the zip member in chunks (no whole copy)
    np.savez_compressed(fh, **arrays)


def _json(fh: BinaryIO, doc: Any, indent: int | None = None) -> None:
    fh.write(json.dumps(doc, indent=indent, allow_nan=False).encode("utf-8"))


def _text(fh: BinaryIO, text: str) -> None:
    fh.write(text.encode("utf-8"))


#: Numbers (iterates and residuals) a trace may hold as text (.csv, .json): those files are
#: built in memory, at some 100 bytes of Python objects a number (20 M numbers took 3.6 GB).
MAX_TEXT_TRACE_NUMBERS = 5_000_000


def trace_numbers(results: Sequence[SolveResult]) -> int:
    """How many numbers a trace of ``results`` holds: every recorded iterate and residual."""
    n = 0
    for r in results:
        n += int(r.residuals.numel())
        if r.trajectory is not None:
            n += int(r.trajectory.numel())
    return n


def check_text_trace(path: str | Path, results: Sequence[SolveResult]) -> None:
    """:class:`ExportError` before writing a .csv or .json trace over
    :data:`MAX_TEXT_TRACE_NUMBERS` numbers, pointing to .npz (written without that cost)."""
    suffix = Path(path).suffix.lower()
    n = trace_numbers(results)
    if suffix in (".csv", ".json") and n > MAX_TEXT_TRACE_NUMBERS:
        raise ExportError(
            f"cannot write '{path}': the trace holds {n:,} numbers, over the limit of "
            f"{MAX_TEXT_TRACE_NUMBERS:,} for {suffix} (text is built in memory); "
            "write it as .npz instead"
        )


def write_trace(path: str | Path, spec: Spec | None, results: Sequence[SolveResult]) -> Path:
    """Write results to ``path``; the format follows the suffix (.csv, .npz, .json).

    Raises :class:`ExportError` naming the path and the reason when it cannot be written, or
    when a text trace would pass :data:`MAX_TEXT_TRACE_NUMBERS` (see :func:`check_text_trace`).
    """
    check_text_trace(path, results)
    return write_file(
        path,
        {
            ".csv": lambda fh: _text(fh, trace_csv(spec, results)),
            ".npz": lambda fh: _npz(fh, trace_arrays(spec, results)),
            ".json": lambda fh: _json(fh, trace_json(spec, results), indent=1),
        },
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _csv_num(v: Any) -> str:
    if v == "" or v is None:
        return ""
    v = float(v)
    return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else repr(v))


SWEEP_SUFFIXES = (".npz", ".json")
#: Largest sweep written as JSON (estimated file size); larger sweeps are refused with a pointer
#: to NPZ. A 4096 x 4096 sweep of a dim-2 map is about 1.6 GB of JSON.
MAX_SWEEP_JSON_BYTES = 4 * 1024**3
#: Arrays up to this many elements are written as one JSON list; larger ones row by row.
_JSON_CHUNK = 1 << 12
#: Estimated characters per element in JSON ("0.123456789, "), by dtype kind and item size.
_JSON_CHARS = {"b": 6, "i": 6, "u": 6, "f4": 17, "f8": 25}


def _sweep_json_arrays(result: Any) -> dict[str, np.ndarray]:
    arrays = result.arrays()
    return {k: v for k, v in arrays.items() if k not in ("metadata", "status_names")}


def sweep_json_size(result: Any) -> int:
    """Estimated bytes of a sweep written as JSON (the per-cell arrays dominate)."""
    total = 0
    for a in _sweep_json_arrays(result).values():
        key = a.dtype.kind if a.dtype.kind != "f" else f"f{min(a.dtype.itemsize, 8)}"
        total += a.size * _JSON_CHARS.get(key, 25)
    return total + 64 * 1024


def request_json_size(request: Any) -> int:
    """Estimated bytes of the JSON of a sweep that is yet to run (a ``SweepRequest``)."""
    from implicit_viz.core.sweep import MAX_Z_BYTES

    cells, d = request.cells, request.spec.dim
    # status, iterations, period, basin; residual, lyapunov and the evidence (lyapunov_err,
    # rate, steps_needed); done
    per_cell = 4 * _JSON_CHARS["i"] + 5 * _JSON_CHARS["f4"] + _JSON_CHARS["b"]
    if cells * d * 4 <= MAX_Z_BYTES:
        per_cell += d * _JSON_CHARS["f4"]
    orbit = request.shape[1] * request.orbit * d * _JSON_CHARS["f4"]
    return cells * per_cell + orbit + 64 * 1024


def check_sweep_json(result: Any, path: str | Path = "sweep.json") -> None:
    """Raise :class:`ExportError` when a sweep's JSON would exceed :data:`MAX_SWEEP_JSON_BYTES`.

    ``result`` is a finished ``SweepResult`` or a ``SweepRequest`` (to refuse before running)."""
    is_request = not hasattr(result, "status")
    est = request_json_size(result) if is_request else sweep_json_size(result)
    cells = result.cells if is_request else result.status.size
    if est > MAX_SWEEP_JSON_BYTES:
        raise ExportError(
            f"cannot write '{path}': this sweep ({cells:,} cells) would take about "
            f"{format_bytes(est)} as JSON, over the limit of {format_bytes(MAX_SWEEP_JSON_BYTES)} "
            f"for JSON; write it as .npz instead"
        )


def sweep_json(result: Any) -> dict[str, Any]:
    """A sweep as JSON-ready data: metadata, summary and every per-cell array (NaN -> null).

    This builds the whole document in memory; :func:`write_sweep` streams the same text."""
    out = _sweep_json_head(result)
    out["arrays"] = {k: _json_array(v) for k, v in _sweep_json_arrays(result).items()}
    return out


def _sweep_json_head(result: Any) -> dict[str, Any]:
    out = result.metadata()
    out["summary"] = result.summary()
    return json_safe(out)


def stream_sweep_json(fh: BinaryIO, result: Any) -> None:
    """Write :func:`sweep_json`'s document to ``fh`` as ``json.dumps`` would (same bytes), one
    array and one row at a time."""
    head = json.dumps(_sweep_json_head(result), allow_nan=False)
    fh.write(head[:-1].encode("ascii"))
    fh.write(b', "arrays": {' if len(head) > 2 else b'"arrays": {')
    for i, (name, arr) in enumerate(_sweep_json_arrays(result).items()):
        fh.write((", " if i else "").encode("ascii") + json.dumps(name).encode("ascii") + b": ")
        _stream_array(fh, arr)
    fh.write(b"}}")


def _stream_array(fh: BinaryIO, a: np.ndarray) -> None:
    if a.ndim <= 1 or a.size <= _JSON_CHUNK:
        fh.write(json.dumps(_json_array(a), allow_nan=False).encode("ascii"))
        return
    fh.write(b"[")
    for i in range(a.shape[0]):
        if i:
            fh.write(b", ")
        _stream_array(fh, a[i])
    fh.write(b"]")


def write_sweep(path: str | Path, result: Any) -> Path:
    """Write a :class:`~implicit_viz.core.sweep.SweepResult` to ``.npz`` (arrays, with the
    metadata as a JSON string) or ``.json`` (streamed; refused above
    :data:`MAX_SWEEP_JSON_BYTES`). Atomic; raises :class:`ExportError` naming the path."""
    if Path(path).suffix.lower() == ".json":
        check_sweep_json(result, path)
    return write_file(
        path,
        {
            ".npz": lambda fh: _npz(fh, result.arrays()),
            ".json": lambda fh: stream_sweep_json(fh, result),
        },
    )


def _json_array(a: np.ndarray) -> Any:
    """``a.tolist()`` with non-finite floats as None (vectorised for float arrays)."""
    if a.dtype.kind != "f" or not a.ndim:
        return json_safe(a.tolist())
    bad = ~np.isfinite(a)
    if not bad.any():
        return a.tolist()
    obj = a.astype(object)
    obj[bad] = None
    return obj.tolist()


GRAD_SUFFIXES = (".csv", ".npz", ".json")


def grad_csv(report: Any) -> str:
    """A gradient-lab report as CSV: ``#`` lines (metadata JSON with the method table, the
    spec), then one row per curve and ``k``: ``method, k, rel_error, cosine, memory_bytes,
    forward_residual, backward_residual``."""
    buf = io.StringIO()
    meta = report.metadata()
    spec_toml = meta.pop("spec")
    meta["methods"] = [
        {k: v for k, v in m.items() if k != "gradient"} for m in report.to_dict()["methods"]
    ]
    buf.write(
        f"# implicit_viz gradient lab ({meta['format']}); metadata as JSON on the next line\n"
    )
    buf.write("# " + json.dumps(json_safe(meta), allow_nan=False) + "\n")
    for line in spec_toml.splitlines():
        buf.write("# spec> " + line + "\n")
    cols = (
        "method",
        "k",
        "rel_error",
        "cosine",
        "memory_bytes",
        "forward_residual",
        "backward_residual",
    )
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in report.curve_rows():
        writer.writerow([_csv_num(row[c]) if isinstance(row[c], float) else row[c] for c in cols])
    return buf.getvalue()


def write_grad_report(path: str | Path, report: Any) -> Path:
    """Write a :class:`~implicit_viz.core.gradients.GradReport` to .csv, .npz or .json."""
    return write_file(
        path,
        {
            ".csv": lambda fh: _text(fh, grad_csv(report)),
            ".npz": lambda fh: _npz(fh, report.arrays()),
            ".json": lambda fh: _json(fh, report.to_dict(), indent=1),
        },
    )
