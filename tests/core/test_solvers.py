"""Every registered solver on every zoo problem (against closed forms and SciPy), the registry,
Newton's quadratic rate, Anderson's speed-up and exact/finite termination on affine maps."""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import SolverError
from implicit_viz.core.solvers import _REGISTRY as REGISTRY
from implicit_viz.core.solvers import (
    Solver,
    available_solvers,
    get_solver,
    register_solver,
    solver_options,
)
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from tests.helpers import (
    DOTTIE,
    SOLVERS,
    ZOO,
    ZOO_IDS,
    fd_jacobian,
    make_spec,
    random_contraction,
    scipy_fixed_point,
    scipy_root,
)

ALL_SOLVERS = available_solvers()


# ----------------------------------------------------------------------------------------------
# Every solver on every problem
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_solver_reaches_the_known_fixed_point(solver, prob):
    fmap = compile_spec(prob.spec)
    res = solve(fmap, solver, tol=prob.tol, max_iter=prob.max_iter, diagnostics=False)
    assert res.statuses == [Status.CONVERGED], (res.statuses, res.iterations)
    z = res.z[0].numpy()
    # residual reported = ||f(z) - z|| recomputed with NumPy, and below the tolerance
    r_np = np.linalg.norm(prob.f_np(z) - z)
    assert float(res.residual[0]) == pytest.approx(r_np, rel=1e-6, abs=1e-15)
    assert r_np <= prob.tol * (1 + 1e-9)
    # near z*, z - z* ~ (I - J)^-1 (f(z) - z): bound the error with NumPy's J (finite differences)
    j = fd_jacobian(prob.f_np, prob.z_star)
    gain = np.linalg.norm(np.linalg.inv(np.eye(len(z)) - j), 2)
    np.testing.assert_allclose(z, prob.z_star, atol=2 * gain * prob.tol + 1e-13, rtol=0)
    assert res.solver == solver
    assert int(res.iterations[0]) >= 1


# Random contractions z = tanh(W z + x), ||W||_2 in [0.5, 0.9], dims 1..16, several seeds; four
# inputs x per map solved as one batch, each row checked against SciPy.
CASES = [(d, s) for d in (1, 2, 3, 7, 16) for s in (10, 11, 12)]


@functools.cache
def contraction_case(dim: int, seed: int):
    """W, four inputs x, and SciPy's fixed points (root and fixed_point, checked to agree)."""
    norm = float(np.random.default_rng(seed).uniform(0.5, 0.9))
    w, _ = random_contraction(dim, seed, norm)
    xs = np.random.default_rng(seed + 100).standard_normal((4, dim)) * 1.5
    refs = []
    for x in xs:

        def f_np(z, x=x):
            return np.tanh(w @ z + x)

        ref_fp = scipy_fixed_point(f_np, np.zeros(dim))
        ref_root = scipy_root(f_np, np.zeros(dim))
        np.testing.assert_allclose(ref_fp, ref_root, atol=1e-11)  # SciPy agrees with itself
        refs.append(ref_root)
    return w, xs, np.array(refs)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize(("dim", "seed"), CASES, ids=[f"d{d}-s{s}" for d, s in CASES])
