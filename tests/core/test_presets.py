"""The built-in presets: the listing, and each preset's known answer (Dottie number, sqrt 2, the
cube roots of unity, A^-1 b, stability thresholds) reached with the preset's own settings."""

from __future__ import annotations

import cmath
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import SpecError
from implicit_viz.core.presets import PRESET_DIR, list_presets, preset_names, preset_path
from implicit_viz.core.solvers import available_solvers
from implicit_viz.core.spec import Spec, load_spec
from implicit_viz.core.status import Status
from tests.helpers import DOTTIE, fd_jacobian

ALL_SOLVERS = available_solvers()
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "presets"
EXPECTED = {
    "cosine": 1,
    "deq_cell": 32,
    "gradient_descent": 2,
    "logistic": 1,
    "newton_cubic": 2,
    "sqrt2": 1,
    "tanh_layer": 2,
}
C = Status.CONVERGED


def preset_options(spec: Spec) -> dict:
    """The solve options a preset's [solver] section sets."""
    keys = ("tol", "rtol", "max_iter", "div_bound", "period_tol", "max_period")
    return {k: v for k, v in spec.solver.items() if k in keys}


# ----------------------------------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------------------------------


def test_preset_names_are_the_files():
    assert PRESET_DIR.resolve() == ASSETS
    assert preset_names() == sorted(p.stem for p in ASSETS.glob("*.toml"))
    assert set(EXPECTED) <= set(preset_names())


def test_list_presets_reads_titles_descriptions_and_dims():
    infos = {p.key: p for p in list_presets()}
    assert set(infos) == set(preset_names())
    for key, info in infos.items():
        data = tomllib.loads((ASSETS / f"{key}.toml").read_text(encoding="utf-8"))
        assert info.name == data["name"] and info.name
        assert info.description == data["description"] and info.description
        assert info.dim == data["dim"]
        assert info.path == preset_path(key) == ASSETS / f"{key}.toml"
    for key, dim in EXPECTED.items():
        assert infos[key].dim == dim


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_loads_compiles_and_converges_at_its_defaults(name):
    spec = load_spec(name)
    assert spec.dim == EXPECTED[name]
    for p in spec.params:
        assert p.min <= p.value <= p.max and p.description
    for dtype in ("float32", "float64"):
        fmap = compile_spec(spec, dtype=dtype)
        out = fmap(fmap.start(3))
        assert out.shape == (3, spec.dim) and torch.isfinite(out).all()
    res = solve(compile_spec(spec), "newton", **preset_options(spec))
    assert res.statuses == [C]


def test_extra_preset_folder_is_searched_first(tmp_path, monkeypatch):
    (tmp_path / "cosine.toml").write_text(
        'name = "my cosine"\ndescription = "shadowed"\ndim = 1\nf = "0.5 * cos(z)"\n',
        encoding="utf-8",
    )
    (tmp_path / "extra.toml").write_text(
        'name = "extra"\ndescription = "new"\ndim = 1\nf = "z / 2"\n', encoding="utf-8"
    )
    (tmp_path / "broken.toml").write_text("dim = = 1\n", encoding="utf-8")
    monkeypatch.setenv("IMPLICIT_VIZ_PRESETS", str(tmp_path))
    assert {"cosine", "extra", "tanh_layer"} <= set(preset_names())
    assert load_spec("cosine").name == "my cosine"
    infos = {p.key: p for p in list_presets()}  # the broken file is skipped, not raised
    assert infos["extra"].description == "new" and "broken" not in infos
    with pytest.raises(SpecError):
        load_spec("broken")
    res = solve(compile_spec(load_spec("cosine")), "newton", tol=1e-13)
    z = float(res.z[0, 0])
    assert z == pytest.approx(0.5 * math.cos(z), abs=1e-13)


# ----------------------------------------------------------------------------------------------
# Known values
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_cosine_reaches_the_dottie_number(solver):
    spec = load_spec("cosine")
    assert spec.param("a").value == 1.0
    res = solve(compile_spec(spec), solver, **preset_options(spec))
    assert res.statuses == [C]
    assert float(res.z[0, 0]) == pytest.approx(DOTTIE, abs=2e-12)
    assert DOTTIE == pytest.approx(math.cos(DOTTIE), abs=1e-16)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("c", [0.1, 0.25, 0.35, 0.5])
def test_sqrt2_reaches_the_square_root_of_two(solver, c):
    spec = load_spec("sqrt2").with_values(c=c)
    res = solve(compile_spec(spec), solver, **{**preset_options(spec), "max_iter": 5000})
    assert res.statuses == [C]
    assert float(res.z[0, 0]) == pytest.approx(math.sqrt(2), abs=1e-11)


def test_sqrt2_naive_iteration_fails_above_one_over_sqrt2():
    fmap = compile_spec(load_spec("sqrt2"))
    # rate |1 - 2 sqrt(2) c| > 1 for c > 1/sqrt(2) = 0.7071
    for c in (0.75, 0.9):
        res = solve(fmap.with_values(c=c), "fixed_point", tol=1e-12, max_iter=2000)
        assert res.statuses[0] != C, c
        newton = solve(fmap.with_values(c=c), "newton", tol=1e-12, max_iter=100)
        assert newton.statuses == [C]
        assert float(newton.z[0, 0]) == pytest.approx(math.sqrt(2), abs=1e-12)


