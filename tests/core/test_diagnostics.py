"""Jacobians against central finite differences; spectral radius, 2-norm, predicted and observed
rates against NumPy's eigenvalues and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import implicit_viz.core as core
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.diagnostics import jacobian_at, observed_rate
from implicit_viz.core.driver import solve
from implicit_viz.core.jacobians import jacobian
from implicit_viz.core.solvers import available_solvers, get_solver
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from tests.helpers import DOTTIE, ZOO, ZOO_IDS, fd_jacobian

RNG = np.random.default_rng(99)


class BatchLast:
    """A batch-last view of a compiled map, written here: ``(D, B) -> (D, B)`` with ``take``."""

    def __init__(self, fmap):
        self.fmap = fmap

    def __call__(self, z):
        return self.fmap.batch_last(z)

    def take(self, index):
        return BatchLast(self.fmap.take(index))


# ----------------------------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_jacobian_at_matches_central_differences(prob):
    fmap = compile_spec(prob.spec)
    pts = np.vstack([prob.z_star, prob.z_star + RNG.uniform(-0.3, 0.3, (3, fmap.dim))])
    jac = jacobian_at(fmap, torch.tensor(pts))
    assert jac.shape == (4, fmap.dim, fmap.dim)
    for i, p in enumerate(pts):
        np.testing.assert_allclose(jac[i].numpy(), fd_jacobian(prob.f_np, p), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("prob", ZOO[:8] + ZOO[-3:], ids=ZOO_IDS[:8] + ZOO_IDS[-3:])
def test_jacobian_function_on_a_batch_last_map_matches_central_differences(prob):
    fmap = compile_spec(prob.spec)
    pts = prob.z_star + RNG.uniform(-0.3, 0.3, (3, fmap.dim))
    jac = jacobian(BatchLast(fmap), torch.tensor(pts))
    assert jac.shape == (3, fmap.dim, fmap.dim)
    for i, p in enumerate(pts):
        np.testing.assert_allclose(jac[i].numpy(), fd_jacobian(prob.f_np, p), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_jacobian_accepts_a_compiled_map(tanh_map, batch):
    """``jacobian(fmap, z)`` with the FixedPointMap itself (batch-first, as everywhere in the
    public API) must give df/dz, not the Jacobian of some transposed evaluation."""
    w = tanh_map.values["W"][..., 0].numpy()
    x = tanh_map.values["x"][..., 0].numpy()
    pts = RNG.uniform(-1, 1, (batch, 2))
    jac = jacobian(tanh_map, torch.tensor(pts))
    for i, p in enumerate(pts):
        ref = fd_jacobian(lambda v: np.tanh(0.9 * w @ v + x), p)
        np.testing.assert_allclose(jac[i].numpy(), ref, atol=1e-8)


def test_package_level_jacobian_is_the_function():
    """``from implicit_viz.core import jacobian`` is documented as the function; the submodule
    of the same name must not shadow it once it has been imported."""
    import implicit_viz.core.jacobians  # noqa: F401  (the submodule is loaded)

    assert callable(core.jacobian)
    assert core.jacobian is jacobian


def test_per_row_values_give_per_row_jacobians(tanh_map):
    b = 5
    a = RNG.uniform(0.2, 1.5, b)
    w = RNG.standard_normal((b, 2, 2))
    x = tanh_map.values["x"][..., 0].numpy()
    fmap = tanh_map.with_values(a=torch.tensor(a), W=torch.tensor(w))
    pts = RNG.uniform(-1, 1, (b, 2))
    jac = jacobian_at(fmap, torch.tensor(pts)).numpy()
    for i in range(b):

        def f_np(v, i=i):
            return np.tanh(a[i] * (w[i] @ v) + x)

        np.testing.assert_allclose(jac[i], fd_jacobian(f_np, pts[i]), atol=1e-8)
        # closed form: diag(1 - tanh^2) a W
        pre = a[i] * (w[i] @ pts[i]) + x
        np.testing.assert_allclose(
            jac[i], (1 - np.tanh(pre) ** 2)[:, None] * a[i] * w[i], atol=1e-14
        )


def test_jacobian_of_a_map_that_ignores_z_is_zero():
    from tests.helpers import make_spec

    fmap = compile_spec(make_spec("x + 0", 2, tensors={"x": [1.0, 2.0]}))
    jac = jacobian_at(fmap, torch.zeros(3, 2, dtype=torch.float64))
    assert jac.shape == (3, 2, 2)
    assert (jac == 0).all()


# ----------------------------------------------------------------------------------------------
# Spectral radius, norm and rates at z*
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_spectral_radius_and_norm_match_numpy_on_a_finite_difference_jacobian(prob):
    res = solve(compile_spec(prob.spec), "newton", tol=1e-12, max_iter=100)
    assert res.statuses == [Status.CONVERGED]
    j_fd = fd_jacobian(prob.f_np, prob.z_star)
    rho = np.abs(np.linalg.eigvals(j_fd)).max()
    assert float(res.spectral_radius[0]) == pytest.approx(rho, abs=1e-7)
    assert float(res.jac_norm[0]) == pytest.approx(np.linalg.norm(j_fd, 2), abs=1e-7)
    assert math.isnan(float(res.predicted_rate[0]))  # Newton: no linear-rate prediction


@pytest.mark.parametrize(("prob_index"), range(len(ZOO)), ids=ZOO_IDS)
@pytest.mark.parametrize("beta", [0.3, 0.5, 0.8, 1.5])
def test_predicted_rate_of_damped_iteration(prob_index, beta):
    prob = ZOO[prob_index]
    res = solve(
        compile_spec(prob.spec),
        "damped",
        solver_options={"beta": beta},
        tol=1e-10,
        max_iter=20_000,
        period_tol=1e-14,  # slow alternating convergence (beta = 1.5) is not a cycle
    )
    if res.statuses != [Status.CONVERGED]:
        # over-relaxation can destabilise: then the theory says the rate is >= 1
        lam = np.linalg.eigvals(fd_jacobian(prob.f_np, prob.z_star))
        assert np.abs(1 - beta + beta * lam).max() > 0.999
        return
    lam = np.linalg.eigvals(fd_jacobian(prob.f_np, res.z[0].numpy()))
    expected = np.abs(1 - beta + beta * lam).max()
    assert float(res.predicted_rate[0]) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_predicted_rate_of_naive_iteration_is_the_spectral_radius(prob):
    res = solve(compile_spec(prob.spec), "fixed_point", tol=1e-10, max_iter=5000)
    assert res.statuses == [Status.CONVERGED]
    rho = np.abs(np.linalg.eigvals(fd_jacobian(prob.f_np, prob.z_star))).max()
    assert float(res.predicted_rate[0]) == pytest.approx(rho, abs=1e-7)
    assert float(res.spectral_radius[0]) == pytest.approx(rho, abs=1e-7)


@pytest.mark.parametrize("solver", ["anderson", "newton", "broyden"])
def test_superlinear_methods_have_no_predicted_rate(solver, tanh_map):
    res = solve(tanh_map, solver, tol=1e-10)
    assert math.isnan(float(res.predicted_rate[0]))
    assert res.element(0)["predicted_rate"] is None
    assert res.element(0)["spectral_radius"] == pytest.approx(float(res.spectral_radius[0]))


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_observed_rate_of_naive_iteration_is_close_to_the_spectral_radius(tanh_map, tol):
    w = tanh_map.values["W"][..., 0].numpy()
    x = tanh_map.values["x"][..., 0].numpy()
    res = solve(tanh_map, "fixed_point", tol=tol, max_iter=2000)
    assert res.statuses == [Status.CONVERGED]
    z = res.z[0].numpy()
    rho = np.abs(np.linalg.eigvals(fd_jacobian(lambda v: np.tanh(0.9 * w @ v + x), z))).max()
    assert float(res.observed_rate[0]) == pytest.approx(rho, abs=0.05)


@pytest.mark.parametrize(
    ("preset", "values", "rate"),
    [
        ("cosine", {"a": 1.0}, math.sin(DOTTIE)),  # |f'(z*)| = sin z* = 0.674
        ("sqrt2", {"c": 0.25}, abs(1 - 2 * math.sqrt(2) * 0.25)),  # |1 - 2 c sqrt 2| = 0.293
        ("logistic", {"r": 2.8}, abs(2 - 2.8)),  # f'(1 - 1/r) = 2 - r
    ],
)
def test_observed_and_predicted_rates_on_one_dimensional_maps(preset, values, rate):
    res = solve(compile_spec(load_spec(preset).with_values(**values)), "fixed_point", tol=1e-10)
    assert res.statuses == [Status.CONVERGED]
    assert float(res.predicted_rate[0]) == pytest.approx(rate, abs=1e-9)
    assert float(res.spectral_radius[0]) == pytest.approx(rate, abs=1e-9)
    assert float(res.observed_rate[0]) == pytest.approx(rate, abs=0.02)


@pytest.mark.parametrize("beta", [0.4, 0.7])
def test_observed_rate_of_damped_iteration_matches_its_prediction(tanh_map, beta):
    res = solve(tanh_map, "damped", solver_options={"beta": beta}, tol=1e-10, max_iter=3000)
    assert res.statuses == [Status.CONVERGED]
    assert float(res.observed_rate[0]) == pytest.approx(float(res.predicted_rate[0]), abs=0.05)


def test_diagnostics_only_at_converged_elements(logistic_map):
    r = torch.tensor([2.5, 3.2, 5.0], dtype=torch.float64)  # converged, periodic, diverged
    res = solve(logistic_map.with_values(r=r), "fixed_point", [0.3], tol=1e-12, max_iter=300)
    assert res.statuses == [Status.CONVERGED, Status.PERIODIC, Status.DIVERGED]
    assert float(res.spectral_radius[0]) == pytest.approx(0.5, abs=1e-9)  # |2 - r|
    for field in ("spectral_radius", "jac_norm", "predicted_rate"):
        vals = getattr(res, field)
        assert math.isfinite(float(vals[0]))
        assert torch.isnan(vals[1:]).all(), field


def test_diagnostics_can_be_turned_off(tanh_map):
    res = solve(tanh_map, "fixed_point", diagnostics=False)
    assert res.spectral_radius is None and res.predicted_rate is None
    assert res.observed_rate is None and res.jac_norm is None
    assert res.element(0)["spectral_radius"] is None


@pytest.mark.parametrize("solver", available_solvers())
def test_diagnostics_do_not_depend_on_the_solver(solver, tanh_map):
    a = torch.linspace(0.2, 1.0, 4, dtype=torch.float64)
    fmap = tanh_map.with_values(a=a)
    ref = solve(fmap, "newton", tol=1e-12)
    res = solve(fmap, get_solver(solver), tol=1e-11, max_iter=3000)
    torch.testing.assert_close(res.spectral_radius, ref.spectral_radius, atol=1e-8, rtol=0)
    torch.testing.assert_close(res.jac_norm, ref.jac_norm, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------------------------
# observed_rate on synthetic histories
# ----------------------------------------------------------------------------------------------


def test_observed_rate_of_a_geometric_sequence():
    q = np.array([0.5, 0.9, 0.1])
    n = np.array([20, 8, 3])
    t = 25
    hist = np.full((3, t + 1), np.nan)
    for i in range(3):
        hist[i, : n[i] + 1] = 3.0 * q[i] ** np.arange(n[i] + 1)
    rate = observed_rate(torch.tensor(hist), torch.tensor(n))
    np.testing.assert_allclose(rate.numpy(), q, rtol=1e-12)


def test_observed_rate_uses_the_last_window():
    # ratio 0.9 for 10 steps, then 0.2 for the last 5
    r = [1.0]
    for k in range(15):
        r.append(r[-1] * (0.9 if k < 10 else 0.2))
    hist = torch.tensor([r], dtype=torch.float64)
    rate = observed_rate(hist, torch.tensor([15]), window=5)
    assert float(rate[0]) == pytest.approx(0.2, rel=1e-12)
    rate = observed_rate(hist, torch.tensor([15]), window=15)
    assert float(rate[0]) == pytest.approx((0.9**10 * 0.2**5) ** (1 / 15), rel=1e-12)


def test_observed_rate_is_nan_when_undefined():
    hist = torch.tensor(
        [[1.0, 0.5, np.nan, np.nan], [1.0, 0.5, 0.0, np.nan], [1.0, 0.5, 0.25, 0.125]],
        dtype=torch.float64,
    )
    rate = observed_rate(hist, torch.tensor([1, 2, 0]))
    assert torch.isnan(rate).all()  # one step only; a zero residual; no steps


def test_still_converging_elements_get_rho_at_their_last_iterate():
    """tanh_layer at a = 1.0 runs out of 200 steps while converging; rho(df/dz) at its last
    iterate is the closed form at z* (J = diag(1 - tanh^2(a W z + x)) a W) to 1e-3, and the
    fitted rate matches it, as linear theory says for naive iteration."""
    import numpy as np

    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.driver import compare
    from implicit_viz.core.spec import load_spec
    from implicit_viz.core.status import Status

    fm = compile_spec(load_spec("tanh_layer").with_overrides({"a": 1.0}))
    (r,) = compare(fm, ["fixed_point"], max_iter=200, tol=1e-6, diagnostics=True)
    assert int(r.status[0]) == int(Status.CONVERGING)
    z_star = compare(fm, ["newton"], tol=1e-13)[0].z[0].numpy()
    w, x = np.array([[0.6, -1.1], [0.9, 0.4]]), np.array([0.5, -0.2])
    jac = np.diag(1 - np.tanh(w @ z_star + x) ** 2) @ w
    rho = float(np.abs(np.linalg.eigvals(jac)).max())
    assert float(r.spectral_radius[0]) == pytest.approx(rho, abs=1e-3)
    assert float(r.predicted_rate[0]) == pytest.approx(rho, abs=1e-3)
    assert float(r.rate[0]) == pytest.approx(rho, rel=0.01)
