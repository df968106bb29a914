"""The problem zoo and small independent references shared by the test modules.

Every zoo problem carries its own truth, computed without the library: a closed form (the Dottie
number, sqrt(2), the cube roots of unity, ``A^-1 b``) or SciPy's ``root`` on a NumPy version of
the same formula. Tests parametrise every registered solver over every problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.optimize
import torch

from implicit_viz.core.spec import Spec, load_spec, spec_from_dict

DOTTIE = 0.7390851332151607
SQRT2 = math.sqrt(2.0)
SOLVERS = ("fixed_point", "damped", "anderson", "newton", "broyden")

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FloatMap = Callable[[np.ndarray], np.ndarray]


def make_spec(
    f: str,
    dim: int,
    *,
    params: Mapping[str, Any] | None = None,
    tensors: Mapping[str, Any] | None = None,
    define: Mapping[str, str] | None = None,
    z0: Any = None,
    **extra: Any,
) -> Spec:
    """A spec built from a dict (no TOML quoting to worry about)."""
    data: dict[str, Any] = {"name": "test", "dim": dim, "f": f}
    if z0 is not None:
        data["z0"] = list(np.atleast_1d(np.asarray(z0, dtype=float)).tolist())
    if params:
        data["params"] = dict(params)
    if tensors:
        data["tensors"] = {
            k: (np.asarray(v, dtype=float).tolist() if not isinstance(v, Mapping) else dict(v))
            for k, v in tensors.items()
        }
    if define:
        data["define"] = dict(define)
    data.update(extra)
    return spec_from_dict(data)


def random_contraction(dim: int, seed: int, norm: float) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (dim, dim) with ``||W||_2 = norm`` and ``x`` (dim,), drawn with NumPy."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, dim))
    w *= norm / np.linalg.norm(w, 2)
    x = rng.standard_normal(dim)
    return w, x


def scipy_root(f_np: FloatMap, z0: np.ndarray) -> np.ndarray:
    """The fixed point of ``f_np`` by ``scipy.optimize.root`` on ``f(z) - z`` (checked)."""
    sol = scipy.optimize.root(lambda z: f_np(z) - z, np.asarray(z0, dtype=float), tol=1e-13)
    z = np.asarray(sol.x, dtype=float)
    # hybr may stop "without good progress" once it sits on the root: judge by the residual
    assert np.linalg.norm(f_np(z) - z) < 1e-12, sol.message
    return z


def scipy_fixed_point(f_np: FloatMap, z0: np.ndarray) -> np.ndarray:
    """The fixed point of ``f_np`` by ``scipy.optimize.fixed_point``: Steffensen's del2, or plain
    iteration where del2 stalls on round-off (it can, for contractions near 1)."""
    z0 = np.asarray(z0, dtype=float)
    try:
        z = scipy.optimize.fixed_point(f_np, z0, xtol=1e-12, maxiter=2000)
    except RuntimeError:
        z = scipy.optimize.fixed_point(f_np, z0, xtol=1e-13, maxiter=20000, method="iteration")
    return np.asarray(z, dtype=float)


def fd_jacobian(f_np: FloatMap, z: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences: ``J[i, j] = (f_i(z + h e_j) - f_i(z - h e_j)) / 2h``."""
    z = np.asarray(z, dtype=float)
    d = z.shape[0]
    cols = []
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        cols.append((np.asarray(f_np(z + e)) - np.asarray(f_np(z - e))) / (2 * h))
    return np.stack(cols, axis=1)


def np_softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


@dataclass(frozen=True)
class Problem:
    """A zoo entry: a spec, a NumPy version of its map and the fixed point it must reach."""

    name: str
    spec: Spec
    f_np: FloatMap
    z_star: np.ndarray
    tol: float = 1e-11
    max_iter: int = 3000

    def __repr__(self) -> str:  # short ids in pytest output
        return self.name


def _tanh_problem(dim: int, seed: int, norm: float) -> Problem:
    w, x = random_contraction(dim, seed, norm)

    def f_np(z: np.ndarray) -> np.ndarray:
        return np.tanh(w @ z + x)

    spec = make_spec("tanh(W @ z + x)", dim, tensors={"W": w, "x": x})
    return Problem(
        f"tanh_d{dim}_s{seed}_n{norm}",
        spec,
        f_np,
        scipy_root(f_np, np.zeros(dim)),
    )


def _affine_problem() -> Problem:
    rng = np.random.default_rng(11)
    m = rng.standard_normal((4, 4))
    m *= 0.6 / np.linalg.norm(m, 2)
    c = rng.standard_normal(4)
    spec = make_spec("M @ z + c", 4, tensors={"M": m, "c": c})
    return Problem(
        "affine_d4",
        spec,
        lambda z: m @ z + c,
        np.linalg.solve(np.eye(4) - m, c),
    )


