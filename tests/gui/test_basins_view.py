"""The basins view runs real sweeps on its worker thread and draws exactly what they hold:
the same arrays as a direct :func:`implicit_viz.core.sweep.sweep`, the palette's colours, the
right cell under a click or the pointer, a usable view after a cancel, and exports that read
back."""

from __future__ import annotations

import json
import math

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from implicit_viz.core.errors import SweepError
from implicit_viz.core.export import ExportError
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.palette import cell_colors
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, sweep, sweep_options
from implicit_viz.core.sweep_axes import NO_AXIS
from implicit_viz.gui.basins_view import ORBIT_ITERATES, BasinsView
from implicit_viz.gui.state import Problem
from implicit_viz.gui.sweep_worker import SweepWorker

TIMEOUT_MS = 60_000
CELL_ARRAYS = ("status", "iterations", "basin", "period")


@pytest.fixture
def view(qtbot):
    v = BasinsView()
    qtbot.addWidget(v)
    v.resize(1000, 650)
    v.show()
    yield v
    v.shutdown()


def run_and_wait(qtbot, view: BasinsView):
    with qtbot.waitSignal(view.sweepFinished, timeout=TIMEOUT_MS) as blocker:
        assert view.run() is not None, view.last_error
    return blocker.args[0]


def float32_settings(**kw) -> SolverSettings:
    base = {"solvers": ("fixed_point",), "tol": 1e-6, "max_iter": 200, "dtype": "float32"}
    return SolverSettings(**{**base, **kw})


def assert_same_cells(result, reference) -> None:
    for name in CELL_ARRAYS:
        np.testing.assert_array_equal(getattr(result, name), getattr(reference, name), name)
    np.testing.assert_array_equal(result.x_values, reference.x_values)
    np.testing.assert_allclose(result.fixed_points, reference.fixed_points)


def palette_colors(result) -> np.ndarray:
    return cell_colors(
        result.status,
        result.iterations,
        result.basin,
        result.period,
        result.request.options.max_iter,
    )


def drawn_pixels(view: BasinsView) -> np.ndarray:
    """The ImageItem's rendered QImage as (ny, nx, 3)."""
    view.image_item.render()
    return pg.functions.ndarray_from_qimage(view.image_item.qimage)[..., :3]


# --------------------------------------------------------------------------------------------
# Axes and requests
# --------------------------------------------------------------------------------------------


def test_view_fills_axes_from_spec(view):
    view.set_spec(load_spec("tanh_layer"))
    assert view.x_combo.currentText() == "a" and view.y_combo.currentText() == "x[0]"
    items = [view.y_combo.itemText(i) for i in range(view.y_combo.count())]
    assert items[0] == NO_AXIS and "W[1,1]" in items and "z0[1]" in items
    assert (view.x_lo.value(), view.x_hi.value()) == (0.0, 3.0)
    assert view.resolution.value() == 128
    # the same spec again keeps a changed choice
    view.set_axes("z0[0]", "z0[1]", x_range=(-1.0, 1.0))
    view.set_spec(load_spec("tanh_layer"))
    assert view.x_combo.currentText() == "z0[0]" and view.x_lo.value() == -1.0


def test_build_request_uses_context(view):
    spec = load_spec("tanh_layer")
    settings = SolverSettings(
        solvers=("anderson", "newton"),
        tol=1e-9,
        max_iter=77,
        options={"anderson": {"m": 3}},
        dtype="float64",
    )
    view.set_problem(Problem(spec, {"a": 1.7}, overrides={"x[1]": 0.25}, settings=settings))
    view.set_axes("z0[0]", "z0[1]")
    view.resolution.setValue(20)
    req = view.build_request()
    assert req.solver == "anderson" and dict(req.solver_options) == {"m": 3}
    assert req.dtype == "float64" and req.device == "cpu"
    assert req.options.max_iter == 77 and req.options.tol == 1e-9
    assert req.spec.param_values["a"] == 1.7
    assert req.spec.tensor("x").data[1] == 0.25
    assert (req.x, req.y) == (Axis("z0[0]", -2.0, 2.0, 20), Axis("z0[1]", -2.0, 2.0, 20))
    assert req.orbit == 0
    # float32 cannot resolve 1e-9: the tolerance is raised to the float32 floor
    view.set_problem(Problem(spec, settings=float32_settings(tol=1e-9)))
    assert view.build_request().options.tol == 1e-6
    # 1-D sweeps record the orbit
    view.set_axes("a", NO_AXIS)
    req = view.build_request()
    assert req.y is None and req.orbit == ORBIT_ITERATES


