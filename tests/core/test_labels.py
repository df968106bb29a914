"""Out-of-budget verdicts (issue 17): still converging, quasi-periodic, chaotic, no verdict.

Each case is checked against an independent truth: the spectral radius of df/dz at the fixed
point and a long run (converging), known chaotic maps (Hénon at a = 1.4, b = 0.3; logistic at
r = 4), a known period-3 window (logistic at r = 3.83) and an invariant circle past a
Neimark-Sacker bifurcation (the delayed logistic map for a a bit above 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from implicit_viz.core import compile_spec, load_spec, solve
from implicit_viz.core.export import write_sweep, write_trace
from implicit_viz.core.lyapunov import TwinOrbit, near_cycle
from implicit_viz.core.spec import parse_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import SWEEP_OPTIONS, Axis, SweepRequest, sweep, sweep_options

HENON = """
dim = 2
f = "[1 - a * z[0]**2 + z[1], b * z[0]]"
z0 = [0.6, 0.19]
[params]
a = { value = 1.4, min = 0, max = 2 }
b = { value = 0.3, min = 0, max = 1 }
"""
LOGISTIC = (
    'dim = 1\nf = "r * z * (1 - z)"\nz0 = [0.3]\n[params]\nr = { value = 4, min = 0, max = 4 }\n'
)
DELAYED = """
dim = 2
f = "[a * z[0] * (1 - z[1]), z[0]]"
z0 = [0.5, 0.5]
[params]
a = { value = 2.1, min = 0, max = 4 }
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sweep_like", [False, True])
def test_henon_survivors_are_chaotic(dtype, sweep_like):
    """Starts near the Hénon attractor (lambda = 0.42): the bounded survivors are chaotic, with
    an estimate near 0.42 whose uncertainty excludes 0."""
    fm = compile_spec(parse_spec(HENON), dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    z0 = torch.tensor([0.6, 0.19], dtype=torch.float64) + 0.05 * torch.randn(
        200, 2, generator=gen, dtype=torch.float64
    )
    opts = SWEEP_OPTIONS if sweep_like else None
    res = solve(fm, "fixed_point", z0.to(fm.dtype), options=opts)
    survivors = res.status != int(Status.DIVERGED)
    chaotic = res.status == int(Status.CHAOTIC)
    assert chaotic.sum() >= 0.97 * survivors.sum()
    lam, err = res.lyapunov[chaotic].double(), res.lyapunov_err[chaotic].double()
    assert abs(float(lam.mean()) - 0.42) < 0.03
    assert bool((lam - err > 0).all())


def test_logistic_chaos_and_period_three():
    fm = compile_spec(parse_spec(LOGISTIC), dtype="float64")
    four = solve(fm.with_values(r=4.0), "fixed_point")
    assert four.statuses == [Status.CHAOTIC]
    assert float(four.lyapunov[0]) == pytest.approx(math.log(2), abs=0.1)  # ln 2 at r = 4
    three = solve(fm.with_values(r=3.83), "fixed_point")
    assert three.statuses == [Status.PERIODIC] and int(three.period[0]) == 3


@pytest.mark.parametrize("a", [2.05, 2.15])
@pytest.mark.parametrize("sweep_like", [False, True])
def test_delayed_logistic_invariant_circle_is_quasi_periodic(a, sweep_like):
    """Past the Neimark-Sacker point a = 2 the fixed point 1 - 1/a sheds an invariant circle."""
    fm = compile_spec(parse_spec(DELAYED), dtype="float64").with_values(a=a)
    zs = 1 - 1 / a
    res = solve(fm, "fixed_point", [zs + 0.01, zs], options=SWEEP_OPTIONS if sweep_like else None)
    assert res.statuses == [Status.QUASI_PERIODIC]
    assert abs(float(res.lyapunov[0])) <= float(res.lyapunov_err[0])
    assert float(res.rate[0]) == pytest.approx(1.0, abs=0.01)  # the residual neither falls...
    assert math.isnan(float(res.steps_needed[0]))
    # ...nor is the orbit off the circle: it stays away from the fixed point
    assert float(res.residual[0]) > 0.05


@pytest.mark.parametrize("sweep_like", [False, True])
def test_slow_contraction_is_still_converging(sweep_like):
    """tanh_layer at a = 1.0 (rho = 0.968), max_iter 200: still converging, at a rate within
    2 % of rho(df/dz*) (from a long float64 solve) and with steps_needed within 10 % of the
    steps a long run still takes."""
    fm = compile_spec(load_spec("tanh_layer").with_overrides({"a": 1.0}), dtype="float64")
    opts = replace(SWEEP_OPTIONS, tol=1e-6) if sweep_like else None
    short = solve(fm, "fixed_point", options=opts, max_iter=200)
    long = solve(fm, "fixed_point", max_iter=20_000)
    assert long.statuses == [Status.CONVERGED]
    rho = float(long.spectral_radius[0])
    truth = int(long.iterations[0]) - 200
    assert short.statuses == [Status.CONVERGING]
    assert float(short.rate[0]) == pytest.approx(rho, rel=0.02)
    assert float(short.steps_needed[0]) == pytest.approx(truth, rel=0.1)
    assert short.element(0)["steps_needed"] == pytest.approx(truth, rel=0.1)


def test_lean_and_general_loops_give_the_same_evidence():
    """Naive iteration on a tanh grid: the lean loop (sweeps) and the general loop (history on)
    agree on the verdicts and their evidence."""
    spec = load_spec("tanh_layer")
    a = torch.linspace(0.8, 2.6, 200, dtype=torch.float64)
    fm = compile_spec(spec, dtype="float64").with_values(a=a)
    lean = solve(fm, "fixed_point", options=SWEEP_OPTIONS)
    general = solve(fm, "fixed_point", options=replace(SWEEP_OPTIONS, history=True))
    assert torch.equal(lean.status, general.status)
    for name in ("lyapunov", "lyapunov_err", "rate", "steps_needed"):
        torch.testing.assert_close(getattr(lean, name), getattr(general, name), equal_nan=True)
    assert {int(s) for s in lean.status.unique()} >= {
        int(Status.CONVERGED),
        int(Status.CONVERGING),
    }


def test_twin_halves_average_to_the_whole_window():
    """The two half-window estimates of an even split average to the whole window's; on a
    linear map z -> A z both equal log of the dominant |eigenvalue|."""
    a = torch.tensor([[0.9, 0.0], [0.0, 0.5]], dtype=torch.float64)
    z = torch.ones(2, 3, dtype=torch.float64)
    twin = TwinOrbit(z, split=20)
    for _ in range(40):
        z = a @ z
        twin.advance(lambda v: a @ v, z)
    h1, h2 = twin.halves()
    torch.testing.assert_close((h1 + h2) / 2, twin.exponent())
    torch.testing.assert_close(h2, torch.full((3,), math.log(0.9), dtype=torch.float64))


def test_near_cycle_sees_a_slow_approach_to_a_cycle_but_not_a_circle():
    """Logistic at r = 3.2 (an attracting 2-cycle) from near it: a near cycle; the delayed
    logistic circle at a = 2.15: not."""
    fm = compile_spec(parse_spec(LOGISTIC), dtype="float64").with_values(r=3.2)
    f = fm.as_batch_last()
    z = torch.tensor([[0.5130445 + 1e-4]], dtype=torch.float64)  # a point of the 2-cycle, nudged
    assert bool(near_cycle(f, z, 32)[0])
    d = compile_spec(parse_spec(DELAYED), dtype="float64").with_values(a=2.15)
    res = solve(d, "fixed_point", [1 - 1 / 2.15 + 0.01, 1 - 1 / 2.15])
    assert not bool(near_cycle(d.as_batch_last(), res.z.T.contiguous(), 32)[0])


def test_evidence_travels_into_sweeps_and_files(tmp_path):
    spec = load_spec("tanh_layer")
    req = SweepRequest(
        spec, Axis("a", 0.8, 2.6, 24), Axis("x[0]", -1, 1, 8), options=sweep_options(spec)
    )
    res = sweep(req)
    conv = res.status == int(Status.CONVERGING)
    assert conv.any()
    assert np.isfinite(res.steps_needed[conv]).all() and (res.rate[conv] < 1).all()
    assert np.isnan(res.steps_needed[~conv]).all()
    summary = res.summary()
    assert summary["outcome_counts"]["converging"] == int(conv.sum())
    with np.load(write_sweep(tmp_path / "s.npz", res)) as npz:
        for name in ("rate", "steps_needed", "lyapunov_err"):
            np.testing.assert_array_equal(npz[name], getattr(res, name))
        meta = json.loads(str(npz["metadata"]))
    assert "steps_needed" in meta and meta["status_codes"]["6"] == "converging"
    doc = json.loads(write_sweep(tmp_path / "s.json", res).read_text())
    assert doc["arrays"]["steps_needed"][0] is not None or np.isnan(res.steps_needed[0, 0])
    fm = compile_spec(spec.with_overrides({"a": 1.0}), dtype="float64")
    one = solve(fm, "fixed_point")
    with np.load(write_trace(tmp_path / "t.npz", spec, [one])) as npz:
        assert npz["status"][0, 0] == int(Status.CONVERGING)
        assert npz["steps_needed"][0, 0] == pytest.approx(float(one.steps_needed[0]))
        assert "steps_needed" in json.loads(str(npz["metadata"]))["arrays"]
    trace = json.loads(write_trace(tmp_path / "t.json", spec, [one]).read_text())
    assert trace["results"][0]["rate"] == pytest.approx(float(one.rate[0]))
