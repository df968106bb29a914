"""The driver: outcome codes (converged, diverged, periodic, max_iter), per-element stopping,
batch == loop, traces and counts, cancellation, options and result export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.driver import compare, solve
from implicit_viz.core.errors import SolverError, SpecError
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import available_solvers
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status, status_names
from tests.helpers import DOTTIE, make_spec, requires_cuda

ALL_SOLVERS = available_solvers()
#: The plain (not globalized) Newton and Broyden: the NaN and count tests below are about them.
PLAIN = {"newton": {"line_search": False}, "broyden": {"line_search": False}}
C, D, P, M = Status.CONVERGED, Status.DIVERGED, Status.PERIODIC, Status.MAX_ITER


def logistic_cycle(r: float) -> np.ndarray:
    """The two points of the logistic map's 2-cycle, ascending (closed form)."""
    s = math.sqrt((r - 3) * (r + 1))
    return np.array([(r + 1 - s) / (2 * r), (r + 1 + s) / (2 * r)])


def gd_arrays(gd_map) -> tuple[np.ndarray, np.ndarray]:
    return gd_map.values["A"][..., 0].numpy(), gd_map.values["b"][..., 0].numpy()


# ----------------------------------------------------------------------------------------------
# Outcome codes
# ----------------------------------------------------------------------------------------------


def test_status_codes_are_stable():
    assert {s.name: int(s) for s in Status} == {
        "NOT_RUN": 0,
        "CONVERGED": 1,
        "DIVERGED": 2,
        "PERIODIC": 3,
        "MAX_ITER": 4,
        "CHAOTIC": 5,
        # appended for issue 17 (out-of-budget verdicts); 0..5 never move
        "CONVERGING": 6,
        "QUASI_PERIODIC": 7,
    }
    assert status_names() == {
        0: "not_run",
        1: "converged",
        2: "diverged",
        3: "periodic",
        4: "max_iter",
        5: "chaotic",
        6: "converging",
        7: "quasi_periodic",
    }


def test_gradient_descent_converges_below_two_over_l_and_diverges_above(gd_map):
    a, b = gd_arrays(gd_map)
    assert np.linalg.eigvalsh(a).max() == pytest.approx(4.0)  # L = 4, so 2/L = 0.5
    for eta in (0.1, 0.3, 0.45):
        res = solve(gd_map.with_values(eta=eta), "fixed_point", tol=1e-10, max_iter=5000)
        assert res.statuses == [C], eta
        np.testing.assert_allclose(res.z[0].numpy(), np.linalg.solve(a, b), atol=1e-7)
    for eta in (0.51, 0.55, 0.7):
        res = solve(gd_map.with_values(eta=eta), "fixed_point", max_iter=5000)
        assert res.statuses == [D], eta
        assert not (res.z.abs().max() <= 1e8)  # beyond the bound or non-finite


@pytest.mark.parametrize(
    ("preset", "values", "multiplier"),
    [
        ("gradient_descent", {"eta": 0.49}, 1 - 0.49 * 4),
        ("logistic", {"r": 2.95}, 2 - 2.95),
        ("cosine", {"a": 1.3}, None),
    ],
    ids=["gd-eta0.49", "logistic-r2.95", "cosine-a1.3"],
)
def test_slow_alternating_convergence_is_not_called_periodic(preset, values, multiplier):
    """With a multiplier near -1 the iterates alternate about z* while they converge; that is a
    fixed point, not a 2-cycle, however slowly the alternation shrinks."""
    fmap = compile_spec(load_spec(preset).with_values(**values))
    res = solve(fmap, "fixed_point", tol=1e-9, max_iter=20_000)
    assert res.statuses == [C], (res.statuses, res.iterations, res.cycle)
    rate = float(res.observed_rate[0])
    if multiplier is not None:
        assert rate == pytest.approx(abs(multiplier), abs=0.01)


