"""True periods (core/cycle_polish.py through the driver) against published values and
independent long runs.

The logistic map x -> r x (1 - x) doubles its period at r1 = 3, r2 = 1 + sqrt(6),
r3 = 3.544090..., r4 = 3.564407... (Feigenbaum's cascade; e.g. Strogatz, Nonlinear Dynamics and
Chaos, table 10.2.1), and its period-3 window opens at 1 + sqrt(8) (Myrberg; Strogatz ex. 10.3.7).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from implicit_viz.core import cycle_polish
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import iterate, solve
from implicit_viz.core.jacobians import jacobian_batch_last
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status

R1, R2, R3, R4 = 3.0, 1 + math.sqrt(6), 3.544090359551922, 3.564407266095432
R_WINDOW3 = 1 + math.sqrt(8)

#: How close to each doubling the labels are checked, with max_iter 5000 (float64, tol 1e-10):
#: from the scan in the module docstring of this test's companion numbers (see the README):
#: closer than this the orbit has not come near enough to its cycle for Newton's method within
#: the budget, and the cell stays max_iter (never a wrong period).
NEAR = {R1: 1e-4, R2: 3e-5, R3: 3e-5, R4: 1e-5}


def _logistic(rs: list[float], **opts) -> object:
    fmap = compile_spec(load_spec("logistic"), dtype="float64").with_values(
        r=torch.tensor(rs, dtype=torch.float64)
    )
    options = SolveOptions(tol=1e-10, max_iter=5000, **opts)
    return solve(fmap, "fixed_point", options=options)


def _label(res, i: int) -> int:
    """1 for a fixed point reached, the period for a cycle, 0 for no verdict."""
    st = res.statuses[i]
    if st == Status.CONVERGED:
        return 1
    return int(res.period[i]) if st == Status.PERIODIC else 0


#: The distance from each doubling to its neighbours on either side (r0 = 1 below r1, the
#: next doubling r5 = 3.568759 above r4).
GAPS = {R1: (2.0, R2 - R1), R2: (R2 - R1, R3 - R2), R3: (R3 - R2, R4 - R3), R4: (R4 - R3, 0.00435)}


@pytest.mark.parametrize(
    ("r_k", "below", "above"), [(R1, 1, 2), (R2, 2, 4), (R3, 4, 8), (R4, 8, 16)]
)
def test_logistic_labels_double_at_the_published_points(r_k, below, above):
    """Just below and just above each period doubling, from half-way to the neighbouring
    doubling down to NEAR[r_k] (the resolution a 5000-step budget gives), the label is the
    published period. Below r1 the fixed point must converge to tol within the budget, which
    takes |r - 3| >= about 16 / max_iter (closer, that cell says max_iter, never period 2)."""
    gap_below, gap_above = GAPS[r_k]
    d_below = [0.5 * gap_below, 0.1 * gap_below, 0.01 * gap_below, NEAR[r_k]]
    if r_k == R1:
        d_below = [0.5, 0.1, 0.01, 5e-3]
    d_above = [0.5 * gap_above, 0.1 * gap_above, 0.01 * gap_above, NEAR[r_k]]
    rs = [r_k - d for d in d_below] + [r_k + d for d in d_above]
    res = _logistic(rs)
    n = len(d_below)
    got_below = [_label(res, i) for i in range(n)]
    got_above = [_label(res, n + i) for i in range(len(d_above))]
    assert got_below == [below] * n, (rs[:n], got_below)
    assert got_above == [above] * len(d_above), (rs[n:], got_above)


def test_logistic_never_labels_a_wrong_period_near_a_doubling():
    """Closer to the doublings than the budget resolves, a cell gets no verdict (max_iter) or
    the right one, never a period the map does not have there (before: k = 4 below r2)."""
    rs, want = [], []
    for r_k, below, above in [(R1, 1, 2), (R2, 2, 4), (R3, 4, 8), (R4, 8, 16)]:
        for d in (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4):
            rs += [r_k - d, r_k + d]
            want += [below, above]
    res = _logistic(rs)
    for i, (r, w) in enumerate(zip(rs, want, strict=True)):
        assert _label(res, i) in (0, w), (r, res.statuses[i], int(res.period[i]))


def test_issue_case_below_r2_is_the_two_cycle_polished():
    """r = 3.4476 < r2: the orbit approaches the 2-cycle with multiplier about -0.99; it was
    labelled k = 4. The label is 2 and the stored points are the 2-cycle's closed form
    (r + 1 +- sqrt((r - 3)(r + 1))) / (2 r), polished far below the orbit's own distance."""
    r = 3.4476
    res = _logistic([r])
    assert res.statuses == [Status.PERIODIC]
    assert int(res.period[0]) == 2
    s = math.sqrt((r - 3) * (r + 1))
    exact = sorted([(r + 1 - s) / (2 * r), (r + 1 + s) / (2 * r)])
    pts = sorted(res.cycle[0, :2, 0].tolist())
    np.testing.assert_allclose(pts, exact, rtol=0, atol=1e-12)
    assert bool(torch.isnan(res.cycle[0, 2:]).all())  # NaN after the period
    # the orbit's last iterate is still visibly off the cycle: the polish did the work
    assert min(abs(float(res.z[0, 0]) - e) for e in exact) > 1e-9


