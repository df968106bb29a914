"""The main window, driven through its real widgets (offscreen), against the backend's answers."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PySide6.QtGui import QImage, QTextCursor
from PySide6.QtTest import QTest

from implicit_viz.core.live import LiveRequest, SolverSettings, run_live
from implicit_viz.core.presets import preset_names
from implicit_viz.core.spec import load_spec
from implicit_viz.gui.main_window import MainWindow

TIMEOUT = 15_000


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.shutdown()


def load(qtbot, w: MainWindow, key: str) -> None:
    with qtbot.waitSignal(w.snapshotShown, timeout=TIMEOUT):
        w.load_preset(key)


def settle(qtbot, w: MainWindow) -> None:
    """Wait until the newest request is shown."""
    qtbot.waitUntil(
        lambda: w.snapshot is not None and w._shown_id >= w.worker.last_id, timeout=TIMEOUT
    )


def backend(w: MainWindow):
    """The backend's own answer for what the window currently asks."""
    return run_live(
        LiveRequest(
            spec=w.spec,
            values=w.params.values(),
            seeds=w.params.seeds(),
            settings=w.solvers.settings(),
        )
    )


@pytest.mark.parametrize("key", preset_names())
def test_opens_on_every_preset_with_non_empty_plots(qtbot, window, key):
    load(qtbot, window, key)
    settle(qtbot, window)
    snap = window.snapshot
    assert snap.spec_name == load_spec(key).name
    assert window.trajectory.solvers() == tuple(t.solver for t in snap.traces)
    for t in snap.traces:
        curves = window.trajectory.curves(t.solver)
        assert len(curves) == snap.dim
        x, _y = curves[0].getData()
        assert len(x) == t.iterations + 1
    assert window.residuals.table().rowCount() == len(snap.traces)
    assert snap.spec_name in window.status_label.text()


def test_slider_move_redraws_what_the_backend_computes(qtbot, window):
    load(qtbot, window, "tanh_layer")
    before = window.trajectory.curves("fixed_point")[0].getData()[1].copy()
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.params.slider("a").setValue(0.4)
    settle(qtbot, window)
    assert window.snapshot.values["a"] == pytest.approx(0.4)
    truth = backend(window)
    for t in truth.traces:
        for i, curve in enumerate(window.trajectory.curves(t.solver)):
            np.testing.assert_allclose(curve.getData()[1], t.trajectory[:, i], rtol=1e-12)
    # a smaller weight scale contracts more: naive iteration needs fewer steps
    assert len(window.trajectory.curves("fixed_point")[0].getData()[1]) < len(before)
    res = window.residuals.curves()
    y = res["fixed_point"].getData()[1]  # log10 in the log-scale plot
    np.testing.assert_allclose(10.0**y, truth.traces[0].residuals, rtol=1e-9)


def type_into_editor(qtbot, w: MainWindow, find: str, replace: str) -> None:
    """Select ``find`` in the editor and type ``replace`` over it, key by key."""
    edit = w.editor.text_edit
    start = w.editor.text().index(find)
    cur = edit.textCursor()
    cur.setPosition(start)
    cur.setPosition(start + len(find), QTextCursor.MoveMode.KeepAnchor)
    edit.setTextCursor(cur)
    edit.setFocus()
    QTest.keyClicks(edit, replace)


def test_invalid_spec_keeps_plots_and_text_then_fixing_redraws(qtbot, window):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    shown = window.snapshot.request_id
    data = window.trajectory.curves("fixed_point")[0].getData()[1].copy()
    with qtbot.waitSignal(window.editor.specRejected, timeout=TIMEOUT):
        type_into_editor(qtbot, window, 'f = "tanh(a', 'f = "tanq(a')
    typed = window.editor.text()
    assert 'f = "tanq(a * (W @ z) + x)"' in typed
    assert "tanq" in window.status_label.text()
    assert "tanq" in window.editor.error_message()
    line = typed.splitlines().index('f = "tanq(a * (W @ z) + x)"') + 1
    assert window.editor.error_position()[0] == line
    qtbot.wait(300)
    assert window.snapshot.request_id == shown  # the last plots stay
    np.testing.assert_array_equal(window.trajectory.curves("fixed_point")[0].getData()[1], data)
    assert window.editor.text() == typed  # the user's text is untouched
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        type_into_editor(qtbot, window, 'f = "tanq(a', 'f = "sin(a')
    settle(qtbot, window)
    assert window.spec.f == "sin(a * (W @ z) + x)"
    truth = backend(window)
    np.testing.assert_allclose(
        window.trajectory.curves("fixed_point")[0].getData()[1],
        truth.traces[0].trajectory[:, 0],
        rtol=1e-12,
    )


