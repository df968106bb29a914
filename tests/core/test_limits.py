"""Issue 15, items 2, 8 and 11: one memory budget (``check_memory``) bounds Anderson's history,
Newton's and Broyden's dense matrices, the diagnostics' and the gradient lab's Jacobians and a
spec's tensors, checked before anything is allocated; solver options are checked by type."""

from __future__ import annotations

import math
import time

import pytest
import torch

import implicit_viz.core.compiled_map as problem
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.diagnostics import check_diagnostic_cost
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import LimitError, SolverError
from implicit_viz.core.gradients import GradRequest, gradient_lab
from implicit_viz.core.limits import format_bytes, memory_budget
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.spec import parse_spec
from implicit_viz.core.status import Status
from tests.helpers import make_spec

MB = 1024**2


@pytest.fixture
def budget_1mb(monkeypatch):
    monkeypatch.setenv("IMPLICIT_VIZ_MEMORY_MB", "1")
    assert memory_budget() == MB


@pytest.fixture
def no_alloc(monkeypatch):
    """Fail any ``Tensor.new_zeros`` of over 1 MiB (Anderson allocates its history so)."""
    real = torch.Tensor.new_zeros

    def guarded(self, *size, **kw):
        n = math.prod(size[0] if len(size) == 1 and not isinstance(size[0], int) else size)
        assert n * 8 <= MB, f"allocated {n} entries"
        return real(self, *size, **kw)

    monkeypatch.setattr(torch.Tensor, "new_zeros", guarded)


# Anderson -------------------------------------------------------------------------------------
def test_anderson_history_over_the_budget_is_refused_before_allocating(budget_1mb, no_alloc):
    fmap = compile_spec(make_spec("0.5 * z", 100))
    with pytest.raises(LimitError) as info:
        solve(fmap, "anderson", solver_options={"m": 300})
    assert info.value.field == "anderson.m"
    # history 2 m D, a step's residuals m D, three m x m Gram-sized arrays, 2 m: 2.75 MiB
    need = 8 * (3 * 300 * 100 + 3 * 300 * 300 + 2 * 300)
    assert format_bytes(need) == "2.8 MiB"
    assert "2.8 MiB" in info.value.message and "1.0 MiB" in info.value.message
    assert "lower m" in info.value.message


def test_anderson_with_a_billion_slots_fails_at_once(no_alloc):
    """The issue's ``m = 1000000000`` on a dim-1 map took 38 s and 15.5 GB."""
    fmap = compile_spec(make_spec("0.5 * z", 1))
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match=r"anderson\.m: .* 2\.2e\+07 TiB, over the memory"):
        solve(fmap, "anderson", solver_options={"m": 10**9})
    assert time.perf_counter() - t0 < 5


def test_anderson_within_the_budget_still_solves(budget_1mb):
    fmap = compile_spec(make_spec("0.5 * z + 1", 10))
    res = solve(fmap, "anderson", solver_options={"m": 20})
    assert int(res.status[0]) == Status.CONVERGED
    assert torch.allclose(res.z, torch.full((1, 10), 2.0, dtype=torch.float64))


def test_gradient_lab_checks_its_backward_history_before_the_forward_solve(monkeypatch):
    spec = make_spec("tanh(a * z + 0.1)", 2, params={"a": {"value": 0.5}})
    called = []
    import implicit_viz.core.gradients.lab as gradients

    monkeypatch.setattr(gradients, "solve", lambda *a, **k: called.append(1))
    with pytest.raises(LimitError) as info:
        gradient_lab(GradRequest(spec=spec, wrt=("a",), backward_m=10**9))
    assert info.value.field == "backward_m"
    assert called == []


def test_gradient_lab_checks_its_dense_jacobians(budget_1mb):
    spec = make_spec("0.5 * z + a", 200, params={"a": {"value": 0.5}})  # 200^2 * 8 * 7 > 1 MB
    with pytest.raises(LimitError) as info:
        gradient_lab(GradRequest(spec=spec, wrt=("a",)))
    assert info.value.field == "dim"


# solver options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("anderson", {"lam": float("nan")}, "anderson.lam"),
        ("anderson", {"lam": float("inf")}, "anderson.lam"),
        ("anderson", {"beta": True}, "anderson.beta"),
        ("anderson", {"beta": float("nan")}, "anderson.beta"),
        ("anderson", {"m": True}, "anderson.m"),
        ("anderson", {"m": 2.5}, "anderson.m"),
        ("anderson", {"m": float("inf")}, "anderson.m"),
        ("anderson", {"m": 0}, "anderson.m"),
        ("damped", {"beta": False}, "damped.beta"),
        ("damped", {"beta": "nan"}, "damped.beta"),
        ("newton", {"damping": float("-inf")}, "newton.damping"),
        ("broyden", {"beta": [1.0]}, "broyden.beta"),
    ],
)
def test_bad_option_values_are_refused_naming_the_option(name, options, field):
    with pytest.raises(SolverError, match=field.replace(".", r"\.")):
        get_solver(name, **options)