def test_bad_requests_show_a_message_and_start_nothing(view, qtbot):
    view.set_spec(load_spec("tanh_layer"))
    view.x_lo.setValue(1.0)
    view.x_hi.setValue(1.0)
    with pytest.raises(SweepError, match="empty range"):
        view.build_request()
    with qtbot.waitSignal(view.errorShown) as blocker:
        assert view.run() is None
    assert "empty range" in blocker.args[0] and "empty range" in view.status_label.text()
    assert view.worker.last_id == 0 and not view.cancel_button.isEnabled()
    view.set_axes("a", "a")
    assert view.run() is None and "both axes" in view.last_error
    view.set_axes("q", NO_AXIS, x_range=(0.0, 1.0))
    assert view.run() is None and "unknown target 'q'" in view.last_error
    view.resolution.setValue(0)
    assert view.resolution.value() == 2  # the spin box cannot ask for fewer than 2 cells
    assert view.worker.last_id == 0 and view.result() is None


# --------------------------------------------------------------------------------------------
# Sweeps from the view
# --------------------------------------------------------------------------------------------


def test_newton_cubic_basins_match_direct_sweep(view, qtbot):
    view.set_spec(load_spec("newton_cubic"))
    view.set_axes("z0[0]", "z0[1]", x_range=(-1.5, 1.5), y_range=(-1.5, 1.5))
    view.resolution.setValue(40)
    result = run_and_wait(qtbot, view)
    assert result.complete and not result.cancelled
    direct = sweep(view.build_request())
    assert_same_cells(result, direct)
    assert len(result.fixed_points) == 3
    np.testing.assert_array_equal(view.image_item.image, palette_colors(result))
    np.testing.assert_array_equal(drawn_pixels(view), palette_colors(result))
    # the image lies on the axis values: cell centres at x_values / y_values
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    step = 3.0 / 39
    assert rect.left() == pytest.approx(-1.5 - step / 2)
    assert rect.top() == pytest.approx(-1.5 - step / 2)
    assert rect.width() == pytest.approx(3.0 + step)
    assert len([s for s in view.legend_labels() if s.startswith("basin")]) == 3
    assert view.shade_bar.isVisibleTo(view)
    assert "40 x 40 cells" in view.status_label.text()
    assert "3 fixed points" in view.status_label.text()
    assert view.redraws >= 1 and not view.cancel_button.isEnabled()


def test_tanh_layer_param_sweep_matches_direct_sweep(view, qtbot):
    spec = load_spec("tanh_layer")
    view.set_problem(Problem(spec, {"a": 0.9}, settings=float32_settings()))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(32)
    result = run_and_wait(qtbot, view)
    direct = sweep(view.build_request())
    assert_same_cells(result, direct)
    np.testing.assert_array_equal(drawn_pixels(view), palette_colors(result))
    labels = view.plot.getPlotItem()
    assert "weight scale" in labels.getAxis("bottom").labelText
    assert labels.getAxis("left").labelText == "x[0]"
    assert {Status.CONVERGED, Status.PERIODIC} <= {Status(s) for s in np.unique(result.status)}


def test_cancel_keeps_the_partial_picture_and_run_again_works(view, qtbot):
    view.set_problem(Problem(load_spec("tanh_layer"), settings=float32_settings(max_iter=2000)))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(256)
    partials = []

    def first_partial(_sid, res):
        partials.append(res)
        if len(partials) == 1:
            view.cancel()

    view.worker.partial.connect(first_partial)
    result = run_and_wait(qtbot, view)
    view.worker.partial.disconnect(first_partial)
    assert result.cancelled and not result.complete
    not_run = int((result.status == int(Status.NOT_RUN)).sum())
    assert 0 < not_run < result.status.size
    assert view.note_label.isVisibleTo(view)
    assert f"cancelled: {result.status.size - not_run} of {256 * 256} cells" in (
        view.note_label.text()
    )
    # the picture shows the cells as they are, unsolved ones in the palette's not_run colour
    np.testing.assert_array_equal(view.image_item.image, palette_colors(result))
    assert "not run" in view.legend_labels()
    # a partial is a copy: later tiles did not change it
    first = partials[0]
    assert (first.status == int(Status.NOT_RUN)).sum() >= not_run
    assert not view.cancel_button.isEnabled() and view.run_button.isEnabled()

    view.resolution.setValue(48)
    again = run_and_wait(qtbot, view)
    assert again.complete and not again.cancelled
    assert not view.note_label.isVisibleTo(view)
    assert view.result() is again


