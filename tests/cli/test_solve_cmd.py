"""`implicit-viz solve`: run the real command and read what it printed and wrote."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import brentq

from implicit_viz.cli.main import main

DOTTIE = 0.7390851332151607


def run_json(capsys, *argv: str) -> dict:
    code = main(["solve", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_json_has_one_object_per_solver_with_required_fields(capsys):
    doc = run_json(capsys, "cosine")
    names = [r["solver"] for r in doc["results"]]
    assert names == ["fixed_point", "damped", "anderson", "newton", "broyden"]
    for r in doc["results"]:
        for key in ("solver", "status", "iterations", "residual", "z", "period", "residuals"):
            assert key in r
        assert r["status"] == "converged"
        assert abs(r["z"][0] - DOTTIE) < 1e-9
        # residual history: one entry per step, ending at the final residual, below tol
        assert len(r["residuals"]) == r["iterations"] + 1
        assert r["residuals"][-1] == pytest.approx(r["residual"])
        assert r["residual"] <= doc["options"]["tol"]
    assert doc["status_codes"]["1"] == "converged"


def test_set_param_changes_the_answer_to_the_closed_form(capsys):
    # sqrt2 preset: z = z - c (z^2 - 2); the fixed point does not depend on c
    doc = run_json(capsys, "sqrt2", "--solver", "newton", "--set", "c=0.3", "--tol", "1e-13")
    (r,) = doc["results"]
    assert r["z"][0] == pytest.approx(math.sqrt(2), abs=1e-12)
    # the cosine map with amplitude a: root of z - a cos z (independent check with brentq)
    doc = run_json(capsys, "cosine", "--solver", "anderson", "--set", "a=0.5")
    want = brentq(lambda z: z - 0.5 * math.cos(z), 0, 1, xtol=1e-14)
    assert doc["results"][0]["z"][0] == pytest.approx(want, abs=1e-9)


def test_gradient_descent_outcomes_follow_two_over_l(capsys):
    below = run_json(capsys, "gradient_descent", "--solver", "fixed_point", "--set", "eta=0.45")
    above = run_json(capsys, "gradient_descent", "--solver", "fixed_point", "--set", "eta=0.55")
    assert below["results"][0]["status"] == "converged"
    assert above["results"][0]["status"] == "diverged"


def test_logistic_is_periodic_with_the_closed_form_cycle(capsys):
    r_val = 3.2
    doc = run_json(capsys, "logistic", "--solver", "fixed_point", "--set", f"r={r_val}")
    (r,) = doc["results"]
    assert r["status"] == "periodic" and r["period"] == 2
    disc = math.sqrt((r_val - 3) * (r_val + 1))
    want = sorted([(r_val + 1 - disc) / (2 * r_val), (r_val + 1 + disc) / (2 * r_val)])
    got = sorted(p[0] for p in r["cycle"])
    assert got == pytest.approx(want, abs=1e-4)


def test_solver_options_reach_the_solver(capsys):
    doc = run_json(
        capsys,
        "tanh_layer",
        "--solver",
        "anderson,damped",
        "--opt",
        "anderson.m=2",
        "--opt",
        "beta=0.4",
    )
    opts = {r["solver"]: r["solver_options"] for r in doc["results"]}
    assert opts["anderson"]["m"] == 2 and opts["anderson"]["beta"] == 0.4
    assert opts["damped"]["beta"] == 0.4
    # damped with beta = 0.4 predicts rate max|1 - b + b*lambda| (the table's 'rate pred')
    damped = next(r for r in doc["results"] if r["solver"] == "damped")
    assert damped["observed_rate"] == pytest.approx(damped["predicted_rate"], abs=0.03)


def test_float32_and_max_iter(capsys):
    doc = run_json(
        capsys, "tanh_layer", "--solver", "fixed_point", "--dtype", "float32", "--max-iter", "5"
    )
    (r,) = doc["results"]
    assert doc["dtype"] == "float32"
    # out of budget after 5 steps; since issue 17 the end window says it is still converging
    # (rho = 0.858 here) and about how many more steps it needs (80 more: 85 in all, README's
    # table; a 5-step window is rough, tests/core/test_labels.py checks the figure on 200)
    assert r["status"] == "converging" and r["iterations"] == 5
    assert r["rate"] == pytest.approx(0.858, abs=0.05)
    assert 40 <= r["steps_needed"] <= 120


@pytest.mark.parametrize("suffix", [".json", ".npz", ".csv"])
def test_trace_files_read_back_equal_to_json(tmp_path, capsys, suffix):
    path = tmp_path / f"trace{suffix}"
    doc = run_json(capsys, "tanh_layer", "--solver", "fixed_point,newton", "--trace", str(path))
    assert path.exists()
    by_solver = {r["solver"]: r for r in doc["results"]}
    if suffix == ".json":
        data = json.loads(path.read_text())
        assert "tanh" in data["spec"] and data["status_codes"]["3"] == "periodic"
        for e in data["results"]:
            ref = by_solver[e["solver"]]
            assert len(e["trajectory"]) == ref["iterations"] + 1
            assert e["trajectory"][-1] == pytest.approx(ref["z"])
            assert e["residuals"] == pytest.approx(ref["residuals"])
    elif suffix == ".npz":
        data = np.load(path)
        meta = json.loads(str(data["metadata"]))
        assert meta["options"]["tol"] == doc["options"]["tol"]
        for s, name in enumerate(data["solvers"]):
            ref = by_solver[str(name)]
            n = ref["iterations"]
            assert int(data["iterations"][s, 0]) == n
            np.testing.assert_allclose(data["trajectory"][s, 0, n], ref["z"])
            np.testing.assert_allclose(data["residuals"][s, 0, : n + 1], ref["residuals"])
            assert np.isnan(data["residuals"][s, 0, n + 1 :]).all()
    else:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#")
        rows = [ln.split(",") for ln in lines if not ln.startswith("#")]
        header, body = rows[0], rows[1:]
        assert header[:5] == ["solver", "element", "step", "status", "residual"]
        for name, ref in by_solver.items():
            mine = [r for r in body if r[0] == name]
            assert len(mine) == ref["iterations"] + 1
            assert [float(x) for x in mine[-1][5:]] == pytest.approx(ref["z"])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["nope_not_a_preset"], "neither a spec file nor a preset"),
        (["tanh_layer", "--set", "a=99"], "outside its range"),
        (["tanh_layer", "--set", "q=1"], "unknown target 'q'"),
        (["tanh_layer", "--solver", "newtn"], "Did you mean 'newton'"),
        (["tanh_layer", "--device", "cuda:7"], "not available"),
        (["tanh_layer", "--opt", "m=3", "--solver", "newton"], "option 'm'"),
        (["tanh_layer", "--trace", "/nonexistent/dir/t.json"], "does not exist"),
        (["tanh_layer", "--trace", "out.txt"], ".csv, .npz, .json"),
    ],
)
def test_errors_print_one_clear_line_and_exit_nonzero(capsys, argv, needle):
    code = main(["solve", *argv])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("implicit-viz: error:")
    assert needle in err


def test_bad_spec_file_reports_position(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(
        'dim = 2\nf = "tanh(W @ z + x)"\n[tensors]\nW = { shape = [3, 3] }\nx = [1.0, 2.0]\n'
    )
    code = main(["solve", str(spec)])
    err = capsys.readouterr().err
    assert code == 2
    assert "shape mismatch" in err and "column 6" in err


def test_json_error_keeps_stdout_one_document(capsys):
    code = main(["solve", "tanh_layer", "--set", "a=99", "--json"])
    out = capsys.readouterr().out
    assert code == 2
    assert json.loads(out)["error"].startswith("params.a")


def test_module_entry_point_prints_only_json_on_stdout():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "implicit_viz", "solve", "sqrt2", "--solver", "newton", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert doc["results"][0]["z"][0] == pytest.approx(math.sqrt(2), abs=1e-10)


def test_spec_file_errors_name_the_file_line_and_column_the_editor_marks(tmp_path, capsys):
    """The CLI prefixes FILE:LINE:COL in the whole file (as the app's editor marks it), while
    the message keeps the position inside the expression."""
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\ndim = 1\nf = """\nr * z\n  + qq"""\n\n[params]\nr = 1.0\n')
    code = main(["solve", str(spec)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"implicit-viz: error: {spec}:5:5: f: unknown name 'qq'")
    lines = spec.read_text().splitlines()
    assert lines[5 - 1][5 - 1 :].startswith("qq")
    code = main(["solve", str(spec), "--json"])
    out = capsys.readouterr().out
    assert json.loads(out)["where"] == f"{spec}:5:5"
    # a preset name is not a file the user wrote: no prefix
    assert main(["solve", "tanh_layer", "--set", "q=1"]) == 2
    assert "tanh_layer.toml" not in capsys.readouterr().err


def test_skipped_diagnostics_are_a_note_on_stderr_and_in_json(tmp_path, capsys, monkeypatch):
    """Over the diagnostics' budget the rho column is '-', and the CLI says why (stderr; the
    JSON document keeps it under "notes"), instead of leaving the blank unexplained."""
    monkeypatch.setattr("implicit_viz.core.diagnostics.MAX_DIAGNOSTIC_FLOPS", 1.0)
    spec = tmp_path / "half.toml"
    spec.write_text('dim = 3\nf = "0.5 * z + 1"\n', encoding="utf-8")
    assert main(["solve", str(spec), "--solver", "fixed_point", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["results"][0]["status"] == "converged"
    assert doc["results"][0]["spectral_radius"] is None
    assert len(doc["notes"]) == 1 and doc["notes"][0].startswith("diagnostics skipped")
    assert err.strip() == f"implicit-viz: note: {doc['notes'][0]}"
    # Within budget: rho is 0.5 (df/dz = 0.5 I) and no note.
    monkeypatch.undo()
    assert main(["solve", str(spec), "--solver", "fixed_point", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["notes"] == [] and err == ""
    assert abs(doc["results"][0]["spectral_radius"] - 0.5) < 1e-12