def test_random_contraction_agrees_with_scipy(solver, dim, seed):
    w, xs, refs = contraction_case(dim, seed)
    spec = make_spec("tanh(W @ z + x)", dim, tensors={"W": w, "x": xs[0]})
    fmap = compile_spec(spec).with_values(x=xs)
    res = solve(fmap, solver, tol=1e-12, max_iter=5000, diagnostics=False)
    assert (res.status == int(Status.CONVERGED)).all(), res.statuses
    np.testing.assert_allclose(res.z.numpy(), refs, atol=1e-10, rtol=0)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_solvers_agree_with_each_other_on_a_batch(solver, tanh_map):
    a = torch.linspace(0.1, 1.0, 7, dtype=torch.float64)
    ref = solve(tanh_map.with_values(a=a), "newton", tol=1e-13, max_iter=100)
    res = solve(tanh_map.with_values(a=a), solver, tol=1e-12, max_iter=3000)
    assert res.statuses == [Status.CONVERGED] * 7
    torch.testing.assert_close(res.z, ref.z, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------------------------
# Rates and step counts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("z0", [2.0, 3.0, -1.0])
def test_newton_converges_quadratically_on_the_cosine_map(cosine_map, z0):
    res = solve(cosine_map, "newton", z0=[[z0]], tol=1e-15, max_iter=50)
    assert res.statuses == [Status.CONVERGED]
    assert float(res.z[0, 0]) == pytest.approx(DOTTIE, abs=1e-14)
    n = int(res.iterations[0])
    r = res.residuals[0, : n + 1].numpy()
    # g(z) = z - cos z: r_{k+1} ~ C r_k^2 with C = |g''| / (2 g'^2) at z*
    c = math.cos(DOTTIE) / (2 * (1 + math.sin(DOTTIE)) ** 2)
    pairs = [(r[k], r[k + 1]) for k in range(n) if r[k] < 0.1 and r[k + 1] > 1e-14]
    assert len(pairs) >= 2, r
    for rk, rk1 in pairs:
        assert rk1 / rk**2 < 2 * c, (rk, rk1, c)
    rk, rk1 = pairs[-1]
    assert rk1 / rk**2 == pytest.approx(c, rel=0.1)
    # superlinear: the plain ratio r_{k+1} / r_k falls towards 0
    plain = [b / a for a, b in pairs]
    assert all(q2 < q1 for q1, q2 in itertools.pairwise(plain))
    assert plain[-1] < 1e-3


def test_newton_converges_quadratically_on_sqrt2():
    fmap = compile_spec(load_spec("sqrt2"))
    res = solve(fmap, "newton", z0=[[5.0]], tol=1e-15, max_iter=50)
    assert float(res.z[0, 0]) == pytest.approx(math.sqrt(2), abs=1e-15)
    n = int(res.iterations[0])
    r = res.residuals[0, : n + 1].numpy()
    # g(z) = c (z^2 - 2), r = |g|: r_{k+1} ~ r_k^2 |g''| / (2 g'^2) = r_k^2 / (4 c z*^2) = r_k^2 / 2
    ratios = [r[k + 1] / r[k] ** 2 for k in range(n) if r[k] < 0.1 and r[k + 1] > 1e-14]
    assert ratios and max(ratios) < 1.0
    assert ratios[-1] == pytest.approx(0.5, rel=0.1)


def test_anderson_beats_naive_iteration_on_the_tanh_layer(tanh_map):
    naive = solve(tanh_map, "fixed_point", tol=1e-8, max_iter=1000)
    anderson = solve(tanh_map, "anderson", tol=1e-8, max_iter=1000)
    assert naive.statuses == anderson.statuses == [Status.CONVERGED]
    assert int(anderson.iterations[0]) < int(naive.iterations[0]) / 3
    torch.testing.assert_close(anderson.z, naive.z, atol=1e-7, rtol=0)


def test_anderson_beats_naive_iteration_on_a_batch_of_layers(tanh_map):
    a = torch.linspace(0.5, 1.0, 6, dtype=torch.float64)
    naive = solve(tanh_map.with_values(a=a), "fixed_point", tol=1e-8, max_iter=5000)
    anderson = solve(tanh_map.with_values(a=a), "anderson", tol=1e-8, max_iter=5000)
    assert (naive.status == 1).all() and (anderson.status == 1).all()
    assert (anderson.iterations < naive.iterations).all()


@pytest.mark.parametrize("eta", [0.1, 0.3, 0.55, 0.8])
def test_newton_solves_an_affine_map_in_one_step(gd_map, eta):
    """f is affine, so one Newton step lands on A^-1 b, even where naive iteration diverges."""
    a = gd_map.values["A"][..., 0].numpy()
    b = gd_map.values["b"][..., 0].numpy()
    res = solve(gd_map.with_values(eta=eta), "newton", tol=1e-12, max_iter=20)
    assert res.statuses == [Status.CONVERGED]
    assert int(res.iterations[0]) == 1
    np.testing.assert_allclose(res.z[0].numpy(), np.linalg.solve(a, b), atol=1e-13)


@pytest.mark.parametrize("eta", [0.3, 0.55, 0.8])
@pytest.mark.parametrize(("solver", "most"), [("broyden", 2 * 2 + 1), ("anderson", 25)])
def test_quasi_newton_solves_an_affine_map_in_few_steps(gd_map, eta, solver, most):
    """Broyden terminates on an n-dimensional affine map within 2n steps (Gay, 1979), plus one
    for round-off; Anderson needs a few more (its Gram matrix is regularised). Both succeed where
    naive iteration diverges (eta > 2/L = 0.5)."""
    a = gd_map.values["A"][..., 0].numpy()
    b = gd_map.values["b"][..., 0].numpy()
    res = solve(gd_map.with_values(eta=eta), solver, tol=1e-10, max_iter=200)
    assert res.statuses == [Status.CONVERGED]
    assert int(res.iterations[0]) <= most
    np.testing.assert_allclose(res.z[0].numpy(), np.linalg.solve(a, b), atol=1e-9)


def test_damped_with_beta_one_is_naive_iteration(tanh_map):
    a = solve(tanh_map, "fixed_point", tol=1e-10, trace=True)
    b = solve(tanh_map, get_solver("damped", beta=1.0), tol=1e-10, trace=True)
    assert a.iterations.tolist() == b.iterations.tolist()
    torch.testing.assert_close(a.trajectory, b.trajectory, atol=1e-14, rtol=0, equal_nan=True)


def test_anderson_with_memory_one_is_naive_iteration(tanh_map):
    a = solve(tanh_map, "fixed_point", tol=1e-10, trace=True)
    b = solve(tanh_map, "anderson", solver_options={"m": 1}, tol=1e-10, trace=True)
    assert a.iterations.tolist() == b.iterations.tolist()
    torch.testing.assert_close(a.trajectory, b.trajectory, atol=1e-14, rtol=0, equal_nan=True)


def test_damped_iterates_follow_the_relaxation_formula(cosine_map):
    beta = 0.3
    res = solve(cosine_map, "damped", solver_options={"beta": beta}, max_iter=6, trace=True)
    traj = res.trajectory[0, :, 0].numpy()
    for k in range(6):
        assert traj[k + 1] == pytest.approx(
            (1 - beta) * traj[k] + beta * math.cos(traj[k]), abs=1e-15
        )


def test_newton_with_damping_follows_the_damped_newton_formula(cosine_map):
    res = solve(cosine_map, "newton", solver_options={"damping": 0.5}, max_iter=4, trace=True)
    traj = res.trajectory[0, :, 0].numpy()
    for k in range(4):
        z = traj[k]
        step = (z - math.cos(z)) / (1 + math.sin(z))
        assert traj[k + 1] == pytest.approx(z - 0.5 * step, abs=1e-14)


def test_first_broyden_step_is_a_plain_iteration(cosine_map):
    res = solve(cosine_map, "broyden", max_iter=1, trace=True)
    assert float(res.trajectory[0, 1, 0]) == pytest.approx(math.cos(1.0), abs=1e-15)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def test_available_solvers_order():
    assert available_solvers()[:5] == list(SOLVERS)
    assert available_solvers() == list(SOLVERS)  # no stray registrations


def test_unknown_solver_lists_the_known_names():
    with pytest.raises(SolverError) as info:
        get_solver("andersen")
    msg = str(info.value)
    for name in SOLVERS:
        assert name in msg
    assert "anderson" in msg.split("Did you mean")[-1]
    with pytest.raises(SolverError, match="unknown solver 'bisection'"):
        solve(compile_spec(load_spec("cosine")), "bisection")


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("anderson", {"mm": 3}, "mm"),
        ("damped", {"m": 3}, "m"),
        ("fixed_point", {"beta": 0.5}, "beta"),
        ("newton", {"damping": 0.5, "tol": 1.0}, "tol"),
    ],
)
def test_unknown_option_is_named_with_the_allowed_ones(name, options, fragment):
    with pytest.raises(SolverError) as info:
        get_solver(name, **options)
    msg = str(info.value)
    assert fragment in msg
    for allowed in solver_options(name):
        assert allowed in msg