def test_click_emits_the_cell_values(view, qtbot):
    view.set_problem(Problem(load_spec("tanh_layer"), settings=float32_settings()))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(32)
    result = run_and_wait(qtbot, view)
    xs, ys = result.x_values, result.y_values
    step_x = xs[1] - xs[0]
    assert view.cell_at(xs[7] + 0.4 * step_x, ys[20]) == (7, 20)
    assert view.cell_at(xs[0] - 0.6 * step_x, ys[0]) is None
    with qtbot.waitSignal(view.cellClicked) as blocker:
        view._emit_click_at(xs[7] + 0.3 * step_x, ys[20])
    assert blocker.args[0] == {"a": float(xs[7]), "x[0]": float(ys[20])}

    # a real click at the pixel of cell (25, 4)
    qtbot.wait(50)
    vb = view.plot.getPlotItem().getViewBox()
    scene_pos = vb.mapViewToScene(QPointF(float(xs[25]), float(ys[4])))
    pixel = view.plot.mapFromScene(scene_pos)
    with qtbot.waitSignal(view.cellClicked) as blocker:
        qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=pixel)
    assert blocker.args[0] == {"a": float(xs[25]), "x[0]": float(ys[4])}


def test_hover_names_the_outcome(view, qtbot):
    view.set_spec(load_spec("gradient_descent"))
    view.set_axes("eta", "z0[0]", x_range=(0.0, 0.8), y_range=(-2.0, 2.0))
    view.resolution.setValue(17)  # eta = 0.05 k
    result = run_and_wait(qtbot, view)
    ix = 14  # eta = 0.7 > 2/L = 0.5
    assert result.x_values[ix] == pytest.approx(0.7)
    assert result.status[8, ix] == int(Status.DIVERGED)
    assert "diverged" in view.describe_at(0.7, 0.0)
    conv = view.describe_at(0.2, 0.0)
    assert "converged" in conv and "z* = (" in conv
    # the pointer over the cell (the scene's move signal, as a real move emits it)
    vb = view.plot.getPlotItem().getViewBox()
    view.plot.scene().sigMouseMoved.emit(vb.mapViewToScene(QPointF(0.7, 0.0)))
    assert "eta = 0.7" in view.hover_label.text()
    assert "diverged" in view.hover_label.text()
    qtbot.mouseMove(
        view.plot.viewport(), view.plot.mapFromScene(vb.mapViewToScene(QPointF(0.2, 0.0)))
    )
    assert "converged" in view.hover_label.text()


def test_logistic_orbit_diagram(view, qtbot):
    view.set_spec(load_spec("logistic"))
    view.set_axes("r", NO_AXIS, x_range=(2.8, 4.0))
    view.resolution.setValue(241)  # r = 2.8 + 0.005 k
    result = run_and_wait(qtbot, view)
    r = result.x_values
    assert result.orbit is not None and result.orbit.shape == (241, ORBIT_ITERATES, 1)
    period2 = (r > 3.1) & (r < 3.4)
    period4 = (r > 3.47) & (r < 3.53)
    assert (result.status[0, period2] == int(Status.PERIODIC)).all()
    assert (result.period[0, period2] == 2).all()
    assert (result.status[0, period4] == int(Status.PERIODIC)).all()
    assert (result.period[0, period4] == 4).all()
    assert (result.status[0, r < 2.95] == int(Status.CONVERGED)).all()
    n_finite = int(np.isfinite(result.orbit[:, :, 0]).sum())
    assert view.orbit_points() == n_finite > 0
    dots = view.scatter.getData()
    assert set(np.unique(dots[0])) <= set(r)
    # the strip of cell colours under the dots
    np.testing.assert_array_equal(view.image_item.image, palette_colors(result))
    assert view.plot.getPlotItem().getAxis("left").labelText.startswith("z[0]")
    assert "periodic, k = 2" in view.legend_labels()
    assert "241 cells" in view.status_label.text()


def test_marker_follows_assignments(view, qtbot):
    view.set_spec(load_spec("tanh_layer"))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(16)
    view.set_marker({"a": 1.2, "x[0]": 0.3, "z0[0]": 5.0})
    assert view.marker_x.isVisible() and view.marker_x.value() == pytest.approx(1.2)
    assert view.marker_y.isVisible() and view.marker_y.value() == pytest.approx(0.3)
    run_and_wait(qtbot, view)
    assert view.marker_x.value() == pytest.approx(1.2)  # kept across a run
    view.set_marker({"a": 2.0})
    assert view.marker_x.isVisible() and not view.marker_y.isVisible()
    view.set_marker({})
    assert not view.marker_x.isVisible()


