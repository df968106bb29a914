"""The gradient lab: dL/dtheta of a loss of the fixed point ``z*``, by every method, against a
reference.

For a spec, a scalar loss ``L(z*)`` and the quantities ``theta`` to differentiate (any of the
spec's params and tensors), :func:`gradient_lab` computes the gradient by

- ``unrolled``: backprop through ``k`` steps of the forward solver from ``z0``, every
  ``k = 1..K``;
- ``implicit_exact``: the implicit function theorem, ``(I - J)^T u = dL/dz*`` solved as a dense
  linear system, then ``dL/dtheta = u^T df/dtheta + dL/dtheta|_direct`` (``J = df/dz`` at ``z*``);
- ``implicit_fixed_point`` / ``implicit_anderson``: the same ``u`` from ``u = J^T u + dL/dz*``
  by fixed-point iteration / Anderson acceleration from ``u = 0``, with vector-Jacobian products
  only, every number of backward steps ``1..K`` (one step gives ``u = dL/dz*``);
- ``jacobian_free``: ``u = dL/dz*`` (no linear solve at all);
- ``phantom``: backprop through ``k`` damped steps ``z <- (1 - lam) z + lam f(z)`` from ``z*``

and compares each with a **reference**: a fresh float64 compile, ``z*`` converged to ``1e-12``
(then polished by Newton), the exact implicit gradient, cross-checked by central finite
differences. Per method: relative error and cosine similarity to the reference, wall time and
memory; for unrolled, iterative and phantom methods the whole curve over ``k``. The report also carries the forward residual at which
the gradients were taken, the spectral radius of ``J`` and the smallest singular value of
``I - J`` at ``z*``, and an ``ill_posed`` flag when ``z*`` is not an attracting fixed point or
``I - J`` is near singular: then the implicit numbers are not to be trusted.

Memory is the number of bytes autograd saves for the backward pass while a method builds its
graph (``torch.autograd.graph.saved_tensors_hooks``; every distinct storage once; the map's own
params, tensors and constants left out, since they exist anyway), which works on any device: for
unrolled backprop it grows with ``k``, for the implicit methods it is one evaluation of ``f`` at
``z*`` (plus the graph of the ``D x D`` Jacobian for the exact method). Solver work buffers that
autograd does not hold (Anderson's history, ``2 m D`` numbers; the dense ``D x D`` matrix) are not
counted. On CUDA the report also gives the peak of ``torch.cuda.max_memory_allocated`` over one
timed run of the method.

Everything a report holds is plain data (numpy arrays, numbers, strings).

The package, one job per module: ``request`` (:class:`GradRequest`), ``report`` (the report
types), ``meter`` (saved-tensor bytes and timing), ``binding`` (the map with differentiable
leaves, the loss), ``registry`` and ``methods`` (the methods, each registered once with its
label and colour), ``reference`` (the float64 reference), ``compare`` (errors, curves, rates),
``cancel`` (polling the caller's cancel callback) and ``lab`` (:func:`gradient_lab`).
"""

from __future__ import annotations

from implicit_viz.core.driver import solve  # noqa: F401  (kept importable from here)
from implicit_viz.core.errors import Cancelled
from implicit_viz.core.gradients.binding import LOSSES, loss_expression
from implicit_viz.core.gradients.compare import fit_rate
from implicit_viz.core.gradients.lab import SINGULAR_REL, gradient_lab
from implicit_viz.core.gradients.meter import SavedTensorMeter
from implicit_viz.core.gradients.methods import CURVE_METHODS, METHODS
from implicit_viz.core.gradients.reference import REF_MAX_ITER, REF_TOL
from implicit_viz.core.gradients.registry import (
    GradMethod,
    available_methods,
    method_info,
    register_method,
)
from implicit_viz.core.gradients.report import (
    GRAD_FORMAT,
    FDCheck,
    ForwardInfo,
    GradCurve,
    GradReport,
    MethodResult,
    Reference,
    WrtInfo,
)
from implicit_viz.core.gradients.request import MAX_UNROLL, GradRequest

__all__ = [
    "CURVE_METHODS",
    "GRAD_FORMAT",
    "LOSSES",
    "MAX_UNROLL",
    "METHODS",
    "REF_MAX_ITER",
    "REF_TOL",
    "SINGULAR_REL",
    "Cancelled",
    "FDCheck",
    "ForwardInfo",
    "GradCurve",
    "GradMethod",
    "GradReport",
    "GradRequest",
    "MethodResult",
    "Reference",
    "SavedTensorMeter",
    "WrtInfo",
    "available_methods",
    "fit_rate",
    "gradient_lab",
    "loss_expression",
    "method_info",
    "register_method",
]
