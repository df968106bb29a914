"""The app's live solve (core/live.py): snapshots against closed forms and NumPy evaluations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from implicit_viz.core.errors import SpecError
from implicit_viz.core.live import LiveRequest, MapCache, SolverSettings, run_live
from implicit_viz.core.spec import load_spec

W_TANH = np.array([[0.6, -1.1], [0.9, 0.4]])
X_TANH = np.array([0.5, -0.2])


def tanh_map(a: float, z: np.ndarray) -> np.ndarray:
    return np.tanh(a * W_TANH @ z + X_TANH)


@pytest.mark.parametrize("a", [0.3, 0.9])
def test_tanh_snapshot_reaches_the_numpy_fixed_point(a):
    snap = run_live(LiveRequest(spec=load_spec("tanh_layer"), values={"a": a}))
    assert [t.solver for t in snap.traces] == ["fixed_point", "anderson", "newton"]
    for t in snap.traces:
        assert t.status == "converged"
        assert t.message.startswith("converged in")
        # the last iterate is a fixed point of the NumPy map, to the tolerance
        assert np.linalg.norm(tanh_map(a, t.z) - t.z) <= 1e-6
        # the residual curve is ||f(z_k) - z_k|| of the plotted iterates
        expected = [np.linalg.norm(tanh_map(a, zk) - zk) for zk in t.trajectory]
        np.testing.assert_allclose(t.residuals, expected, rtol=1e-9, atol=1e-15)
        assert t.trajectory.shape == (t.iterations + 1, 2)
        np.testing.assert_array_equal(t.trajectory[0], [0.0, 0.0])
        np.testing.assert_array_equal(t.trajectory[-1], t.z)
    # spectral radius of df/dz at z*, by NumPy: diag(1 - tanh^2) a W
    z = snap.traces[0].z
    jac = np.diag(1 - np.tanh(a * W_TANH @ z + X_TANH) ** 2) @ (a * W_TANH)
    rho = max(abs(np.linalg.eigvals(jac)))
    assert snap.traces[0].spectral_radius == pytest.approx(rho, rel=1e-6)
    # naive iteration's observed rate is about that radius
    assert snap.traces[0].observed_rate == pytest.approx(rho, abs=0.05)


def test_logistic_cycle_and_cobweb_curve():
    r = 3.2
    snap = run_live(LiveRequest(spec=load_spec("logistic"), values={"r": r}))
    naive = snap.traces[0]
    assert naive.status == "periodic" and naive.period == 2
    assert naive.message == "periodic with period 2"
    disc = math.sqrt((r - 3) * (r + 1))
    closed = sorted([(r + 1 - disc) / (2 * r), (r + 1 + disc) / (2 * r)])
    np.testing.assert_allclose(sorted(naive.cycle[:, 0]), closed, atol=1e-6)
    # Newton finds a fixed point although neither attracts: 0 or 1 - 1/r
    newton = snap.traces[2]
    assert newton.status == "converged"
    assert min(abs(newton.z[0]), abs(newton.z[0] - (1 - 1 / r))) < 1e-6
    cw = snap.cobweb
    assert cw is not None and cw.x.shape == cw.fx.shape
    np.testing.assert_allclose(cw.fx, r * cw.x * (1 - cw.x), rtol=1e-12, atol=1e-15)
    # the grid spans every iterate
    pts = np.concatenate([t.trajectory[:, 0] for t in snap.traces])
    assert cw.x.min() < pts.min() and cw.x.max() > pts.max()


def test_diverging_solve_is_a_trace_not_an_error():
    snap = run_live(
        LiveRequest(
            spec=load_spec("gradient_descent"),
            values={"eta": 0.7},
            settings=SolverSettings(solvers=("fixed_point", "newton"), max_iter=500),
        )
    )
    naive, newton = snap.traces
    assert naive.status == "diverged"
    assert naive.message == f"diverged at step {naive.iterations}"
    assert "diverged" in snap.summary()
    # Newton solves the linear system: z* = A^-1 b
    a = np.array([[3.25, 1.299038105676658], [1.299038105676658, 1.75]])
    np.testing.assert_allclose(newton.z, np.linalg.solve(a, [1.0, -0.5]), atol=1e-8)


def test_values_outside_their_range_are_refused_with_the_param_named():
    with pytest.raises(SpecError, match="'a'"):
        run_live(LiveRequest(spec=load_spec("tanh_layer"), values={"a": 7.0}))


@pytest.mark.parametrize(
    "settings, word",
    [
        (SolverSettings(solvers=("nope",)), "unknown solver"),
        (SolverSettings(tol=0.0), "tol"),
        (SolverSettings(options={"damped": {"beta": 2.5}}), "beta"),
        (SolverSettings(max_iter=0), "max_iter"),
        (SolverSettings(dtype="int8"), "dtype"),
    ],
)
def test_bad_settings_name_the_setting(settings, word):
    with pytest.raises(ValueError, match=word):
        run_live(LiveRequest(spec=load_spec("tanh_layer"), settings=settings))


def test_settings_round_trip_and_bad_dict():
    s = SolverSettings(
        solvers=("damped", "broyden"),
        tol=1e-9,
        options={"damped": {"beta": 0.3}, "anderson": {"m": 3}},
    )
    assert SolverSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="max_iter"):
        SolverSettings.from_dict({"max_iter": "many"})


def test_damping_and_memory_reach_the_solvers():
    settings = SolverSettings(
        solvers=("damped", "anderson"), options={"damped": {"beta": 0.25}, "anderson": {"m": 2}}
    )
    snap = run_live(LiveRequest(spec=load_spec("tanh_layer"), settings=settings))
    damped, anderson = snap.results
    assert damped.solver_options["beta"] == 0.25
    assert anderson.solver_options["m"] == 2
    assert snap.traces[0].label == "damped (β=0.25)"
    # damped step: z1 = (1 - beta) z0 + beta f(z0) from z0 = 0
    np.testing.assert_allclose(
        snap.traces[0].trajectory[1], 0.25 * tanh_map(0.9, np.zeros(2)), rtol=1e-12
    )


def test_map_cache_rebinds_values_and_recompiles_on_seed_change():
    spec = load_spec("deq_cell")
    cache = MapCache()
    first = cache.get(spec, {}, "cpu", "float64")
    assert cache.get(spec.with_overrides({"s": 0.5}), {}, "cpu", "float64") is first
    other = cache.get(spec, {"W": 7}, "cpu", "float64")
    assert other is not first
    assert not np.allclose(first.values["W"].numpy(), other.values["W"].numpy())
    # a slider value reaches the map through the cache: s = 0 makes f constant, one step
    snap = run_live(LiveRequest(spec=spec, values={"s": 0.0}), cache=cache)
    assert snap.traces[0].iterations == 1


def test_absurd_sizes_are_refused_before_any_work():
    from implicit_viz.core.errors import SolverError
    from implicit_viz.core.spec import parse_spec

    big = parse_spec('name = "big"\ndim = 5000\nf = "0.5 * z"\n')
    with pytest.raises(SolverError, match="newton skipped: at dim 5000"):
        run_live(LiveRequest(spec=big, settings=SolverSettings(solvers=("newton",))))
    # with other solvers ticked, those run and the note says why Newton did not
    snap = run_live(
        LiveRequest(spec=big, settings=SolverSettings(solvers=("fixed_point", "newton")))
    )
    assert [t.solver for t in snap.traces] == ["fixed_point"]
    assert "newton skipped" in snap.summary()
    with pytest.raises(SolverError, match="lower max_iter"):
        run_live(
            LiveRequest(
                spec=big, settings=SolverSettings(solvers=("fixed_point",), max_iter=100_000)
            )
        )
    # the same dim with naive iteration and a sane budget runs
    snap = run_live(LiveRequest(spec=big, settings=SolverSettings(solvers=("fixed_point",))))
    assert snap.traces[0].status == "converged"


def test_overrides_move_the_start_and_tensor_elements():
    spec = load_spec("tanh_layer")
    snap = run_live(
        LiveRequest(spec=spec, overrides={"z0[1]": 0.5, "x[0]": -0.3}, values={"a": 0.5})
    )
    t = snap.traces[0]
    np.testing.assert_array_equal(t.trajectory[0], [0.0, 0.5])
    z = t.z
    expected = np.tanh(0.5 * W_TANH @ z + np.array([-0.3, -0.2]))
    assert np.linalg.norm(expected - z) <= 1e-6


def test_solvers_that_reach_different_fixed_points_are_named():
    """Logistic map at r = 3.2 from x0 = 0.5 (its 2-cycle attracts naive iteration): Newton and
    Anderson can land on either fixed point, 0 or 1 - 1/r. The table shows each one's z*, and
    a note says when they differ."""
    from implicit_viz.core.live import distinct_fixed_points

    spec = load_spec("logistic").with_overrides({"r": 3.2})
    snap = run_live(
        LiveRequest(spec=spec, settings=SolverSettings(solvers=("anderson", "newton", "broyden")))
    )
    roots = {0.0, 1 - 1 / 3.2}
    found = {}
    for t in snap.traces:
        if t.status == "converged":
            (z,) = t.z
            assert min(abs(z - r) for r in roots) < 1e-6  # a true fixed point of r x (1 - x)
            found[t.solver] = z
            assert t.row()["z"] == f"({z:.4g})"
    distinct = {round(z, 6) for z in found.values()}
    note = distinct_fixed_points(snap.traces, 1e-6)
    assert bool(note) == (len(distinct) > 1)
    if note:
        assert note in snap.notes and "different fixed points" in snap.summary()