def test_solver_options_defaults():
    assert solver_options("fixed_point") == {}
    assert solver_options("damped") == {"beta": 0.5}
    assert solver_options("anderson") == {"m": 5, "lam": 1e-4, "beta": 1.0}
    assert solver_options("newton") == {"damping": 1.0, "line_search": True}
    assert solver_options("broyden") == {"beta": 1.0, "line_search": True}


def test_options_are_coerced_and_reported():
    s = get_solver("anderson", m="7", lam=0, beta="0.5")
    assert (s.m, s.lam, s.beta) == (7, 0.0, 0.5)
    assert isinstance(s.m, int) and isinstance(s.lam, float)
    assert s.options() == {"m": 7, "lam": 0.0, "beta": 0.5}
    with pytest.raises(SolverError, match=r"anderson\.m: needs an integer"):
        get_solver("anderson", m="many")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("damped", {"beta": 0.0}),
        ("damped", {"beta": 2.0}),
        ("anderson", {"m": 0}),
        ("anderson", {"lam": -1.0}),
        ("anderson", {"beta": 0.0}),
        ("newton", {"damping": 0.0}),
        ("newton", {"damping": 1.5}),
        ("broyden", {"beta": 1.5}),
    ],
)
def test_option_ranges_are_checked(name, options):
    with pytest.raises(SolverError, match=name):
        get_solver(name, **options)


