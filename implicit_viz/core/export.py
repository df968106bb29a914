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
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from implicit_viz import __version__
from implicit_viz.core.jsonsafe import json_safe
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
)


class ExportError(OSError):
    """A file could not be written (bad path, no permission, unknown format)."""


def metadata(spec: Spec | None, results: Sequence[SolveResult]) -> dict[str, Any]:
    """The self-description every export carries."""
    first = results[0] if results else None
    return {
        "format": TRACE_FORMAT,
        "implicit_viz_version": __version__,
        "spec_name": spec.name if spec else None,
        "spec": spec.to_toml() if spec else None,
        "options": first.options.to_dict() if first else None,
        "solvers": {r.solver: r.solver_options for r in results},
        "device": first.device if first else None,
        "dtype": first.dtype if first else None,
        "status_codes": {str(k): v for k, v in status_names().items()},
        "status_descriptions": status_descriptions(),
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


def write_file(path: str | Path, writers: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write ``path`` with the writer registered for its suffix (``{".npz": fn, ...}``).

    Raises :class:`ExportError` naming the path and the reason: an unknown suffix, a missing
    folder, no permission, a full disk.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in writers:
        raise ExportError(
            f"cannot write '{p}': unknown format '{suffix or '(none)'}'; use {', '.join(writers)}"
        )
    try:
        writers[suffix](p)
    except ExportError:
        raise
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot write '{p}': {_reason(exc)}") from None
    return p


def write_npz(p: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Compressed NPZ of ``arrays``."""
    with _open_binary(p) as fh:
        np.savez_compressed(fh, **arrays)


def write_json(p: Path, doc: Any, indent: int | None = None) -> None:
    """Strict JSON (NaN and inf are errors: convert them to null first)."""
    _write_text(p, json.dumps(doc, indent=indent, allow_nan=False))


def write_trace(path: str | Path, spec: Spec | None, results: Sequence[SolveResult]) -> Path:
    """Write results to ``path``; the format follows the suffix (.csv, .npz, .json).

    Raises :class:`ExportError` naming the path and the reason when it cannot be written.
    """
    return write_file(
        path,
        {
            ".csv": lambda p: _write_text(p, trace_csv(spec, results)),
            ".npz": lambda p: write_npz(p, trace_arrays(spec, results)),
            ".json": lambda p: write_json(p, trace_json(spec, results), indent=1),
        },
    )


def _write_text(p: Path, text: str) -> None:
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"cannot write '{p}': {_reason(exc)}") from None


def _open_binary(p: Path):
    try:
        return p.open("wb")
    except OSError as exc:
        raise ExportError(f"cannot write '{p}': {_reason(exc)}") from None


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


def sweep_json(result: Any) -> dict[str, Any]:
    """A sweep as JSON-ready data: metadata, summary and every per-cell array (NaN -> null)."""
    out = result.metadata()
    out["summary"] = result.summary()
    arrays = result.arrays()
    out["arrays"] = {
        k: _json_array(v) for k, v in arrays.items() if k not in ("metadata", "status_names")
    }
    return out


def write_sweep(path: str | Path, result: Any) -> Path:
    """Write a :class:`~implicit_viz.core.sweep.SweepResult` to ``.npz`` (arrays, with the
    metadata as a JSON string) or ``.json``. Raises :class:`ExportError` naming the path."""
    return write_file(
        path,
        {
            ".npz": lambda p: write_npz(p, result.arrays()),
            ".json": lambda p: write_json(p, sweep_json(result)),
        },
    )


def _json_array(a: np.ndarray) -> Any:
    return json_safe(a.tolist())


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
            ".csv": lambda p: _write_text(p, grad_csv(report)),
            ".npz": lambda p: write_npz(p, report.arrays()),
            ".json": lambda p: write_json(p, report.to_dict(), indent=1),
        },
    )