def test_whole_floats_and_numeric_text_are_still_accepted():
    s = get_solver("anderson", m=7.0, lam="1e-3", beta=1)
    assert (s.m, s.lam, s.beta) == (7, 1e-3, 1.0)
    assert isinstance(s.m, int) and isinstance(s.beta, float)


# dense Jacobians ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["newton", "broyden"])
def test_dense_solvers_check_their_matrices(budget_1mb, name):
    fmap = compile_spec(make_spec("0.5 * z", 300))  # 300^2 * 8 = 0.7 MB per matrix, 3 or more
    with pytest.raises(LimitError) as info:
        solve(fmap, name)
    assert info.value.field == "solver"
    assert "300 x 300" in info.value.message
    small = compile_spec(make_spec("0.5 * z + 1", 50))
    assert int(solve(small, name).status[0]) == Status.CONVERGED


def test_live_solve_leaves_out_newton_where_the_budget_cannot_hold_it(budget_1mb):
    from implicit_viz.core.live import LiveRequest, SolverSettings, run_live

    spec = make_spec("0.5 * z", 300)
    snap = run_live(LiveRequest(spec=spec, settings=SolverSettings(solvers=("anderson", "newton"))))
    assert [t.solver for t in snap.traces] == ["anderson"]
    assert "newton skipped" in snap.summary()


def test_diagnostics_skip_quietly_over_the_budget(budget_1mb):
    fmap = compile_spec(make_spec("0.5 * z", 300))
    res = solve(fmap, "anderson", options=SolveOptions(diagnostics=True))
    assert int(res.status[0]) == Status.CONVERGED
    assert math.isnan(float(res.spectral_radius[0]))
    assert "diagnostics skipped" in res.extra["diagnostics_skipped"]
    # and within it, they are computed: rho(0.5 I) = 0.5
    res = solve(compile_spec(make_spec("0.5 * z", 20)), "anderson")
    assert float(res.spectral_radius[0]) == pytest.approx(0.5)
    assert "diagnostics_skipped" not in res.extra


def test_issue_vector_literal_diagnostic_is_bounded():
    """A 2,200-entry literal solved in 15 ms, then spent 52 s in the Jacobian diagnostic (each
    ``z[i]``'s backward writes a D x D gradient); now the cost is counted first and it skips."""
    n = 2200
    f = "[" + ", ".join(f"z[{i}]" for i in range(n)) + "]"
    fmap = compile_spec(make_spec(f, n))
    t0 = time.perf_counter()
    res = solve(fmap, "fixed_point", options=SolveOptions(diagnostics=True))
    assert time.perf_counter() - t0 < 10  # a hang guard: the old code took 52 s to 90 s here
    assert int(res.status[0]) == Status.CONVERGED
    assert "floating-point operations" in res.extra["diagnostics_skipped"]


def test_autograd_cost_of_the_jacobian_is_counted():
    """Below the eigenvalue limit, a literal of many entries is refused on its backward cost
    (about D^2 per entry), which an estimate from f's own cost would miss."""
    n = 900
    f = "[" + ", ".join(f"z[{i}]" for i in range(n)) + "]"
    fmap = compile_spec(make_spec(f, n))
    with pytest.raises(LimitError, match="df/dz at z"):
        check_diagnostic_cost(fmap, 2)
    check_diagnostic_cost(compile_spec(make_spec("0.5 * z", n)), 1)  # cheap: no error


# spec tensors -------------------------------------------------------------------------------
def test_spec_tensors_over_the_budget_are_refused_before_drawing(budget_1mb, monkeypatch):
    calls = []
    monkeypatch.setattr(problem, "materialize_tensor", lambda t: calls.append(t))
    spec = make_spec(
        "W @ z", 300, tensors={"W": {"shape": [300, 300], "init": "normal", "seed": 0}}
    )
    with pytest.raises(LimitError) as info:
        compile_spec(spec)
    assert info.value.field == "tensors.W"
    assert calls == []