def test_instance_and_options_are_exclusive(cosine_map):
    with pytest.raises(SolverError, match="either"):
        solve(cosine_map, get_solver("damped"), solver_options={"beta": 0.2})


def test_solve_reports_the_solver_options(cosine_map):
    res = solve(cosine_map, "anderson", solver_options={"m": 3})
    assert res.solver == "anderson"
    assert res.solver_options == {"m": 3, "lam": 1e-4, "beta": 1.0}


def test_a_registered_solver_is_listed_after_the_builtins_and_runs(monkeypatch, cosine_map):
    monkeypatch.setattr("implicit_viz.core.solvers._REGISTRY", dict(REGISTRY))

    @register_solver("zz_half_step")
    @dataclass(frozen=True)
    class HalfStep(Solver):
        def step(self, f, z, fz, state):
            z_new = 0.5 * (z + fz)
            return z_new, f(z_new), state

    assert available_solvers() == [*SOLVERS, "zz_half_step"]
    res = solve(cosine_map, "zz_half_step", tol=1e-12, max_iter=500)
    assert res.statuses == [Status.CONVERGED]
    assert float(res.z[0, 0]) == pytest.approx(DOTTIE, abs=1e-11)
    with pytest.raises(SolverError, match="already registered"):
        register_solver("damped")(HalfStep)


@pytest.mark.parametrize("s", [0.8, 1.4])
def test_anderson_longer_memory_does_not_slow_it_down(s):
    """A longer memory must not cost steps (it did when the regularisation scaled with the
    oldest, largest residual: m = 16 took twice the steps of m = 5 on this cell)."""
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.driver import solve
    from implicit_viz.core.spec import load_spec

    fmap = compile_spec(load_spec("deq_cell").with_overrides({"s": s}))
    steps = {
        m: int(solve(fmap, "anderson", solver_options={"m": m}, diagnostics=False).iterations[0])
        for m in (5, 16)
    }
    assert steps[16] <= steps[5] + 1, steps


# ----------------------------------------------------------------------------------------------
# Globalized Newton and Broyden: the line_search switch, honest counts, no false convergence
# ----------------------------------------------------------------------------------------------


def _newton_critical_start() -> float:
    """Plain Newton on atan(z) = 0 cycles between -z_c and z_c, where the Newton step maps z_c
    to -z_c: z_c - (1 + z_c^2) atan(z_c) = -z_c (SciPy's brentq); beyond it, it diverges."""
    from scipy.optimize import brentq

    return brentq(lambda z: 2 * z - (1 + z * z) * math.atan(z), 1.0, 2.0)


