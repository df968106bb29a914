"""Resource budgets: what one request may allocate or compute, checked before it is done. Torch-free.

Every allocation whose size a user's input decides (Anderson's history, dense Jacobians, the
diagnostics' Jacobians, a spec's tensors, an export) is checked against one memory budget by
:func:`check_memory`, in the GUI and the CLI alike; a map whose single evaluation would cost more
than :data:`MAX_EVAL_FLOPS` is refused by :func:`check_flops`; files read as input are capped at
:data:`MAX_INPUT_FILE_BYTES`. Each refusal is a :class:`~implicit_viz.core.errors.LimitError` that
names the setting responsible, what it would need and the limit.

The memory budget is :data:`DEFAULT_MEMORY_BUDGET` (2 GiB); the environment variable
``IMPLICIT_VIZ_MEMORY_MB`` changes it for machines with more or less memory.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import Any

from implicit_viz.core.errors import LimitError

#: Bytes one request (a solve, a sweep's fixed state, a diagnostic, an export) may allocate.
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
#: Environment variable that overrides the budget, in MiB (e.g. ``IMPLICIT_VIZ_MEMORY_MB=8192``).
MEMORY_ENV = "IMPLICIT_VIZ_MEMORY_MB"
#: Floating-point operations one evaluation of ``f`` for one sample may cost (about 1 s here).
MAX_EVAL_FLOPS = 2e9
#: Floating-point operations a spec's spectral normalisation (an SVD, about ``4 m n min(m, n)``)
#: may cost: a 1500 x 1500 matrix (a few seconds here); 7000 x 7000 took over a minute.
MAX_SPECTRAL_NORM_FLOPS = 1.5e10
#: Floating-point operations the diagnostics of a solve (the Jacobian by autograd, then its
#: eigenvalues and 2-norm) may cost; above it they are skipped with a note.
MAX_DIAGNOSTIC_FLOPS = 2e10
#: Largest tolerance (``tol``, ``rtol``, ``period_tol``, ``div_bound`` alike): its square must stay
#: finite in float64 (the stop test compares squared norms), and nothing useful lies above it.
MAX_TOL = 1e100
#: Bytes of a spec or session file read as input.
MAX_INPUT_FILE_BYTES = 2 * 1024**2

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8}
_ITEMSIZE["complex128"] = 16


def memory_budget() -> int:
    """The memory budget in bytes: ``IMPLICIT_VIZ_MEMORY_MB`` when set to a positive number,
    else :data:`DEFAULT_MEMORY_BUDGET`. A malformed variable does not stop anything: the
    default holds, and a warning (once per value, on the ``implicit_viz`` logger: stderr in the
    CLI and the app) names it."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            mb = math.nan
        if math.isfinite(mb) and mb > 0:
            return int(mb * 1024**2)
        _warn_bad_budget(raw)
    return DEFAULT_MEMORY_BUDGET


@functools.lru_cache(maxsize=8)
def _warn_bad_budget(raw: str) -> None:
    logging.getLogger("implicit_viz").warning(
        "%s=%r is not a positive number of MiB: the default memory budget of %s holds",
        MEMORY_ENV,
        raw[:40],
        format_bytes(DEFAULT_MEMORY_BUDGET),
    )


def itemsize(dtype: Any) -> int:
    """Bytes per element of a torch or numpy dtype, or of a name such as ``"float32"``."""
    size = getattr(dtype, "itemsize", None)
    if isinstance(size, int):
        return size
    name = str(dtype).replace("torch.", "")
    return _ITEMSIZE.get(name, 8)


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``3 * 1024**3`` -> ``"3.0 GiB"``; huge sizes stay readable."""
    if not math.isfinite(n):
        return "an unbounded amount"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    if unit == "bytes":
        return f"{n:.0f} bytes"
    return f"{n:.1f} {unit}" if abs(n) < 10_000 else f"{n:.2g} {unit}"


def check_memory(
    what: str,
    nbytes: float,
    *,
    field: str | None = None,
    hint: str = "",
    budget: int | None = None,
) -> None:
    """Raise :class:`LimitError` when ``nbytes`` exceeds the budget (default :func:`memory_budget`).

    ``what`` names the allocation ("Anderson's history (B=1, m=1000000000, dim=1, float64)"),
    ``field`` the setting that sizes it, ``hint`` what to lower. Call it *before* allocating.
    """
    limit = memory_budget() if budget is None else budget
    if not nbytes <= limit:  # NaN sizes are refused too
        tail = f"; {hint}" if hint else ""
        raise LimitError(
            f"{what} would take {format_bytes(nbytes)}, over the memory limit of "
            f"{format_bytes(limit)}{tail}",
            field=field,
        )


def check_flops(what: str, flops: float, *, field: str | None = None, hint: str = "") -> None:
    """Raise :class:`LimitError` when one evaluation costs more than :data:`MAX_EVAL_FLOPS`."""
    check_cost(what, flops, MAX_EVAL_FLOPS, field=field, hint=hint)


def check_cost(
    what: str, flops: float, limit: float, *, field: str | None = None, hint: str = ""
) -> None:
    """Raise :class:`LimitError` when ``flops`` (NaN included) exceeds ``limit``."""
    if not flops <= limit:
        tail = f"; {hint}" if hint else ""
        raise LimitError(
            f"{what} costs about {flops:.2g} floating-point operations, over the limit of "
            f"{limit:.2g} (about a second here){tail}",
            field=field,
        )


def check_count(
    what: str, n: float, limit: int, *, field: str | None = None, hint: str = ""
) -> None:
    """Raise :class:`LimitError` when a count the user chose (cells, entries, steps) is over
    ``limit`` (or not a finite number)."""
    if not (isinstance(n, (int, float)) and math.isfinite(n) and n <= limit):
        shown = f"{n:,}" if isinstance(n, int) else f"{n:.3g}" if isinstance(n, float) else repr(n)
        tail = f"; {hint}" if hint else ""
        raise LimitError(f"{what} is {shown}, over the limit of {limit:,}{tail}", field=field)
