"""A sixth solver, registered inside this test, works everywhere without any other file changed:
the solver panel, the live solve, ``implicit-viz solve``, ``implicit-viz sweep``,
``implicit-viz solvers`` and the gradient lab. The truths are outside the code: the Dottie
number, the closed-form derivative of the cosine map's fixed point, and finite differences.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from implicit_viz.core import solvers as registry
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.options import option

DOTTIE = 0.7390851332151607


@dataclass(frozen=True)
class Steffensen(Solver):
    """Steffensen's method per component: ``z <- z - g^2 / (f(f(z)) - 2 f(z) + z)``, with
    ``g = f(z) - z``, the step clipped to ``max_step`` (quadratic near a simple root)."""

    max_step: float = option(
        1.0, low=0, low_open=True, panel_max=100.0, label="largest step", symbol="s", help="clip"
    )
    label = "Steffensen's method"
    summary = "Steffensen's method, componentwise"
    f_evals_per_step = 2

    def step(self, f, z, fz, state):
        ffz = f(fz)
        g = fz - z
        den = ffz - 2 * fz + z
        ok = den.abs() > 1e-300
        delta = torch.where(ok, g * g / torch.where(ok, den, torch.ones_like(den)), -g)
        z_new = z - delta.clamp(-self.max_step, self.max_step)
        return z_new, f(z_new), state


@pytest.fixture
def steffensen():
    register_solver("steffensen")(Steffensen)
    yield "steffensen"
    registry._REGISTRY.pop("steffensen", None)


def test_it_is_listed_with_its_options(steffensen, capsys):
    from implicit_viz.cli.main import main

    assert steffensen in registry.available_solvers()
    assert main(["solvers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    (opt,) = rows[steffensen]["options"]
    assert (opt["name"], opt["default"], opt["range"]) == ("max_step", 1.0, "(0, inf)")
    with pytest.raises(registry.SolverError, match=r"steffensen\.max_step"):
        registry.get_solver(steffensen, max_step=-1.0)


def test_cli_solve_finds_the_dottie_number(steffensen, capsys):
    from implicit_viz.cli.main import main

    code = main(["solve", "cosine", "--solver", steffensen, "--opt", "max_step=0.5", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    (r,) = doc["results"]
    assert r["status"] == "converged" and r["z"][0] == pytest.approx(DOTTIE, abs=1e-10)
    assert r["solver_options"] == {"max_step": 0.5}
    # the file describes the solver's options, so a reader needs no other document
    (opt,) = doc["solver_descriptions"][steffensen]["options"]
    assert (opt["name"], opt["range"], opt["default"]) == ("max_step", "(0, inf)", 1.0)
    # quadratic: far fewer steps than naive iteration's ~70 at rate 0.674 to 1e-12
    assert r["iterations"] <= 8


def test_cli_sweep_over_the_amplitude(steffensen, tmp_path, capsys):
    from implicit_viz.cli.main import main

    out = tmp_path / "a.npz"
    argv = ["sweep", "cosine", "--x", "a=0.2:1.0:5", "--solver", steffensen, "--out", str(out)]
    code = main([*argv, "--dtype", "float64"])
    capsys.readouterr()
    assert code == 0
    data = np.load(out)
    a = data["x_values"]
    meta = json.loads(str(data["metadata"]))
    assert meta["request"]["solver"] == steffensen
    assert meta["solver_description"]["label"] == "Steffensen's method"
    z = data["z"].reshape(len(a), -1)[:, 0]
    # each cell's fixed point solves z = a cos z (bisection as the independent check)
    for ai, zi in zip(a, z):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mid - ai * math.cos(mid) < 0 else (lo, mid)
        assert zi == pytest.approx(lo, abs=1e-5)


def test_panel_and_live_solve(steffensen, qtbot):
    from implicit_viz.core.live import LiveRequest, SolverSettings, run_live
    from implicit_viz.core.presets import preset_path
    from implicit_viz.core.spec import load_spec
    from implicit_viz.gui.colors import solver_color
    from implicit_viz.gui.solver_panel import SolverPanel

    panel = SolverPanel()
    qtbot.addWidget(panel)
    panel.check(steffensen).setChecked(True)
    panel.option_box(steffensen, "max_step").setValue(0.25)
    settings = panel.settings()
    assert steffensen in settings.solvers
    assert settings.options[steffensen] == {"max_step": 0.25}
    assert solver_color(steffensen).startswith("#")

    snap = run_live(
        LiveRequest(
            spec=load_spec(preset_path("cosine")), settings=SolverSettings(solvers=(steffensen,))
        )
    )
    (trace,) = snap.traces
    assert trace.label == "steffensen (s=1)"
    assert trace.status == "converged" and trace.z[0] == pytest.approx(DOTTIE, abs=1e-9)
    assert SolverSettings.from_dict(settings.to_dict()) == settings


def test_gradient_lab_unrolls_it(steffensen):
    from implicit_viz.core.gradients import GradRequest, gradient_lab
    from implicit_viz.core.presets import preset_path
    from implicit_viz.core.spec import load_spec

    spec = load_spec(preset_path("cosine"))
    report = gradient_lab(GradRequest(spec=spec, wrt=("a",), solver=steffensen, unroll_max=12))
    # d z*/d a for z = a cos z at a = 1: cos z* / (1 + a sin z*)
    want = math.cos(DOTTIE) / (1 + math.sin(DOTTIE))
    assert report.method("unrolled").gradient[0] == pytest.approx(want, rel=1e-8)
    assert report.method("implicit_exact").gradient[0] == pytest.approx(want, rel=1e-10)