@pytest.mark.parametrize("solver", ["newton", "broyden"])
def test_line_search_is_a_switch_with_its_own_description(solver):
    (spec,) = [o for o in get_solver(solver).option_specs() if o.name == "line_search"]
    assert spec.kind is bool and spec.default is True
    assert spec.range_text() == "{false, true}"
    assert spec.to_dict()["type"] == "bool" and spec.to_dict()["range"] == "{false, true}"
    assert get_solver(solver).line_search is True


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        (" Yes ", True),
        ("no", False),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_switch_values_are_coerced(value, want):
    assert get_solver("newton", line_search=value).line_search is want
    assert get_solver("broyden", line_search=value).options()["line_search"] is want


@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, "maybe", "", None, "on"])
def test_bad_switch_values_are_refused_by_name(value):
    with pytest.raises(SolverError, match=r"^newton\.line_search: needs true or false, got "):
        get_solver("newton", line_search=value)


def test_a_spec_table_sets_the_switch_with_a_toml_boolean():
    from implicit_viz.core.errors import SpecError
    from implicit_viz.core.solver_settings import SolverSection
    from implicit_viz.core.spec import parse_spec

    text = 'name = "t"\ndim = 1\nf = "z - atan(z)"\nz0 = [3.0]\n[solver.newton]\nline_search = %s\n'
    section = SolverSection.of(parse_spec(text % "false"))
    assert get_solver("newton", **section.options["newton"]).line_search is False
    with pytest.raises(SpecError) as err:
        SolverSection.of(parse_spec(text % "2"))
    assert err.value.field == "solver.newton.line_search"
    assert "needs true or false" in str(err.value)


def test_the_cli_switch_turns_the_line_search_off(tmp_path, capsys):
    """``--opt newton.line_search=false`` from the command line: plain Newton on atan(z) from
    z0 = 3 (past z_c) diverges, the default globalized Newton converges to 0."""
    from implicit_viz.cli.main import main

    path = tmp_path / "atan.toml"
    path.write_text('name = "atan"\ndim = 1\nf = "z - atan(z)"\nz0 = [3.0]\n')
    docs = {}
    for extra in ([], ["--opt", "newton.line_search=false"]):
        assert main(["solve", str(path), "--solver", "newton", "--json", *extra]) == 0
        (r,) = json.loads(capsys.readouterr().out)["results"]
        docs[r["solver_options"]["line_search"]] = r
    assert docs[True]["status"] == "converged" and abs(docs[True]["z"][0]) < 1e-6
    assert docs[False]["status"] == "diverged"


@pytest.mark.parametrize("scale", [0.9, 1.1, 3.0, 100.0])
def test_newton_line_search_globalizes_atan(scale):
    z0 = scale * _newton_critical_start()
    fmap = compile_spec(make_spec("z - atan(z)", 1, z0=[z0]))
    plain = solve(fmap, "newton", solver_options={"line_search": False}, tol=1e-12)
    glob = solve(fmap, "newton", tol=1e-12)
    assert plain.statuses == [Status.CONVERGED if scale < 1 else Status.DIVERGED]
    assert glob.statuses == [Status.CONVERGED]
    assert abs(float(glob.z[0, 0])) <= 1e-12  # the only root of atan
    if scale < 1:  # inside z_c the full step is always accepted: the same iterates
        assert int(glob.iterations[0]) == int(plain.iterations[0])
        assert int(glob.f_evals[0]) == int(plain.f_evals[0])


@pytest.fixture
def column_counter(monkeypatch):
    """Map evaluations column by column (each column is one element's evaluation); autograd
    passes (Newton's Jacobians) are left out."""
    counted = {"columns": 0}
    original = FixedPointMap.batch_last

    def counting(self, z):
        if not z.requires_grad:
            counted["columns"] += z.shape[-1]
        return original(self, z)

    monkeypatch.setattr(FixedPointMap, "batch_last", counting)
    return counted


ROSENBROCK = ("[z[0] - (1 - z[0]), z[1] - 10 * (z[1] - z[0]**2)]", 2, [-1.2, 1.0])


