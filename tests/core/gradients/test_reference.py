"""The float64 reference against central finite differences of a NumPy solve, and its own
finite-difference check under a small memory budget."""

from __future__ import annotations

import numpy as np
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.errors import LimitError
from implicit_viz.core.gradients import reference
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.spec import load_spec, parse_spec
from tests.core.gradients.problems import (
    TANH8,
    central_differences,
    lab,
    np_fixed_point,
    rel,
    tanh8_loss,
    values,
)


def test_exact_implicit_gradient_matches_central_differences_on_tanh_dim8():
    report = lab(TANH8, ["a", "W", "x"], tol=1e-13, unroll_max=5)
    theta = np.concatenate([[0.9], values(TANH8, "W").ravel(), values(TANH8, "x")])
    fd = central_differences(tanh8_loss, theta)
    assert report.method("implicit_exact").gradient.shape == (73,)
    assert rel(report.method("implicit_exact").gradient, fd) < 1e-7
    assert rel(report.reference.gradient, fd) < 1e-7
    # the library's own finite-difference check agrees too, on every entry it tried
    assert report.reference.fd.rel_error < 1e-7
    assert not report.ill_posed
    # unflatten gives the shapes back
    parts = report.unflatten(report.reference.gradient)
    assert parts["a"].shape == () and parts["W"].shape == (8, 8) and parts["x"].shape == (8,)
    np.testing.assert_allclose(parts["W"].ravel(), fd[1:65], rtol=1e-6, atol=1e-9)


def test_exact_implicit_gradient_matches_central_differences_on_deq_cell():
    spec = load_spec("deq_cell")
    w, u, b = values(spec, "W"), values(spec, "U"), values(spec, "b")
    x0 = values(spec, "x")

    def loss(theta):
        s, x = theta[0], theta[1:]

        def f(z):
            return np.tanh(s * w @ z + u @ x + b)

        def jac(z):
            return (1 - f(z) ** 2)[:, None] * s * w

        return np_fixed_point(f, jac, np.zeros(32)).sum()

    fd = central_differences(loss, np.concatenate([[0.8], x0]))
    report = lab(spec, ["s", "x"], tol=1e-13, unroll_max=5)
    assert rel(report.method("implicit_exact").gradient, fd) < 1e-7
    assert rel(report.reference.gradient, fd) < 1e-7


def test_fd_check_runs_newton_in_chunks_the_budget_holds(monkeypatch):
    """The finite-difference check solves every perturbed copy of the wrt tensor at once by
    Newton, whose Jacobians repeat each copy D times: past the memory budget it solves them
    in smaller chunks (same answer) instead of failing the whole gradient lab with a Newton
    error the user did not ask for."""
    spec = parse_spec(
        'dim = 6\nf = "tanh(0.5 * (W @ z) + 0.1)"\n'
        '[tensors]\nW = { shape = [6, 6], init = "normal", seed = 0, scale = 0.3 }\n'
    )
    fmap = compile_spec(spec)
    rows = 8
    w = fmap.values["W"][..., 0] + 1e-3 * torch.randn(rows, 6, 6, dtype=torch.float64)
    fm = fmap.with_values(W=w)
    z0 = torch.zeros(rows, 6, dtype=torch.float64)
    opts = SolveOptions(tol=1e-14, max_iter=60, diagnostics=False, lyapunov_steps=0)
    whole = reference.solve(fm, "newton", z0, options=opts)
    real_solve = reference.solve
    sizes = []

    def small_budget_solve(f, name, z, options, **kw):
        sizes.append(z.shape[0])
        if z.shape[0] > 3:
            raise LimitError("over the budget", field="solver")
        return real_solve(f, name, z, options=options, **kw)

    monkeypatch.setattr(reference, "solve", small_budget_solve)
    z, residual = reference._newton_in_chunks(fm, z0, opts)
    assert sizes == [8, 4, 2, 2, 2, 2]  # halved until a chunk fits, then every row once
    torch.testing.assert_close(z, whole.z, rtol=0, atol=1e-12)
    assert bool((residual < 1e-10).all())
    # not even one row fits: no check rather than an error
    monkeypatch.setattr(reference, "solve", lambda *a, **k: (_ for _ in ()).throw(LimitError("x")))
    assert reference._newton_in_chunks(fm, z0, opts) is None