def test_exports_read_back(view, qtbot, tmp_path):
    with pytest.raises(ExportError, match="no sweep"):
        view.export_data(tmp_path / "early.npz")
    view.set_spec(load_spec("newton_cubic"))
    view.set_axes("z0[0]", "z0[1]", x_range=(-1.5, 1.5), y_range=(-1.5, 1.5))
    view.resolution.setValue(24)
    result = run_and_wait(qtbot, view)
    png = view.export_picture(tmp_path / "basins.png")
    img = QImage(str(png))
    assert not img.isNull() and img.width() > 0 and png.stat().st_size > 0
    assert view.export_picture(tmp_path / "basins.svg").read_text().lstrip().startswith("<?xml")
    assert view.export_picture(tmp_path / "basins.pdf").read_bytes()[:4] == b"%PDF"
    npz = view.export_data(tmp_path / "basins.npz")
    with np.load(npz) as data:
        for name in (*CELL_ARRAYS, "x_values", "y_values", "fixed_points"):
            np.testing.assert_array_equal(data[name], getattr(result, name))
        meta = json.loads(str(data["metadata"]))
    assert meta["x_target"] == "z0[0]" and meta["y_target"] == "z0[1]"
    doc = json.loads(view.export_data(tmp_path / "basins.json").read_text())
    assert doc
    with pytest.raises(ExportError, match="unknown format"):
        view.export_picture(tmp_path / "basins.bmp")
    with pytest.raises(ExportError):
        view.export_data(tmp_path / "basins.txt")
    with pytest.raises(ExportError, match="does not exist"):
        view.export_picture(tmp_path / "missing" / "basins.png")


# --------------------------------------------------------------------------------------------
# The worker alone
# --------------------------------------------------------------------------------------------


@pytest.fixture
def worker():
    w = SweepWorker()
    yield w
    w.shutdown()


def small_request(n: int = 12, **kw) -> SweepRequest:
    spec = load_spec("newton_cubic")
    return SweepRequest(
        spec=spec, x=Axis("z0[0]", -1.5, 1.5, n), y=Axis("z0[1]", -1.5, 1.5, n), **kw
    )


def test_worker_reports_errors_as_messages(worker, qtbot):
    with qtbot.waitSignal(worker.failed, timeout=TIMEOUT_MS) as blocker:
        sid = worker.start(small_request(solver="nope"))
    assert blocker.args[0] == sid and "nope" in blocker.args[1]
    assert not blocker.args[1].startswith("internal error")

    def broken(_result):
        raise RuntimeError("boom")

    w2 = SweepWorker(render=broken)
    try:
        with qtbot.waitSignal(w2.failed, timeout=TIMEOUT_MS) as blocker:
            w2.start(small_request())
        assert blocker.args[1] == "internal error: RuntimeError: boom"
        # the thread survives and runs the next request
        w2._render = None
        with qtbot.waitSignal(w2.finished, timeout=TIMEOUT_MS) as blocker:
            sid = w2.start(small_request())
        assert blocker.args[0] == sid and blocker.args[1].complete
    finally:
        w2.shutdown()


def test_worker_newest_request_wins(worker, qtbot):
    finished = []
    worker.finished.connect(lambda sid, res: finished.append((sid, res)))
    progress = []
    worker.progress.connect(lambda sid, frac, stage: progress.append((sid, frac, stage)))
    spec = load_spec("tanh_layer")
    slow = SweepRequest(
        spec=spec,
        x=Axis("a", 0.0, 3.0, 200),
        y=Axis("x[0]", -2.0, 2.0, 200),
        options=sweep_options(spec, "float32", max_iter=3000),
        tile_size=2000,
    )
    first = worker.start(slow)
    second = worker.start(small_request())
    assert second == first + 1
    qtbot.waitUntil(lambda: any(sid == second for sid, _ in finished), timeout=TIMEOUT_MS)
    by_id = dict(finished)
    assert by_id[second].complete
    if first in by_id:  # it started before the second arrived: it stopped early
        assert by_id[first].cancelled
    fr = [f for sid, f, _ in progress if sid == second]
    assert fr and fr[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in fr)
    assert not math.isnan(fr[0])


def test_pause_holds_the_sweep_and_resume_finishes_it_unchanged(view, qtbot):
    """Pause stops progress (no new cells while held); Resume finishes with exactly the cells
    of an uninterrupted sweep of the same request."""
    import time

    from PySide6.QtWidgets import QApplication

    from implicit_viz.core.sweep import sweep

    view.set_problem(Problem(load_spec("tanh_layer"), settings=float32_settings(max_iter=2000)))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(160)
    fractions = []
    view.worker.progress.connect(lambda _sid, frac, _stage: fractions.append(frac))
    with qtbot.waitSignal(view.worker.progress, timeout=30_000):
        view.run()
    view.pause_button.click()
    assert view.worker.paused and view.pause_button.text() == "Resume"
    time.sleep(0.3)  # anything already on its way arrives
    QApplication.processEvents()
    held = len(fractions)
    time.sleep(0.6)
    QApplication.processEvents()
    assert len(fractions) == held  # no progress while paused
    assert view.running
    with qtbot.waitSignal(view.sweepFinished, timeout=120_000) as done:
        view.pause_button.click()
    assert not view.worker.paused and view.pause_button.text() == "Pause"
    result = done.args[0]
    assert result.complete and not result.cancelled
    truth = sweep(view.build_request())
    np.testing.assert_array_equal(result.status, truth.status)
    np.testing.assert_array_equal(result.iterations, truth.iterations)