@pytest.mark.parametrize(
    ("solver", "problem"),
    [
        ("newton", ("z - atan(z)", 1, [3.0])),
        ("broyden", ("z - atan(z)", 1, [3.0])),
        ("newton", ROSENBROCK),
        ("broyden", ROSENBROCK),
        ("newton", ("sqrt(z - 2)", 1, [3.0])),
        ("broyden", ("sqrt(z - 2)", 1, [3.0])),
    ],
)
def test_f_evals_count_every_line_search_trial(column_counter, solver, problem):
    """f_evals is what was spent: line-search trials and Broyden's finite-difference restarts
    included, and no more than that where a stalled element stops searching."""
    f, dim, z0 = problem
    fmap = compile_spec(make_spec(f, dim, z0=z0))
    column_counter["columns"] = 0  # compiling checks the map on a few points
    res = solve(fmap, solver, tol=1e-12, max_iter=100, diagnostics=False, lyapunov_steps=0)
    assert int(res.f_evals[0]) == column_counter["columns"]
    if f != "sqrt(z - 2)":
        assert int(res.f_evals[0]) > 1 + int(res.iterations[0])  # the search did backtrack


@pytest.mark.parametrize("solver", ["newton", "broyden"])
def test_per_element_counts_and_steps_in_a_batch(solver):
    """Rosenbrock from MINPACK's three starts (x0, 10 x0, 100 x0) in one batch: every element
    takes its own step lengths and keeps its own count, as when solved alone."""
    fmap = compile_spec(make_spec(*ROSENBROCK[:2], z0=ROSENBROCK[2]))
    starts = torch.tensor([[-1.2, 1.0], [-12.0, 10.0], [-120.0, 100.0]], dtype=torch.float64)
    batch = solve(fmap, solver, starts, tol=1e-12, max_iter=300)
    assert batch.statuses == [Status.CONVERGED] * 3
    for i in range(3):
        alone = solve(fmap, solver, starts[i], tol=1e-12, max_iter=300)
        assert int(batch.iterations[i]) == int(alone.iterations[0])
        assert int(batch.f_evals[i]) == int(alone.f_evals[0])
        torch.testing.assert_close(batch.z[i], alone.z[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(batch.z[i], torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("solver", ["newton", "broyden"])
def test_no_fixed_point_is_never_converged_and_stays_finite(solver):
    """z = sqrt(z - 2) has no fixed point (z^2 - z + 2 > 0): the plain methods leave the domain
    (NaN: diverged), the globalized ones stop at the minimum of |sqrt(z - 2) - z|, z = 9/4 where
    the residual is 7/4, and say max_iter."""
    fmap = compile_spec(make_spec("sqrt(z - 2)", 1, z0=[3.0]))
    plain = solve(fmap, solver, solver_options={"line_search": False}, max_iter=100)
    glob = solve(fmap, solver, max_iter=100)
    assert plain.statuses == [Status.DIVERGED]
    assert glob.statuses == [Status.MAX_ITER]
    assert float(glob.z[0, 0]) == pytest.approx(2.25, abs=1e-6)
    assert float(glob.residual[0]) == pytest.approx(1.75, abs=1e-9)


def test_globalized_steps_can_be_unrolled_by_autograd():
    """The step lengths are held constant; the accepted points carry the gradient: a few steps
    of each globalized solver on z = A tanh(z) + c match central finite differences in c."""
    a = torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=torch.float64)

    class Map:
        def __init__(self, c):
            self.c = c

        def __call__(self, z):
            return a @ torch.tanh(z) + self.c[:, None]

        def take(self, index):
            return self

    def run(solver, c):
        f = Map(c)
        z = torch.zeros(2, 1, dtype=torch.float64)
        fz = f(z)
        state = solver.init(f, z, fz)
        for _ in range(4):
            z, fz, state = solver.step(f, z, fz, state)
        return z.sum()

    for name in ("newton", "broyden"):
        slv = get_solver(name)
        c = torch.tensor([2.5, -1.5], dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(run(slv, c), c)
        for i in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[i] = 1e-6
            with torch.no_grad():
                fd = (run(slv, c + e) - run(slv, c - e)) / 2e-6
            assert float(grad[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8), (name, i)