def test_gradient_descent_at_exactly_two_over_l_is_a_two_cycle(gd_map):
    a, b = gd_arrays(gd_map)
    res = solve(gd_map.with_values(eta=0.5), "fixed_point", max_iter=500)
    assert res.statuses == [P]
    assert int(res.period[0]) == 2
    p1, p2 = res.cycle[0, :2].numpy()

    def f_np(z):
        return z - 0.5 * (a @ z - b)

    np.testing.assert_allclose(f_np(p1), p2, atol=1e-4)
    np.testing.assert_allclose(f_np(p2), p1, atol=1e-4)
    # the eigenvalue -1 direction flips about the minimiser, which is the cycle's midpoint
    np.testing.assert_allclose((p1 + p2) / 2, np.linalg.solve(a, b), atol=1e-4)
    assert np.abs(p1 - p2).max() > 0.1


@pytest.mark.parametrize(("period_tol", "atol"), [(1e-5, 5e-5), (1e-12, 1e-9)])
def test_logistic_at_3_2_is_the_closed_form_two_cycle(logistic_map, period_tol, atol):
    res = solve(logistic_map, "fixed_point", period_tol=period_tol, max_iter=2000)
    assert res.statuses == [P]
    assert int(res.period[0]) == 2
    assert res.cycle.shape[1] >= 2
    pts = np.sort(res.cycle[0, :2, 0].numpy())
    np.testing.assert_allclose(pts, logistic_cycle(3.2), atol=atol)
    elem = res.element(0)
    assert elem["status"] == "periodic" and elem["period"] == 2
    np.testing.assert_allclose(
        np.sort(np.array(elem["cycle"])[:, 0]), logistic_cycle(3.2), atol=atol
    )


def test_logistic_period_four_cycle_is_an_orbit_in_order(logistic_map):
    res = solve(logistic_map.with_values(r=3.5), "fixed_point", period_tol=1e-12, max_iter=3000)
    assert res.statuses == [P] and int(res.period[0]) == 4
    cyc = res.cycle[0, :4, 0].numpy()
    assert len(np.unique(np.round(cyc, 6))) == 4

    def f(v):
        return 3.5 * v * (1 - v)

    for j in range(4):  # oldest first: each point maps to the next
        assert f(cyc[j]) == pytest.approx(cyc[(j + 1) % 4], abs=1e-9)


def test_a_mixed_logistic_batch_gets_one_outcome_per_row(logistic_map):
    r = torch.tensor([0.5, 2.5, 3.2, 3.5, 3.9], dtype=torch.float64)
    res = solve(logistic_map.with_values(r=r), "fixed_point", tol=1e-11, max_iter=1000)
    assert res.statuses[:4] == [C, C, P, P]
    assert res.period.tolist()[:4] == [0, 0, 2, 4]
    assert res.statuses[4] in (M, Status.CHAOTIC)
    np.testing.assert_allclose(res.z[:2, 0].numpy(), [0.0, 0.6], atol=1e-9)
    assert torch.isnan(res.cycle[:2]).all()  # no cycle stored for converged rows
    assert int(res.iterations[4]) == 1000


def test_chaotic_logistic_is_reported_chaotic(logistic_map):
    """Status.CHAOTIC: no convergence, no cycle, positive Lyapunov exponent (about 0.5 at
    r = 3.9; r = 4 is avoided because floating-point orbits there fall onto 1 -> 0)."""
    res = solve(logistic_map.with_values(r=3.9), "fixed_point", max_iter=1000)
    assert res.statuses == [Status.CHAOTIC]


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize(
    ("f", "z0"),
    [("log(z)", -1.0), ("sqrt(z - 2)", 3.0), ("log(z - 5) + z", 4.0), ("z / (z - z)", 1.0)],
)
def test_nan_producing_maps_are_diverged_never_raised(solver, f, z0):
    fmap = compile_spec(make_spec(f, 1, z0=[z0]))
    res = solve(fmap, solver, max_iter=100, solver_options=PLAIN.get(solver))
    assert res.statuses == [D]
    assert int(res.iterations[0]) <= 3
    json.dumps(res.element(0), allow_nan=False)


@pytest.mark.parametrize("solver", ["fixed_point", "damped"])
def test_blow_up_is_diverged(solver):
    fmap = compile_spec(make_spec("2 * z + 1", 1, z0=[0.0]))
    res = solve(fmap, solver, max_iter=1000)
    assert res.statuses == [D]
    assert abs(float(res.z[0, 0])) > 1e8 or not math.isfinite(float(res.z[0, 0]))
    # 2^k - 1 (naive) or 1.5^k - 1 (damped) first passes 1e8 at step 27 or 46; the bound is
    # checked at least every period_every = 8 steps
    first = 27 if solver == "fixed_point" else 46
    assert first <= int(res.iterations[0]) <= first + 8


