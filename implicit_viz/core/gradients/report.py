"""What the gradient lab reports: per-method results, curves over k, the reference and the
forward solve, gathered in :class:`GradReport`. All plain data (numpy arrays, numbers, strings),
with its JSON, NPZ and long-table forms."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from implicit_viz.core.gradients.request import GradRequest
from implicit_viz.core.jsonsafe import json_safe

GRAD_FORMAT = "implicit_viz.grad/1"


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
