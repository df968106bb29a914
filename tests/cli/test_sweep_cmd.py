"""`implicit-viz sweep`: run the real command and read back what it wrote."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PySide6.QtGui import QImage

from implicit_viz.cli.main import main
from implicit_viz.core.spec import parse_spec
from implicit_viz.core.status import Status

ROOTS = np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sweep", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_newton_basins_npz_png_and_json(tmp_path, capsys):
    npz, png = tmp_path / "g.npz", tmp_path / "g.png"
    code, out, _ = run(
        capsys,
        "newton_cubic",
        "--x",
        "z0[0]=-1.5:1.5:48",
        "--y",
        "z0[1]=-1.5:1.5:40",
        "--dtype",
        "float64",
        "--out",
        str(npz),
        "--png",
        str(png),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    data = np.load(npz)
    assert data["status"].shape == (40, 48)
    np.testing.assert_allclose(data["x_values"], np.linspace(-1.5, 1.5, 48))
    np.testing.assert_allclose(data["y_values"], np.linspace(-1.5, 1.5, 40))
    # the fixed points are the three cube roots of unity
    pts = data["fixed_points"]
    assert len(pts) == 3 == doc["n_fixed_points"]
    for root in ROOTS:
        assert np.abs(pts - root).max(axis=1).min() < 1e-6
    # each converged cell's z is its basin's fixed point
    conv = data["status"] == int(Status.CONVERGED)
    np.testing.assert_allclose(data["z"][conv], pts[data["basin"][conv]], atol=1e-6)
    # the JSON summary agrees with the arrays
    shares = np.bincount(data["basin"][conv], minlength=3) / data["status"].size
    assert doc["basin_fractions"] == pytest.approx(shares.tolist())
    assert sum(doc["outcome_fractions"].values()) == pytest.approx(1.0)
    meta = json.loads(str(data["metadata"]))
    assert parse_spec(meta["request"]["spec"]).name == "Newton's map for z^3 - 1"
    assert json.loads(str(data["status_names"]))["3"] == "periodic"
    # the PNG reads back with the picture's size, and shows the basin colours
    img = QImage(str(png))
    assert not img.isNull() and img.width() > 600 and img.height() > 500
    assert doc["files"] == [str(npz), str(png)]


def test_gradient_descent_1d_sweep_changes_outcome_at_two_over_l(capsys, tmp_path):
    out_json = tmp_path / "gd.json"
    code, _, _ = run(capsys, "gradient_descent", "--x", "eta=0.05:0.95:91", "--out", str(out_json))
    assert code == 0
    data = json.loads(out_json.read_text())
    eta = np.array(data["arrays"]["x_values"])
    status = np.array(data["arrays"]["status"])[0]
    assert (status[eta < 0.47] == int(Status.CONVERGED)).all()  # rate |1 - 4 eta| < 0.88
    assert (status[eta > 0.52] == int(Status.DIVERGED)).all()


def test_logistic_orbit_counts_distinct_values(capsys, tmp_path):
    npz = tmp_path / "o.npz"
    code, _, _ = run(
        capsys,
        "logistic",
        "--x",
        "r=2.8:3.5:8",
        "--orbit",
        "64",
        "--out",
        str(npz),
        "--dtype",
        "float64",
        "--max-iter",
        "3000",
        "--tol",
        "1e-10",
    )
    assert code == 0
    data = np.load(npz)
    r = data["x_values"]
    orbit = data["orbit"][:, :, 0]
    for ri, pts in zip(r, orbit):
        distinct = len(np.unique(np.round(pts[-32:], 3)))  # the settled part of the orbit
        want = 1 if ri < 3 - 0.02 else 2 if 3.02 < ri < 1 + math.sqrt(6) - 0.02 else None
        if want is not None:
            assert distinct == want, (ri, distinct)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--x", "a=1:0:10"], "empty range"),
        (["--x", "a=0:1:0"], "at least 1"),
        (["--x", "a=0:1"], "TARGET=LO:HI:N"),
        (["--x", "q=0:1:5"], "unknown target 'q'"),
        (["--x", "a=0:1:5", "--y", "a=0:2:5"], "both axes"),
        (["--x", "a=0:1:5", "--y", "x[0]=0:1:4", "--orbit", "10"], "1-D"),
        (["--x", "a=0:1:5", "--memory-mb", "0.0000001"], "--memory-mb"),
        (["--x", "a=0:1:5", "--out", "/nonexistent/dir/g.npz"], "does not exist"),
        (["--x", "a=0:1:5", "--png", "picture.jpg"], ".png"),
        (["--x", "a=0:1:5", "--solver", "nope"], "unknown solver"),
    ],
)
def test_impossible_requests_fail_before_work(capsys, argv, needle):
    code, out, err = run(capsys, "tanh_layer", *argv)
    assert code != 0
    assert err.startswith("implicit-viz: error:")
    assert needle in err
    assert "cells" not in out  # nothing was solved or printed as a result


def test_table_output_names_outcomes_and_periods(capsys):
    code, out, _ = run(capsys, "tanh_layer", "--x", "a=0:3:40", "--y", "x[0]=-2:2:30")
    assert code == 0
    assert "converged" in out and "periodic" in out and "periods:" in out


def test_json_too_large_is_refused_before_the_sweep_runs(tmp_path, capsys, monkeypatch):
    """A sweep whose JSON would pass the export limit fails at once, pointing to NPZ, instead of
    after minutes of solving; nothing is written and an older file at that path stays."""
    import implicit_viz.core.export as export_mod
    import implicit_viz.core.sweep as sweep_mod

    monkeypatch.setattr(export_mod, "MAX_SWEEP_JSON_BYTES", 10_000)
    ran = []
    monkeypatch.setattr(sweep_mod, "iter_sweep", lambda *a, **k: ran.append(1) or iter(()))
    out = tmp_path / "g.json"
    out.write_text("old", encoding="utf-8")
    code, _, err = run(capsys, "tanh_layer", "--x", "a=0:3:64", "--out", str(out))
    assert code == 1 and ran == [], err
    assert "as JSON" in err and ".npz" in err and err.count("\n") == 1
    assert out.read_text(encoding="utf-8") == "old"


def test_out_through_a_symlink_checks_the_target_folder(tmp_path, capsys):
    """--out through a link is written where the link points: a link into a missing folder is
    refused before work, naming that folder; a good link stays a link after the write."""
    dangling = tmp_path / "to_nowhere.npz"
    dangling.symlink_to(tmp_path / "missing" / "g.npz")
    code, _, err = run(capsys, "tanh_layer", "--x", "a=0:3:8", "--out", str(dangling))
    assert code == 1 and "missing" in err and "does not exist" in err
    real = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    code, _, err = run(capsys, "tanh_layer", "--x", "a=0:3:8", "--out", str(link))
    assert code == 0, err
    assert link.is_symlink() and np.load(real)["status"].shape == (1, 8)


def test_threads_option_gives_the_same_file_for_any_count(tmp_path, capsys, monkeypatch):
    import implicit_viz.core.sweep_threads as threads_mod

    monkeypatch.setattr(threads_mod, "CHUNK_CELLS", 300)  # tiles of 40 x 30 in 4 chunks
    files = []
    for n in ("1", "2"):
        out = tmp_path / f"t{n}.npz"
        argv = ["tanh_layer", "--x", "a=0:3:40", "--y", "x[0]=-2:2:30", "--threads", n]
        code, _, _ = run(capsys, *argv, "--out", str(out))
        assert code == 0
        files.append(np.load(out))
    for name in ("status", "iterations", "residual", "period", "basin", "lyapunov", "z"):
        np.testing.assert_array_equal(files[0][name], files[1][name], name)
    code, _, err = run(capsys, "tanh_layer", "--x", "a=0:3:5", "--threads", "0")
    assert code != 0 and "--threads" in err