def test_a_lower_divergence_bound_stops_earlier():
    fmap = compile_spec(make_spec("2 * z + 1", 1, z0=[0.0]))
    res = solve(fmap, "fixed_point", div_bound=100.0, max_iter=1000)
    assert res.statuses == [D]
    assert 7 <= int(res.iterations[0]) <= 7 + 8  # 2^7 - 1 = 127 > 100


def test_overflow_to_infinity_is_diverged():
    fmap = compile_spec(make_spec("exp(z) * 1e300", 1, z0=[1.0]))
    res = solve(fmap, "fixed_point", max_iter=50)
    assert res.statuses == [D]
    assert int(res.iterations[0]) <= 1


def test_diverging_and_converging_rows_in_one_batch():
    fmap = compile_spec(make_spec("c * z + 1", 1, params={"c": 0.5}, z0=[0.0]))
    c = torch.tensor([0.5, 3.0, -3.0, 0.9, -0.5], dtype=torch.float64)
    res = solve(fmap.with_values(c=c), "fixed_point", tol=1e-12, max_iter=1000)
    assert res.statuses == [C, D, D, C, C]
    conv = [0, 3, 4]
    np.testing.assert_allclose(res.z[conv, 0].numpy(), 1 / (1 - c[conv].numpy()), atol=1e-10)


def test_max_iter_when_the_budget_is_too_small(cosine_map):
    # Out of budget after 5 steps. Since issue 17 the end window tells why: the residual falls
    # geometrically, so the element is "converging" (it was "max_iter" before), at a rate near
    # |f'(z*)| = sin(z*) = 0.6736 and with about 63 more steps to go (68 in all, by a long run);
    # with the end window turned off there is no verdict (max_iter).
    res = solve(cosine_map, "fixed_point", max_iter=5, tol=1e-12)
    assert res.statuses == [Status.CONVERGING]
    assert float(res.rate[0]) == pytest.approx(math.sin(0.7390851332151607), rel=0.03)
    truth = int(solve(cosine_map, "fixed_point", max_iter=500, tol=1e-12).iterations[0]) - 5
    assert float(res.steps_needed[0]) == pytest.approx(truth, rel=0.1)
    assert solve(cosine_map, "fixed_point", max_iter=5, tol=1e-12, lyapunov_steps=0).statuses == [M]
    assert int(res.iterations[0]) == 5
    assert res.residuals.shape == (1, 6)
    assert torch.isfinite(res.residuals).all()
    z = 1.0
    for _ in range(5):
        z = math.cos(z)
    assert float(res.z[0, 0]) == pytest.approx(z, abs=1e-15)


def test_max_iter_zero_evaluates_the_start_only(cosine_map):
    res = solve(cosine_map, "fixed_point", max_iter=0)
    assert res.statuses == [M]
    assert int(res.iterations[0]) == 0 and int(res.f_evals[0]) == 1
    assert float(res.z[0, 0]) == 1.0
    assert float(res.residual[0]) == pytest.approx(abs(math.cos(1.0) - 1.0), abs=1e-15)


def test_a_start_at_the_fixed_point_converges_in_zero_steps(cosine_map):
    res = solve(cosine_map, "anderson", z0=[[DOTTIE]], tol=1e-12)
    assert res.statuses == [C] and int(res.iterations[0]) == 0


# ----------------------------------------------------------------------------------------------
# Convergence rule, residuals and traces
# ----------------------------------------------------------------------------------------------


def test_convergence_is_the_first_step_below_tol(cosine_map):
    res = solve(cosine_map, "fixed_point", tol=1e-6, trace=True)
    n = int(res.iterations[0])
    traj = res.trajectory[0, : n + 1, 0].numpy()
    r = res.residuals[0, : n + 1].numpy()
    np.testing.assert_allclose(r, np.abs(np.cos(traj) - traj), rtol=1e-12, atol=1e-16)
    assert r[n] <= 1e-6 and (r[:n] > 1e-6).all()
    assert float(res.residual[0]) == pytest.approx(r[n], rel=1e-12)


