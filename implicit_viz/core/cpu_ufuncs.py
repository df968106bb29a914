"""NumPy's vectorised transcendental functions as a CPU fast path for the expression compiler.

On the CPU, PyTorch evaluates ``tanh`` with SLEEF's 1-ulp kernel, which on the machines this
project is measured on costs about 1.4-2.9 ns per float32 element against 0.37 ns for NumPy's
SIMD ``np.tanh``: NumPy is 4-8 times faster (``benchmarks/bench_sweep.py`` measures both on the
same vectors in its "building blocks of one step" table); the map's ``tanh`` was the largest
single cost of a sweep. A few other functions show the same gap (see
:data:`NUMPY_FASTER`, measured on ``(131072,)`` tensors, both float dtypes).

:func:`cpu_fast` wraps a torch function so that a CPU float32/float64 tensor that autograd
does not track is evaluated by the NumPy ufunc, wrapping NumPy's result as a torch tensor
(no copy: they share memory). Everything else (CUDA, other dtypes, tensors that need a
gradient, tensors with a lazy negation bit) goes to torch, so the Jacobians, Newton's steps and
the implicit gradients are unchanged. The two agree to a few ulps (``tests/core/test_cpu_ufuncs.py``
checks every wrapped function against a float64 reference); NumPy's floating-point warnings are
silenced, its results for NaN, inf and out-of-domain inputs are torch's (NaN, +-inf).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: Expression function name -> NumPy ufunc, for the functions where NumPy was faster than torch
#: on this project's CPU in both float32 and float64 (``benchmarks/bench_sweep.py`` prints the
#: tanh figure). ``sin``/``cos``/``exp``/``sqrt``/``log1p`` stay with torch: NumPy was slower in
#: at least one dtype.
NUMPY_FASTER: dict[str, np.ufunc] = {
    "tanh": np.tanh,
    "atan": np.arctan,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "log": np.log,
}

_FLOATS = (torch.float32, torch.float64)
#: Ufuncs that never raise a floating-point warning, so they skip ``np.errstate`` (about 0.7 us).
_SILENT = frozenset({np.tanh, np.arctan})


def numpy_eligible(t: Any) -> bool:
    """Whether :func:`cpu_fast` hands ``t`` to NumPy: a plain CPU float32/float64 tensor of one
    or more dimensions, that autograd does not track (in the current grad mode), without a lazy
    negation bit."""
    return (
        type(t) is torch.Tensor
        and t.is_cpu
        and t.dtype in _FLOATS
        and t.ndim > 0
        and not t.is_neg()
        and not (t.requires_grad and torch.is_grad_enabled())
    )


def cpu_fast(torch_fn: Callable[..., torch.Tensor], ufunc: np.ufunc) -> Callable[..., Any]:
    """``torch_fn`` with ``ufunc`` standing in for it on eligible CPU tensors (see module doc).

    The result has the input's shape and dtype. The NumPy path costs about 1 us more per call
    than torch on a tiny tensor and is several times faster on a large one."""
    silent = ufunc in _SILENT

    def fn(t: Any) -> Any:
        if torch.compiler.is_compiling() or not numpy_eligible(t):
            return torch_fn(t)
        a = t.detach().numpy() if t.requires_grad else t.numpy()
        if silent:
            return torch.from_numpy(ufunc(a))
        with np.errstate(all="ignore"):
            return torch.from_numpy(ufunc(a))

    fn.__name__ = getattr(torch_fn, "__name__", "fn")
    fn.__doc__ = f"{fn.__name__} via NumPy's {ufunc.__name__} on CPU tensors without grad."
    return fn