def _cosine() -> Problem:
    spec = load_spec("cosine").with_values(a=1.0)
    return Problem("cosine_dottie", spec, lambda z: np.cos(z), np.array([DOTTIE]))


def _sqrt2() -> Problem:
    spec = load_spec("sqrt2").with_values(c=0.25)
    return Problem("sqrt2", spec, lambda z: z - 0.25 * (z**2 - 2), np.array([SQRT2]))


def _gradient_descent() -> Problem:
    spec = load_spec("gradient_descent").with_values(eta=0.3)
    a = np.array(spec.tensor("A").data).reshape(2, 2)
    b = np.array(spec.tensor("b").data)
    return Problem(
        "gradient_descent",
        spec,
        lambda z: z - 0.3 * (a @ z - b),
        np.linalg.solve(a, b),
    )


def _newton_cubic() -> Problem:
    spec = load_spec("newton_cubic").with_values(h=1.0)

    def f_np(z: np.ndarray) -> np.ndarray:
        w = complex(z[0], z[1])
        n = w - (w**3 - 1) / (3 * w**2)
        return np.array([n.real, n.imag])

    root = np.array([-0.5, math.sqrt(3) / 2])  # nearest cube root of unity to z0 = (-0.5, 0.8)
    return Problem("newton_cubic", spec, f_np, root)


def _logistic() -> Problem:
    spec = load_spec("logistic").with_values(r=2.5).with_overrides({"z0": [0.45]})
    return Problem("logistic_r2.5", spec, lambda z: 2.5 * z * (1 - z), np.array([1 - 1 / 2.5]))


def _vector_literal() -> Problem:
    def f_np(z: np.ndarray) -> np.ndarray:
        return np.array([0.5 * np.cos(z[1]) + 0.1, 0.5 * np.sin(z[0]) - 0.2])

    spec = make_spec("[0.5 * cos(z[1]) + 0.1, 0.5 * sin(z[0]) - 0.2]", 2, z0=[1.0, -1.0])
    return Problem("vector_literal", spec, f_np, scipy_root(f_np, np.zeros(2)))


def _softmax_define() -> Problem:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3))
    x = np.array([0.2, -0.1, 0.4])

    def f_np(z: np.ndarray) -> np.ndarray:
        return 0.8 * np_softmax(w @ z) + x

    spec = make_spec(
        "0.8 * p + x", 3, tensors={"W": w, "x": x}, define={"h": "W @ z", "p": "softmax(h)"}
    )
    return Problem("softmax_define", spec, f_np, scipy_root(f_np, np.zeros(3)))


def _deq_cell() -> Problem:
    # The tensors are seeded draws; their values are inputs, read once from a compiled map.
    from implicit_viz.core.compiled_map import compile_spec

    spec = load_spec("deq_cell").with_values(s=0.8)
    vals = {k: v[..., 0].numpy() for k, v in compile_spec(spec).values.items()}
    w, u, x, b = vals["W"], vals["U"], vals["x"], vals["b"]

    def f_np(z: np.ndarray) -> np.ndarray:
        return np.tanh(0.8 * (w @ z) + u @ x + b)

    return Problem("deq_cell", spec, f_np, scipy_root(f_np, np.zeros(32)))


CONTRACTIONS = [
    (1, 0, 0.5),
    (2, 1, 0.9),
    (3, 2, 0.7),
    (5, 3, 0.8),
    (8, 4, 0.6),
    (16, 5, 0.9),
    (16, 6, 0.5),
]

ZOO: list[Problem] = [
    *(_tanh_problem(*c) for c in CONTRACTIONS),
    _affine_problem(),
    _cosine(),
    _sqrt2(),
    _gradient_descent(),
    _newton_cubic(),
    _logistic(),
    _vector_literal(),
    _softmax_define(),
    _deq_cell(),
]
ZOO_IDS = [p.name for p in ZOO]


def fail_writes_after(monkeypatch, nbytes: int, exc: BaseException | None = None) -> None:
    """Writes to the temporary files of :mod:`implicit_viz.core.files` raise ``exc`` (default
    ENOSPC: a disk that fills up; ``KeyboardInterrupt()`` for a Ctrl-C) once ``nbytes`` bytes
    were written, after writing the part that still fit."""
    import errno
    import os

    from implicit_viz.core import files

    err = exc if exc is not None else OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, fh):
            self._fh, self._n = fh, 0

        def write(self, data):
            if self._n + len(data) > nbytes:
                self._fh.write(bytes(data)[: max(nbytes - self._n, 0)])
                raise err
            self._n += len(data)
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return self._fh.__exit__(*a)

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