def test_spectral_norm_of_a_huge_matrix_is_refused_at_once(monkeypatch):
    """``spectral_norm`` on 7000 x 7000 ran an SVD for over a minute."""
    monkeypatch.setenv("IMPLICIT_VIZ_MEMORY_MB", "4096")
    calls = []
    monkeypatch.setattr(problem, "materialize_tensor", lambda t: calls.append(t))
    w = {"shape": [7000, 7000], "init": "normal", "seed": 0, "spectral_norm": 0.9}
    t0 = time.perf_counter()
    with pytest.raises(LimitError) as info:
        compile_spec(make_spec("tanh(W @ z)", 7000, tensors={"W": w}))
    assert time.perf_counter() - t0 < 5
    assert info.value.field == "tensors.W"
    assert "orthogonal" in info.value.message
    assert calls == []


def test_tolerances_above_max_tol_are_refused_where_the_stop_test_would_overflow():
    """tol**2 overflows float64 above ~1.34e154 (OverflowError inside the driver); every place
    that takes a tol refuses it past MAX_TOL with a message naming it, and MAX_TOL itself runs."""
    import math

    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.driver import solve
    from implicit_viz.core.errors import SolverError
    from implicit_viz.core.limits import MAX_TOL
    from implicit_viz.core.live import SolverSettings
    from implicit_viz.core.result import SolveOptions
    from implicit_viz.core.spec import SpecError

    assert math.isfinite(MAX_TOL**2)
    for bad in (1e200, 1e155):
        with pytest.raises(SolverError, match=r"tol must lie in \(0, 1e\+100\]"):
            SolveOptions(tol=bad)
        with pytest.raises(ValueError, match="tol must lie in"):
            SolverSettings(tol=bad).check()
        with pytest.raises(SpecError, match=r"solver\.tol"):
            parse_spec(f'dim = 1\nf = "0.5*z"\n[solver]\ntol = {bad}\n')
    fmap = compile_spec(parse_spec('dim = 1\nf = "0.5*z + 1"\nz0 = [0.0]\n'))
    res = solve(fmap, "fixed_point", options=SolveOptions(tol=MAX_TOL))
    assert int(res.iterations[0]) == 0  # any residual passes such a tol: stop at once


def test_newton_counts_the_rows_its_jacobians_repeat(monkeypatch):
    """A swept tensor is a copy per batch row, and the autograd Jacobian repeats every row D
    times (a 64 x 64 sweep of W[0,1] at dim 128 tried to allocate 10.8 GB past a check that
    counted only the D x D matrices). The check counts those rows: a budget between the two
    estimates refuses the solve before it starts."""
    from implicit_viz.core.solvers import get_solver

    d, b = 24, 40
    spec = parse_spec(
        f'dim = {d}\nf = "tanh(W @ z)"\n[tensors]\nW = {{ shape = [{d}, {d}], scale = 0.1 }}\n'
    )
    fmap = compile_spec(spec)
    fmap = fmap.with_values(W=fmap.values["W"][..., 0].expand(b, d, d).clone())
    view = fmap.as_batch_last()
    assert view.row_bytes() >= d * d * 8  # each row carries its own W
    newton = get_solver("newton")
    dense_only = newton.state_bytes(b, d, torch.float64)
    with_rows = dense_only + 2 * d * b * view.row_bytes()
    assert with_rows > 2 * dense_only
    mid_mb = (dense_only + with_rows) / 2 / 1024**2
    monkeypatch.setenv("IMPLICIT_VIZ_MEMORY_MB", str(mid_mb))
    with pytest.raises(LimitError, match="Newton's Jacobians") as info:
        solve(fmap, "newton")
    assert info.value.field == "solver"
    # shared W (one copy for all rows): the same budget holds it, and Newton converges
    res = solve(compile_spec(spec), "newton")
    assert int(res.status[0]) == Status.CONVERGED


@pytest.mark.parametrize("raw", ["junk", "-5", "nan", "0"])
def test_a_malformed_budget_variable_keeps_the_default_and_says_so(monkeypatch, caplog, raw):
    from implicit_viz.core import limits
    from implicit_viz.core.limits import DEFAULT_MEMORY_BUDGET

    limits._warn_bad_budget.cache_clear()
    monkeypatch.setenv("IMPLICIT_VIZ_MEMORY_MB", raw)
    with caplog.at_level("WARNING", logger="implicit_viz"):
        assert memory_budget() == DEFAULT_MEMORY_BUDGET
        memory_budget()  # said once per value, not on every call
    said = [r.getMessage() for r in caplog.records if "IMPLICIT_VIZ_MEMORY_MB" in r.getMessage()]
    assert len(said) == 1
    assert repr(raw) in said[0] and "2.0 GiB" in said[0]