@pytest.mark.parametrize("lean", [True, False], ids=["lean-loop", "general-loop"])
def test_both_loops_and_iterate_agree_on_true_periods(lean):
    rs = [3.4476, R2 + 1e-3, R3 - 1e-3, 3.83]
    res = _logistic(rs, history=not lean)
    assert [int(p) for p in res.period] == [2, 4, 4, 3]
    fmap = compile_spec(load_spec("logistic"), dtype="float64").with_values(
        r=torch.tensor(rs, dtype=torch.float64)
    )
    last = list(iterate(fmap, "fixed_point", tol=1e-10, max_iter=5000))[-1]
    assert [Status(int(s)) for s in last.status] == res.statuses


def test_period_three_window_opens_at_one_plus_sqrt8():
    """Just above 1 + sqrt(8) the 3-cycle attracts (label 3, its points a 3-cycle of the map
    to 1e-12); just below there is none (intermittent chaos: never period 3)."""
    res = _logistic([R_WINDOW3 + 1e-4, R_WINDOW3 + 1e-3, R_WINDOW3 - 1e-3, R_WINDOW3 - 1e-4])
    assert [_label(res, i) for i in range(2)] == [3, 3]
    assert all(_label(res, i) != 3 for i in (2, 3))
    for i, r in enumerate([R_WINDOW3 + 1e-4, R_WINDOW3 + 1e-3]):
        pts = res.cycle[i, :3, 0].tolist()
        for a, b in zip(pts, pts[1:] + pts[:1], strict=True):
            assert r * a * (1 - a) == pytest.approx(b, abs=1e-12)


def _tanh_reference(a: float, x0: float, steps: int = 20_000) -> tuple[int, np.ndarray]:
    """Period and cycle of z -> tanh(a W z + x) by a plain float64 NumPy run of ``steps``
    steps from z0 = 0: the smallest p with ||z_N - z_{N-p}|| < 1e-12, and its points."""
    w = np.array([[0.6, -1.1], [0.9, 0.4]])
    x = np.array([x0, -0.2])
    z = np.zeros(2)
    tail = []
    for t in range(steps):
        z = np.tanh(a * (w @ z) + x)
        if t >= steps - 64:
            tail.append(z)
    tail_a = np.array(tail)
    for p in range(1, 33):
        if np.abs(tail_a[-1] - tail_a[-1 - p]).max() < 1e-12:
            return p, tail_a[-p:]
    return 0, tail_a[-1:]


@pytest.mark.parametrize(
    ("a", "x0"),
    [
        (2.3424657534246576, -0.09784735812133083),
        (1.831702544031311, 1.201565557729941),
        (2.4481409001956944, 1.2328767123287667),
    ],
    ids=["period-5-cell", "period-6-cell", "period-11-cell"],
)
def test_tanh_layer_cycles_match_a_long_independent_run(a, x0):
    """Cells the 512 x 512 float32 sweep calls periodic (periods 5, 6, 11): ``solve`` in
    float64 gives the period of a 20,000-step NumPy run, and its polished points are that run's
    cycle to 1e-10."""
    spec = load_spec("tanh_layer").with_values(a=a).with_overrides({"x[0]": x0})
    fmap = compile_spec(spec, dtype="float64")
    res = solve(fmap, "fixed_point", tol=1e-10, max_iter=4000)
    p_ref, pts_ref = _tanh_reference(a, x0)
    assert res.statuses == [Status.PERIODIC]
    assert int(res.period[0]) == p_ref > 1
    pts = res.cycle[0, :p_ref].numpy()
    # the same set of points (the phase may differ)
    for q in pts_ref:
        assert np.abs(pts - q).max(axis=1).min() < 1e-10


def test_jacobians_by_central_differences_match_autograd():
    """The polish's Jacobians of f (central differences) against autograd, on the tanh layer
    at random points, float64: agreement to 1e-9 (the error is about eps^(2/3))."""
    fmap = compile_spec(load_spec("tanh_layer").with_values(a=2.1), dtype="float64")
    f = fmap.as_batch_last()
    z = torch.rand(2, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    fd = cycle_polish.jacobians_fd(f, z)
    ad = jacobian_batch_last(f, z)
    torch.testing.assert_close(fd, ad, rtol=0, atol=1e-9)


def test_stateful_solvers_keep_the_ring_test():
    """Anderson has memory: no map of z alone to polish with; its candidates keep the ring
    test's verdict, as before (the polish applies to naive and damped iteration)."""
    from implicit_viz.core.solvers import get_solver

    fmap = compile_spec(load_spec("logistic"), dtype="float64")
    assert not cycle_polish.polish_applies(get_solver("anderson").iteration_map(fmap), 1, 32)
    assert cycle_polish.polish_applies(get_solver("damped").iteration_map(fmap), 1, 32)
    assert not cycle_polish.polish_applies(fmap.as_batch_last(), 4096, 32)
