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
differences. Per method: relative
error and cosine similarity to the reference, wall time and memory; for unrolled, iterative and
phantom methods the whole curve over ``k``. The report also carries the forward residual at which
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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.device import resolve_device, resolve_dtype
from implicit_viz.core.driver import resolve_solver, solve
from implicit_viz.core.errors import LimitError, SolverError, SpecError
from implicit_viz.core.expr import CompiledExpression, compile_expression, constant_key
from implicit_viz.core.jacobians import jacobian_batch_last, jacobian_bytes
from implicit_viz.core.jsonsafe import json_safe
from implicit_viz.core.limits import check_memory
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.solvers.base import Solver, eigenvalues
from implicit_viz.core.spec import Spec
from implicit_viz.core.status import Status

log = logging.getLogger(__name__)

GRAD_FORMAT = "implicit_viz.grad/1"
#: Methods in table order.
METHODS = (
    "unrolled",
    "implicit_exact",
    "implicit_fixed_point",
    "implicit_anderson",
    "jacobian_free",
    "phantom",
)
#: Methods with a curve over k (steps of the unroll or of the backward iteration).
CURVE_METHODS = ("unrolled", "implicit_fixed_point", "implicit_anderson", "phantom")
#: Built-in losses; anything else is an expression in the spec's language.
LOSSES = {
    "sum": "sum(z)",
    "l2": "0.5 * sum(square(z - target))",
}
#: Below this smallest singular value of ``I - J`` (relative to the largest) the implicit
#: gradient is called ill-posed.
SINGULAR_REL = 1e-6
REF_TOL = 1e-12
REF_MAX_ITER = 10_000
MAX_UNROLL = 5_000