def test_relative_tolerance(cosine_map):
    tol, rtol = 1e-300, 1e-3
    res = solve(cosine_map.with_values(a=3.0), "damped", tol=tol, rtol=rtol, trace=True)
    n = int(res.iterations[0])
    assert res.statuses == [C]
    traj = res.trajectory[0, : n + 1, 0].numpy()
    fz = 3.0 * np.cos(traj)
    ok = np.abs(fz - traj) <= tol + rtol * np.abs(fz)
    assert ok[n] and not ok[:n].any()


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_trace_shapes_and_contents(solver, tanh_map):
    a = torch.tensor([0.2, 0.9, 0.6], dtype=torch.float64)
    z0 = torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
    res = solve(tanh_map.with_values(a=a), solver, z0, tol=1e-9, trace=True)
    b, d = 3, 2
    t = int(res.iterations.max())
    assert res.trajectory.shape == (b, t + 1, d)
    assert res.residuals.shape == (b, t + 1)
    assert res.step_time_s.shape == (t + 1,)
    assert (torch.diff(res.step_time_s) >= 0).all()
    torch.testing.assert_close(res.trajectory[:, 0], z0, rtol=0, atol=0)
    for i in range(b):
        n = int(res.iterations[i])
        torch.testing.assert_close(res.trajectory[i, n], res.z[i], rtol=0, atol=0)
        assert torch.isfinite(res.trajectory[i, : n + 1]).all()
        assert torch.isnan(res.trajectory[i, n + 1 :]).all()
        # every recorded residual is ||f(z_k) - z_k|| at the recorded iterate
        zk = res.trajectory[i, : n + 1]
        fk = tanh_map.with_values(a=float(a[i]))(zk)
        torch.testing.assert_close(
            res.residuals[i, : n + 1],
            torch.linalg.vector_norm(fk - zk, dim=1),
            rtol=1e-10,
            atol=1e-15,
        )


def test_naive_trace_follows_the_map(tanh_map):
    w = tanh_map.values["W"][..., 0].numpy()
    x = tanh_map.values["x"][..., 0].numpy()
    res = solve(tanh_map, "fixed_point", max_iter=30, trace=True, tol=1e-14)
    traj = res.trajectory[0].numpy()
    for k in range(30):
        np.testing.assert_allclose(traj[k + 1], np.tanh(0.9 * w @ traj[k] + x), rtol=1e-14)


def test_no_trace_by_default(cosine_map):
    res = solve(cosine_map, "fixed_point")
    assert res.trajectory is None and res.step_time_s is None


def test_trace_memory_guard():
    fmap = compile_spec(load_spec("deq_cell"))
    with pytest.raises(SolverError, match="GiB"):
        solve(fmap, "fixed_point", torch.zeros(20_000, 32), trace=True, max_iter=10_000)


# ----------------------------------------------------------------------------------------------
# Per-element stopping and batch == loop
# ----------------------------------------------------------------------------------------------


