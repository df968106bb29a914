"""Shared problems and independent truths for the gradient-lab tests: a NumPy Newton solve to
round-off, central finite differences, and three maps (a tanh layer at dim 8, a linear map with
closed forms, a slowly contracting tanh layer)."""

from __future__ import annotations

import numpy as np

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.gradients import GradReport, GradRequest, gradient_lab
from tests.helpers import fd_jacobian, make_spec


def np_fixed_point(f, jac, z0, tol=1e-15):
    """Newton on z - f(z) in NumPy, to round-off."""
    z = np.asarray(z0, dtype=float).copy()
    for _ in range(100):
        r = z - f(z)
        if np.linalg.norm(r) <= tol:
            break
        z = z - np.linalg.solve(np.eye(z.size) - jac(z), r)
    assert np.linalg.norm(z - f(z)) < 1e-13
    return z


def central_differences(loss_of_theta, theta, h=1e-5):
    """``d loss / d theta_i`` by central differences, every entry."""
    theta = np.asarray(theta, dtype=float)
    out = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        out[i] = (loss_of_theta(theta + e) - loss_of_theta(theta - e)) / (2 * h)
    return out


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def values(spec, name):
    """A tensor's values as the compiled map holds them (an input, drawn by the spec's seed)."""
    return compile_spec(spec).values[name][..., 0].numpy().copy()


def lab(spec, wrt, **kw) -> GradReport:
    kw.setdefault("time_repeats", 1)
    return gradient_lab(GradRequest(spec, tuple(wrt), **kw))


# A tanh layer at dim 8 ------------------------------------------------------------------------

TANH8 = make_spec(
    "tanh(a * (W @ z) + x)",
    8,
    params={"a": {"value": 0.9, "min": 0.0, "max": 3.0}},
    tensors={
        "W": {"shape": [8, 8], "init": "normal", "seed": 7, "spectral_norm": 0.7},
        "x": {"shape": [8], "init": "normal", "seed": 8},
    },
)


def tanh8_loss(theta):
    """sum(z*) of the tanh layer as a function of (a, W, x) flattened in that order."""
    a, w, x = theta[0], theta[1:65].reshape(8, 8), theta[65:]

    def f(z):
        return np.tanh(a * w @ z + x)

    def jac(z):
        return (1 - f(z) ** 2)[:, None] * a * w

    return np_fixed_point(f, jac, np.zeros(8)).sum()


# A linear map z = A z + c v with closed forms --------------------------------------------------

RNG = np.random.default_rng(21)
A = RNG.standard_normal((4, 4))
A *= 0.6 / np.linalg.norm(A, 2)
V = RNG.standard_normal(4)
T = RNG.standard_normal(4)
C = 0.7
LINEAR = make_spec(
    "A @ z + c * v",
    4,
    params={"c": {"value": C, "min": -2.0, "max": 2.0}},
    tensors={"A": A, "v": V, "target": T},
)
INV = np.linalg.inv(np.eye(4) - A)
Z_STAR = INV @ (C * V)


def linear_gradient_sum() -> np.ndarray:
    """The exact dL/d(c, v, A) of L = sum(z*) on LINEAR: u = (I - A)^-T 1,
    dL/dc = u.v, dL/dv = c u, dL/dA = u z*^T."""
    u = INV.T @ np.ones(4)
    return np.concatenate([[u @ V], C * u, np.outer(u, Z_STAR).ravel()])


# A slowly contracting tanh layer ----------------------------------------------------------------

SLOW = make_spec(
    "tanh(W @ z + x)",
    8,
    tensors={
        "W": {"shape": [8, 8], "init": "orthogonal", "seed": 1, "spectral_norm": 0.8},
        "x": {"shape": [8], "init": "normal", "seed": 4, "scale": 0.5},
    },
)


def slow_rho():
    """Spectral radius of df/dz at z*, from NumPy: a NumPy solve and a finite-difference
    Jacobian."""
    w, x = values(SLOW, "W"), values(SLOW, "x")

    def f(z):
        return np.tanh(w @ z + x)

    z = np_fixed_point(f, lambda z: (1 - f(z) ** 2)[:, None] * w, np.zeros(8))
    return float(np.abs(np.linalg.eigvals(fd_jacobian(f, z))).max())
