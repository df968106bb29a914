"""The lean loop for stateless solvers (``driver.lean``) against the general driver loop
(``driver.general``) on the same cells, the cycle test's fast path against the test at every
lag, and the batch helpers against plain torch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from implicit_viz.core import driver
from implicit_viz.core.batchops import col_norm, col_sqnorm, col_sqnorm_, take_cols
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import lean as lean_loop
from implicit_viz.core.driver.general import run_general
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import (
    Axis,
    SweepRequest,
    _tile_problem,
    sweep,
    sweep_options,
    validate,
)
from tests.helpers import make_spec

FIELDS = ("status", "iterations", "period", "z", "residual", "lyapunov", "cycle", "f_evals")


def grid_problem(preset: str, ax: str, ay: str, n: int, dtype: str = "float32"):
    """The per-row map and start of an ``n x n`` sweep grid of a preset (one tile)."""
    spec = load_spec(preset)
    req = SweepRequest(spec, Axis.parse(f"{ax}:{n}"), Axis.parse(f"{ay}:{n}"), preview=1)
    fmap = compile_spec(spec, dtype=dtype)
    idx = np.arange(n * n)
    fm, z0 = _tile_problem(fmap, validate(req), idx, n, req.x.values(), req.y.values())
    return spec, fm, z0


def general(fm, solver, z0, opts: SolveOptions, **kw):
    """The general driver loop, whatever ``solve`` would dispatch to."""
    with torch.no_grad():
        return run_general(fm, driver.resolve_solver(solver), z0, opts, kw.get("progress"), None)


def assert_same(a, b) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert torch.equal(torch.nan_to_num(x, nan=7.0), torch.nan_to_num(y, nan=7.0)), name


@pytest.fixture(scope="module")
def tanh_grid():
    return grid_problem("tanh_layer", "a=0:3", "x[0]=-2:2", 48)


@pytest.fixture(scope="module")
def logistic_grid():
    return grid_problem("logistic", "r=2.5:4", "z0[0]=0.05:0.95", 40)


OPTION_SETS = [
    {},  # the sweep's defaults: windowed cycle tests every 48 steps, compaction every 16
    {"cycles": True},  # and the cycles' points recorded
    {"lyapunov_steps": 0},
    {"period_every": 8, "compact_every": 8},  # tests every 8 steps: the ring is never windowed
    {"max_iter": 37, "compact_every": 4},  # the last test at max_iter, compaction in windows
    {"max_iter": 500, "period_every": 50, "max_period": 20, "compact_every": 64},
    {"max_iter": 3},  # no cycle test at all
]


@pytest.mark.parametrize("over", OPTION_SETS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("solver", ["fixed_point", "damped"])
@pytest.mark.parametrize("grid", ["tanh_grid", "logistic_grid"])
def test_lean_loop_equals_the_general_loop_on_every_cell(request, grid, solver, over):
    spec, fm, z0 = request.getfixturevalue(grid)
    opts = replace(sweep_options(spec, dtype="float32"), **over)
    slv = driver.resolve_solver(solver)
    assert lean_loop.lean_applies(slv, opts)
    ref = general(fm, slv, z0, opts)
    with torch.no_grad():
        got = lean_loop.run_lean(fm, slv, z0, opts)
    assert_same(ref, got)
    if grid == "logistic_grid" and solver == "fixed_point" and over.get("max_iter", 200) >= 200:
        counts = np.bincount(got.status.numpy(), minlength=len(Status))
        assert counts[Status.PERIODIC] and counts[Status.CONVERGED]
        assert counts[Status.CHAOTIC] or opts.lyapunov_steps == 0


@pytest.mark.parametrize("solver", ["fixed_point", get_solver("damped", beta=1.3)])
def test_lean_loop_equals_the_general_loop_on_diverging_rows(solver):
    # c z + 1: converges for |c| < 1, blows up past div_bound otherwise; log(z) goes NaN at
    # once for a negative start; exp overflows to inf.
    fmap = compile_spec(
        make_spec(
            "where(s > 0, c * z + 1, where(s < 0, log(z), exp(z) * 1e300))",
            1,
            params={"c": 0.5, "s": 1.0},
            z0=[0.5],
        ),
        dtype="float64",
    )
    c = torch.tensor([0.5, 3.0, -3.0, 0.9, -0.5, 1.0, 0.2, 0.3], dtype=torch.float64)
    s = torch.tensor([1, 1, 1, 1, 1, -1, 0, 1.0], dtype=torch.float64)
    z0 = torch.tensor([[0.5], [0.0], [0.0], [0.0], [0.0], [-1.0], [1.0], [0.0]])
    fm = fmap.with_values(c=c, s=s)
    opts = SolveOptions(history=False, diagnostics=False, tol=1e-12, max_iter=1000)
    slv = driver.resolve_solver(solver)
    ref = general(fm, slv, z0.double(), opts)
    with torch.no_grad():
        got = lean_loop.run_lean(fm, slv, z0.double(), opts)
    assert_same(ref, got)
    assert Status.DIVERGED in got.statuses and Status.CONVERGED in got.statuses


def test_solve_uses_the_lean_loop_only_where_it_applies(monkeypatch, tanh_map):
    calls = []
    real = lean_loop.run_lean

    def spy(*a, **k):
        calls.append(a[1].name)
        return real(*a, **k)

    monkeypatch.setattr(lean_loop, "run_lean", spy)
    driver.solve(tanh_map, "fixed_point", history=False)
    driver.solve(tanh_map, "damped", history=False)
    assert calls == ["fixed_point", "damped"]
    driver.solve(tanh_map, "fixed_point")  # history on (the default)
    driver.solve(tanh_map, "fixed_point", history=False, trace=True)
    driver.solve(tanh_map, "fixed_point", history=False, rtol=1e-3)
    driver.solve(tanh_map, "anderson", history=False)
    assert calls == ["fixed_point", "damped"]


def test_a_sweep_gives_the_general_loops_picture(monkeypatch):
    spec = load_spec("tanh_layer")
    req = SweepRequest(
        spec, Axis.parse("a=0:3:40"), Axis.parse("x[0]=-2:2:30"), tile_size=500, preview=2
    )
    lean = sweep(req)
    monkeypatch.setattr(lean_loop, "lean_applies", lambda *a: False)
    ref = sweep(req)
    for name in ("status", "iterations", "period", "basin", "residual", "lyapunov", "z"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(ref, name), err_msg=name)
    assert lean.cell_iterations == ref.cell_iterations


def test_cancel_and_progress_in_the_lean_loop(logistic_map):
    rs = torch.tensor([2.5, 3.9, 3.95], dtype=torch.float64)
    fm = logistic_map.with_values(r=rs)
    opts = SolveOptions(history=False, diagnostics=False, max_iter=1000, tol=1e-12)

    def after(n: int):
        polls: list[int] = []

        def cancel() -> bool:
            polls.append(1)
            return len(polls) >= n

        return cancel

    res = driver.solve(fm, "fixed_point", options=opts, cancel=after(30))
    assert res.statuses == [Status.CONVERGED, Status.NOT_RUN, Status.NOT_RUN]
    assert int(res.iterations[0]) < 29 and res.iterations[1:].tolist() == [29, 29]
    assert torch.isnan(res.lyapunov).all()
    with torch.no_grad():
        ref = run_general(
            fm, driver.resolve_solver("fixed_point"), fm.start(3), opts, None, after(30)
        )
    assert_same(ref, res)
    seen: list[tuple[int, int]] = []
    seen_ref: list[tuple[int, int]] = []
    opts = replace(opts, max_iter=300)
    driver.solve(fm, "fixed_point", options=opts, progress=lambda k, n: seen.append((k, n)))
    with torch.no_grad():
        run_general(
            fm,
            driver.resolve_solver("fixed_point"),
            fm.start(3),
            opts,
            lambda k, n: seen_ref.append((k, n)),
            None,
        )
    assert seen == seen_ref
    # at every cycle test: every 8 steps, and the last at 292, confirmed at 300
    assert [k for k, _ in seen] == [*range(8, 292, 8), 292]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 9])
def test_column_reductions_match_torch(dtype, d):
    g = torch.randn(d, 1001, dtype=dtype) * torch.rand(d, 1001, dtype=dtype) ** 6
    ref = torch.linalg.vecdot(g, g, dim=0)
    if d <= 3:
        assert torch.equal(col_sqnorm(g), ref)  # bit for bit: stopping decisions unchanged
    torch.testing.assert_close(col_sqnorm(g), ref)
    out = torch.empty(1001, dtype=dtype)
    assert col_sqnorm(g, out=out) is out and torch.equal(out, col_sqnorm(g))
    # the in-place form: the same bits, g overwritten by its squares (up to 3 components)
    g2, out2 = g.clone(), torch.empty(1001, dtype=dtype)
    assert col_sqnorm_(g2, out=out2) is out2 and torch.equal(out2, out)
    if d <= 3:
        assert torch.equal(g2, g * g)
    g3, scratch = g.clone(), torch.empty_like(g)
    assert torch.equal(col_sqnorm_(g3, out=out2, scratch=scratch), out)
    assert torch.equal(g3, g)  # with a scratch buffer, g is kept
    torch.testing.assert_close(col_norm(g), torch.linalg.vector_norm(g, dim=0))


@pytest.mark.parametrize("shape", [(50,), (3, 50), (4, 3, 50)])
def test_take_cols_equals_indexing(shape):
    t = torch.randn(*shape)
    idx = torch.tensor([49, 0, 7, 7, 20])
    got = take_cols(t, idx)
    assert got.is_contiguous() and torch.equal(got, t[..., idx])


@pytest.mark.parametrize("lean", [False, True], ids=["general", "lean"])
def test_cycle_points_off_keeps_every_outcome_and_leaves_cycle_empty(logistic_grid, lean):
    spec, fm, z0 = logistic_grid
    slv = driver.resolve_solver("fixed_point")
    on = replace(sweep_options(spec, dtype="float32"), cycles=True)
    off = replace(on, cycles=False)
    with torch.no_grad():
        run = lean_loop.run_lean if lean else (lambda *a: general(*a))
        a, b = run(fm, slv, z0, on), run(fm, slv, z0, off)
    for name in ("status", "iterations", "period", "z", "residual", "lyapunov"):
        assert torch.equal(getattr(a, name).nan_to_num(7.0), getattr(b, name).nan_to_num(7.0))
    periodic = a.period > 0
    assert periodic.any() and a.cycle.shape[1] == int(a.period.max())
    # with cycles on, every periodic row has its points
    pts = a.cycle[periodic, 0]
    assert torch.isfinite(pts).all()
    assert b.cycle.shape == (len(z0), 1, 1) and torch.isnan(b.cycle).all()
