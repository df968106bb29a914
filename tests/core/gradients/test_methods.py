"""Each gradient method against closed forms (a linear map), NumPy eigenvalues (rates) and
properties (convergence of the iterative methods, memory that grows or stays flat), and the
refusal of forward solvers autograd cannot unroll."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from implicit_viz.core.errors import SolverError
from implicit_viz.core.gradients import GradRequest, gradient_lab, methods
from implicit_viz.core.gradients import lab as lab_module
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.fixed_point import FixedPoint
from implicit_viz.core.spec import load_spec
from tests.core.gradients.problems import (
    INV,
    LINEAR,
    SLOW,
    Z_STAR,
    A,
    C,
    T,
    V,
    lab,
    rel,
    slow_rho,
)

# ----------------------------------------------------------------------------------------------
# Closed forms: a linear map z = A z + c v
# ----------------------------------------------------------------------------------------------


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
    assert fp.residual_kind == aa.residual_kind == "backward"
    assert report.curve("unrolled").residual_kind == "forward"


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
# Memory
# ----------------------------------------------------------------------------------------------


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
# Forward solvers: which ones autograd can unroll
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InPlace(Solver):
    """A solver (not registered) whose step overwrites a buffer it read: autograd refuses,
    although it claims (by default) to be unrollable."""

    name = "in_place"

    def init(self, f, z, fz):
        return fz.detach().clone()

    def step(self, f, z, fz, state):
        z_new = state * fz  # saves state for backward
        state.copy_(fz)  # ... then overwrites it
        return z_new, f(z_new), state


@dataclass(frozen=True)
class Declared(FixedPoint):
    """Naive iteration (not registered) that declares itself not unrollable."""

    name = "declared"
    unrollable = False


def test_a_solver_autograd_cannot_unroll_is_refused_by_the_probe_before_any_work(monkeypatch):
    solves = []
    monkeypatch.setattr(lab_module, "solve", lambda *a, **k: solves.append(1))
    with pytest.raises(SolverError, match="'in_place' is not possible: it writes its state in"):
        gradient_lab(GradRequest(load_spec("deq_cell"), ("s",), solver=InPlace()))
    assert solves == []


def test_a_solver_that_says_it_is_not_unrollable_is_refused_at_once(monkeypatch):
    probes, solves = [], []
    monkeypatch.setattr(methods, "_unroll", lambda *a, **k: probes.append(1))
    monkeypatch.setattr(lab_module, "solve", lambda *a, **k: solves.append(1))
    with pytest.raises(SolverError) as info:
        gradient_lab(GradRequest(load_spec("deq_cell"), ("s",), solver=Declared()))
    text = str(info.value)
    assert "'declared' is not possible" in text and "unrollable = False" in text
    # the alternatives named are the registered solvers that declare themselves unrollable
    assert text.endswith("unroll fixed_point, damped, anderson, newton or broyden instead")
    assert probes == [] and solves == []  # no probe, no forward solve


def test_anderson_unrolls_to_the_reference():
    """Anderson clones its history under autograd, so its unroll is differentiable."""
    report = lab(LINEAR, ["c"], solver="anderson", unroll_max=30, tol=1e-13)
    assert report.method("unrolled").rel_error < 1e-9


@pytest.mark.parametrize("solver", ["damped", "newton", "broyden"])
def test_other_unrollable_solvers_reach_the_reference(solver):
    report = lab(LINEAR, ["c", "v"], solver=solver, unroll_max=60, tol=1e-13)
    assert report.method("unrolled").rel_error < 1e-9
    assert report.forward.solver == solver