def test_each_element_stops_on_its_own(cosine_map):
    a = [0.2, 0.6, 1.0, 1.1]
    res = solve(
        cosine_map.with_values(a=torch.tensor(a, dtype=torch.float64)),
        "fixed_point",
        tol=1e-10,
        max_iter=3000,
        trace=True,
    )
    assert res.statuses == [C] * 4
    iters = res.iterations.tolist()
    assert iters == sorted(iters) and len(set(iters)) == 4  # faster contraction, fewer steps
    t = max(iters)
    assert res.residuals.shape == (4, t + 1)
    for i, ai in enumerate(a):
        alone = solve(
            compile_spec(cosine_map.spec.with_values(a=ai)), "fixed_point", tol=1e-10, max_iter=3000
        )
        assert int(alone.iterations[0]) == iters[i]
        torch.testing.assert_close(res.z[i], alone.z[0], rtol=0, atol=1e-15)
        n = iters[i]
        assert torch.isfinite(res.residuals[i, : n + 1]).all()
        assert torch.isnan(res.residuals[i, n + 1 :]).all()
        assert torch.isnan(res.trajectory[i, n + 1 :]).all()
        # a fixed point of z = a cos z, checked with math
        assert float(res.z[i, 0]) == pytest.approx(ai * math.cos(float(res.z[i, 0])), abs=1e-10)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_per_row_params_batch_equals_separate_solves_logistic(solver, logistic_map):
    rs = [0.5, 1.5, 2.5, 2.9, 3.2, 3.5]
    z0 = torch.tensor([[0.3]], dtype=torch.float64)
    batch = solve(
        logistic_map.with_values(r=torch.tensor(rs, dtype=torch.float64)),
        solver,
        z0,
        tol=1e-11,
        max_iter=600,
    )
    for i, r in enumerate(rs):
        alone = solve(
            compile_spec(logistic_map.spec.with_values(r=r)), solver, z0, tol=1e-11, max_iter=600
        )
        assert batch.statuses[i] == alone.statuses[0], r
        assert int(batch.iterations[i]) == int(alone.iterations[0]), r
        assert int(batch.period[i]) == int(alone.period[0]), r
        torch.testing.assert_close(batch.z[i], alone.z[0], rtol=0, atol=1e-12)
        assert int(batch.f_evals[i]) == int(alone.f_evals[0])


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_per_row_params_batch_equals_separate_solves_tanh(solver, tanh_map):
    a = [0.1, 0.5, 0.9, 1.0, 0.3]
    batch = solve(
        tanh_map.with_values(a=torch.tensor(a, dtype=torch.float64)),
        solver,
        tol=1e-10,
        max_iter=2000,
    )
    assert batch.statuses == [C] * 5
    for i, ai in enumerate(a):
        alone = solve(
            compile_spec(tanh_map.spec.with_values(a=ai)), solver, tol=1e-10, max_iter=2000
        )
        assert int(batch.iterations[i]) == int(alone.iterations[0]), ai
        torch.testing.assert_close(batch.z[i], alone.z[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(
            batch.spectral_radius[i], alone.spectral_radius[0], rtol=1e-10, atol=0
        )


def test_rows_of_z0_batch_equals_separate_solves(tanh_map):
    z0 = torch.tensor(np.random.default_rng(3).uniform(-3, 3, (6, 2)))
    batch = solve(tanh_map, "broyden", z0, tol=1e-10)
    assert batch.batch == 6
    for i in range(6):
        alone = solve(tanh_map, "broyden", z0[i], tol=1e-10)
        assert int(batch.iterations[i]) == int(alone.iterations[0])
        torch.testing.assert_close(batch.z[i], alone.z[0], rtol=0, atol=1e-12)


def test_compaction_does_not_change_results(cosine_map):
    a = torch.linspace(0.1, 1.3, 9, dtype=torch.float64)
    ref = solve(
        cosine_map.with_values(a=a), "anderson", tol=1e-11, compact_every=10_000, trace=True
    )
    for every in (1, 3, 8):
        res = solve(
            cosine_map.with_values(a=a), "anderson", tol=1e-11, compact_every=every, trace=True
        )
        assert res.iterations.tolist() == ref.iterations.tolist()
        torch.testing.assert_close(res.z, ref.z, rtol=0, atol=1e-12)
        torch.testing.assert_close(res.residuals, ref.residuals, rtol=0, atol=1e-12, equal_nan=True)
        torch.testing.assert_close(
            res.trajectory, ref.trajectory, rtol=0, atol=1e-12, equal_nan=True
        )


# ----------------------------------------------------------------------------------------------
# Counts
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def call_counter(monkeypatch):
    """Count map evaluations: plain ones, and those made under autograd (Jacobians)."""
    calls = {"f": 0, "jac": 0}
    original = FixedPointMap.batch_last

    def counted(self, z):
        calls["jac" if z.requires_grad else "f"] += 1
        return original(self, z)

    monkeypatch.setattr(FixedPointMap, "batch_last", counted)
    return calls


@pytest.mark.parametrize("max_iter", [500, 7])
@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_f_evals_and_jac_evals_count_real_calls(call_counter, cosine_map, solver, max_iter):
    # diagnostics and the Lyapunov post-pass (extra map calls, not solver cost) are off
    res = solve(
        cosine_map.with_values(a=1.2),
        solver,
        tol=1e-12,
        max_iter=max_iter,
        diagnostics=False,
        lyapunov_steps=0,
    )
    n = int(res.iterations[0])
    assert n >= 1
    assert int(res.f_evals[0]) == call_counter["f"]
    assert int(res.jac_evals[0]) == call_counter["jac"]
    per_step = (call_counter["f"] - 1) / n
    assert per_step == 1  # one map evaluation per step for every built-in solver
    assert call_counter["jac"] == (n if solver == "newton" else 0)
    assert int(res.f_evals[0]) == 1 + n * per_step


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_f_evals_formula_holds_per_element(solver, logistic_map):
    rs = torch.tensor([1.5, 2.5, 2.9, 3.2], dtype=torch.float64)
    opts = PLAIN.get(solver)  # line searches cost more: tests/core/test_solvers.py counts them
    res = solve(
        logistic_map.with_values(r=rs), solver, tol=1e-10, max_iter=300, solver_options=opts
    )
    jac = 1 if solver == "newton" else 0
    assert res.f_evals.tolist() == (1 + res.iterations).tolist()
    assert res.jac_evals.tolist() == (jac * res.iterations).tolist()


# ----------------------------------------------------------------------------------------------
# Cancellation, progress, start points and options
# ----------------------------------------------------------------------------------------------


def test_cancel_marks_unfinished_elements_not_run(logistic_map):
    rs = torch.tensor([2.5, 3.2], dtype=torch.float64)
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) >= 5

    res = solve(logistic_map.with_values(r=rs), "fixed_point", cancel=cancel, max_iter=1000)
    assert res.statuses == [C, Status.NOT_RUN]
    assert len(polls) == 5
    res = solve(logistic_map, "fixed_point", cancel=lambda: True)
    assert res.statuses == [Status.NOT_RUN]


def test_progress_reports_steps_and_live_elements(cosine_map):
    seen = []
    a = torch.tensor([0.2, 1.3], dtype=torch.float64)
    res = solve(
        cosine_map.with_values(a=a),
        "fixed_point",
        tol=1e-12,
        max_iter=2000,
        progress=lambda k, live: seen.append((k, live)),
    )
    assert seen
    steps = [k for k, _ in seen]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(live in (1, 2) for _, live in seen)
    assert seen[0][1] == 2 and seen[-1][1] == 1  # the fast element finished first
    assert steps[-1] <= int(res.iterations.max())


def test_z0_forms(tanh_map):
    one = solve(tanh_map, "newton", [0.3, -0.3])
    assert one.batch == 1
    rows = solve(
        tanh_map.with_values(a=torch.tensor([0.5, 0.7], dtype=torch.float64)), "newton", [0.3, -0.3]
    )
    assert rows.batch == 2  # one start for every per-row value
    with pytest.raises(SpecError, match="shape"):
        solve(tanh_map, "newton", [0.1, 0.2, 0.3])
    with pytest.raises(SpecError, match="rows"):
        solve(
            tanh_map.with_values(a=torch.tensor([0.5, 0.7], dtype=torch.float64)),
            "newton",
            torch.zeros(3, 2),
        )
    with pytest.raises(SolverError, match="empty"):
        solve(tanh_map, "newton", torch.zeros(0, 2))


@pytest.mark.parametrize(
    "bad",
    [
        {"tol": 0.0},
        {"tol": -1e-3},
        {"tol": float("nan")},
        {"rtol": -1.0},
        {"max_iter": -1},
        {"div_bound": 0.0},
        {"period_tol": 0.0},
        {"max_period": 1},
        {"period_every": 0},
        {"compact_every": 0},
    ],
)
def test_bad_options_raise_solver_error(bad, cosine_map):
    with pytest.raises(SolverError):
        SolveOptions(**bad)
    with pytest.raises(SolverError):
        solve(cosine_map, "fixed_point", **bad)


def test_options_object_and_overrides(cosine_map):
    opts = SolveOptions(tol=1e-3, max_iter=500)
    res = solve(cosine_map, "fixed_point", options=opts, tol=1e-9)
    assert res.options.tol == 1e-9 and res.options.max_iter == 500
    assert float(res.residual[0]) <= 1e-9


def test_element_is_json_ready_and_matches_the_tensors(logistic_map):
    rs = torch.tensor([2.5, 3.2, 3.9], dtype=torch.float64)
    res = solve(logistic_map.with_values(r=rs), "fixed_point", max_iter=200)
    for i in range(3):
        e = res.element(i)
        json.dumps(e, allow_nan=False)
        assert e["status"] == res.statuses[i].label and e["status_code"] == int(res.status[i])
        assert e["iterations"] == int(res.iterations[i])
        assert e["z"] == pytest.approx(res.z[i].tolist())
        assert len(e["residuals"]) == e["iterations"] + 1
        assert e["f_evals"] == int(res.f_evals[i])
        assert e["dtype"] == "float64" and e["device"] == "cpu"
    assert res.element(1)["cycle"] is not None and res.element(0)["cycle"] is None


def test_results_as_numpy(cosine_map):
    res = solve(cosine_map, "fixed_point", trace=True)
    arrays = res.numpy()
    for key in ("z", "status", "iterations", "residuals", "trajectory"):
        assert isinstance(arrays[key], np.ndarray)
        np.testing.assert_array_equal(arrays[key], getattr(res, key).numpy())


# ----------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------


def test_compare_runs_every_solver_in_order(tanh_map):
    results = compare(tanh_map, tol=1e-10)
    assert [r.solver for r in results] == ALL_SOLVERS
    ref = results[3].z  # newton
    for r in results:
        assert r.statuses == [C]
        torch.testing.assert_close(r.z, ref, atol=1e-9, rtol=0)
        assert r.options.tol == 1e-10 and r.options.diagnostics
        torch.testing.assert_close(r.spectral_radius, results[0].spectral_radius, rtol=1e-6, atol=0)
    alone = solve(tanh_map, "broyden", tol=1e-10)
    torch.testing.assert_close(results[4].spectral_radius, alone.spectral_radius, rtol=1e-6, atol=0)


def test_compare_a_subset_with_options(cosine_map):
    results = compare(cosine_map, ["damped", "anderson"], solver_options={"damped": {"beta": 0.8}})
    assert [r.solver for r in results] == ["damped", "anderson"]
    assert results[0].solver_options == {"beta": 0.8}


# ----------------------------------------------------------------------------------------------
# dtype and device
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_float32_solve_agrees_with_float64(solver, tanh_spec):
    r64 = solve(compile_spec(tanh_spec), solver, tol=1e-12, max_iter=2000)
    r32 = solve(compile_spec(tanh_spec, dtype="float32"), solver, tol=1e-5, max_iter=2000)
    assert r32.statuses == [C]
    assert r32.z.dtype == torch.float32 and r32.dtype == "float32"
    assert r32.residuals.dtype == torch.float32
    np.testing.assert_allclose(r32.z.double().numpy(), r64.z.numpy(), atol=3e-5)


@requires_cuda
@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_cuda_solve_equals_cpu(solver, tanh_spec):
    a = torch.linspace(0.1, 1.0, 16, dtype=torch.float64)
    cpu = solve(
        compile_spec(tanh_spec).with_values(a=a), solver, tol=1e-10, max_iter=2000, trace=True
    )
    gpu_map = compile_spec(tanh_spec, device="cuda").with_values(a=a.cuda())
    gpu = solve(gpu_map, solver, tol=1e-10, max_iter=2000, trace=True)
    assert gpu.device.startswith("cuda") and gpu.z.device.type == "cuda"
    assert gpu.statuses == cpu.statuses
    assert (gpu.iterations.cpu() - cpu.iterations).abs().max() <= 1
    torch.testing.assert_close(gpu.z.cpu(), cpu.z, atol=1e-9, rtol=0)
    torch.testing.assert_close(gpu.spectral_radius.cpu(), cpu.spectral_radius, atol=1e-8, rtol=0)
    assert gpu.trajectory.shape[0] == 16


@requires_cuda
def test_cuda_periodic_and_diverged_match_cpu():
    spec = load_spec("logistic")
    r = torch.tensor([2.5, 3.2, 3.5, 3.9, 5.0], dtype=torch.float64)
    cpu = solve(compile_spec(spec).with_values(r=r), "fixed_point", max_iter=500)
    gpu = solve(
        compile_spec(spec, device="cuda").with_values(r=r.cuda()), "fixed_point", max_iter=500
    )
    assert gpu.statuses == cpu.statuses
    assert gpu.period.cpu().tolist() == cpu.period.tolist()
