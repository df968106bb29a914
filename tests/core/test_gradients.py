"""The gradient lab against independent truths: central finite differences of a NumPy solve,
closed forms for linear maps, NumPy eigenvalues of a finite-difference Jacobian, and properties
(convergence of the iterative methods, memory that grows or stays flat)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.gradients import (
    CURVE_METHODS,
    METHODS,
    GradRequest,
    SavedTensorMeter,
    gradient_lab,
)
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.spec import load_spec, parse_spec
from tests.helpers import fd_jacobian, make_spec, requires_cuda

# ----------------------------------------------------------------------------------------------
# NumPy references
# ----------------------------------------------------------------------------------------------


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


def lab(spec, wrt, **kw):
    kw.setdefault("time_repeats", 1)
    return gradient_lab(GradRequest(spec, tuple(wrt), **kw))


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


# ----------------------------------------------------------------------------------------------
# Exact implicit gradient == central finite differences
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Closed forms: a linear map z = A z + c v
# ----------------------------------------------------------------------------------------------

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


@pytest.mark.parametrize(
    "loss, dldz, direct_c, direct_v",
    [
        ("sum", lambda z: np.ones(4), 0.0, np.zeros(4)),
        ("l2", lambda z: z - T, 0.0, np.zeros(4)),
        ("dot(z, v) + c", lambda z: V, 1.0, Z_STAR),
    ],
    ids=["sum", "l2", "expression"],
)
def test_every_method_at_convergence_matches_the_closed_form_on_a_linear_map(
    loss, dldz, direct_c, direct_v
):
    # z* = (I - A)^-1 c v; with u = (I - A)^-T dL/dz*:
    # dL/dc = u.v + dL/dc|direct, dL/dv = c u + dL/dv|direct, dL/dA = u z*^T
    u = INV.T @ dldz(Z_STAR)
    want = np.concatenate([[u @ V + direct_c], C * u + direct_v, np.outer(u, Z_STAR).ravel()])
    report = lab(LINEAR, ["c", "v", "A"], loss=loss, tol=1e-13, unroll_max=120)
    assert rel(report.reference.gradient, want) < 1e-10
    for name in ("unrolled", "implicit_exact", "implicit_fixed_point", "implicit_anderson"):
        assert rel(report.method(name).gradient, want) < 1e-9, name
    if loss == "sum":  # the Jacobian-free gradient: u = dL/dz* = 1
        ones = np.ones(4)
        jfb = np.concatenate([[ones @ V], C * ones, np.outer(ones, Z_STAR).ravel()])
        assert rel(report.method("jacobian_free").gradient, jfb) < 1e-10


def test_unrolled_and_phantom_curves_match_their_closed_forms_on_a_linear_map():
    # unrolled from z0 = 0: z_k = sum_{i<k} A^i c v, so dL/dc at k = 1^T sum_{i<k} A^i v;
    # phantom from z*: z_k = M z_{k-1} + lam c v (M = (1 - lam) I + lam A) with z* held
    # fixed, so dL/dc at k = 1^T sum_{i<k} M^i lam v.
    lam, k_max = 0.5, 25
    report = lab(LINEAR, ["c"], tol=1e-13, unroll_max=k_max, phantom_lam=lam, phantom_steps=3)
    ref = np.ones(4) @ INV @ V
    m = (1 - lam) * np.eye(4) + lam * A
    unrolled, phantom = [], []
    acc_u, acc_p, pu, pm = np.zeros(4), np.zeros(4), np.eye(4), np.eye(4)
    for _ in range(k_max):
        acc_u, pu = acc_u + pu @ V, pu @ A
        acc_p, pm = acc_p + pm @ (lam * V), pm @ m
        unrolled.append(abs(acc_u.sum() - ref) / abs(ref))
        phantom.append(abs(acc_p.sum() - ref) / abs(ref))
    np.testing.assert_allclose(report.curve("unrolled").rel_error, unrolled, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(report.curve("phantom").rel_error, phantom, rtol=1e-6, atol=1e-12)
    assert report.method("phantom").rel_error == pytest.approx(phantom[2], rel=1e-6)
    # the forward residual of the k-step unrolled pass: ||f(z_k) - z_k|| = ||A^k c v||
    res = [np.linalg.norm(np.linalg.matrix_power(A, k) @ (C * V)) for k in range(1, k_max + 1)]
    np.testing.assert_allclose(report.curve("unrolled").residual, res, rtol=1e-8, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# Rates and convergence
# ----------------------------------------------------------------------------------------------

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


def test_unrolled_error_decays_geometrically_at_the_spectral_radius():
    rho = slow_rho()
    assert 0.3 < rho < 0.9
    report = lab(SLOW, ["W", "x"], tol=1e-13, unroll_max=60)
    err = report.curve("unrolled").rel_error
    assert err[0] > 0.1 and err[-1] < 1e-11
    # our own fit on the middle of the decaying part: the error behaves as C k rho^k
    k = np.arange(1, 61)
    mid = (k >= 10) & (k <= 35)
    slope = np.polyfit(k[mid], np.log(err[mid] / k[mid]), 1)[0]
    assert math.exp(slope) == pytest.approx(rho, abs=0.03)
    # and a plain log fit is close too (it reads a little above rho)
    plain = math.exp(np.polyfit(k[mid], np.log(err[mid]), 1)[0])
    assert rho - 0.01 < plain < rho + 0.06
    assert report.curve("unrolled").rate == pytest.approx(rho, abs=0.03)
    assert report.spectral_radius == pytest.approx(rho, abs=1e-6)
    assert report.curve("unrolled").predicted_rate == pytest.approx(rho, abs=1e-6)


def test_iterative_implicit_converges_to_the_exact_gradient_anderson_first():
    report = lab(SLOW, ["W", "x"], tol=1e-13, unroll_max=80)
    exact = report.method("implicit_exact").gradient
    fp, aa = report.curve("implicit_fixed_point"), report.curve("implicit_anderson")
    for c in (fp, aa):
        assert c.rel_error[-1] < 1e-10
    # fixed-point steps: the error falls every step until round-off (~1e-12) takes over
    above = fp.rel_error[fp.rel_error > 1e-11]
    assert np.all(np.diff(above) < 0)
    for name in ("implicit_fixed_point", "implicit_anderson"):
        assert rel(report.method(name).gradient, exact) < 1e-10
    # steps to reach 1e-8: Anderson needs fewer
    first = [int(np.argmax(c.rel_error < 1e-8)) + 1 for c in (fp, aa)]
    assert first[1] < first[0]
    # the backward residual of fixed-point steps falls at rho(J^T) = rho(J)
    assert fp.rate == pytest.approx(slow_rho(), abs=0.03)


def test_jacobian_free_and_phantom_are_finite_and_phantom_improves_with_steps():
    few = lab(SLOW, ["x"], tol=1e-13, unroll_max=30, phantom_steps=2)
    many = lab(SLOW, ["x"], tol=1e-13, unroll_max=30, phantom_steps=20)
    for r in (few, many):
        for name in ("jacobian_free", "phantom"):
            assert np.isfinite(r.method(name).gradient).all()
            assert 0 < r.method(name).rel_error < 2
    assert many.method("phantom").rel_error < few.method("phantom").rel_error / 10
    err = few.curve("phantom").rel_error
    assert err[19] < err[4] < err[0]


# ----------------------------------------------------------------------------------------------
# Ill-posed problems
# ----------------------------------------------------------------------------------------------


def test_a_repelling_fixed_point_is_flagged_ill_posed():
    # z = 2 z + x: z* = -x exists and dz*/dx = (1 - 2)^-1 = -1, but it repels iteration
    spec = make_spec("2 * z + x", 3, tensors={"x": [0.5, -1.0, 0.25]})
    report = lab(spec, ["x"], unroll_max=20)
    assert report.ill_posed
    assert "contraction" in report.ill_posed_message
    assert report.spectral_radius == pytest.approx(2.0)
    np.testing.assert_allclose(report.reference.gradient, -np.ones(3), rtol=1e-12)
    assert report.forward.status == "diverged"
    assert report.warnings  # the forward solve did not reach z*


def test_tanh_layer_with_a_large_weight_scale_is_ill_posed():
    report = lab(load_spec("tanh_layer").with_values(a=3.0), ["x"], unroll_max=10)
    assert report.ill_posed and report.spectral_radius > 1
    contraction = lab(load_spec("tanh_layer"), ["x"], unroll_max=10)
    assert not contraction.ill_posed and contraction.ill_posed_message == ""


def test_a_singular_jacobian_is_flagged():
    # z = z - (z - x)^3: J = I at z* = x, so I - J = 0
    spec = make_spec("z - (z - x) ** 3", 2, tensors={"x": [0.3, -0.2]}, z0=[0.5, 0.1])
    report = lab(spec, ["x"], unroll_max=10)
    assert report.ill_posed
    assert "singular" in report.ill_posed_message
    assert report.sigma_min < 1e-6


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


def test_meter_counts_each_saved_storage_once():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    meter = SavedTensorMeter()
    with meter.active():
        y = x.exp()  # saves its output: 800 bytes
    assert meter.bytes == 800
    with meter.active():
        (x * x).sum()  # saves x twice: one more storage
    assert meter.bytes == 1600
    y.sum()  # outside the block: not counted
    assert meter.bytes == 1600
    # excluded storages (the map's own values) are never counted
    w = torch.randn(10, 10, dtype=torch.float64, requires_grad=True)
    meter = SavedTensorMeter(exclude=[w])
    with meter.active():
        w @ x[:10]  # saves w (excluded) and x (800 bytes: the whole storage of x)
    assert meter.bytes == 800


def test_unrolled_memory_grows_linearly_and_implicit_memory_stays_flat():
    spec = load_spec("deq_cell")
    short = lab(spec, ["s"], unroll_max=5)
    long = lab(spec, ["s"], unroll_max=40)
    mem = long.curve("unrolled").memory_bytes
    steps = np.diff(mem)
    assert np.all(steps > 0)
    assert np.all(steps == steps[0])  # the same tensors each step: exactly linear
    # a step of tanh(s W z + U x + b) keeps at least z_k (32 float64) for the backward pass
    assert steps[0] >= 32 * 8
    assert long.method("unrolled").memory_bytes == mem[-1]
    extra = long.method("unrolled").memory_bytes - short.method("unrolled").memory_bytes
    assert extra == 35 * steps[0]
    for name in ("implicit_fixed_point", "implicit_anderson"):
        c = long.curve(name)
        assert np.all(c.memory_bytes == c.memory_bytes[0])
        assert long.method(name).memory_bytes == short.method(name).memory_bytes
    for name in ("implicit_exact", "jacobian_free"):
        assert long.method(name).memory_bytes == short.method(name).memory_bytes
    assert long.method("implicit_fixed_point").memory_bytes < mem[-1]


# ----------------------------------------------------------------------------------------------
# The report, errors and devices
# ----------------------------------------------------------------------------------------------


def test_report_holds_every_method_and_curve():
    report = lab(load_spec("tanh_layer"), ["a", "x"], unroll_max=7)
    assert [m.method for m in report.methods] == list(METHODS)
    assert [c.method for c in report.curves] == list(CURVE_METHODS)
    for c in report.curves:
        assert c.k.tolist() == list(range(1, 8))
        assert c.rel_error.shape == c.memory_bytes.shape == c.residual.shape == (7,)
    for m in report.methods:
        assert m.time_s > 0 and m.memory_bytes > 0 and m.gradient.shape == (3,)
        assert -1 - 1e-12 <= m.cosine <= 1 + 1e-12
    doc = report.to_dict()
    assert doc["ill_posed"] is False and len(doc["curves"]) == 4
    assert doc["forward"]["status"] == "converged"
    rows = list(report.curve_rows())
    assert len(rows) == 4 * 7 and rows[0]["method"] == "unrolled" and rows[0]["k"] == 1


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"wrt": ("q",)}, SpecError, "no param or tensor named 'q'"),
        ({"wrt": ()}, SpecError, "at least one"),
        ({"wrt": ("s",), "loss": "z"}, SpecError, "one number"),
        ({"wrt": ("s",), "loss": "sum(zz)"}, SpecError, "unknown name"),
        ({"wrt": ("s",), "loss": "sum(z - x)"}, SpecError, "shape"),
        ({"wrt": ("s",), "solver": "nope"}, SolverError, "unknown solver"),
        ({"wrt": ("s",), "unroll_max": 0}, SolverError, "unroll_max"),
        ({"wrt": ("s",), "phantom_lam": 1.5}, SolverError, "phantom_lam"),
    ],
)
def test_bad_requests_raise_clear_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        gradient_lab(GradRequest(load_spec("deq_cell"), **kwargs))


@dataclass(frozen=True)
class InPlace(Solver):
    """A solver (not registered) whose step overwrites a buffer it read: autograd refuses."""

    name = "in_place"

    def init(self, f, z, fz):
        return fz.detach().clone()

    def step(self, f, z, fz, state):
        z_new = state * fz  # saves state for backward
        state.copy_(fz)  # ... then overwrites it
        return z_new, f(z_new), state


def test_a_solver_autograd_cannot_unroll_is_refused_before_any_work():
    with pytest.raises(SolverError, match="'in_place' is not possible: it writes its state in"):
        gradient_lab(GradRequest(load_spec("deq_cell"), ("s",), solver=InPlace()))


def test_anderson_unrolls_to_the_reference():
    """Anderson clones its history under autograd, so its unroll is differentiable."""
    report = lab(LINEAR, ["c"], solver="anderson", unroll_max=30, tol=1e-13)
    assert report.method("unrolled").rel_error < 1e-9


@pytest.mark.parametrize("solver", ["damped", "newton", "broyden"])
def test_other_unrollable_solvers_reach_the_reference(solver):
    report = lab(LINEAR, ["c", "v"], solver=solver, unroll_max=60, tol=1e-13)
    assert report.method("unrolled").rel_error < 1e-9
    assert report.forward.solver == solver


def test_float32_is_compared_with_a_float64_reference():
    report = lab(load_spec("deq_cell"), ["x"], dtype="float32", unroll_max=20)
    assert report.dtype == "float32"
    assert report.reference.gradient.dtype == np.float64
    err = report.method("implicit_exact").rel_error
    assert 1e-9 < err < 1e-4  # float32 accuracy, not float64


@requires_cuda
def test_cuda_gives_the_cpu_gradients():
    cpu = lab(TANH8, ["a", "W"], tol=1e-13, unroll_max=10)
    gpu = lab(TANH8, ["a", "W"], tol=1e-13, unroll_max=10, device="cuda")
    assert gpu.device.startswith("cuda")
    for m in METHODS:
        np.testing.assert_allclose(
            gpu.method(m).gradient, cpu.method(m).gradient, rtol=1e-9, atol=1e-12
        )
    assert gpu.method("unrolled").device_peak_bytes is not None


def test_fd_check_runs_newton_in_chunks_the_budget_holds(monkeypatch):
    """The finite-difference check solves every perturbed copy of the wrt tensor at once by
    Newton, whose Jacobians repeat each copy D times: past the memory budget it now solves them
    in smaller chunks (same answer) instead of failing the whole gradient lab with a Newton
    error the user did not ask for."""
    import implicit_viz.core.gradients as grads
    from implicit_viz.core.errors import LimitError
    from implicit_viz.core.result import SolveOptions

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
    whole = grads.solve(fm, "newton", z0, options=opts)
    real_solve = grads.solve
    sizes = []

    def small_budget_solve(f, name, z, options):
        sizes.append(z.shape[0])
        if z.shape[0] > 3:
            raise LimitError("over the budget", field="solver")
        return real_solve(f, name, z, options=options)

    monkeypatch.setattr(grads, "solve", small_budget_solve)
    z, residual = grads._newton_in_chunks(fm, z0, opts)
    assert sizes == [8, 4, 2, 2, 2, 2]  # halved until a chunk fits, then every row once
    torch.testing.assert_close(z, whole.z, rtol=0, atol=1e-12)
    assert bool((residual < 1e-10).all())
    # not even one row fits: no check rather than an error
    monkeypatch.setattr(grads, "solve", lambda *a, **k: (_ for _ in ()).throw(LimitError("x")))
    assert grads._newton_in_chunks(fm, z0, opts) is None