ROOTS = [cmath.exp(2j * math.pi * k / 3) for k in range(3)]


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_newton_cubic_reaches_each_cube_root_of_unity_from_nearby(solver, k):
    spec = load_spec("newton_cubic")
    root = ROOTS[k]
    start = root * 1.15 + 0.05j  # inside the root's basin
    res = solve(compile_spec(spec), solver, [[start.real, start.imag]], **preset_options(spec))
    assert res.statuses == [C]
    np.testing.assert_allclose(res.z[0].numpy(), [root.real, root.imag], atol=1e-10)


@pytest.mark.parametrize("solver", ["fixed_point", "newton"])
def test_newton_cubic_from_anywhere_ends_on_a_cube_root(solver):
    spec = load_spec("newton_cubic")
    starts = np.random.default_rng(0).uniform(-2, 2, (60, 2))
    res = solve(compile_spec(spec), solver, torch.tensor(starts), **preset_options(spec))
    assert (res.status == int(C)).all()
    w = res.z[:, 0].numpy() + 1j * res.z[:, 1].numpy()
    np.testing.assert_allclose(w**3, 1.0, atol=1e-9)
    found = {int(np.argmin([abs(v - r) for r in ROOTS])) for v in w}
    assert found == {0, 1, 2}


def test_newton_cubic_relaxed_step_still_converges_at_rate_one_minus_h():
    spec = load_spec("newton_cubic").with_values(h=0.5)
    res = solve(compile_spec(spec), "fixed_point", tol=1e-10, max_iter=500)
    assert res.statuses == [C]
    np.testing.assert_allclose(res.z[0].numpy(), [-0.5, math.sqrt(3) / 2], atol=1e-9)
    # N'(root) = 0, so df/dz = (1 - h) I at the root
    assert float(res.spectral_radius[0]) == pytest.approx(0.5, abs=1e-8)
    assert float(res.observed_rate[0]) == pytest.approx(0.5, abs=0.02)


def test_gradient_descent_matrix_has_curvatures_four_and_one():
    spec = load_spec("gradient_descent")
    a = np.array(spec.tensor("A").data).reshape(2, 2)
    np.testing.assert_allclose(a, a.T)
    np.testing.assert_allclose(np.linalg.eigvalsh(a), [1.0, 4.0], atol=1e-12)
    th = math.radians(30)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    np.testing.assert_allclose(a, rot @ np.diag([4.0, 1.0]) @ rot.T, atol=1e-12)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("eta", [0.1, 0.3, 0.45])
def test_gradient_descent_reaches_the_minimiser(solver, eta):
    spec = load_spec("gradient_descent").with_values(eta=eta)
    a = np.array(spec.tensor("A").data).reshape(2, 2)
    b = np.array(spec.tensor("b").data)
    opts = {**preset_options(spec), "max_iter": 5000}
    res = solve(compile_spec(spec), solver, **opts)
    assert res.statuses == [C]
    # residual = eta ||A z - b|| >= eta * mu * |z - z*| with mu = 1
    np.testing.assert_allclose(
        res.z[0].numpy(), np.linalg.solve(a, b), atol=1.01 * opts["tol"] / eta, rtol=0
    )


@pytest.mark.parametrize("r", [1.5, 2.0, 2.5, 2.8])
def test_logistic_fixed_point_below_three(r):
    spec = load_spec("logistic").with_values(r=r)
    res = solve(compile_spec(spec), "fixed_point", **preset_options(spec))
    assert res.statuses == [C]
    assert float(res.z[0, 0]) == pytest.approx(1 - 1 / r, abs=1e-9)


def test_logistic_default_is_the_period_two_cycle():
    spec = load_spec("logistic")
    res = solve(compile_spec(spec), "fixed_point", **preset_options(spec))
    assert res.statuses == [Status.PERIODIC] and int(res.period[0]) == 2


def test_tanh_layer_loses_stability_near_a_equals_one():
    spec = load_spec("tanh_layer")
    fmap = compile_spec(spec)
    w = np.array(spec.tensor("W").data).reshape(2, 2)
    x = np.array(spec.tensor("x").data)
    rho = {}
    for a in (0.9, 1.0, 1.1):
        z = solve(fmap.with_values(a=a), "newton", tol=1e-12).z[0].numpy()
        rho[a] = np.abs(
            np.linalg.eigvals(fd_jacobian(lambda v, a=a: np.tanh(a * w @ v + x), z))
        ).max()
    assert rho[0.9] < rho[1.0] < 1 < rho[1.1]
    assert solve(fmap.with_values(a=1.0), "fixed_point", max_iter=2000).statuses == [C]
    assert solve(fmap.with_values(a=1.1), "fixed_point", max_iter=2000).statuses != [C]


def test_deq_cell_weights_and_contraction():
    spec = load_spec("deq_cell")
    fmap = compile_spec(spec)
    vals = {k: v[..., 0].numpy() for k, v in fmap.values.items()}
    assert vals["W"].shape == (32, 32) and vals["U"].shape == (32, 16)
    assert np.linalg.norm(vals["W"], 2) == pytest.approx(1.0, rel=1e-12)
    for s in (0.3, 0.8, 0.95):
        res = solve(fmap.with_values(s=s), "fixed_point", tol=1e-10, max_iter=3000)
        assert res.statuses == [C]
        z = res.z[0].numpy()
        ref = np.tanh(s * vals["W"] @ z + vals["U"] @ vals["x"] + vals["b"])
        np.testing.assert_allclose(z, ref, atol=1e-10)
        # ||df/dz||_2 = ||diag(1 - tanh^2) s W||_2 <= s
        assert float(res.jac_norm[0]) <= s + 1e-12
        assert float(res.spectral_radius[0]) <= float(res.jac_norm[0]) + 1e-12
