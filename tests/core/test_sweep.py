"""The sweep engine: every cell of a 1-D or 2-D grid is its own fixed-point problem.

Truths come from outside the library: closed forms (cube roots of unity, the logistic map's
fixed point, 2-cycle and bifurcation values, ``A^-1 b`` and ``2/L`` for gradient descent),
independent NumPy loops (complex Newton, logistic Lyapunov exponents, tanh iteration), SciPy,
symmetries of the maps (rotation by 120 degrees, complex conjugation) and per-cell solves.
"""

from __future__ import annotations

import io
import json
import math
import time

import numpy as np
import pytest
import torch

import implicit_viz.core.sweep as sweep_mod
import implicit_viz.core.sweep_basins as sweep_basins
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import SpecError, SweepError
from implicit_viz.core.spec import load_spec, parse_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import (
    MAX_AXIS_CELLS,
    MAX_TILE,
    Axis,
    SweepRequest,
    bytes_per_cell,
    iter_sweep,
    sweep,
    sweep_options,
    tile_size,
    validate,
)
from tests.helpers import scipy_root

CONV, DIV, PER, CHAOS, NOT_RUN = (
    int(Status.CONVERGED),
    int(Status.DIVERGED),
    int(Status.PERIODIC),
    int(Status.CHAOTIC),
    int(Status.NOT_RUN),
)

#: The cube roots of unity, as complex numbers.
CUBE_ROOTS = np.exp(2j * np.pi * np.arange(3) / 3)
ROT120 = np.exp(2j * np.pi / 3)
R_PERIOD_2 = 3.0  # fixed point -> 2-cycle
R_PERIOD_4 = 1.0 + math.sqrt(6.0)  # 2-cycle -> 4-cycle (3.449490...)
R_PERIOD_8 = 3.5440903595519228  # 4-cycle -> 8-cycle

# A square grid whose values are exact binary fractions: (2i - 127) / 64, i = 0..127, so the
# grid is exactly symmetric under y -> -y (and x -> -x) and misses the pole at the origin.
NEWTON_HALF = 127 / 64
NEWTON_N = 128


# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------


def newton_np(w: np.ndarray, steps: int = 80) -> np.ndarray:
    """Complex Newton on w^3 - 1 (NumPy); returns the index of the nearest cube root."""
    w = np.asarray(w, dtype=complex).copy()
    with np.errstate(all="ignore"):
        for _ in range(steps):
            w = w - (w**3 - 1) / (3 * w**2)
    return np.abs(w[..., None] - CUBE_ROOTS).argmin(axis=-1)


def logistic_cycle2(r: float) -> np.ndarray:
    """The two points of the logistic map's 2-cycle (closed form), ascending."""
    s = math.sqrt((r - 3) * (r + 1))
    return np.array([(r + 1 - s) / (2 * r), (r + 1 + s) / (2 * r)])


def logistic_lyapunov_np(r: float, z: float = 0.2, burn: int = 2000, n: int = 20000) -> float:
    """Lyapunov exponent of z -> r z (1 - z) from a long NumPy orbit: mean log |r (1 - 2z)|."""
    for _ in range(burn):
        z = r * z * (1 - z)
    total = 0.0
    for _ in range(n):
        total += math.log(max(abs(r * (1 - 2 * z)), 1e-300))
        z = r * z * (1 - z)
    return total / n


def n_distinct(values: np.ndarray, tol: float) -> int:
    """Clusters of a 1-D sample: sorted values separated by gaps larger than ``tol``."""
    v = np.sort(np.asarray(values, dtype=float).ravel())
    return int(1 + np.count_nonzero(np.diff(v) > tol))


