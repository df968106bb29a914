"""Lyapunov estimates (core/lyapunov.py): known exponents, and the twin the driver loops carry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.lyapunov import TwinOrbit, lyapunov_estimate
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from tests.helpers import make_spec


def _rotation_map(dtype: str, scales: torch.Tensor):
    th = 0.7
    rot = [[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]
    spec = make_spec("s * (R @ z)", 2, params={"s": 0.5}, tensors={"R": rot}, z0=[0.3, -0.2])
    return compile_spec(spec, dtype=dtype).with_values(s=scales)


@pytest.mark.parametrize("steps", [24, 25])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lyapunov_estimate_of_a_scaled_rotation_is_the_log_of_its_scale(dtype, steps):
    """z -> s R(theta) z stretches every direction by exactly s, so the exponent is log s for
    every row, whatever the start; rows with their own s check the per-row values of the twin."""
    scales = torch.tensor([0.3, 0.9, 1.0, 1.1, 1.5], dtype=torch.float64)
    fmap = _rotation_map(dtype, scales)
    # growing rows start small, so the orbit stays O(1) over the steps (an odd count too:
    # twins are renormalised every RENORM_EVERY steps, and a last odd step is not counted)
    z = torch.tensor([[0.3, -1.0, 0.0, 0.02, 1e-4], [0.1, 0.5, 1.0, -0.01, 0.0]])
    lam = lyapunov_estimate(fmap.as_batch_last(), z.to(fmap.dtype), steps)
    tol = 1e-4 if dtype == "float32" else 1e-8  # eps = 1.5e-8 (1 + |z|): rounding
    np.testing.assert_allclose(lam.double().numpy(), np.log(scales.numpy()), atol=tol)
    # a subset of rows sees its own scales
    sub = torch.tensor([4, 1])
    f_sub = fmap.as_batch_last().take(sub)
    lam_sub = lyapunov_estimate(f_sub, z[:, sub].to(fmap.dtype), steps)
    np.testing.assert_allclose(lam_sub.double().numpy(), np.log(scales[sub].numpy()), atol=tol)


def test_twins_follow_their_rows_through_compaction():
    """Dropping rows from the twin keeps the estimates of the rows kept."""
    scales = torch.tensor([0.3, 0.9, 1.1, 1.5], dtype=torch.float64)
    f = _rotation_map("float64", scales).as_batch_last()
    z = torch.tensor([[0.3, -1.0, 0.02, 1e-4], [0.1, 0.5, -0.01, 0.0]], dtype=torch.float64)
    twin = TwinOrbit(z)
    keep = torch.tensor([1, 3])
    for k in range(21):
        if k == 7:
            twin.take(keep)
            z, f = z[:, keep], f.take(keep)
        z = f(z)
        twin.advance(f, z)
    np.testing.assert_allclose(twin.exponent().numpy(), np.log(scales[keep].numpy()), atol=1e-8)
    assert twin.steps == 21
    assert torch.isnan(TwinOrbit(z).exponent()).all()  # no step taken, no estimate


@pytest.mark.parametrize("solver", ["fixed_point", "damped"])
@pytest.mark.parametrize("general", [False, True], ids=["lean-loop", "general-loop"])
def test_solve_estimates_over_the_last_steps_of_its_budget(solver, general):
    """A solve's estimate for a row still running at the budget is the exponent of its own
    orbit over the last lyapunov_steps steps: the same as an estimate on its own started from
    the iterate max_iter - lyapunov_steps."""
    spec = load_spec("logistic")
    r = np.array([3.5, 3.7, 3.83, 3.9, 4.0])
    fmap = compile_spec(spec, dtype="float64").with_values(r=torch.tensor(r))
    t_max, steps = 150, 60
    opts = SolveOptions(max_iter=t_max, lyapunov_steps=steps, history=general, tol=1e-300)
    res = solve(fmap, solver, options=opts)
    running = np.isin(res.status.numpy(), [int(Status.MAX_ITER), int(Status.CHAOTIC)])
    step_map = get_solver(solver).iteration_map(fmap.as_batch_last())
    z = fmap.start(len(r)).T.contiguous()
    for _ in range(t_max - steps):
        z = step_map(z)
    ref = lyapunov_estimate(step_map, z, steps).numpy()
    lam = res.lyapunov.numpy()
    np.testing.assert_allclose(lam[running], ref[running], rtol=1e-9, atol=1e-9)
    assert np.isnan(lam[~running]).all()
    if solver == "fixed_point":
        # r = 4: the exponent is log 2 (the sample is short, so only roughly); r = 3.5 and
        # 3.83 settle on cycles of period 4 and 3, with no estimate
        assert abs(lam[-1] - math.log(2)) < 0.15
        assert res.status[-1] == int(Status.CHAOTIC)
        assert res.period[[0, 2]].tolist() == [4, 3]


def test_budget_shorter_than_the_estimate_uses_every_step_and_none_at_zero():
    spec = load_spec("logistic")
    fmap = compile_spec(spec, dtype="float64").with_values(r=torch.tensor([3.9]))
    res = solve(fmap, "fixed_point", options=SolveOptions(max_iter=30, lyapunov_steps=100))
    z = torch.tensor([[0.2]], dtype=torch.float64)
    ref = lyapunov_estimate(fmap.as_batch_last(), z, 30)
    assert float(res.lyapunov[0]) == pytest.approx(float(ref[0]), rel=1e-9)
    none = solve(fmap, "fixed_point", options=SolveOptions(max_iter=0, lyapunov_steps=100))
    assert torch.isnan(none.lyapunov).all()