# ------------------------------------------------------------------------------------------------
# Request and report
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradRequest:
    """What to differentiate, how, and with which settings.

    Attributes
    ----------
    spec : Spec
        The map.
    wrt : tuple of str
        Params and tensors of the spec to differentiate with respect to.
    loss : str
        ``"sum"`` (``sum(z*)``), ``"l2"`` (``0.5 ||z* - target||^2`` with ``target`` the spec's
        tensor of that name, or zeros when it has none) or an expression in the spec's language
        over ``z`` and the spec's names that gives one number, e.g. ``"dot(z, x[0:2])"``.
    solver, solver_options
        The forward solver (a registered name with its options, or an instance), unrolled by
        the ``unrolled`` method; it must be differentiable by autograd (see
        :func:`gradient_lab`).
    unroll_max : int
        ``K``: the curves run over ``k = 1..K`` unrolled / backward steps (cost grows as ``K^2``
        for the unrolled curve: one backward pass per ``k``).
    tol, max_iter
        The forward solve that gives ``z*`` to the implicit and phantom methods. ``tol`` None:
        1e-10 in float64, 1e-5 in float32.
    device, dtype
        Where and in which precision the methods run (the reference is always float64).
    phantom_steps, phantom_lam
        Phantom gradient: ``k`` steps of ``z <- (1 - lam) z + lam f(z)`` from ``z*``.
    backward_m, backward_lam
        Anderson options of the ``implicit_anderson`` backward solve.
    backward_tol : float or None
        The backward iterations stop when ``||J^T u + g - u|| <= backward_tol ||g||``
        (``g = dL/dz*``); None: 100 eps of the dtype. The curves then hold the last value.
    fd_max_entries, fd_samples
        Finite-difference check of the reference: every entry of a param/tensor with at most
        ``fd_max_entries`` entries; of a larger one, ``fd_samples`` random entries and one random
        direction.
    seed : int
        Seeds the random finite-difference entries and directions.
    time_repeats : int
        Each method is timed this many times (without the memory hooks); the best is reported.
    """

    spec: Spec
    wrt: tuple[str, ...]
    loss: str = "sum"
    solver: str | Solver = "fixed_point"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    unroll_max: int = 50
    tol: float | None = None
    max_iter: int = 1000
    device: str = "cpu"
    dtype: str = "float64"
    phantom_steps: int = 5
    phantom_lam: float = 0.5
    backward_m: int = 5
    backward_lam: float = 1e-4
    backward_tol: float | None = None
    fd_max_entries: int = 16
    fd_samples: int = 4
    seed: int = 0
    time_repeats: int = 3

    def __post_init__(self) -> None:
        wrt = (self.wrt,) if isinstance(self.wrt, str) else tuple(self.wrt)
        object.__setattr__(self, "wrt", tuple(dict.fromkeys(wrt)))
        object.__setattr__(self, "solver_options", dict(self.solver_options))
        if not self.wrt:
            raise SpecError("name at least one param or tensor to differentiate", field="wrt")
        if not 1 <= self.unroll_max <= MAX_UNROLL:
            raise SolverError(f"unroll_max must lie in 1..{MAX_UNROLL}, got {self.unroll_max}")
        if self.tol is not None and not (self.tol > 0 and math.isfinite(self.tol)):
            raise SolverError(f"tol must be a positive number, got {self.tol}")
        if not 0 <= self.max_iter <= 10_000_000:
            raise SolverError(f"max_iter must lie in 0..10000000, got {self.max_iter}")
        if not 1 <= self.phantom_steps <= MAX_UNROLL:
            raise SolverError(
                f"phantom_steps must lie in 1..{MAX_UNROLL}, got {self.phantom_steps}"
            )
        if not 0 < self.phantom_lam <= 1:
            raise SolverError(f"phantom_lam must lie in (0, 1], got {self.phantom_lam}")
        if self.backward_tol is not None and not self.backward_tol >= 0:
            raise SolverError(f"backward_tol must be non-negative, got {self.backward_tol}")
        if self.fd_max_entries < 0 or self.fd_samples < 0:
            raise SolverError("fd_max_entries and fd_samples must be non-negative")
        if self.time_repeats < 1:
            raise SolverError(f"time_repeats must be at least 1, got {self.time_repeats}")

    def options(self) -> dict[str, Any]:
        """The settings as plain data (the spec left out)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "spec"}
        out["wrt"] = list(self.wrt)
        if isinstance(self.solver, Solver):
            out["solver"], out["solver_options"] = self.solver.name, self.solver.options()
        else:
            out["solver_options"] = dict(self.solver_options)
        return out


@dataclass(frozen=True)
class WrtInfo:
    """One differentiated quantity: its place ``[offset, offset + size)`` in the flat gradient."""

    name: str
    kind: str  # "param" or "tensor"
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class MethodResult:
    """One method's gradient (flat, ``(N,)`` float64) and how it compares with the reference.

    ``steps``: unrolled / backward / phantom steps taken (0 for the dense solve, 1 for
    Jacobian-free). ``time_s``: best wall time of the method's own work (for the implicit and
    phantom methods the shared forward solve is not included, see ``GradReport.forward``).
    ``memory_bytes``: bytes saved for backward beyond the map's own values (module docstring).
    ``device_peak_bytes``: CUDA only (growth of ``torch.cuda.max_memory_allocated``), else None.
    """

    method: str
    gradient: np.ndarray
    rel_error: float
    cosine: float
    time_s: float
    memory_bytes: int
    device_peak_bytes: int | None
    steps: int
    note: str = ""


@dataclass(frozen=True)
class GradCurve:
    """A method over ``k = 1..K`` steps; every array ``(K,)``.

    ``residual`` is the forward residual ``||f(z_k) - z_k||`` of the ``k``-step pass for
    ``unrolled`` and ``phantom`` (``residual_kind = "forward"``), the backward residual
    ``||J^T u_k + g - u_k||`` for the iterative implicit methods (``"backward"``).
    ``rate``: geometric decay rate per step (:func:`fit_rate`) of ``rel_error`` for
    ``unrolled`` (as ``k rho^k``) and ``phantom``, of the backward residual for the iterative
    implicit methods (their error against the reference stops at the accuracy of the forward
    ``z*``, the residual does not). ``predicted_rate``: what linear theory says (``rho(J)`` for
    naive iteration, forward or backward; ``max |1 - beta + beta lambda|`` for damped steps),
    NaN where it says nothing.
    """

    method: str
    k: np.ndarray
    rel_error: np.ndarray
    cosine: np.ndarray
    memory_bytes: np.ndarray
    residual: np.ndarray
    residual_kind: str
    rate: float
    predicted_rate: float
    steps_used: int


@dataclass(frozen=True)
class FDCheck:
    """Central finite differences of ``L(z*(theta))`` against the reference gradient.

    ``labels[i]`` names check ``i``: an entry (``"W[0,1]"``, ``"a"``) or a random unit
    direction inside one quantity (``"W.dir"``); ``fd`` and ``exact`` ``(n,)``; ``rel_error`` =
    ``||fd - exact|| / ||exact||`` (absolute when ``exact`` is zero).
    """

    labels: tuple[str, ...]
    fd: np.ndarray
    exact: np.ndarray
    rel_error: float
    step: float


@dataclass(frozen=True)
class Reference:
    """The float64 reference: exact implicit gradient at ``z*`` converged to 1e-12."""

    gradient: np.ndarray
    z: np.ndarray
    residual: float
    status: str
    solver: str
    loss: float
    fd: FDCheck
    time_s: float


@dataclass(frozen=True)
class ForwardInfo:
    """The forward solve whose ``z*`` the implicit and phantom methods use."""

    solver: str
    tol: float
    max_iter: int
    status: str
    iterations: int
    residual: float
    time_s: float
    z: np.ndarray
    loss: float


@dataclass(frozen=True)
class GradReport:
    """Everything :func:`gradient_lab` found; plain data.

    Gradients are flat ``(N,)`` over ``wrt`` in order (each row-major);
    :meth:`unflatten` splits one back into named arrays. ``spectral_radius`` of ``J = df/dz`` and
    ``sigma_min`` / ``sigma_max`` of ``I - J`` are taken at the reference ``z*``.
    """

    request: GradRequest
    loss_text: str
    wrt: tuple[WrtInfo, ...]
    device: str
    dtype: str
    forward: ForwardInfo
    reference: Reference
    methods: tuple[MethodResult, ...]
    curves: tuple[GradCurve, ...]
    spectral_radius: float
    sigma_min: float
    sigma_max: float
    ill_posed: bool
    ill_posed_message: str
    warnings: tuple[str, ...]

    @property
    def sigma_min_rel(self) -> float:
        return self.sigma_min / self.sigma_max if self.sigma_max > 0 else float("nan")

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(name)

    def curve(self, name: str) -> GradCurve:
        for c in self.curves:
            if c.method == name:
                return c
        raise KeyError(name)

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``(N,)`` -> ``{name: array of the quantity's shape}``."""
        return {
            w.name: np.asarray(flat[w.offset : w.offset + w.size]).reshape(w.shape)
            for w in self.wrt
        }

    def metadata(self) -> dict[str, Any]:
        """The self-description every export carries: spec (TOML), request, summary numbers."""
        return {
            "format": GRAD_FORMAT,
            "spec_name": self.request.spec.name,
            "spec": self.request.spec.to_toml(),
            "options": self.request.options(),
            "loss": self.loss_text,
            "wrt": [
                {"name": w.name, "kind": w.kind, "shape": list(w.shape), "offset": w.offset}
                for w in self.wrt
            ],
            "device": self.device,
            "dtype": self.dtype,
            "spectral_radius": self.spectral_radius,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "ill_posed": self.ill_posed,
            "ill_posed_message": self.ill_posed_message,
            "warnings": list(self.warnings),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metadata, forward, reference (with the FD check), methods, curves.
        Non-finite numbers become None."""
        fwd, ref = self.forward, self.reference
        out = self.metadata()
        out["forward"] = {
            "solver": fwd.solver,
            "tol": fwd.tol,
            "max_iter": fwd.max_iter,
            "status": fwd.status,
            "iterations": fwd.iterations,
            "residual": fwd.residual,
            "time_s": fwd.time_s,
            "z": fwd.z.tolist(),
            "loss": fwd.loss,
        }
        out["reference"] = {
            "gradient": ref.gradient.tolist(),
            "z": ref.z.tolist(),
            "residual": ref.residual,
            "status": ref.status,
            "solver": ref.solver,
            "loss": ref.loss,
            "time_s": ref.time_s,
            "fd": {
                "labels": list(ref.fd.labels),
                "fd": ref.fd.fd.tolist(),
                "exact": ref.fd.exact.tolist(),
                "rel_error": ref.fd.rel_error,
                "step": ref.fd.step,
            },
        }
        out["methods"] = [
            {
                "method": m.method,
                "gradient": m.gradient.tolist(),
                "rel_error": m.rel_error,
                "cosine": m.cosine,
                "time_s": m.time_s,
                "memory_bytes": m.memory_bytes,
                "device_peak_bytes": m.device_peak_bytes,
                "steps": m.steps,
                "note": m.note,
            }
            for m in self.methods
        ]
        out["curves"] = [
            {
                "method": c.method,
                "k": c.k.tolist(),
                "rel_error": c.rel_error.tolist(),
                "cosine": c.cosine.tolist(),
                "memory_bytes": c.memory_bytes.tolist(),
                "residual": c.residual.tolist(),
                "residual_kind": c.residual_kind,
                "rate": c.rate,
                "predicted_rate": c.predicted_rate,
                "steps_used": c.steps_used,
            }
            for c in self.curves
        ]
        return json_safe(out)

    def arrays(self) -> dict[str, np.ndarray]:
        """NPZ content: ``reference``, ``gradient_<method>``, ``<curve>_<column>`` arrays, the
        method table as arrays, and ``metadata`` (a JSON string of :meth:`metadata`)."""
        import json

        out: dict[str, np.ndarray] = {
            "metadata": np.array(json.dumps(json_safe(self.metadata()))),
            "reference": self.reference.gradient,
            "methods": np.array([m.method for m in self.methods]),
            "rel_error": np.array([m.rel_error for m in self.methods]),
            "cosine": np.array([m.cosine for m in self.methods]),
            "time_s": np.array([m.time_s for m in self.methods]),
            "memory_bytes": np.array([m.memory_bytes for m in self.methods], dtype=np.int64),
            "steps": np.array([m.steps for m in self.methods], dtype=np.int64),
        }
        for m in self.methods:
            out[f"gradient_{m.method}"] = m.gradient
        for c in self.curves:
            for col in ("k", "rel_error", "cosine", "memory_bytes", "residual"):
                out[f"{c.method}_{col}"] = getattr(c, col)
        return out

    def curve_rows(self) -> Iterator[dict[str, Any]]:
        """Long format, one row per curve and ``k``: ``method, k, rel_error, cosine,
        memory_bytes, forward_residual, backward_residual`` (the residual that does not apply
        is NaN)."""
        nan = float("nan")
        for c in self.curves:
            fwd = c.residual_kind == "forward"
            for i in range(c.k.shape[0]):
                r = float(c.residual[i])
                yield {
                    "method": c.method,
                    "k": int(c.k[i]),
                    "rel_error": float(c.rel_error[i]),
                    "cosine": float(c.cosine[i]),
                    "memory_bytes": int(c.memory_bytes[i]),
                    "forward_residual": r if fwd else nan,
                    "backward_residual": nan if fwd else r,
                }


# ------------------------------------------------------------------------------------------------
# Measuring: saved-tensor bytes and wall time
# ------------------------------------------------------------------------------------------------


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward inside ``with meter.active():`` blocks.

    Each distinct storage counts once (a vector saved by two operations is one tensor), and
    the storages of ``exclude`` (the map's own params, tensors and constants, which exist
    whether or not anything is differentiated) not at all. Packed tensors are held until
    :meth:`release`, so a freed address cannot be mistaken for a new tensor. ``bytes`` only
    grows: it is the peak for graphs that live until their backward pass, which is how every
    method here uses them.
    """

    def __init__(self, enabled: bool = True, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.enabled = enabled
        self.bytes = 0
        self._held: dict[Any, torch.Tensor | None] = {self._key(t)[0]: None for t in exclude}

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[Any, int]:
        try:
            storage = t.untyped_storage()
            return (t.device, storage.data_ptr()), int(storage.nbytes())
        except (RuntimeError, NotImplementedError, TypeError):
            return id(t), t.numel() * t.element_size()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key, nbytes = self._key(t)
        if key not in self._held:
            self._held[key] = t
            self.bytes += nbytes
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @contextmanager
    def active(self) -> Iterator[SavedTensorMeter]:
        if not self.enabled:
            yield self
            return
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self

    def release(self) -> None:
        """Drop the references to packed tensors (the count stays)."""
        for key in self._held:
            self._held[key] = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Measured:
    value: Any
    time_s: float
    memory_bytes: int
    device_peak_bytes: int | None


def _measure(
    fn: Callable[[SavedTensorMeter], Any],
    device: torch.device,
    repeats: int,
    exclude: Iterable[torch.Tensor] = (),
) -> _Measured:
    """Run ``fn`` once with a meter (its value and memory), then ``repeats`` times timed
    without one (best time; on CUDA the peak allocation of the first timed run)."""
    meter = SavedTensorMeter(exclude=exclude)
    value = fn(meter)
    meter.release()
    best = math.inf
    peak: int | None = None
    off = SavedTensorMeter(enabled=False)
    for i in range(repeats):
        if device.type == "cuda" and i == 0:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        _sync(device)
        t0 = time.perf_counter()
        fn(off)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        if device.type == "cuda" and i == 0:
            peak = int(torch.cuda.max_memory_allocated(device) - base)
    return _Measured(value, best, meter.bytes, peak)


# ------------------------------------------------------------------------------------------------
# The map with differentiable leaves, and the loss
# ------------------------------------------------------------------------------------------------


def loss_expression(loss: str, spec: Spec) -> str:
    """The expression text of a loss: ``"sum"`` -> ``sum(z)``; ``"l2"`` ->
    ``0.5 * sum(square(z - target))`` (``0.5 * sum(square(z))`` when the spec has no tensor
    named ``target``); anything else is taken as an expression."""
    text = loss.strip()
    if text == "l2" and "target" not in {t.name for t in spec.tensors}:
        return "0.5 * sum(square(z))"
    return LOSSES.get(text, text)


@dataclass(frozen=True)
class _Bound:
    """A compiled map whose ``wrt`` values are leaves that require grad, and its loss."""

    fmap: FixedPointMap
    leaves: tuple[torch.Tensor, ...]
    wrt: tuple[WrtInfo, ...]
    loss_expr: CompiledExpression
    loss_consts: Mapping[str, torch.Tensor]

    @property
    def f(self):
        return self.fmap.as_batch_last()

    @property
    def size(self) -> int:
        return sum(w.size for w in self.wrt)

    def loss(self, z: torch.Tensor, fmap: FixedPointMap | None = None) -> torch.Tensor:
        """The loss at ``z: (D, B)`` batch-last -> ``(B,)``."""
        fm = fmap or self.fmap
        env: dict[str, Any] = {**fm._constants, **self.loss_consts, **fm.values, "z": z}
        for name, expr in fm._exprs:
            env[name] = expr(env)
        out = self.loss_expr(env)
        return out.expand(z.shape[-1]) if out.shape[-1] != z.shape[-1] else out

    def flat(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-leaf gradients (``(*shape, 1)`` or None) -> ``(N,)``."""
        parts = []
        for g, leaf in zip(grads, self.leaves, strict=True):
            g = torch.zeros_like(leaf) if g is None else g
            parts.append(g[..., 0].reshape(-1))
        return torch.cat(parts)

    def grad(
        self,
        out: torch.Tensor,
        *,
        grad_outputs: torch.Tensor | None = None,
        retain: bool = False,
    ) -> torch.Tensor:
        """``d out / d theta`` (with ``grad_outputs`` for a non-scalar ``out``) -> ``(N,)``."""
        if not out.requires_grad:
            return self.leaves[0].new_zeros(self.size)
        grads = torch.autograd.grad(
            out, self.leaves, grad_outputs=grad_outputs, retain_graph=retain, allow_unused=True
        )
        return self.flat(grads)

    def values_flat(self) -> torch.Tensor:
        """The current values of the ``wrt`` quantities, flat ``(N,)``."""
        return self.flat([v.detach() for v in self.leaves])


def _bind(spec: Spec, wrt: Sequence[str], loss_text: str, device: Any, dtype: Any) -> _Bound:
    """Compile ``spec`` and make each ``wrt`` value a leaf; check and compile the loss."""
    params = [p.name for p in spec.params]
    tensors = [t.name for t in spec.tensors]
    infos: list[WrtInfo] = []
    offset = 0
    for name in wrt:
        if name in params:
            shape: tuple[int, ...] = ()
            kind = "param"
        elif name in tensors:
            shape = spec.tensor(name).shape
            kind = "tensor"
        else:
            raise SpecError(
                f"no param or tensor named '{name}' to differentiate "
                f"(params: {', '.join(params) or 'none'}; tensors: {', '.join(tensors) or 'none'})",
                field="wrt",
            )
        infos.append(WrtInfo(name, kind, shape, offset))
        offset += math.prod(shape)

    fmap = compile_spec(spec, device=device, dtype=dtype)
    leaves = tuple(fmap.values[n].detach().clone().requires_grad_(True) for n in wrt)
    fm = replace(fmap, values={**fmap.values, **dict(zip(wrt, leaves, strict=True))})

    names = {"z", *params, *tensors, *(n for n, _ in spec.define)}
    expr = compile_expression(loss_text, names, field="loss")
    consts = {
        constant_key(c): torch.tensor([c], dtype=fm.dtype, device=fm.device) for c in expr.constants
    }
    bound = _Bound(fm, leaves, tuple(infos), expr, consts)
    z = fm.start(1).T.contiguous()
    try:
        with torch.no_grad():
            value = bound.loss(z)
    except SpecError as exc:
        raise exc.with_field("loss") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise SpecError(f"evaluating the loss failed: {exc}", field="loss") from None
    if not isinstance(value, torch.Tensor) or value.ndim != 1:
        shape = tuple(value.shape[:-1]) if isinstance(value, torch.Tensor) else ()
        raise SpecError(
            f"the loss must be one number, but '{loss_text}' has shape {shape}; "
            "reduce it with sum(...), mean(...), norm(...) or dot(...)",
            field="loss",
        )
    return bound


# ------------------------------------------------------------------------------------------------
# The methods
# ------------------------------------------------------------------------------------------------


@dataclass
class _Linearized:
    """``f`` and ``L`` at a fixed ``z*``: ``g = dL/dz*`` (D, 1), the direct ``dL/dtheta`` (N,),
    and the graph of ``f(z*)`` kept for vector-Jacobian products."""

    bound: _Bound
    zs: torch.Tensor
    fz: torch.Tensor
    g: torch.Tensor
    direct: torch.Tensor

    def vjp_z(self, u: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for ``u: (D, 1)``."""
        if not self.fz.requires_grad:
            return torch.zeros_like(u)
        (out,) = torch.autograd.grad(
            self.fz, self.zs, grad_outputs=u, retain_graph=True, allow_unused=True
        )
        return torch.zeros_like(u) if out is None else out

    def theta_grad(self, u: torch.Tensor) -> torch.Tensor:
        """``u^T df/dtheta + dL/dtheta|_direct`` -> ``(N,)``."""
        return self.bound.grad(self.fz, grad_outputs=u, retain=True) + self.direct


def _linearize(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> _Linearized:
    zs = z_star.detach().clone().requires_grad_(True)
    with meter.active():
        fz = b.f(zs)
    loss = b.loss(zs).sum()
    n = b.size
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, [zs, *b.leaves], allow_unused=True)
        g = torch.zeros_like(zs) if grads[0] is None else grads[0]
        direct = b.flat(grads[1:])
    else:
        g, direct = torch.zeros_like(zs), zs.new_zeros(n)
    return _Linearized(b, zs, fz, g.detach(), direct)


def _solve_dense(lin: _Linearized, meter: SavedTensorMeter) -> torch.Tensor:
    """``u`` from ``(I - J)^T u = g``, with ``J`` by autograd (its graph is metered)."""
    with meter.active():
        jac = jacobian_batch_last(lin.bound.f, lin.zs.detach())[..., 0]
    eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
    u, info = torch.linalg.solve_ex((eye - jac).T, lin.g)
    if bool(info.any()):
        u = torch.full_like(lin.g, float("nan"))
    return u


def _exact(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> torch.Tensor:
    lin = _linearize(b, z_star, meter)
    return lin.theta_grad(_solve_dense(lin, meter))


def _jacobian_free(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> torch.Tensor:
    lin = _linearize(b, z_star, meter)
    return lin.theta_grad(lin.g)


class _AdjointMap:
    """``u -> J^T u + g`` at ``z*``, batch-last ``(D, 1) -> (D, 1)``, one VJP per call."""

    def __init__(self, lin: _Linearized) -> None:
        self.lin = lin

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.lin.vjp_z(u) + self.lin.g

    def take(self, index: torch.Tensor) -> _AdjointMap:
        return self


@dataclass
class _Run:
    """One run of a method: its gradient ``(N,)`` and steps; with ``curve``, per step ``k`` the
    gradient, the bytes saved so far and the forward or backward residual."""

    gradient: torch.Tensor
    steps: int
    grads: list[torch.Tensor] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)


def _iterative(
    b: _Bound,
    z_star: torch.Tensor,
    solver: Solver,
    steps: int,
    rel_tol: float,
    meter: SavedTensorMeter,
    curve: bool,
) -> _Run:
    """Solve ``u = J^T u + g`` from ``u = 0`` with ``solver``'s steps (VJPs only), at most
    ``steps`` steps, stopping once ``||J^T u + g - u|| <= rel_tol ||g||`` or non-finite."""
    lin = _linearize(b, z_star, meter)
    h = _AdjointMap(lin)
    thr = rel_tol * float(torch.linalg.vector_norm(lin.g))
    u = torch.zeros_like(lin.g)
    hu = lin.g.clone()  # h(0) = g
    us: list[torch.Tensor] = []
    run = _Run(u, 0)
    with torch.no_grad(), meter.active():
        state = solver.init(h, u, hu)
        while run.steps < steps:
            u, hu, state = solver.step(h, u, hu, state)
            run.steps += 1
            res = float(torch.linalg.vector_norm(hu - u))
            if curve:
                us.append(u.clone())
                run.residuals.append(res)
                run.memory.append(meter.bytes)
            if not res > thr:  # converged, or NaN
                break
    run.gradient = lin.theta_grad(u)
    run.grads = [lin.theta_grad(v) for v in us]
    return run


def _unroll(
    b: _Bound,
    solver: Solver,
    z0: torch.Tensor,
    steps: int,
    meter: SavedTensorMeter,
    curve: bool,
) -> _Run:
    """Backprop through ``steps`` steps of ``solver`` from ``z0: (D, 1)`` (not differentiated).

    With ``curve``, the gradient of ``L(z_k)``, the saved bytes and ``||f(z_k) - z_k||`` after
    every step ``k`` (one backward pass per ``k`` through the retained graph)."""
    f = b.f
    z = z0.detach()
    run = _Run(z, steps)
    with meter.active():
        fz = f(z)
        state = solver.init(f, z, fz)
    for _ in range(steps):
        with meter.active():
            z, fz, state = solver.step(f, z, fz, state)
        if curve:
            run.memory.append(meter.bytes)
            run.residuals.append(float(torch.linalg.vector_norm((fz - z).detach())))
            run.grads.append(b.grad(b.loss(z).sum(), retain=True))
    run.gradient = run.grads[-1] if curve else b.grad(b.loss(z).sum())
    return run


@dataclass(frozen=True)
class _Setup:
    """What the methods share: the bound map, the solvers, the starts ``(D, 1)``, settings."""

    bound: _Bound
    solver: Solver
    phantom: Solver
    anderson: Solver
    z0: torch.Tensor
    z_star: torch.Tensor
    k_max: int
    phantom_steps: int
    backward_tol: float
    own: tuple[torch.Tensor, ...]

    def run(self, method: str, meter: SavedTensorMeter, curve: bool = False) -> _Run:
        """Run ``method``; with ``curve``, over ``k = 1..k_max`` (unrolled, iterative,
        phantom)."""
        b, z = self.bound, self.z_star
        if method == "unrolled":
            return _unroll(b, self.solver, self.z0, self.k_max, meter, curve)
        if method == "phantom":
            steps = self.k_max if curve else self.phantom_steps
            return _unroll(b, self.phantom, z, steps, meter, curve)
        if method in ("implicit_fixed_point", "implicit_anderson"):
            slv = self.anderson if method == "implicit_anderson" else get_solver("fixed_point")
            return _iterative(b, z, slv, self.k_max, self.backward_tol, meter, curve)
        if method == "implicit_exact":
            return _Run(_exact(b, z, meter), 0)
        return _Run(_jacobian_free(b, z, meter), 1)

    def note(self, method: str) -> str:
        return {
            "unrolled": f"{self.solver.name}, {self.k_max} steps from z0",
            "implicit_exact": "dense solve of (I - J)^T u = dL/dz*",
            "implicit_fixed_point": "u = J^T u + dL/dz*, fixed-point steps",
            "implicit_anderson": f"u = J^T u + dL/dz*, Anderson m={self.anderson.m}",
            "jacobian_free": "u = dL/dz*",
            "phantom": f"{self.phantom_steps} damped steps from z*, lam={self.phantom.beta}",
        }[method]


def _check_memory(dim: int, dtype: torch.dtype, backward: Solver) -> None:
    """Refuse, before any work, a lab whose backward Anderson history or dense ``D x D``
    Jacobians (the exact method, the reference, the conditioning) exceed the memory budget."""
    backward.check_history(  # type: ignore[attr-defined]
        1, dim, dtype, field="backward_m", hint="lower the backward Anderson memory m"
    )
    need = max(jacobian_bytes(dim, 1, dt) + 3 * dim * dim * 8 for dt in (dtype, torch.float64))
    check_memory(
        f"the dense Jacobians of the gradient lab (dim {dim})",
        need,
        field="dim",
        hint="the lab compares against a dense D x D solve: use a smaller dim",
    )


def _check_unrollable(b: _Bound, solver: Solver) -> None:
    """Fail early, with a clear message, when autograd cannot go through the solver's steps."""
    try:
        _unroll(b, solver, b.fmap.start(1).T.contiguous(), 3, SavedTensorMeter(False), False)
    except RuntimeError as exc:
        why = str(exc).splitlines()[0]
        hint = "it writes its state in place" if "inplace" in why else why
        raise SolverError(
            f"unrolled backprop through '{solver.name}' is not possible: {hint}, which autograd "
            "cannot differentiate; unroll fixed_point, damped, newton or broyden instead"
        ) from None


# ------------------------------------------------------------------------------------------------
# Reference: float64, z* to 1e-12, exact implicit gradient, finite differences
# ------------------------------------------------------------------------------------------------


def _reference_solve(
    b: _Bound, request: GradRequest, hint: torch.Tensor, forward_converged: bool
) -> tuple[torch.Tensor, str, str, float]:
    """``z*`` to 1e-12. After a converged forward solve: the request's solver from ``z0`` (the
    same point, tighter), else Newton from the forward result. Otherwise Newton from the forward
    result or from ``z0``, Anderson from ``z0``, and the request's solver last. The first that
    converges wins (polished by Newton), else the lowest residual. Returns
    ``(z (D, 1), status, solver, residual)``."""
    opts = SolveOptions(
        tol=REF_TOL, rtol=1e-14, max_iter=REF_MAX_ITER, diagnostics=False, lyapunov_steps=0
    )
    own = (request.solver, {}, None)
    if isinstance(request.solver, str):
        own = (request.solver, dict(request.solver_options), None)
    polish = [("newton", {}, hint.T)] if bool(torch.isfinite(hint).all()) else []
    others = [("newton", {}, None), ("anderson", {}, None)]
    tries = [own, *polish, *others] if forward_converged else [*polish, *others, own]
    best = None
    for slv, sopts, z0 in tries:
        o = opts if slv != "newton" else replace(opts, max_iter=200)
        res = solve(b.fmap, slv, z0, options=o, solver_options=sopts)
        status = Status(int(res.status[0]))
        resid = float(res.residual[0])
        found = (res.z.T.contiguous(), status.label, res.solver, resid)
        if status == Status.CONVERGED:
            return _polish(b, found)
        if best is None or (math.isfinite(resid) and not resid >= best[3]):
            best = found
    assert best is not None
    return best


def _polish(
    b: _Bound, found: tuple[torch.Tensor, str, str, float]
) -> tuple[torch.Tensor, str, str, float]:
    """A few Newton steps from a converged ``z*``, kept where they lower the residual (to
    round-off, far below the 1e-12 the solve stopped at)."""
    opts = SolveOptions(tol=1e-300, max_iter=3, diagnostics=False, lyapunov_steps=0)
    res = solve(b.fmap, "newton", found[0].T, options=opts)
    resid = float(res.residual[0])
    if resid < found[3]:
        return res.z.T.contiguous(), found[1], f"{found[2]} + newton", resid
    return found


def _fd_check(
    b: _Bound, z_star: torch.Tensor, exact: torch.Tensor, request: GradRequest
) -> FDCheck:
    """Central differences of ``L(z*(theta))``, each ``z*(theta +- h d)`` by Newton from
    ``z*`` (all perturbations in one batch)."""
    rng = np.random.default_rng(request.seed)
    n = b.size
    labels: list[str] = []
    dirs: list[np.ndarray] = []
    for w in b.wrt:
        idx = list(np.ndindex(*w.shape)) if w.shape else [()]
        if w.size <= request.fd_max_entries:
            picks = range(w.size)
        else:
            picks = sorted(rng.choice(w.size, size=min(request.fd_samples, w.size), replace=False))
        for i in picks:
            d = np.zeros(n)
            d[w.offset + int(i)] = 1.0
            dirs.append(d)
            labels.append(w.name + (f"[{','.join(map(str, idx[int(i)]))}]" if w.shape else ""))
        if w.size > request.fd_max_entries:
            d = np.zeros(n)
            v = rng.standard_normal(w.size)
            d[w.offset : w.offset + w.size] = v / np.linalg.norm(v)
            dirs.append(d)
            labels.append(f"{w.name}.dir")
    if not dirs:
        empty = np.zeros(0)
        return FDCheck((), empty, empty, float("nan"), float("nan"))
    theta = b.values_flat().cpu().numpy()
    scale = max(1.0, float(np.abs(theta).max()))
    h = float(np.finfo(np.float64).eps ** (1 / 3)) * scale
    dmat = np.stack(dirs)  # (P, N)
    rows = np.concatenate([theta + h * dmat, theta - h * dmat])  # (2P, N)
    plain = replace(b.fmap, values={k: v.detach() for k, v in b.fmap.values.items()})
    per_row = {
        w.name: torch.as_tensor(rows[:, w.offset : w.offset + w.size]).reshape(-1, *w.shape)
        for w in b.wrt
    }
    fm = plain.with_values(**per_row)
    opts = SolveOptions(tol=1e-14, max_iter=60, diagnostics=False, lyapunov_steps=0)
    with torch.no_grad():
        solved = _newton_in_chunks(fm, z_star.T.expand(rows.shape[0], -1), opts)
        if solved is None:  # not even one perturbed copy fits the memory budget: no check
            empty = np.zeros(0)
            return FDCheck((), empty, empty, float("nan"), h)
        z_rows, residual = solved
        losses = b.loss(z_rows.T.contiguous(), fm).double().cpu().numpy()
    ok = residual.cpu().numpy() < 1e-10
    losses = np.where(ok, losses, np.nan)
    p = dmat.shape[0]
    fd = (losses[:p] - losses[p:]) / (2 * h)
    ex = dmat @ exact.double().cpu().numpy()
    return FDCheck(tuple(labels), fd, ex, _rel_error(fd, ex), h)


def _newton_in_chunks(
    fm: FixedPointMap, z0: torch.Tensor, opts: SolveOptions
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Newton on the rows of ``fm`` from ``z0: (P, D)``, in as few chunks as the memory budget
    allows (each perturbed copy of a large tensor is repeated ``D`` times by the Jacobian);
    ``(z, residual)`` or None when one row alone is over the budget."""
    total = z0.shape[0]
    chunk = total
    while True:
        try:
            parts = []
            for lo in range(0, total, chunk):
                idx = torch.arange(lo, min(lo + chunk, total))
                res = solve(fm.take(idx), "newton", z0[lo : lo + chunk], options=opts)
                parts.append((res.z, res.residual))
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        except LimitError:
            if chunk == 1:
                return None
            chunk = max(1, chunk // 2)


def _conditioning(b: _Bound, z_star: torch.Tensor) -> tuple[float, float, float, torch.Tensor]:
    """``rho(J)``, ``sigma_min(I - J)``, ``sigma_max(I - J)`` and the eigenvalues ``(1, D)``."""
    jac = jacobian_batch_last(b.f, z_star.detach())[..., 0]
    eig = eigenvalues(jac[None])
    if not bool(torch.isfinite(jac).all()):
        return math.nan, math.nan, math.nan, eig
    eye = torch.eye(jac.shape[0], dtype=jac.dtype, device=jac.device)
    sv = torch.linalg.svdvals(eye - jac)
    rho = float(eig.abs().amax())
    return rho, float(sv.min()), float(sv.max()), eig


# ------------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------------


def _rel_error(g: np.ndarray, ref: np.ndarray) -> float:
    """``||g - ref|| / ||ref||`` (the absolute error when ``ref`` is zero)."""
    diff = float(np.linalg.norm(np.asarray(g, dtype=np.float64) - ref))
    den = float(np.linalg.norm(ref))
    return diff / den if den > 0 else diff


def _cosine(g: np.ndarray, ref: np.ndarray) -> float:
    g = np.asarray(g, dtype=np.float64)
    den = float(np.linalg.norm(g) * np.linalg.norm(ref))
    return float(g @ ref) / den if den > 0 and math.isfinite(den) else float("nan")


def fit_rate(errors: np.ndarray, floor: float = 0.0, *, k_factor: bool = False) -> float:
    """Geometric decay rate of ``errors[k-1]`` over ``k = 1..K``.

    ``exp`` of the least-squares slope of ``log error`` (``log(error / k)`` with ``k_factor``)
    on the middle half of the decaying part: the steps before the curve first comes within a
    factor 30 of its smallest value (or of ``floor``). NaN with fewer than 3 points.

    ``k_factor`` suits unrolling from ``z0``: there the iterate and its derivative converge
    together and the gradient error behaves like ``C k rho^k`` (a double eigenvalue of the
    joint iteration), not ``C rho^k``.
    """
    e = np.asarray(errors, dtype=np.float64)
    finite = np.isfinite(e) & (e > 0)
    if finite.sum() < 3:
        return float("nan")
    thr = max(floor, 30 * float(e[finite].min()))
    stop = len(e)
    for i, v in enumerate(e):
        if not (np.isfinite(v) and v > thr):
            stop = i
            break
    lo, hi = stop // 4, stop - stop // 4
    if hi - lo < 3:
        return float("nan")
    k = np.arange(lo + 1, hi + 1, dtype=np.float64)
    y = np.log(e[lo:hi]) - (np.log(k) if k_factor else 0.0)
    slope = np.polyfit(k, y, 1)[0]
    return float(np.exp(slope))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _curve(
    method: str, run: _Run, ref: np.ndarray, k_max: int, floor: float, predicted: float
) -> GradCurve:
    """Curve arrays over ``k = 1..k_max`` from a run with ``curve=True``; a run that stopped
    early holds its last value. The rate is fitted on the error of a forward curve (as
    ``k rho^k`` for ``unrolled``), on the residual of a backward one."""
    n = len(run.grads)
    idx = np.minimum(np.arange(k_max), n - 1)
    grads = [_np(g) for g in run.grads]
    errs = np.array([_rel_error(grads[j], ref) for j in idx])
    kind = "backward" if method.startswith("implicit") else "forward"
    if kind == "forward":
        rate = fit_rate(errs[:n], floor, k_factor=method == "unrolled")
    else:
        rate = fit_rate(np.asarray(run.residuals, dtype=np.float64))
    return GradCurve(
        method=method,
        k=np.arange(1, k_max + 1),
        rel_error=errs,
        cosine=np.array([_cosine(grads[j], ref) for j in idx]),
        memory_bytes=np.asarray(run.memory, dtype=np.int64)[idx],
        residual=np.asarray(run.residuals, dtype=np.float64)[idx],
        residual_kind=kind,
        rate=rate,
        predicted_rate=predicted,
        steps_used=n,
    )


def _predicted(solver: Solver, eig: torch.Tensor) -> float:
    rate = solver.predicted_rate(eig) if bool(torch.isfinite(eig).all()) else None
    return float("nan") if rate is None else float(rate[0])


# ------------------------------------------------------------------------------------------------
# The lab
# ------------------------------------------------------------------------------------------------


def gradient_lab(request: GradRequest) -> GradReport:
    """Compute the gradient of ``request.loss`` at ``z*`` by every method and compare.

    Raises :class:`SpecError` for an unknown ``wrt`` name or a bad loss (not an expression, not
    one number), :class:`SolverError` for bad options or a solver autograd cannot unroll
    (Anderson writes its history in place). A map that is not a contraction at ``z*`` is no
    error: the report says ``ill_posed`` and why.
    """
    spec = request.spec
    device = resolve_device(request.device)
    if device.type == "mps" and request.dtype == "float64":
        raise SolverError("mps has no float64: use float32 there")
    dtype = resolve_dtype(request.dtype)
    loss_text = loss_expression(request.loss, spec)
    tol = request.tol if request.tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    eps = float(torch.finfo(dtype).eps)

    b = _bind(spec, request.wrt, loss_text, device, dtype)
    solver = resolve_solver(request.solver, request.solver_options)
    backward = get_solver("anderson", m=request.backward_m, lam=request.backward_lam)
    _check_memory(spec.dim, dtype, backward)
    _check_unrollable(b, solver)
    opts = SolveOptions(tol=tol, max_iter=request.max_iter, diagnostics=False, lyapunov_steps=0)
    fwd = solve(b.fmap, solver, options=opts)
    z_fwd = fwd.z.T.contiguous()  # (D, 1)
    with torch.no_grad():
        fwd_loss = float(b.loss(z_fwd)[0])
    forward = ForwardInfo(
        solver=solver.name,
        tol=tol,
        max_iter=request.max_iter,
        status=Status(int(fwd.status[0])).label,
        iterations=int(fwd.iterations[0]),
        residual=float(fwd.residual[0]),
        time_s=fwd.time_s,
        z=_np(fwd.z[0]),
        loss=fwd_loss,
    )
    reference, z_ref, (rho, smin, smax, eig) = _reference(
        request, loss_text, device, forward, z_fwd
    )

    setup = _Setup(
        bound=b,
        solver=solver,
        phantom=get_solver("damped", beta=request.phantom_lam),
        anderson=backward,
        z0=b.fmap.start(1).T.contiguous(),
        z_star=z_fwd,
        k_max=request.unroll_max,
        phantom_steps=request.phantom_steps,
        backward_tol=request.backward_tol if request.backward_tol is not None else 100 * eps,
        # the map's own values are no memory for backward: they exist anyway
        own=(*b.fmap.values.values(), *b.fmap._constants.values(), *b.loss_consts.values()),
    )
    ref = reference.gradient
    methods = []
    for name in METHODS:
        m = _measure(lambda mt, n=name: setup.run(n, mt), device, request.time_repeats, setup.own)
        g = _np(m.value.gradient)
        methods.append(
            MethodResult(
                method=name,
                gradient=g,
                rel_error=_rel_error(g, ref),
                cosine=_cosine(g, ref),
                time_s=m.time_s,
                memory_bytes=m.memory_bytes,
                device_peak_bytes=m.device_peak_bytes,
                steps=m.value.steps,
                note=setup.note(name),
            )
        )
    eig = eig.to(device)
    predicted = {
        "unrolled": _predicted(solver, eig),
        "implicit_fixed_point": _predicted(get_solver("fixed_point"), eig),
        "implicit_anderson": float("nan"),
        "phantom": _predicted(setup.phantom, eig),
    }
    curves = []
    for name in CURVE_METHODS:
        meter = SavedTensorMeter(exclude=setup.own)
        run = setup.run(name, meter, curve=True)
        meter.release()
        curves.append(_curve(name, run, ref, setup.k_max, 1e3 * eps, predicted[name]))

    ill, message = _ill_posed(reference, rho, smin, smax)
    warnings = _warnings(forward, reference, tol, z_fwd, z_ref)
    log.debug("gradient lab on %s: rho %.3g, ill-posed %s", spec.name, rho, ill)
    return GradReport(
        request=request,
        loss_text=loss_text,
        wrt=b.wrt,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        forward=forward,
        reference=reference,
        methods=tuple(methods),
        curves=tuple(curves),
        spectral_radius=rho,
        sigma_min=smin,
        sigma_max=smax,
        ill_posed=ill,
        ill_posed_message=message,
        warnings=tuple(warnings),
    )


def _reference(
    request: GradRequest,
    loss_text: str,
    device: torch.device,
    forward: ForwardInfo,
    z_fwd: torch.Tensor,
) -> tuple[Reference, torch.Tensor, tuple[float, float, float, torch.Tensor]]:
    """The float64 reference (a fresh compile; CPU when ``device`` is mps), its ``z*`` (D, 1)
    and the conditioning there: ``rho(J)``, ``sigma_min`` and ``sigma_max`` of ``I - J``, the
    eigenvalues of ``J`` ``(1, D)``."""
    t0 = time.perf_counter()
    ref_device = device if device.type != "mps" else torch.device("cpu")
    rb = _bind(request.spec, request.wrt, loss_text, ref_device, torch.float64)
    converged = forward.status == Status.CONVERGED.label
    hint = z_fwd.to(device=ref_device, dtype=torch.float64)
    z_ref, status, solver, residual = _reference_solve(rb, request, hint, converged)
    grad = _exact(rb, z_ref, SavedTensorMeter(False))
    fd = _fd_check(rb, z_ref, grad, request)
    conditioning = _conditioning(rb, z_ref)
    with torch.no_grad():
        loss = float(rb.loss(z_ref)[0])
    reference = Reference(
        gradient=_np(grad),
        z=_np(z_ref[:, 0]),
        residual=residual,
        status=status,
        solver=solver,
        loss=loss,
        fd=fd,
        time_s=time.perf_counter() - t0,
    )
    return reference, z_ref, conditioning


def _ill_posed(ref: Reference, rho: float, smin: float, smax: float) -> tuple[bool, str]:
    """Whether the implicit gradient is ill-posed at the reference ``z*``, and why: no fixed
    point found, ``df/dz`` not finite, ``sigma_min(I - J) <= SINGULAR_REL max(sigma_max, 1)``,
    or ``rho(J) >= 1``."""
    if ref.status != Status.CONVERGED.label:
        return True, (
            f"no fixed point found: the float64 reference solve ended '{ref.status}' at "
            f"residual {ref.residual:.2e}, so there is no z* to differentiate at"
        )
    if not (math.isfinite(rho) and math.isfinite(smin)):
        return True, "df/dz at z* is not finite: the implicit gradient is undefined"
    if smin <= SINGULAR_REL * max(smax, 1.0):
        return True, (
            f"I - df/dz is singular at z* to working precision (smallest singular value "
            f"{smin:.2e}, largest {smax:.2e}): the implicit gradient is ill-posed"
        )
    if rho >= 1:
        return True, (
            f"not a contraction at z*: the spectral radius of df/dz is {rho:.4g} >= 1, so z* "
            "repels the forward iteration and u = J^T u + dL/dz* diverges; the implicit "
            f"gradient (sigma_min(I - df/dz) = {smin:.2e}) describes no stable equilibrium"
        )
    return False, ""


def _warnings(
    fwd: ForwardInfo, ref: Reference, tol: float, z_fwd: torch.Tensor, z_ref: torch.Tensor
) -> list[str]:
    out = []
    if fwd.status != Status.CONVERGED.label:
        out.append(
            f"the forward solve ended '{fwd.status}' at residual {fwd.residual:.2e} (tol "
            f"{tol:g}): the implicit and phantom gradients are taken at a point that is not z*"
        )
    gap = float((z_fwd.double().cpu() - z_ref.double().cpu()).abs().max())
    scale = 1 + float(z_ref.abs().max())
    if fwd.status == Status.CONVERGED.label and not gap <= 1e-3 * scale:
        out.append(
            f"the forward solve reached another point than the reference (max gap {gap:.2e}): "
            "the map may have several fixed points"
        )
    fd = ref.fd
    if fd.fd.size and not np.isfinite(fd.fd).all():
        out.append("finite differences could not check the reference: perturbed solves failed")
    elif fd.fd.size and not fd.rel_error <= 1e-5:
        out.append(
            f"finite differences disagree with the reference gradient (relative error "
            f"{fd.rel_error:.2e} over {fd.fd.size} checks)"
        )
    return out