def test_diverging_solve_is_reported_as_diverged(qtbot, window):
    load(qtbot, window, "gradient_descent")
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.params.slider("eta").setValue(0.7)
    settle(qtbot, window)
    naive = window.snapshot.traces[0]
    assert naive.solver == "fixed_point" and naive.status == "diverged"
    assert "fixed_point: diverged at step" in window.status_label.text()
    table = window.residuals.table()
    outcomes = [table.item(r, 1).text() for r in range(table.rowCount())]
    assert outcomes[0].startswith("diverged")


def test_nan_blow_up_is_an_outcome_not_a_crash(qtbot, window):
    load(qtbot, window, "cosine")
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        type_into_editor(qtbot, window, window.spec.f, "log(z - 5)")
    settle(qtbot, window)
    assert all(t.status == "diverged" for t in window.snapshot.traces)
    assert "diverged at the start" in window.status_label.text()


def test_exports_read_back(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    png = window.export_plot("residuals", tmp_path / "res.png")
    img = QImage(str(png))
    assert img.width() > 100 and img.height() > 100
    svg = window.export_plot("trajectory", tmp_path / "traj.svg")
    assert "<svg" in svg.read_text()
    pdf = window.export_plot("phase", tmp_path / "phase.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")

    truth = backend(window)
    npz = np.load(window.export_traces(tmp_path / "t.npz"))
    assert list(npz["solvers"]) == [t.solver for t in truth.traces]
    for j, t in enumerate(truth.traces):
        n = t.iterations + 1
        np.testing.assert_allclose(npz["trajectory"][j, 0, :n], t.trajectory, rtol=1e-12)
        np.testing.assert_allclose(npz["residuals"][j, 0, :n], t.residuals, rtol=1e-12)
    meta = json.loads(str(npz["metadata"]))
    assert "a = " in meta["spec"] and meta["options"]["tol"] == truth.tol

    doc = json.loads(window.export_traces(tmp_path / "t.json").read_text())
    for entry, t in zip(doc["results"], truth.traces, strict=True):
        assert entry["solver"] == t.solver and entry["status"] == t.status
        np.testing.assert_allclose(np.array(entry["trajectory"]), t.trajectory, rtol=1e-12)

    text = window.export_traces(tmp_path / "t.csv").read_text()
    rows = list(
        csv.DictReader(
            io.StringIO("\n".join(li for li in text.splitlines() if not li.startswith("#")))
        )
    )
    newton = [r for r in rows if r["solver"] == "newton"]
    t = truth.traces[2]
    assert len(newton) == t.iterations + 1
    np.testing.assert_allclose([float(r["z_0"]) for r in newton], t.trajectory[:, 0], rtol=1e-12)


def test_export_to_an_unwritable_path_is_a_message(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert window.export_plot("residuals", tmp_path / "missing" / "x.png") is None
    assert "missing" in window.last_error
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert window.export_traces(tmp_path / "missing" / "t.npz") is None
    assert "trace export failed" in window.last_error
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert window.export_traces(tmp_path / "t.xlsx") is None
    assert "unknown format" in window.last_error
    assert window.snapshot is not None  # still usable


def test_session_round_trip(qtbot, window, tmp_path):
    load(qtbot, window, "deq_cell")
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.solvers.set_settings(
            SolverSettings(
                solvers=("damped", "broyden"),
                tol=1e-7,
                max_iter=150,
                options={"damped": {"beta": 0.4}},
            )
        )
    window.params.slider("s").setValue(0.55)
    window.params.seed_box("W").setValue(5)
    window.phase.set_components(3, 7)
    type_into_editor(qtbot, window, "max_iter = 300", "max_iter = 300  # edited")
    settle(qtbot, window)
    path = window.save_session(tmp_path / "s.ivsession")
    state = window.session()

    other = MainWindow()
    qtbot.addWidget(other)
    try:
        other.start("logistic")
        with qtbot.waitSignal(other.snapshotShown, timeout=TIMEOUT):
            assert other.open_session(path)
        settle(qtbot, other)
        again = other.session()
        assert again.spec_text == state.spec_text
        assert again.values == pytest.approx(state.values)
        assert again.seeds == state.seeds == {"W": 5, "U": 1, "x": 2, "b": 3}
        assert again.solver == state.solver
        assert again.view["phase_components"] == [3, 7]
        # and the same solve
        for a, b in zip(other.snapshot.traces, window.snapshot.traces, strict=True):
            assert a.status == b.status and a.iterations == b.iterations
            np.testing.assert_allclose(a.z, b.z, rtol=1e-12)
    finally:
        other.shutdown()


def test_corrupt_session_leaves_the_window_as_it_was(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    text = window.editor.text()
    bad = tmp_path / "bad.ivsession"
    bad.write_text('{"format": "implicit-viz-session", "version": 1, "spec_text": 3}')
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert not window.open_session(bad)
    assert "spec_text" in window.last_error and str(bad) in window.last_error
    assert window.editor.text() == text
    bad.write_bytes(b"\x00\x01garbage")
    assert not window.open_session(bad)
    assert window.editor.text() == text


def test_open_and_save_spec_files(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    p = tmp_path / "mine.toml"
    text = load_spec("logistic").source
    p.write_text(text)
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        assert window.open_spec(p)
    assert window.spec.name == "logistic map" and "mine.toml" in window.windowTitle()
    # an invalid text is saved as typed
    type_into_editor(qtbot, window, 'f = "r * z', 'f = "r * * z')
    assert window.save_spec(tmp_path / "out.toml")
    assert (tmp_path / "out.toml").read_text() == window.editor.text()
    assert not window.open_spec(tmp_path / "nope.toml")
    assert "nope.toml" in window.last_error
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\xfa")
    assert not window.open_spec(tmp_path / "bin.toml")
    assert "UTF-8" in window.last_error
    # undo brings back what was there before the file was opened
    assert window.editor.text() == (tmp_path / "out.toml").read_text()


def test_newest_slider_value_wins(qtbot, window):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    slider = window.params.slider("a")
    values = np.linspace(0.1, 1.0, 30)
    for v in values:
        slider.setValue(float(v))
    settle(qtbot, window)
    assert window.snapshot.values["a"] == pytest.approx(values[-1])
    assert window.snapshot.request_id == window.worker.last_id


def test_runaway_solve_gives_way_to_a_newer_request(qtbot, window):
    load(qtbot, window, "logistic")
    window.solvers.set_settings(SolverSettings(solvers=("fixed_point",), max_iter=100_000))
    qtbot.wait(50)  # the long solve (chaotic r, no convergence) starts
    window.params.slider("r").setValue(3.95)
    window.solvers.set_settings(SolverSettings(solvers=("newton",), max_iter=50))
    settle(qtbot, window)
    assert window.snapshot.traces[0].solver == "newton"


def test_absurd_size_is_a_message(qtbot, window):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.solvers.set_settings(SolverSettings(solvers=("newton",)))
    settle(qtbot, window)
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        window.editor.set_text('name = "huge"\ndim = 5000\nf = "0.5 * z"\n')
        window.editor.check_now()
    assert "dim 5000" in window.last_error
    assert window.snapshot.spec_name == "tanh equilibrium layer"
    # with naive iteration ticked too, it runs and the status bar says why newton did not
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.solvers.check("fixed_point").setChecked(True)
    settle(qtbot, window)
    assert window.snapshot.spec_name == "huge"
    assert "newton skipped" in window.status_label.text()


def test_assignments_from_a_map_click_set_sliders_and_start(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.apply_assignments({"a": 0.5, "z0[1]": 0.3, "nonsense[9]": 1.0})
    settle(qtbot, window)
    assert window.params.values()["a"] == pytest.approx(0.5)
    assert window.overrides() == {"z0[1]": 0.3}
    t = window.snapshot.traces[0]
    np.testing.assert_allclose(t.trajectory[0], [0.0, 0.3])
    truth = run_live(
        LiveRequest(
            spec=window.spec,
            values={"a": 0.5},
            overrides={"z0[1]": 0.3},
            settings=window.solvers.settings(),
        )
    )
    np.testing.assert_allclose(t.trajectory, truth.traces[0].trajectory, rtol=1e-12)
    # sessions keep them; clearing goes back to the spec's start
    path = window.save_session(tmp_path / "o.ivsession")
    from implicit_viz.gui.session import read_session

    assert read_session(path).overrides == {"z0[1]": 0.3}
    window.clear_overrides()
    settle(qtbot, window)
    np.testing.assert_allclose(window.snapshot.traces[0].trajectory[0], [0.0, 0.0])


def test_basins_click_shows_that_cells_solve(qtbot, window):
    """A small sweep from the Basins tab equals the backend's; a click on a cell moves the
    sliders (or the start) there, and the plots show that cell's outcome."""
    from implicit_viz.core.sweep import sweep

    load(qtbot, window, "gradient_descent")
    settle(qtbot, window)
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("eta", None, x_range=(0.05, 0.75))
    window.basins.resolution.setValue(40)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    truth = sweep(window.basins.build_request())
    np.testing.assert_array_equal(res.status, truth.status)
    np.testing.assert_array_equal(res.iterations, truth.iterations)
    # click a diverging cell (eta beyond 2/L = 0.5)
    eta = float(res.x_values[-1])
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.basins._emit_click_at(eta, 0.0)
    settle(qtbot, window)
    assert window.params.values()["eta"] == pytest.approx(eta)
    naive = window.snapshot.traces[0]
    assert naive.solver == "fixed_point" and naive.status == "diverged"
    assert window.residuals.table().item(0, 1).text().startswith("diverged")


def test_basins_click_on_start_components_sets_overrides(qtbot, window):
    load(qtbot, window, "newton_cubic")
    settle(qtbot, window)
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("z0[0]", "z0[1]", x_range=(-1.5, 1.5), y_range=(-1.5, 1.5))
    window.basins.resolution.setValue(24)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    x, y = float(res.x_values[3]), float(res.y_values[5])
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.basins._emit_click_at(x, y)
    settle(qtbot, window)
    assert window.overrides() == {"z0[0]": pytest.approx(x), "z0[1]": pytest.approx(y)}
    np.testing.assert_allclose(window.snapshot.traces[0].trajectory[0], [x, y])
    # the cell's basin is the fixed point the window's naive iteration reaches
    b = int(res.basin[5, 3])
    if b >= 0:
        np.testing.assert_allclose(window.snapshot.traces[0].z, res.fixed_points[b], atol=1e-3)


def test_after_a_basins_click_every_view_solves_the_same_problem(qtbot, window):
    """A click on a Basins cell over a and x[0] (x is a tensor, not a slider): the live table,
    the Basins hover and the Gradients tab all report that cell's z* and rho(df/dz*), and
    these equal the closed form J = diag(1 - tanh^2(a W z + x)) a W at the cell's values."""
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("a", "x[0]", x_range=(0.3, 0.9), y_range=(0.6, 1.4))
    window.basins.resolution.setValue(12)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    ix, iy = 4, 9
    assert res.status[iy, ix] == 1  # converged
    a, x0 = float(res.x_values[ix]), float(res.y_values[iy])
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.basins._emit_click_at(a, x0)
    settle(qtbot, window)
    live = window.snapshot.traces[0]
    assert live.status == "converged"

    # closed form at the live z*: W and x from the spec, x[0] from the cell
    w = np.array([[0.6, -1.1], [0.9, 0.4]])
    x = np.array([x0, -0.2])
    z = live.z
    np.testing.assert_allclose(np.tanh(a * w @ z + x), z, atol=1e-5)  # it is the fixed point
    jac = np.diag(1 - np.tanh(a * w @ z + x) ** 2) @ (a * w)
    rho = float(np.abs(np.linalg.eigvals(jac)).max())
    # the cell's x[0] matters: without it (x[0] = 0.5) the answer would differ
    assert abs(x0 - 0.5) > 0.1
    assert live.spectral_radius == pytest.approx(rho, rel=1e-6)
    from implicit_viz.gui.residual_view import COLUMNS

    table, col = window.residuals.table(), [k for k, _ in COLUMNS]
    assert table.item(0, col.index("spectral_radius")).text() == f"{rho:.3g}"
    assert table.item(0, col.index("z")).text().startswith(f"({z[0]:.4g}, ")

    # the hover of that cell
    np.testing.assert_allclose(res.z[iy, ix], z, atol=1e-4)  # float32 sweep
    assert window.basins.cell_spectral_radius(ix, iy) == pytest.approx(rho, rel=1e-4)
    hover = window.basins.describe_at(a, x0)
    assert hover.split("ρ(df/dz*) = ")[1] == f"{window.basins.cell_spectral_radius(ix, iy):.4g}"

    # the Gradients tab differentiates the same map
    window.views.setCurrentWidget(window.gradient)
    with qtbot.waitSignal(window.gradient.reportShown, timeout=60_000):
        window._run_gradient()
    report = window.gradient.report()
    np.testing.assert_allclose(report.reference.z, z, atol=1e-5)
    assert report.spectral_radius == pytest.approx(rho, rel=1e-6)


def test_a_clicked_cell_has_the_outcome_and_period_the_map_shows(qtbot, window):
    """One answer per cell: the live solve after a click on a Basins cell uses the sweep's
    stopping rules and dtype, so its first solver reports the cell's outcome and period."""
    from implicit_viz.core.status import Status

    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    window.basins.resolution.setValue(16)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    labels = {Status(int(c)).label for c in np.unique(res.status)}
    assert {"converged", "periodic"} <= labels  # the sample spans several outcomes
    rng = np.random.default_rng(1)
    picked = {}
    for code in np.unique(res.status):  # two cells of every outcome on the map
        iy, ix = np.argwhere(res.status == code)[
            rng.permutation(int((res.status == code).sum()))[:2]
        ].T
        for a, b in zip(iy, ix):
            picked[(int(a), int(b))] = code
    for (iy, ix), code in picked.items():
        a, x0 = float(res.x_values[ix]), float(res.y_values[iy])
        with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
            window.basins._emit_click_at(a, x0)
        settle(qtbot, window)
        live = window.snapshot.traces[0]
        assert (live.status, live.period) == (
            Status(int(code)).label,
            int(res.period[iy, ix]),
        ), (a, x0)


def test_gradient_tab_matches_the_backend(qtbot, window):
    from implicit_viz.core.gradients import gradient_lab

    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.views.setCurrentWidget(window.gradient)
    with qtbot.waitSignal(window.gradient.reportShown, timeout=60_000):
        window._run_gradient()
    report = window.gradient.report()
    truth = gradient_lab(window.gradient.build_request())
    for a, b in zip(report.methods, truth.methods, strict=True):
        assert a.method == b.method
        assert a.rel_error == pytest.approx(b.rel_error, rel=1e-9, abs=1e-15)


def test_loading_another_spec_drops_map_overrides(qtbot, window):
    load(qtbot, window, "newton_cubic")
    settle(qtbot, window)
    window.apply_assignments({"z0[0]": 1.4})
    settle(qtbot, window)
    assert window.overrides() == {"z0[0]": 1.4}
    assert "z0[0] = 1.4" in window.override_label.text()
    load(qtbot, window, "logistic")
    settle(qtbot, window)
    assert window.overrides() == {}
    assert window.snapshot.traces[0].status == "periodic"
    assert window.override_label.text() == ""


def test_basins_axes_follow_a_newly_loaded_spec(qtbot, window):
    from implicit_viz.gui.basins_view import default_axes

    for key in ("logistic", "newton_cubic"):
        load(qtbot, window, key)
        settle(qtbot, window)
        x, y = default_axes(window.spec)
        assert window.basins.x_combo.currentText() == x
        assert window.basins.y_combo.currentText() == y


def test_gradient_tab_follows_the_sliders_while_shown(qtbot, window):
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    with qtbot.waitSignal(window.gradient.reportShown, timeout=60_000):
        window.views.setCurrentWidget(window.gradient)
    with qtbot.waitSignal(window.gradient.reportShown, timeout=60_000):
        window.params.slider("a").setValue(0.5)
    qtbot.waitUntil(
        lambda: (
            window.gradient.report() is not None
            and window.gradient.report().request.spec.param("a").value == pytest.approx(0.5)
        ),
        timeout=60_000,
    )


def test_preset_picker_names_a_preset_only_while_the_text_is_that_presets(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    picker = window.presets
    assert picker.current_key() == "tanh_layer"
    type_into_editor(qtbot, window, "a * (W @ z)", "a * (W @ z) * 0.5")
    assert picker.current_key() is None
    assert picker.currentText() == "" and "(edited)" in picker.placeholderText()
    assert picker.itemText(picker.findData("tanh_layer")) in picker.placeholderText()
    # undo to the preset's own text: the name comes back
    while window.editor.is_modified():
        window.editor.text_edit.undo()
    assert picker.current_key() == "tanh_layer"
    # a spec file shows its file name; picking a preset again loads it
    p = tmp_path / "mine.toml"
    p.write_text(load_spec("logistic").source)
    assert window.open_spec(p)
    assert picker.current_key() is None and picker.placeholderText() == "mine.toml"
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        picker.activated.emit(picker.findData("tanh_layer"))
    assert picker.current_key() == "tanh_layer" and window.spec.name.startswith("tanh")


def test_basins_marker_shows_tensor_element_axes_at_the_specs_value(qtbot, window):
    """x[0] is not a slider: the marker takes its value from the spec (0.5 in tanh_layer)."""
    load(qtbot, window, "tanh_layer")
    settle(qtbot, window)
    window.basins.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    window._update_context()
    assert window.basins.marker_y.isVisible()
    assert window.basins.marker_y.value() == pytest.approx(0.5)
    assert window.basins.marker_x.value() == pytest.approx(window.params.values()["a"])


@pytest.mark.parametrize(
    ("ask", "method", "chosen", "expected"),
    [
        ("_ask_export_traces", "export_traces", "JSON (*.json)", "out.json"),
        ("_ask_export_basins_data", "export_basins_data", "NumPy archive (*.npz)", "out.npz"),
        ("_ask_export_gradient_curves", "export_gradient_curves", "CSV (*.csv)", "out.csv"),
        ("_ask_save_spec_as", "save_spec", "TOML (*.toml)", "out"),  # typed as is
        ("_ask_save_session", "save_session", "Session (*.ivsession)", "out"),
        ("_ask_window_image", "save_window_image", "PNG (*.png)", "out"),
    ],
)
def test_save_dialogs_hand_on_the_chosen_path(window, monkeypatch, ask, method, chosen, expected):
    """A name typed without a suffix gets the chosen filter's suffix for exports only."""
    from PySide6.QtWidgets import QFileDialog

    got: list[str] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("out", chosen))
    monkeypatch.setattr(window, method, lambda path: got.append(path))
    getattr(window, ask)()
    assert got == [expected]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))  # cancelled
    getattr(window, ask)()
    assert got == [expected]


def test_plot_export_dialog_names_the_plot(window, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    got: list[tuple[str, str]] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("fig", "SVG (*.svg)"))
    monkeypatch.setattr(window, "export_plot", lambda which, path: got.append((which, path)))
    window._ask_export_plot("residuals")
    assert got == [("residuals", "fig.svg")]