def tanh_fixed_np(a: float, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fixed point of z = tanh(a W z + x) by plain NumPy iteration (a contraction here)."""
    z = np.zeros(2)
    for _ in range(2000):
        z_new = np.tanh(a * (w @ z) + x)
        if np.max(np.abs(z_new - z)) < 1e-14:
            return z_new
        z = z_new
    raise AssertionError("reference iteration did not settle")


def tanh_arrays(spec) -> tuple[np.ndarray, np.ndarray]:
    w = np.array(spec.tensor("W").data, dtype=float).reshape(2, 2)
    x = np.array(spec.tensor("x").data, dtype=float)
    return w, x


def gd_arrays(spec) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(spec.tensor("A").data, dtype=float).reshape(2, 2)
    b = np.array(spec.tensor("b").data, dtype=float)
    return a, b


def cell_grid(res) -> tuple[np.ndarray, np.ndarray]:
    """Axis values per cell, shaped like the cell arrays: (X, Y) with row = y index."""
    ys = res.y_values if res.y_values is not None else np.zeros(1)
    return np.meshgrid(res.x_values, ys, indexing="xy")


def forbid_work(monkeypatch) -> None:
    """Make any solve or compile inside the sweep module fail the test."""

    def boom(*args, **kwargs):
        raise AssertionError("work started before the request was checked")

    monkeypatch.setattr(sweep_mod, "solve", boom)
    monkeypatch.setattr(sweep_mod, "compile_spec", boom)


# ----------------------------------------------------------------------------------------------
# Newton's method on z^3 - 1: three basins, 120-degree rotation and conjugation symmetry
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def newton_spec():
    return load_spec("newton_cubic")


@pytest.fixture(scope="module")
def newton_grid(newton_spec):
    """Basins of Newton's map on [-127/64, 127/64]^2, 128 x 128 starts, float64."""
    req = SweepRequest(
        newton_spec,
        Axis("z0[0]", -NEWTON_HALF, NEWTON_HALF, NEWTON_N),
        Axis("z0[1]", -NEWTON_HALF, NEWTON_HALF, NEWTON_N),
        options=sweep_options(newton_spec, "float64"),
        dtype="float64",
    )
    return sweep(req)


def test_newton_cubic_three_basins_at_the_cube_roots(newton_grid):
    res = newton_grid
    assert res.complete and not res.cancelled and res.basins_resolved
    assert res.status.shape == (NEWTON_N, NEWTON_N)
    assert (res.status == CONV).all()
    # the three fixed points are the cube roots of unity, in sorted (lexicographic) order
    roots = np.stack([CUBE_ROOTS.real, CUBE_ROOTS.imag], axis=1)
    order = np.lexsort(np.round(roots, 6).T[::-1])
    np.testing.assert_allclose(res.fixed_points, roots[order], atol=1e-6)
    assert set(np.unique(res.basin)) == {0, 1, 2}
    # every cell sits on the root its basin names, and that root solves w^3 = 1
    z = res.z[..., 0] + 1j * res.z[..., 1]
    root_of_cell = res.fixed_points[res.basin]
    np.testing.assert_allclose(res.z, root_of_cell, atol=1e-6)
    np.testing.assert_allclose(np.abs(z**3 - 1), 0, atol=1e-6)
    assert (res.residual <= 1e-10).all()


@pytest.mark.parametrize("inner", [0.0, 0.6], ids=["disk", "annulus"])
def test_newton_cubic_basin_shares_are_equal_on_a_rotation_invariant_region(newton_grid, inner):
    res = newton_grid
    x, y = cell_grid(res)
    rad = np.hypot(x, y)
    region = (rad <= NEWTON_HALF) & (rad >= inner)
    shares = np.bincount(res.basin[region], minlength=3) / region.sum()
    np.testing.assert_allclose(shares, 1 / 3, atol=0.01)


def test_newton_cubic_basins_rotate_by_120_degrees(newton_grid):
    """A start rotated by 120 degrees (solved here, in NumPy) reaches the rotated root."""
    res = newton_grid
    x, y = cell_grid(res)
    rng = np.random.default_rng(3)
    pick = rng.choice(res.status.size, size=400, replace=False)
    start = (x + 1j * y).ravel()[pick]
    fp = res.fixed_points[res.basin.ravel()[pick]]
    root = fp[:, 0] + 1j * fp[:, 1]
    # the cell's own start, solved independently, reaches the root the sweep reports
    np.testing.assert_allclose(CUBE_ROOTS[newton_np(start)], root, atol=1e-6)
    for turns in (1, 2):
        rot = ROT120**turns
        got = CUBE_ROOTS[newton_np(start * rot)]
        np.testing.assert_allclose(got, root * rot, atol=1e-6)


def test_newton_cubic_basins_are_conjugation_symmetric(newton_grid):
    """y -> -y (the grid is exactly symmetric) swaps the two complex roots and nothing else."""
    res = newton_grid
    np.testing.assert_array_equal(res.y_values, -res.y_values[::-1])
    fp = res.fixed_points
    conj = np.array(
        [np.flatnonzero(np.all(np.abs(fp - p * [1, -1]) < 1e-6, axis=1))[0] for p in fp]
    )
    assert sorted(conj.tolist()) == [0, 1, 2] and (conj != np.arange(3)).sum() == 2
    np.testing.assert_array_equal(res.basin[::-1], conj[res.basin])
    np.testing.assert_array_equal(res.status[::-1], res.status)
    np.testing.assert_array_equal(res.iterations[::-1], res.iterations)
    np.testing.assert_array_equal(res.z[::-1, :, 0], res.z[..., 0])
    np.testing.assert_array_equal(res.z[::-1, :, 1], -res.z[..., 1])


# ----------------------------------------------------------------------------------------------
# The logistic map: period doubling, orbit diagram, chaos
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logistic_spec():
    return load_spec("logistic")


@pytest.fixture(scope="module")
def logistic_doubling(logistic_spec):
    """r on [2.6, 3.56], 128 cells, float64, with 64 orbit iterates per cell."""
    req = SweepRequest(
        logistic_spec,
        Axis("r", 2.6, 3.56, 128),
        options=sweep_options(logistic_spec, "float64", max_iter=4000),
        dtype="float64",
        orbit=64,
    )
    return sweep(req)


def test_logistic_period_doubles_at_the_known_values_of_r(logistic_doubling):
    res = logistic_doubling
    r = res.x_values
    st, per = res.status[0], res.period[0]
    dr = r[1] - r[0]
    margin = 0.02
    fixed = r < R_PERIOD_2 - margin
    two = (r > R_PERIOD_2 + margin) & (r < R_PERIOD_4 - margin)
    four = (r > R_PERIOD_4 + margin) & (r < R_PERIOD_8 - margin)
    assert fixed.sum() > 40 and two.sum() > 40 and four.sum() >= 6
    assert (st[fixed] == CONV).all()
    np.testing.assert_allclose(res.z[0, fixed, 0], 1 - 1 / r[fixed], rtol=0, atol=1e-7)
    assert (st[two] == PER).all() and (per[two] == 2).all(), per[two]
    assert (st[four] == PER).all() and (per[four] == 4).all(), per[four]
    # a period-2 cell's last iterate is one of the two cycle points (closed form)
    for i in np.flatnonzero(two):
        assert np.abs(logistic_cycle2(r[i]) - res.z[0, i, 0]).min() < 1e-4, r[i]
    # the transitions sit at the known values, within the grid spacing (plus the margin where
    # convergence slows down near a bifurcation)
    last_fixed = r[st == CONV].max()
    first_two = r[(st == PER) & (per == 2)].min()
    last_two = r[(st == PER) & (per == 2)].max()
    first_four = r[(st == PER) & (per == 4)].min()
    assert R_PERIOD_2 - dr - margin <= last_fixed < R_PERIOD_2
    assert R_PERIOD_2 <= first_two <= R_PERIOD_2 + dr + margin
    assert R_PERIOD_4 - dr - margin <= last_two < R_PERIOD_4
    assert R_PERIOD_4 <= first_four <= R_PERIOD_4 + dr + margin


def test_logistic_orbit_diagram_counts_one_two_four(logistic_doubling):
    res = logistic_doubling
    r = res.x_values
    assert res.orbit.shape == (128, 64, 1)
    assert np.isfinite(res.orbit).all()
    # the orbit continues the map from each cell's last iterate: o[k+1] = r o[k] (1 - o[k])
    o = res.orbit[:, :, 0].astype(float)
    np.testing.assert_allclose(o[:, 1:], r[:, None] * o[:, :-1] * (1 - o[:, :-1]), atol=1e-5)
    np.testing.assert_allclose(o[:, 0], r * res.z[0, :, 0] * (1 - res.z[0, :, 0]), atol=1e-5)
    margin = 0.02
    for lo, hi, count in [
        (2.6, R_PERIOD_2, 1),
        (R_PERIOD_2, R_PERIOD_4, 2),
        (R_PERIOD_4, R_PERIOD_8, 4),
    ]:
        cells = np.flatnonzero((r > lo + margin) & (r < hi - margin))
        got = [n_distinct(o[i], 1e-3) for i in cells]
        assert got == [count] * len(cells), (lo, hi, got)
    fixed = np.flatnonzero(r < R_PERIOD_2 - margin)
    np.testing.assert_allclose(
        o[fixed], np.broadcast_to((1 - 1 / r[fixed])[:, None], o[fixed].shape), atol=1e-6
    )
    for i in np.flatnonzero((r > R_PERIOD_2 + margin) & (r < R_PERIOD_4 - margin)):
        ends = np.array([o[i].min(), o[i].max()])
        np.testing.assert_allclose(ends, logistic_cycle2(r[i]), atol=1e-4)


@pytest.fixture(scope="module")
def logistic_chaos(logistic_spec):
    req = SweepRequest(
        logistic_spec,
        Axis("r", 3.86, 3.94, 48),
        options=sweep_options(logistic_spec, "float64", max_iter=2000),
        dtype="float64",
        orbit=64,
    )
    return sweep(req)


def test_logistic_chaotic_range_has_positive_lyapunov_and_many_values(logistic_chaos):
    """Where a long NumPy orbit has a clearly positive Lyapunov exponent, the cell is CHAOTIC,
    its estimate is positive and its orbit does not repeat."""
    res = logistic_chaos
    r = res.x_values
    lam = np.array([logistic_lyapunov_np(v) for v in r])
    chaotic = lam > 0.2
    assert chaotic.sum() >= 30
    bad = [
        (round(float(r[i]), 5), int(res.status[0, i]), int(res.period[0, i]))
        for i in np.flatnonzero(chaotic)
        if res.status[0, i] != CHAOS
    ]
    assert not bad, f"chaotic cells (r, status, period) not CHAOTIC: {bad}"
    assert (res.lyapunov[0, chaotic] > 0.02).all()
    assert np.all(np.abs(res.lyapunov[0, chaotic] - lam[chaotic]) < 0.3)
    for i in np.flatnonzero(chaotic):
        assert n_distinct(res.orbit[i, :, 0], 1e-4) >= 32, r[i]


def test_logistic_periodic_windows_inside_chaos_are_true_cycles(logistic_chaos):
    """Cells reported PERIODIC in the chaotic range really repeat with their period."""
    res = logistic_chaos
    r = res.x_values
    periodic = np.flatnonzero(res.status[0] == PER)
    for i in periodic:
        p = int(res.period[0, i])
        z = float(res.z[0, i, 0])
        orbit = [z]
        for _ in range(4 * p):
            orbit.append(r[i] * orbit[-1] * (1 - orbit[-1]))
        # the cycle closes after p, 2p and 4p steps from the cell's last iterate
        for k in (p, 2 * p, 4 * p):
            assert abs(orbit[k] - z) < 1e-3, (r[i], p, k, abs(orbit[k] - z))
        assert logistic_lyapunov_np(r[i]) < 0.05, (r[i], p)
    assert np.isnan(res.lyapunov[0, periodic]).all()


# ----------------------------------------------------------------------------------------------
# Gradient descent: converged below 2/L, diverged above
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gd_spec():
    return load_spec("gradient_descent")


def gd_numpy_iterations(spec, etas: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Steps plain gradient descent takes until ||f(z) - z||_2 <= tol (-1: never), NumPy."""
    a, b = gd_arrays(spec)
    out = np.full(len(etas), -1)
    for j, eta in enumerate(etas):
        z = np.array(spec.start, dtype=float)
        for k in range(max_iter + 1):
            fz = z - eta * (a @ z - b)
            if np.linalg.norm(fz - z) <= tol:
                out[j] = k
                break
            if not np.all(np.abs(fz) < 1e8):
                break
            z = fz
    return out


def test_gradient_descent_converges_below_two_over_l_and_diverges_above(gd_spec):
    a, b = gd_arrays(gd_spec)
    lmax = np.linalg.eigvalsh(a).max()
    assert lmax == pytest.approx(4.0)
    opts = sweep_options(gd_spec, "float64", max_iter=3000)
    req = SweepRequest(gd_spec, Axis("eta", 0.02, 0.8, 80), options=opts, dtype="float64")
    res = sweep(req)
    eta = res.x_values
    st = res.status[0]
    below = eta < 2 / lmax - 0.012
    above = eta > 2 / lmax + 0.012
    assert below.sum() > 40 and above.sum() > 20
    assert (st[below] == CONV).all()
    assert (st[above] == DIV).all()
    # one fixed point, the minimiser A^-1 b, reached by every converged cell
    z_star = np.linalg.solve(a, b)
    assert res.basins_resolved
    np.testing.assert_allclose(res.fixed_points, z_star[None], atol=2e-6)
    assert (res.basin[0, st == CONV] == 0).all()
    # ||f(z) - z|| = eta ||A (z - z*)|| <= tol bounds the distance to z* by tol / (eta mu)
    bound = opts.tol / (eta[below] * np.linalg.eigvalsh(a).min()) + 1e-6
    dist = np.abs(res.z[0, below] - z_star).max(axis=1)
    assert (dist <= bound).all(), dist / bound
    # the iteration counts are those of an independent NumPy loop with the same stopping rule
    ref = gd_numpy_iterations(gd_spec, eta[below], opts.tol, opts.max_iter)
    np.testing.assert_array_equal(res.iterations[0, below], ref)


def test_gradient_descent_with_newton_converges_for_every_eta(gd_spec):
    """The map is affine: one Newton step lands on A^-1 b whatever eta > 0 is."""
    a, b = gd_arrays(gd_spec)
    opts = sweep_options(gd_spec, "float64")
    req = SweepRequest(
        gd_spec, Axis("eta", 0.05, 0.8, 32), solver="newton", options=opts, dtype="float64"
    )
    res = sweep(req)
    assert (res.status == CONV).all()
    assert (res.iterations <= 2).all()
    np.testing.assert_allclose(res.fixed_points, np.linalg.solve(a, b)[None], atol=1e-8)


# ----------------------------------------------------------------------------------------------
# tanh layer with a small weight scale: converges everywhere, one fixed point
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tanh_spec_small():
    return load_spec("tanh_layer").with_values(a=0.4)


def test_tanh_small_weight_over_starts_has_one_fixed_point(tanh_spec_small):
    spec = tanh_spec_small
    w, x = tanh_arrays(spec)
    assert 0.4 * np.linalg.norm(w, 2) < 1  # a contraction: one fixed point, reached from anywhere
    req = SweepRequest(
        spec,
        Axis("z0[0]", -3, 3, 32),
        Axis("z0[1]", -3, 3, 24),
        options=sweep_options(spec, "float64", tol=1e-11),
        dtype="float64",
    )
    res = sweep(req)
    assert (res.status == CONV).all()
    assert res.basins_resolved and res.fixed_points.shape == (1, 2)
    assert (res.basin == 0).all()
    ref = scipy_root(lambda z: np.tanh(0.4 * (w @ z) + x), np.zeros(2))
    np.testing.assert_allclose(res.fixed_points[0], ref, atol=1e-9)
    # z is stored in float32
    np.testing.assert_allclose(res.z.reshape(-1, 2), np.broadcast_to(ref, (32 * 24, 2)), atol=1e-7)


def test_tanh_small_weight_over_a_and_x0_converges_everywhere(tanh_spec_small):
    """a in [0, 0.5] against x[0]: every cell converges to its own fixed point (the fixed point
    moves with a and x[0], so basins are not numbered), and z holds each cell's point."""
    spec = tanh_spec_small
    w, x = tanh_arrays(spec)
    req = SweepRequest(spec, Axis("a", 0.0, 0.5, 48), Axis("x[0]", -2.0, 2.0, 40))
    res = sweep(req)
    assert (res.status == CONV).all()
    assert not res.basins_resolved or len(res.fixed_points) <= 16
    if not res.basins_resolved:
        assert (res.basin == -1).all() and res.fixed_points.shape[0] == 0
        assert res.summary()["basins_resolved"] is False
    rng = np.random.default_rng(0)
    for iy, ix in zip(rng.integers(0, 40, 25), rng.integers(0, 48, 25)):
        xv = x.copy()
        xv[0] = res.y_values[iy]
        ref = tanh_fixed_np(res.x_values[ix], w, xv)
        np.testing.assert_allclose(res.z[iy, ix], ref, atol=2e-5)


def test_param_axis_moving_the_fixed_point_leaves_basins_unresolved():
    """A fine 1-D sweep of a moves the fixed point continuously: no error, no basins, and every
    cell's z matches a single solve of that cell."""
    spec = load_spec("tanh_layer")
    w, x = tanh_arrays(spec)
    req = SweepRequest(spec, Axis("a", 0.0, 0.5, 128), options=sweep_options(spec))
    res = sweep(req)
    assert (res.status == CONV).all()
    # the fixed point really moves: far more distinct points than a basin picture could show
    refs = np.array([tanh_fixed_np(a, w, x) for a in res.x_values])
    assert n_distinct(refs[:, 0], 1e-3) > 16
    if res.basins_resolved:  # then only a few points may be numbered, never one per cell
        assert len(res.fixed_points) <= 16
    else:
        assert (res.basin == -1).all() and len(res.fixed_points) == 0
    np.testing.assert_allclose(res.z[0], refs, atol=1e-5)
    for i in (0, 37, 127):
        fm = compile_spec(spec.with_values(a=float(res.x_values[i])), dtype="float32")
        one = solve(fm, "fixed_point", options=req.options)
        assert int(one.status[0]) == CONV
        np.testing.assert_allclose(res.z[0, i], one.z[0].numpy(), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Batched sweep == cell-by-cell solves
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solver", "dtype"),
    [
        ("fixed_point", "float64"),
        ("fixed_point", "float32"),
        ("anderson", "float64"),
        ("newton", "float64"),
    ],
)
def test_batched_sweep_equals_cell_by_cell_solves(solver, dtype):
    """a in [0.3, 2.4] against x[0]: a mix of converged, periodic and non-converging cells."""
    spec = load_spec("tanh_layer")
    opts = sweep_options(spec, dtype, max_iter=150)
    req = SweepRequest(
        spec,
        Axis("a", 0.3, 2.4, 6),
        Axis("x[0]", -0.8, 0.8, 5),
        solver=solver,
        options=opts,
        dtype=dtype,
        tile_size=13,
        preview=2,
    )
    res = sweep(req)
    assert res.complete
    for iy, xv in enumerate(res.y_values):
        for ix, av in enumerate(res.x_values):
            cell = spec.with_values(a=float(av)).with_overrides({"x[0]": float(xv)})
            one = solve(compile_spec(cell, dtype=dtype), solver, options=opts)
            where = (solver, float(av), float(xv))
            assert res.status[iy, ix] == int(one.status[0]), where
            assert res.iterations[iy, ix] == int(one.iterations[0]), where
            assert res.period[iy, ix] == int(one.period[0]), where
            # z and residual are stored in float32
            z1 = one.z[0].numpy().astype(np.float32)
            np.testing.assert_allclose(res.z[iy, ix], z1, rtol=2e-7, atol=1e-30, err_msg=str(where))
            np.testing.assert_allclose(
                res.residual[iy, ix], float(one.residual[0]), rtol=1e-4, atol=1e-12
            )
            lam = float(one.lyapunov[0]) if one.lyapunov is not None else math.nan
            if math.isfinite(lam):
                assert res.lyapunov[iy, ix] == pytest.approx(lam, abs=1e-4), where
            else:
                assert math.isnan(res.lyapunov[iy, ix]), where
    statuses = set(np.unique(res.status).tolist())
    assert CONV in statuses
    if solver == "fixed_point":  # past a ~ 1.1 plain iteration stops converging
        assert len(statuses) >= 2, statuses


def test_cells_start_at_their_axis_values_row_is_y():
    """With no step taken, a cell's z is its start: x axis along columns, y along rows."""
    spec = load_spec("newton_cubic")
    opts = sweep_options(spec, "float64", max_iter=0)
    req = SweepRequest(
        spec, Axis("z0[1]", -1.0, 2.0, 7), Axis("z0[0]", 0.5, 1.5, 5), options=opts, dtype="float64"
    )
    res = sweep(req)
    assert res.status.shape == (5, 7)
    np.testing.assert_array_equal(res.z[..., 1], np.broadcast_to(np.linspace(-1, 2, 7), (5, 7)))
    np.testing.assert_array_equal(
        res.z[..., 0], np.broadcast_to(np.linspace(0.5, 1.5, 5)[:, None], (5, 7))
    )
    assert (res.iterations == 0).all()
    # one logistic step from z0 = 0.2 for every r: z = r 0.2 0.8
    lspec = load_spec("logistic")
    lres = sweep(
        SweepRequest(
            lspec,
            Axis("r", 1.0, 4.0, 16),
            options=sweep_options(lspec, "float64", max_iter=1, lyapunov_steps=0),
            dtype="float64",
        )
    )
    np.testing.assert_array_equal(
        lres.z[0, :, 0], (np.linspace(1, 4, 16) * 0.2 * 0.8).astype(np.float32)
    )


def test_sweep_options_take_the_spec_solver_table_and_floor_float32_tol():
    newton = load_spec("newton_cubic")  # [solver] tol = 1e-10, max_iter = 100
    o64 = sweep_options(newton, "float64")
    assert o64.tol == 1e-10 and o64.max_iter == 100
    o32 = sweep_options(newton, "float32")
    assert o32.tol == 1e-6 and o32.max_iter == 100
    assert sweep_options(newton, "float32", tol=1e-9).tol == 1e-9  # explicit: kept as given
    assert sweep_options(newton, "float64", max_iter=7, tol=None).max_iter == 7
    gd = load_spec("gradient_descent")  # tol = 1e-8 (looser than nothing in float64)
    assert sweep_options(gd, "float64").tol == 1e-8
    # sweeps keep no per-step history and no diagnostics
    assert not o64.history and not o64.diagnostics
    # sparse cycle tests span the ring of max_period + 2 iterates
    o = sweep_options(newton, "float64", max_period=100)
    assert o.period_every >= 102


def identity_spec():
    from tests.helpers import make_spec

    return make_spec("z", 2, z0=[0.0, 0.0])


def test_basins_are_numbered_in_sorted_order():
    """Under the identity map every start is its own fixed point: fixed_points must be the grid
    points in lexicographic order and each cell's basin the rank of its own start."""
    spec = identity_spec()
    xs, ys = np.arange(9) * 0.25 - 1.0, np.arange(7) * 0.5 - 1.5
    req = SweepRequest(spec, Axis("z0[0]", -1.0, 1.0, 9), Axis("z0[1]", -1.5, 1.5, 7), tile_size=5)
    res = sweep(req)
    assert (res.status == CONV).all() and (res.iterations == 0).all()
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    order = np.lexsort((pts[:, 1], pts[:, 0]))  # by x, then y
    np.testing.assert_allclose(res.fixed_points, pts[order], atol=1e-7)
    rank = np.empty(len(pts), int)
    rank[order] = np.arange(len(pts))
    np.testing.assert_array_equal(res.basin, rank.reshape(7, 9))


@pytest.mark.parametrize(("basin_tol", "expect"), [(0.05, 66), (0.3, None), (2.5, 1)])
def test_cells_join_a_basin_by_basin_tol(basin_tol, expect):
    """Identity map on an 11 x 6 grid (spacing 0.2, extent 2 x 1): below half the spacing every
    start is its own point; above the extent all are one; in between, fewer points, each cell
    near its representative and representatives further apart than the tolerance."""
    spec = identity_spec()
    req = SweepRequest(
        spec, Axis("z0[0]", -1.0, 1.0, 11), Axis("z0[1]", 0.0, 1.0, 6), basin_tol=basin_tol
    )
    res = sweep(req)
    assert (res.status == CONV).all() and res.basins_resolved
    fp = res.fixed_points
    if expect is not None:
        assert len(fp) == expect
    else:
        assert 1 < len(fp) < 66
    rep = fp[res.basin]
    scale = 1 + np.abs(res.z).max(axis=-1)
    # a cell joins a representative within the tolerance (bucketing may add one more tol)
    assert (np.abs(res.z - rep).max(axis=-1) <= 2 * basin_tol * scale + 1e-6).all()
    if len(fp) > 1:
        norm = np.abs(fp).max(axis=1)
        gap = np.abs(fp[:, None] - fp[None]).max(axis=-1) + np.eye(len(fp)) * 1e9
        assert (gap > basin_tol * (1 + np.minimum(norm[:, None], norm[None])) - 1e-6).all()


def test_start_axes_with_too_many_distinct_points_are_unresolved():
    """More distinct fixed points than a basin picture can number (here 20 x 20 under the
    identity map) gives basins_resolved False, no basins, and z still per cell."""
    spec = identity_spec()
    req = SweepRequest(spec, Axis("z0[0]", -1.0, 1.0, 20), Axis("z0[1]", -1.0, 1.0, 20))
    res = sweep(req)
    assert (res.status == CONV).all()
    assert res.basins_resolved is False
    assert (res.basin == -1).all() and len(res.fixed_points) == 0
    gx, gy = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 20))
    np.testing.assert_allclose(res.z, np.stack([gx, gy], axis=-1), atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Independence from tile size, preview stride and device
# ----------------------------------------------------------------------------------------------


NEWTON_TILINGS = [(7, 1), (64, 4), (None, 4), (7, 4), (None, 3), (1000, 5)]
TANH_TILINGS = [(23, 1), (64, 4), (None, 4), (None, 3)]


def _invariance_cases():
    newton = load_spec("newton_cubic")
    tanh = load_spec("tanh_layer")
    return [
        pytest.param(
            newton,
            Axis("z0[0]", -1.5, 1.5, 45),
            Axis("z0[1]", -1.2, 1.3, 38),
            NEWTON_TILINGS,
            {CONV},
            id="newton-basins",
        ),
        pytest.param(
            tanh,
            Axis("a", 0.2, 2.6, 30),
            Axis("x[0]", -1.0, 1.0, 24),
            TANH_TILINGS,
            # since issue 17, out-of-budget cells get verdicts: still converging and
            # quasi-periodic (invariant circles); the 64-step "chaotic" cells were noise
            {CONV, PER, int(Status.MAX_ITER), int(Status.CONVERGING), int(Status.QUASI_PERIODIC)},
            id="tanh-outcomes",
        ),
    ]


@pytest.mark.parametrize(("spec", "ax", "ay", "tilings", "outcomes"), _invariance_cases())
def test_results_do_not_depend_on_tile_size_or_preview(spec, ax, ay, tilings, outcomes):
    """Same cells, any tiling and preview stride: the same outcome, iterations, period and
    (canonical) basin id per cell. The tanh case mixes converged, periodic, max_iter and
    chaotic cells; the Newton case has three basins."""
    base = SweepRequest(spec, ax, ay, options=sweep_options(spec, "float32"), preview=1)
    ref = sweep(base)
    assert ref.complete
    assert set(np.unique(ref.status).tolist()) == outcomes
    if CONV in outcomes and len(outcomes) == 1:
        assert len(ref.fixed_points) == 3
    for tile, preview in tilings:
        res = sweep(
            SweepRequest(spec, ax, ay, options=base.options, tile_size=tile, preview=preview)
        )
        assert res.complete, (tile, preview)
        if tile is not None:
            assert res.tile_size == tile
        for name in ("iterations", "period", "basin", "status"):
            np.testing.assert_array_equal(getattr(res, name), getattr(ref, name), err_msg=name)
        np.testing.assert_allclose(res.z, ref.z, rtol=0, atol=1e-6)
        np.testing.assert_allclose(res.residual, ref.residual, rtol=0, atol=1e-6)
        assert res.basins_resolved == ref.basins_resolved
        assert res.fixed_points.shape == ref.fixed_points.shape
        np.testing.assert_allclose(res.fixed_points, ref.fixed_points, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    spec = load_spec("tanh_layer").with_values(a=0.4)
    ax, ay = Axis("a", 0.0, 0.5, 32), Axis("x[0]", -2.0, 2.0, 24)
    cpu = sweep(SweepRequest(spec, ax, ay))
    gpu = sweep(SweepRequest(spec, ax, ay, device="cuda"))
    np.testing.assert_array_equal(gpu.status, cpu.status)
    assert np.abs(gpu.iterations - cpu.iterations).max() <= 1
    np.testing.assert_allclose(gpu.z, cpu.z, atol=1e-5)
    newton = load_spec("newton_cubic")
    ax, ay = Axis("z0[0]", -1.5, 1.5, 64), Axis("z0[1]", -1.5, 1.5, 64)
    opts = sweep_options(newton, "float64")
    cpu = sweep(SweepRequest(newton, ax, ay, options=opts, dtype="float64"))
    gpu = sweep(SweepRequest(newton, ax, ay, options=opts, dtype="float64", device="cuda"))
    np.testing.assert_allclose(gpu.fixed_points, cpu.fixed_points, atol=1e-8)
    assert (gpu.basin == cpu.basin).mean() > 0.99
    assert gpu.x_values.tolist() == cpu.x_values.tolist()


# ----------------------------------------------------------------------------------------------
# Memory budget and tiles
# ----------------------------------------------------------------------------------------------


def _spy_solve(monkeypatch) -> list[int]:
    """Record the batch size of every tile solve the sweep makes."""
    sizes: list[int] = []
    real = sweep_mod.solve

    def spy(fm, solver, z0, **kw):
        sizes.append(int(z0.shape[0]))
        return real(fm, solver, z0, **kw)

    monkeypatch.setattr(sweep_mod, "solve", spy)
    return sizes


@pytest.mark.parametrize("cells_per_budget", [1, 5, 37, 100_000])
def test_tile_size_follows_the_memory_budget(monkeypatch, cells_per_budget):
    spec = load_spec("newton_cubic")
    ax, ay = Axis("z0[0]", -1.5, 1.5, 20), Axis("z0[1]", -1.5, 1.5, 12)
    need = bytes_per_cell(SweepRequest(spec, ax, ay))
    budget = need * cells_per_budget + need // 2  # room for cells_per_budget cells, not one more
    req = SweepRequest(spec, ax, ay, memory_budget=budget, preview=1)
    expect = min(cells_per_budget, req.cells)
    assert tile_size(req) == expect
    sizes = _spy_solve(monkeypatch)
    res = sweep(req)
    assert res.complete and res.tile_size == expect
    assert max(sizes) == expect and sum(sizes) == req.cells
    assert len(sizes) == math.ceil(req.cells / expect)
    assert max(sizes) * need <= budget


def test_bytes_per_cell_grows_with_precision_dimension_orbit_and_solver_state():
    log = load_spec("logistic")
    deq = load_spec("deq_cell")
    r = SweepRequest(log, Axis("r", 2.5, 3.5, 16))
    assert bytes_per_cell(SweepRequest(log, r.x, dtype="float64")) > bytes_per_cell(r)
    assert bytes_per_cell(SweepRequest(log, r.x, orbit=256)) > bytes_per_cell(r)
    d = SweepRequest(deq, Axis("s", 0.1, 0.9, 16))
    assert bytes_per_cell(d) > bytes_per_cell(r)
    # Newton keeps a D x D Jacobian per cell: at least D^2 words
    newton = SweepRequest(deq, d.x, solver="newton")
    assert bytes_per_cell(newton) - bytes_per_cell(d) >= 32 * 32 * 4
    assert bytes_per_cell(SweepRequest(deq, d.x, solver="anderson")) > bytes_per_cell(d)


def test_budget_too_small_for_one_cell_fails_before_any_work(monkeypatch):
    spec = load_spec("deq_cell")
    req = SweepRequest(spec, Axis("s", 0.1, 0.9, 16), memory_budget=64)
    forbid_work(monkeypatch)
    calls = []
    with pytest.raises(SweepError, match=r"(?i)memory budget.*64"):
        sweep(req, progress=calls.append)
    with pytest.raises(SweepError, match=r"(?i)memory budget"):
        next(iter_sweep(req))
    with pytest.raises(SweepError, match=r"(?i)memory budget"):
        validate(req)
    assert calls == []


def test_a_4096_by_4096_request_is_accepted_without_running(monkeypatch):
    spec = load_spec("newton_cubic")
    req = SweepRequest(spec, Axis("z0[0]", -2, 2, 4096), Axis("z0[1]", -2, 2, 4096))
    forbid_work(monkeypatch)
    t0 = time.perf_counter()
    targets = validate(req)
    assert time.perf_counter() - t0 < 2.0
    assert [str(t) for t in targets] == ["z0[0]", "z0[1]"]
    assert req.cells == 4096 * 4096 and req.shape == (4096, 4096)
    tile = tile_size(req)
    assert 1 <= tile <= MAX_TILE and tile * bytes_per_cell(req) <= req.memory_budget


# ----------------------------------------------------------------------------------------------
# Progress, preview, cancellation
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def newton_small():
    spec = load_spec("newton_cubic")
    return SweepRequest(
        spec,
        Axis("z0[0]", -1.5, 1.5, 37),
        Axis("z0[1]", -1.5, 1.5, 30),
        options=sweep_options(spec, "float64"),
        dtype="float64",
        tile_size=100,
        preview=4,
    )


@pytest.fixture(scope="module")
def newton_small_full(newton_small):
    from dataclasses import replace

    return sweep(replace(newton_small, preview=1, tile_size=None))


def test_progress_fractions_increase_to_one(newton_small):
    events = []
    res = sweep(newton_small, progress=events.append)
    assert res.complete
    n_coarse = len(range(0, 30, 4)) * len(range(0, 37, 4))
    n_rest = 37 * 30 - n_coarse
    assert len(events) == math.ceil(n_coarse / 100) + math.ceil(n_rest / 100)
    done = [e.done for e in events]
    assert (np.diff(done) > 0).all()
    fr = [e.fraction for e in events]
    assert (np.diff(fr) > 0).all() and 0 < fr[0] and fr[-1] == 1.0
    assert {e.total for e in events} == {37 * 30}
    stages = [e.stage for e in events]
    assert stages == sorted(stages) and set(stages) == {0, 1}
    assert stages.count(0) == math.ceil(n_coarse / 100)
    elapsed = [e.elapsed_s for e in events]
    assert (np.diff(elapsed) >= 0).all()


def test_preview_pass_comes_first_and_is_the_strided_subgrid(newton_small, newton_small_full):
    from dataclasses import replace

    req = replace(newton_small, tile_size=10_000)  # one tile per pass
    it = iter_sweep(req)
    first, prog = next(it)
    assert prog.stage == 0
    iy, ix = np.meshgrid(np.arange(30), np.arange(37), indexing="ij")
    coarse = (iy % 4 == 0) & (ix % 4 == 0)
    np.testing.assert_array_equal(first.done, coarse)
    assert prog.done == coarse.sum()
    snap = {k: getattr(first, k).copy() for k in ("status", "iterations", "z")}
    fp_first = first.fixed_points[first.basin[coarse]]
    rest = list(it)
    assert [p.stage for _, p in rest] == [1]
    full = newton_small_full
    for k, v in snap.items():
        np.testing.assert_array_equal(v[coarse], getattr(full, k)[coarse], err_msg=k)
    np.testing.assert_allclose(fp_first, full.fixed_points[full.basin[coarse]], atol=1e-8)
    final = rest[-1][0]
    assert final.complete and not final.cancelled


def test_cancel_after_first_tile_keeps_solved_cells_and_marks_the_rest(
    newton_small, newton_small_full
):
    flag = {"stop": False}
    events = []

    def progress(p):
        events.append(p)
        flag["stop"] = True

    res = sweep(newton_small, progress=progress, cancel=lambda: flag["stop"])
    assert res.cancelled
    assert not res.complete
    solved = res.done
    n_coarse = len(range(0, 30, 4)) * len(range(0, 37, 4))
    first_tile = min(100, n_coarse)
    assert solved.sum() == events[0].done == first_tile  # exactly the first tile
    iy, ix = np.meshgrid(np.arange(30), np.arange(37), indexing="ij")
    assert ((iy % 4 == 0) & (ix % 4 == 0))[solved].all()
    full = newton_small_full
    assert (res.status[~solved] == NOT_RUN).all()
    assert (res.basin[~solved] == -1).all() and (res.period[~solved] == 0).all()
    for k in ("status", "iterations", "period"):
        np.testing.assert_array_equal(getattr(res, k)[solved], getattr(full, k)[solved], err_msg=k)
    np.testing.assert_array_equal(res.z[solved], full.z[solved])
    conv = solved & (res.status == CONV)
    np.testing.assert_allclose(
        res.fixed_points[res.basin[conv]], full.fixed_points[full.basin[conv]], atol=1e-8
    )
    s = res.summary()
    assert s["cancelled"] is True and s["solved"] == first_tile
    assert s["outcome_counts"]["not_run"] == 37 * 30 - first_tile


def test_cancel_inside_a_tile_never_corrupts_the_result():
    """The cancel poll inside the driver stops a tile midway: cells done by then are kept as a
    full run has them, the others are NOT_RUN with no basin and no period."""
    spec = load_spec("logistic")
    opts = sweep_options(spec, "float64", max_iter=3000)
    req = SweepRequest(spec, Axis("r", 2.6, 3.3, 64), options=opts, dtype="float64", preview=1)
    full = sweep(req)
    polls = {"n": 0}

    def cancel():
        polls["n"] += 1
        return polls["n"] > 120

    res = sweep(req, cancel=cancel)
    assert res.cancelled and not res.complete
    done = res.done
    assert 0 < done.sum() < 64
    assert (res.status[~done] == NOT_RUN).all()
    assert (res.basin[~done] == -1).all() and (res.period[~done] == 0).all()
    for k in ("status", "iterations", "period", "basin"):
        np.testing.assert_array_equal(getattr(res, k)[done], getattr(full, k)[done], err_msg=k)
    np.testing.assert_array_equal(res.z[done], full.z[done])
    # what finished first is what needs the fewest steps in the full run
    assert full.iterations[done].max() <= full.iterations[~done].min()
    assert res.summary()["solved"] == done.sum()


def test_filled_copies_unsolved_cells_from_the_coarse_grid(newton_small):
    from dataclasses import replace

    req = replace(newton_small, tile_size=10_000)
    progress, cancel = _stop_after_first_tile()
    res = sweep(req, progress=progress, cancel=cancel)
    assert res.cancelled
    iy, ix = np.meshgrid(np.arange(30), np.arange(37), indexing="ij")
    coarse = (iy % 4 == 0) & (ix % 4 == 0)
    np.testing.assert_array_equal(res.done, coarse)
    for name in ("status", "basin", "iterations", "residual"):
        arr = getattr(res, name)
        filled = res.filled(name)
        assert filled.shape == arr.shape
        np.testing.assert_array_equal(filled[coarse], arr[coarse])
        # an unsolved cell shows a coarse cell next to it: the one that anchors its 4 x 4 block
        # or the nearest one
        anchor = arr[(iy // 4) * 4, (ix // 4) * 4]
        ny_c, nx_c = (30 - 1) // 4 * 4, (37 - 1) // 4 * 4
        near = arr[np.minimum((iy + 1) // 4 * 4, ny_c), np.minimum((ix + 1) // 4 * 4, nx_c)]
        same = (filled == anchor) | (filled == near) | (np.isnan(filled) & np.isnan(anchor))
        assert same[~coarse].all(), name
    assert (res.filled("status") != NOT_RUN).all()
    # a complete result is returned as it is
    full = sweep(replace(newton_small, preview=1))
    np.testing.assert_array_equal(full.filled("basin"), full.basin)


def _stop_after_first_tile():
    """(progress, cancel): cancel() turns True once the first tile has reported progress."""
    flag = {"stop": False}

    def progress(p):
        flag["stop"] = True

    return progress, lambda: flag["stop"]


# ----------------------------------------------------------------------------------------------
# Summary, arrays, metadata
# ----------------------------------------------------------------------------------------------


def test_summary_matches_the_arrays(logistic_doubling, newton_grid):
    for res in (logistic_doubling, newton_grid):
        s = res.summary()
        total = res.status.size
        assert s["cells"] == total and s["solved"] == int(res.done.sum())
        assert math.isclose(sum(s["outcome_fractions"].values()), 1.0)
        for st in Status:
            n = int((res.status == int(st)).sum())
            assert s["outcome_counts"][st.label] == n
            assert s["outcome_fractions"][st.label] == pytest.approx(n / total)
        assert s["n_fixed_points"] == len(res.fixed_points)
        d = res.z.shape[-1]
        np.testing.assert_allclose(np.reshape(s["fixed_points"], (-1, d)), res.fixed_points)
        ids = res.basin[res.basin >= 0]
        assert len(s["basin_fractions"]) == len(res.fixed_points)
        for k, frac in enumerate(s["basin_fractions"]):
            assert frac == pytest.approx((ids == k).sum() / total)
        if res.basins_resolved:
            conv = s["outcome_fractions"]["converged"]
            assert sum(s["basin_fractions"]) == pytest.approx(conv)
        else:
            assert s["basin_fractions"] == [] and (res.basin == -1).all()
        per = res.period[res.status == PER]
        hist = {int(p): int((per == p).sum()) for p in np.unique(per)}
        assert s["period_histogram"] == hist
        assert sum(hist.values()) == s["outcome_counts"]["periodic"]
        assert s["cell_iterations"] == int(res.iterations.sum())
        json.dumps(s)  # plain data
    assert (
        newton_grid.summary()["basin_fractions"] and logistic_doubling.summary()["period_histogram"]
    )


def test_arrays_and_metadata_round_trip_through_npz():
    spec = load_spec("tanh_layer").with_values(a=1.3).with_overrides({"W[0,1]": -0.7})
    req = SweepRequest(spec, Axis("x[0]", -1.0, 1.0, 17), Axis("z0[1]", -0.5, 0.5, 9))
    res = sweep(req)
    arrays = res.arrays()
    for name in ("status", "iterations", "residual", "period", "basin", "lyapunov"):
        np.testing.assert_array_equal(arrays[name], getattr(res, name))
        assert arrays[name].shape == (9, 17)
    np.testing.assert_array_equal(arrays["z"], res.z)
    assert arrays["z"].shape == (9, 17, 2)
    np.testing.assert_array_equal(arrays["done"], res.status != NOT_RUN)
    np.testing.assert_array_equal(arrays["x_values"], np.linspace(-1.0, 1.0, 17))
    np.testing.assert_array_equal(arrays["y_values"], np.linspace(-0.5, 0.5, 9))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as back:
        assert set(back.files) == set(arrays)
        for k in arrays:
            np.testing.assert_array_equal(back[k], arrays[k])
        meta = json.loads(str(back["metadata"]))
    assert meta["status_codes"] == {str(int(s)): s.label for s in Status}
    assert json.loads(str(arrays["status_names"])) == {str(int(s)): s.label for s in Status}
    assert meta["x_target"] == "x[0]" and meta["y_target"] == "z0[1]"
    assert parse_spec(meta["request"]["spec"]) == spec
    assert meta["request"]["x"] == {"target": "x[0]", "lo": -1.0, "hi": 1.0, "n": 17}
    assert meta["request"]["y"]["n"] == 9
    assert meta["request"]["dtype"] == "float32" and meta["request"]["solver"] == "fixed_point"
    assert meta["cancelled"] is False


def test_one_d_arrays_have_one_row_and_an_orbit(logistic_doubling):
    arrays = logistic_doubling.arrays()
    assert "y_values" not in arrays
    for name in ("status", "iterations", "residual", "period", "basin", "lyapunov", "done"):
        assert arrays[name].shape == (1, 128), name
    assert arrays["orbit"].shape == (128, 64, 1)
    np.testing.assert_array_equal(arrays["x_values"], np.linspace(2.6, 3.56, 128))
    meta = json.loads(str(arrays["metadata"]))
    assert meta["y_target"] is None and meta["request"]["orbit"] == 64


# ----------------------------------------------------------------------------------------------
# Bad requests
# ----------------------------------------------------------------------------------------------


def _bad_requests():
    tanh = load_spec("tanh_layer")
    ok = Axis("a", 0.0, 1.0, 8)
    return [
        pytest.param(
            SweepRequest(tanh, Axis("a", 0, 1, 0)), r"resolution.*at least 1", id="zero-n"
        ),
        pytest.param(SweepRequest(tanh, ok, Axis("x[0]", 0, 1, -3)), r"resolution", id="neg-n-y"),
        pytest.param(SweepRequest(tanh, Axis("a", 1, 1, 8)), r"empty range", id="lo-eq-hi"),
        pytest.param(SweepRequest(tanh, Axis("a", 2, 1, 8)), r"lo \(2\).*hi \(1\)", id="lo-gt-hi"),
        pytest.param(SweepRequest(tanh, Axis("a", 0, math.inf, 8)), r"finite", id="inf"),
        pytest.param(SweepRequest(tanh, Axis("a", math.nan, 1, 8)), r"finite", id="nan"),
        pytest.param(
            SweepRequest(tanh, Axis("a", 0, 1, MAX_AXIS_CELLS + 1)), r"limit", id="axis-too-long"
        ),
        pytest.param(
            SweepRequest(
                tanh,
                Axis("z0[0]", 0, 1, MAX_AXIS_CELLS),
                Axis("z0[1]", 0, 1, MAX_AXIS_CELLS),
            ),
            r"cells; the limit",
            id="too-many-cells",
        ),
        pytest.param(SweepRequest(tanh, ok, memory_budget=10), r"memory budget", id="budget"),
        pytest.param(SweepRequest(tanh, ok, Axis("a", 0, 2, 4)), r"both axes.*a", id="same-param"),
        pytest.param(
            SweepRequest(tanh, Axis("z0[1]", 0, 1, 4), Axis("z0[-1]", 0, 2, 4)),
            r"both axes.*z0\[1\]",
            id="same-z0-element",
        ),
        pytest.param(
            SweepRequest(tanh, ok, Axis("x[0]", 0, 1, 4), orbit=16), r"orbit.*1-D", id="orbit-2d"
        ),
        pytest.param(SweepRequest(tanh, ok, orbit=5000), r"orbit", id="orbit-too-long"),
        pytest.param(SweepRequest(tanh, ok, solver="bisection"), r"bisection", id="unknown-solver"),
        pytest.param(
            SweepRequest(tanh, Axis("W", 0, 1, 4)), r"one element.*W\[0", id="whole-tensor"
        ),
        pytest.param(
            SweepRequest(load_spec("deq_cell"), Axis("W.seed", 0, 9, 4)), r"seed", id="seed-axis"
        ),
        pytest.param(SweepRequest(tanh, ok, preview=0), r"preview", id="preview-0"),
        pytest.param(SweepRequest(tanh, ok, tile_size=0), r"tile size", id="tile-0"),
        pytest.param(SweepRequest(tanh, ok, basin_tol=-1.0), r"basin_tol", id="basin-tol"),
    ]


@pytest.mark.parametrize(("req", "msg"), _bad_requests())
def test_bad_request_raises_sweep_error_naming_the_problem(monkeypatch, req, msg):
    forbid_work(monkeypatch)
    with pytest.raises(SweepError, match=msg):
        validate(req)
    with pytest.raises(SweepError, match=msg):
        sweep(req)


@pytest.mark.parametrize("target", ["b", "x[5]", "W[0]", "z0[2]", "q.seed"])
def test_unknown_or_misshapen_target_raises_spec_error(monkeypatch, target):
    spec = load_spec("tanh_layer")
    forbid_work(monkeypatch)
    with pytest.raises(SpecError):
        sweep(SweepRequest(spec, Axis(target, 0.0, 1.0, 4)))


def test_axis_parse_and_values():
    ax = Axis.parse("a=0:3:512")
    assert ax == Axis("a", 0.0, 3.0, 512)
    assert Axis.parse(" x[0] = -2:2:256 ") == Axis("x[0]", -2.0, 2.0, 256)
    assert Axis.parse("W[0, 1]=-1.5:1.5:400") == Axis("W[0,1]", -1.5, 1.5, 400)
    assert Axis.parse("z0[1]=-1e-3:2.5e0:7") == Axis("z0[1]", -1e-3, 2.5, 7)
    np.testing.assert_array_equal(ax.values(), np.linspace(0, 3, 512))
    assert Axis.parse(str(Axis("x[0]", -2.0, 2.0, 256))) == Axis("x[0]", -2.0, 2.0, 256)
    for bad in ("a=0:3", "a:0:3:4", "a=x:3:4", "a=0:3:4.5", "=0:1:3", "a=0:1:2:3"):
        with pytest.raises(SweepError):
            Axis.parse(bad)


@pytest.mark.parametrize(
    "keys",
    [
        np.random.default_rng(0).integers(-5, 5, (5000, 2)),
        np.random.default_rng(1).integers(-(10**6), 10**6, (3000, 3)),  # too wide to pack
        np.random.default_rng(2).integers(0, 3, (400, 16)),
        np.array([[2**62, -(2**62)], [0, 0], [2**62, -(2**62)]], np.int64),  # span overflows
        np.zeros((0, 2), np.int64),
        np.array([[7, -3]], np.int64),
    ],
    ids=["dense-2d", "wide-3d", "16d", "overflow", "empty", "one"],
)
def test_unique_rows_equals_numpys_row_unique(keys):
    first, inverse = sweep_basins.unique_rows(keys)
    if not len(keys):
        assert first.size == 0 and inverse.size == 0
        return
    _, want_first, want_inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))


# --- issue 15: huge axis ranges, overflow warnings at dim 128, bounded memory -------------------


@pytest.mark.parametrize(
    ("axis", "dtype", "match"),
    [
        (Axis("a", -1e308, 1e308, 8), "float64", r"axis a: the span hi - lo .* overflows"),
        (Axis("x[0]", 0.0, 1e39, 8), "float32", r"axis x\[0\]: .*does not fit in float32"),
        (Axis("a", math.nan, 1.0, 8), "float64", r"axis a: the range must be finite.*nan"),
        (Axis("a", 0.0, -math.inf, 8), "float64", r"axis a: the range must be finite.*-inf"),
    ],
    ids=["span-overflows", "beyond-float32", "nan", "inf"],
)
def test_axis_ranges_that_overflow_are_refused_without_numpy_warnings(axis, dtype, match):
    import warnings

    spec = load_spec("tanh_layer")
    req = SweepRequest(spec, axis, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail the test
        with pytest.raises(SweepError, match=match):
            sweep(req)


def test_axis_parsed_from_text_with_huge_range_is_refused():
    ax = Axis.parse("a=-1e308:1e308:64")
    with pytest.raises(SweepError, match="axis a"):
        sweep_mod.validate(SweepRequest(load_spec("tanh_layer"), ax, dtype="float64"))


DIM128 = """
dim = 128
f = "0 * z + a * v"
[params]
a = { value = 1.0, min = 0.0, max = 3.0 }
[tensors]
v = { shape = [128], init = "normal", seed = 0 }
"""


def test_dim128_sweep_prints_no_numpy_overflow_warning():
    """The fixed point a * v moves in all 128 components: the basin index's keys span ~1e4 per
    component, whose product (1e512) overflowed float64 in unique_rows ("overflow encountered
    in reduce" on stderr)."""
    import warnings

    spec = parse_spec(DIM128)
    req = SweepRequest(spec, Axis("a", 0.5, 3.0, 8), dtype="float64", preview=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sweep(req)
    assert res.complete and (res.status == CONV).all()
    v = compile_spec(spec, dtype="float64").values["v"][..., 0].numpy().reshape(-1)
    np.testing.assert_allclose(res.z[0], np.linspace(0.5, 3.0, 8)[:, None] * v, rtol=1e-5)


def test_unique_rows_of_wide_128d_keys_without_warnings():
    import warnings

    keys = np.random.default_rng(3).integers(0, 20_000, (50, 128))
    keys[10] = keys[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first, inverse = sweep_basins.unique_rows(keys)
    _, want_first, want_inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))


def test_converged_points_near_the_float64_limit_give_no_warnings():
    """With a huge div_bound, converged points of 1e300 must not overflow the basin keys."""
    import warnings

    basins = sweep_basins.BasinIndex(1e-4, 2)
    z = np.array([[1e300, -1e300], [1e300, -1e300], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = basins.assign(z)
    assert ids[0] == ids[1] != ids[2]


def test_pass_tiles_cover_every_cell_once_in_the_old_order():
    """The lazily generated tiles equal the old whole-grid index arrays, tile for tile."""
    for ny, nx, s, tile in [(30, 37, 4, 100), (7, 5, 2, 3), (64, 64, 4, 1000), (9, 9, 1, 10)]:
        req = SweepRequest(
            load_spec("tanh_layer"), Axis("a", 0, 1, nx), Axis("x[0]", 0, 1, ny), preview=s
        )
        iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        coarse = ((iy % s == 0) & (ix % s == 0)).ravel()
        flat = np.arange(ny * nx)
        old = [flat] if s <= 1 or ny * nx <= 4 * s * s else [flat[coarse], flat[~coarse]]
        got = [list(p) for p in sweep_mod._pass_tiles(req, tile)]
        assert len(got) == len(old)
        for tiles, cells in zip(got, old):
            want = [cells[i : i + tile] for i in range(0, len(cells), tile)]
            assert len(tiles) == len(want)
            for a, b in zip(tiles, want):
                np.testing.assert_array_equal(a, b)


def test_summary_of_a_large_grid_matches_numpy(monkeypatch):
    """Block-wise counts (used to bound memory) agree with whole-array numpy."""
    monkeypatch.setattr(sweep_mod, "_SUMMARY_CHUNK", 7)
    spec = load_spec("logistic")
    res = sweep(SweepRequest(spec, Axis("r", 2.5, 4.0, 50), Axis("z0[0]", 0.1, 0.9, 3)))
    s = res.summary()
    codes = np.bincount(res.status.ravel(), minlength=len(Status))
    assert s["outcome_counts"] == {st.label: int(codes[int(st)]) for st in Status}
    periods = res.period[res.status == int(Status.PERIODIC)]
    want = {int(p): int(c) for p, c in zip(*np.unique(periods, return_counts=True))}
    assert s["period_histogram"] == want and len(want) >= 2
    conv = res.basin[res.basin >= 0]
    want_b = (
        np.bincount(conv, minlength=len(res.fixed_points)) / res.status.size if conv.size else []
    )
    np.testing.assert_allclose(s["basin_fractions"], want_b)


def test_newton_orbit_diagram_shows_each_converged_cell_at_its_fixed_point():
    """Past a = 2.3 f repels the tanh layer's fixed point; Newton still finds it. The orbit
    diagram shows those cells at z* (which solves z = tanh(a W z + x)), not at iterates of f."""
    spec = load_spec("tanh_layer")
    req = SweepRequest(spec, Axis("a", 2.3, 3.0, 24), solver="newton", dtype="float64", orbit=16)
    res = sweep(req)
    conv = res.status[0] == int(Status.CONVERGED)
    assert conv.all()
    w = np.array([[0.6, -1.1], [0.9, 0.4]])
    x = np.array([0.5, -0.2])
    for i, a in enumerate(res.x_values):
        z = res.z[0, i].astype(np.float64)
        np.testing.assert_allclose(np.tanh(a * w @ z + x), z, atol=1e-5)
        np.testing.assert_allclose(res.orbit[i], np.broadcast_to(z, res.orbit[i].shape), atol=1e-6)
    # and naive iteration is not at rest there (so the test would see the old scatter)
    fp = sweep(SweepRequest(spec, Axis("a", 2.3, 3.0, 24), dtype="float64", orbit=16))
    assert (fp.status[0] != int(Status.CONVERGED)).any()
