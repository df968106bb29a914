"""The gradient view draws exactly what the gradient lab computes, shows errors in words, re-runs
on slider moves with "auto" on (newest wins), exports files that read back, and its exact
implicit gradient agrees with the implicit function theorem worked by hand."""

from __future__ import annotations

import io
import json
import math
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from implicit_viz.core.errors import SpecError
from implicit_viz.core.export import ExportError, grad_csv
from implicit_viz.core.gradients import METHODS, GradReport, GradRequest, gradient_lab
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.spec import Spec, load_spec
from implicit_viz.gui.grad_worker import GradWorker
from implicit_viz.gui.gradient_view import (
    COLUMNS,
    CURVES,
    ERROR_FLOOR,
    ERROR_X_LABEL,
    ERROR_Y_LABEL,
    LEVELS,
    METHOD_LABELS,
    GradientView,
    format_cosine,
    format_error,
    method_row,
    plotted_errors,
)
from implicit_viz.gui.state import Problem
from tests.helpers import make_spec

TIMEOUT = 60_000


@pytest.fixture
def view(qtbot):
    v = GradientView()
    v.auto_check.setChecked(False)  # runs only when a test asks (auto has its own test)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    yield v
    v.shutdown()


def run_view(qtbot, view: GradientView) -> GradReport:
    with qtbot.waitSignal(view.reportShown, timeout=TIMEOUT):
        assert view.run() is not None
    report = view.report()
    assert report is not None
    return report


def setup(
    view: GradientView,
    spec: Spec,
    wrt: tuple[str, ...],
    loss: str = "sum",
    k: int = 20,
    values: dict[str, float] | None = None,
) -> None:
    view.set_problem(Problem(spec, values or {}, settings=SolverSettings()))
    view.set_wrt(wrt)
    view.set_loss(loss)
    view.k_spin.setValue(k)


def original(item) -> tuple[np.ndarray, np.ndarray]:
    """The data a curve was given (pyqtgraph's log mode transforms what it draws)."""
    x, y = item.getOriginalDataset()
    return np.asarray(x, float), np.asarray(y, float)


def column(key: str) -> int:
    return [k for k, _ in COLUMNS].index(key)


def cell(view: GradientView, method: str, key: str) -> str:
    return view.table().item(METHODS.index(method), column(key)).text()


# -- pure helpers ----------------------------------------------------------------------------------
def test_forward_solver_takes_first_unrollable_with_its_options(monkeypatch):
    from implicit_viz.core.solvers import solver_class

    def forward_solver(settings):
        return Problem(load_spec("deq_cell"), settings=settings).forward_solver()

    assert forward_solver(SolverSettings()) == ("fixed_point", {})
    # Anderson copies its history under autograd: it unrolls
    assert forward_solver(SolverSettings(solvers=("anderson", "newton"))) == ("anderson", {})
    # a solver that declares it cannot be unrolled is passed over
    monkeypatch.setattr(solver_class("anderson"), "unrollable", False)
    assert forward_solver(SolverSettings(solvers=("anderson", "newton"))) == ("newton", {})
    assert forward_solver(SolverSettings(solvers=("anderson",))) == ("fixed_point", {})
    damped = SolverSettings(solvers=("anderson", "damped"), options={"damped": {"beta": 0.7}})
    assert forward_solver(damped) == ("damped", {"beta": 0.7})


def test_plotted_errors_floor_and_gaps():
    y = plotted_errors(np.array([0.5, 0.0, np.nan, np.inf, 1e-300]))
    np.testing.assert_array_equal(y[:2], [0.5, ERROR_FLOOR])
    assert np.isnan(y[2]) and np.isnan(y[3]) and y[4] == ERROR_FLOOR


def test_build_request_carries_context_and_controls(view):
    spec = load_spec("deq_cell")
    settings = SolverSettings(
        solvers=("damped", "anderson"), options={"damped": {"beta": 0.6}}, dtype="float32"
    )
    view.set_problem(Problem(spec, {"s": 0.7}, {"W": 5}, settings=settings))
    names = [
        view.wrt_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(view.wrt_list.count())
    ]
    assert names == ["s", "W", "U", "x", "b"]
    assert view.wrt() == ("s",)  # the first param by default
    view.set_wrt(["s", "b"])
    view.set_loss("l2")
    view.k_spin.setValue(12)
    req = view.build_request()
    assert req.wrt == ("s", "b") and req.loss == "l2" and req.unroll_max == 12
    assert (req.solver, req.solver_options) == ("damped", {"beta": 0.6})
    assert (req.device, req.dtype) == ("cpu", "float32")
    assert req.spec.param("s").value == 0.7 and req.spec.tensor("W").seed == 5
    # the checks survive a new context of the same spec
    view.set_problem(Problem(spec, {"s": 0.5}, settings=settings))
    assert view.wrt() == ("s", "b")
    # nothing to differentiate: a message in the view, nothing submitted
    view.set_wrt([])
    last = view.worker.last_id
    assert view.run() is None and view.worker.last_id == last
    assert "name at least one param or tensor" in view.last_error
    assert view.last_error in view.status_label.text()


# -- the view equals the backend ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "wrt", "k"),
    [("tanh_layer", ("a",), 20), ("deq_cell", ("s",), 20)],
)
def test_view_numbers_equal_backend(qtbot, view, preset, wrt, k):
    setup(view, load_spec(preset), wrt, "sum", k)
    report = run_view(qtbot, view)
    direct = gradient_lab(view.build_request())
    assert report.request.wrt == wrt and report.request.unroll_max == k

    err, mem = view.curves("error"), view.curves("memory")
    assert set(err) == set(mem) == set(CURVES)
    for name in CURVES:
        c = direct.curve(name)
        assert np.all(c.rel_error > ERROR_FLOOR)  # no floored points: plotted = computed
        x, y = original(err[name])
        np.testing.assert_array_equal(x, c.k)
        np.testing.assert_array_equal(y, c.rel_error)
        x, y = original(mem[name])
        np.testing.assert_array_equal(x, c.k)
        np.testing.assert_array_equal(y, report.curve(name).memory_bytes)

    for name in LEVELS:
        m = direct.method(name)
        line = view.levels("error")[name]
        assert line.isVisible()
        assert line.value() == pytest.approx(math.log10(m.rel_error), rel=1e-12, abs=1e-12)
        assert 10 ** line.value() == pytest.approx(report.method(name).rel_error, rel=1e-12)
        assert f"{m.rel_error:.2e}" in line.label.toPlainText()
        assert METHOD_LABELS[name] in line.label.toPlainText()
        assert view.levels("memory")[name].value() == report.method(name).memory_bytes

    for name in METHODS:
        m = direct.method(name)
        assert cell(view, name, "method") == METHOD_LABELS[name]
        assert cell(view, name, "rel_error") == f"{m.rel_error:.2e}" == format_error(m.rel_error)
        assert cell(view, name, "cosine") == f"{m.cosine:.6f}" == format_cosine(m.cosine)
        assert cell(view, name, "steps") == str(m.steps)
        assert cell(view, name, "note") == m.note
        shown = method_row(report.method(name))
        assert cell(view, name, "time_ms") == shown["time_ms"] != "—"
        assert cell(view, name, "memory") == shown["memory"]

    cond = view.conditioning_label.text()
    assert f"ρ(df/dz*) = {direct.spectral_radius:.3g}" in cond
    assert f"σ_min(I − df/dz*) = {direct.sigma_min:.3g}" in cond
    assert not direct.ill_posed and not view.warnings_label.isVisible()
    status = view.status_label.text()
    assert direct.request.spec.name in status and "cpu" in status and "float64" in status
    assert f"K = {k}" in status and "failed" not in status

    pi = view.plot_widgets()["error"].getPlotItem()
    assert pi.getAxis("bottom").labelText == ERROR_X_LABEL
    assert pi.getAxis("left").labelText == ERROR_Y_LABEL
    assert pi.getAxis("left").logMode
    labels = [label.text for _, label in pi.legend.items]
    assert labels == [METHOD_LABELS[n] for n in (*CURVES, *LEVELS)]


def test_bad_loss_shows_spec_error_and_keeps_plots(qtbot, view):
    setup(view, load_spec("tanh_layer"), ("a",), "sum", 10)
    good = run_view(qtbot, view)
    before = {n: original(c) for n, c in view.curves("error").items()}
    errors_before = cell(view, "unrolled", "rel_error")

    view.set_loss("zz + 1")
    with pytest.raises(SpecError) as info:
        gradient_lab(view.build_request())
    with qtbot.waitSignal(view.errorShown, timeout=TIMEOUT) as sig:
        view.run()
    assert sig.args == [str(info.value)]
    assert "zz" in view.last_error and view.last_error == str(info.value)
    status = view.status_label.text()
    assert str(info.value) in status and "the plots show the last run" in status
    assert view.report() is good
    for name, (x, y) in before.items():
        x2, y2 = original(view.curves("error")[name])
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)
    assert cell(view, "unrolled", "rel_error") == errors_before


def test_auto_rerun_on_new_slider_value_newest_wins(qtbot, view):
    spec = load_spec("tanh_layer")
    setup(view, spec, ("a",), "sum", 10)
    first = run_view(qtbot, view)
    assert first.request.spec.param("a").value == 0.9
    view.auto_check.setChecked(True)
    for a in (0.3, 0.4, 0.5):  # a dragged slider: only the last value must end up shown
        view.set_problem(Problem(spec, {"a": a}, settings=SolverSettings()))
    last = view.worker.last_id
    qtbot.waitUntil(
        lambda: view.report() is not None and view.report().request.spec.param("a").value == 0.5,
        timeout=TIMEOUT,
    )
    report = view.report()
    assert view.shown_id == last
    assert report.spectral_radius != first.spectral_radius
    direct = gradient_lab(view.build_request())
    assert cell(view, "implicit_exact", "rel_error") == format_error(
        direct.method("implicit_exact").rel_error
    )
    # a control change re-runs too while auto is on
    with qtbot.waitSignal(view.reportShown, timeout=TIMEOUT):
        view.k_spin.setValue(12)
    assert view.report().request.unroll_max == 12


def test_exports_read_back(qtbot, view, tmp_path):
    with pytest.raises(ExportError, match="no gradient run"):
        view.export_curves(tmp_path / "early.csv")
    setup(view, load_spec("tanh_layer"), ("a",), "sum", 15)
    report = run_view(qtbot, view)

    csv_path = view.export_curves(tmp_path / "curves.csv")
    assert csv_path.read_text(encoding="utf-8") == grad_csv(report)
    rows = [ln for ln in io.StringIO(csv_path.read_text()) if not ln.startswith("#")]
    assert (
        rows[0].strip()
        == "method,k,rel_error,cosine,memory_bytes,forward_residual,backward_residual"
    )
    assert len(rows) == 1 + 15 * len(report.curves)

    npz = np.load(view.export_curves(tmp_path / "curves.npz"))
    for name in CURVES:
        np.testing.assert_array_equal(npz[f"{name}_rel_error"], report.curve(name).rel_error)
    np.testing.assert_array_equal(npz["reference"], report.reference.gradient)
    assert list(npz["methods"]) == list(METHODS)

    doc = json.loads(view.export_curves(tmp_path / "curves.json").read_text())
    assert [m["method"] for m in doc["methods"]] == list(METHODS)

    for which in ("error", "memory"):
        png = view.export_plot(which, tmp_path / f"{which}.png")
        image = QImage(str(png))
        assert not image.isNull() and image.width() > 100 and image.height() > 100
    assert view.export_plot("error", tmp_path / "error.svg").stat().st_size > 0

    with pytest.raises(ExportError, match="unknown format"):
        view.export_curves(tmp_path / "curves.txt")
    with pytest.raises(ExportError, match="does not exist"):
        view.export_plot("error", tmp_path / "missing" / "error.png")
    with pytest.raises(ExportError, match="no plot named"):
        view.export_plot("phase", tmp_path / "x.png")


# -- independent truth ---------------------------------------------------------------------------------
def _fixed_point(f, z: float) -> float:
    for _ in range(10_000):
        z, prev = f(z), z
        if abs(z - prev) < 1e-15:
            break
    return z


@pytest.mark.parametrize(
    ("spec", "a", "f", "dz_da"),
    [
        (
            make_spec("a * tanh(z) + b", 1, params={"a": 0.5, "b": 0.3}, z0=0.0),
            0.5,
            lambda z: 0.5 * np.tanh(z) + 0.3,
            lambda z, a: np.tanh(z) / (1 - a * (1 - np.tanh(z) ** 2)),
        ),
        (
            load_spec("cosine"),
            1.0,
            np.cos,
            lambda z, a: np.cos(z) / (1 + a * np.sin(z)),
        ),
    ],
    ids=["a_tanh_z_plus_b", "cosine"],
)
def test_exact_implicit_gradient_equals_ift_by_hand(qtbot, view, spec, a, f, dz_da):
    setup(view, spec, ("a",), "sum", 10)
    report = run_view(qtbot, view)
    # the exact implicit method works at the forward solve's z* (tol 1e-10), the reference at
    # z* to 1e-12 polished by Newton: each equals d sum(z*) / da = dz*/da by the implicit
    # function theorem evaluated at its own z*
    z_fwd, z_ref = float(report.forward.z[0]), float(report.reference.z[0])
    assert z_ref == pytest.approx(_fixed_point(f, 0.0), abs=1e-14)
    assert z_fwd == pytest.approx(z_ref, abs=1e-9)
    exact = report.method("implicit_exact").gradient
    assert exact.shape == (1,)
    assert exact[0] == pytest.approx(dz_da(z_fwd, a), rel=1e-13)
    assert report.reference.gradient[0] == pytest.approx(dz_da(z_ref, a), rel=1e-13)
    assert cell(view, "implicit_exact", "rel_error") == format_error(
        report.method("implicit_exact").rel_error
    )


# -- the worker -----------------------------------------------------------------------------------------
def test_worker_newest_wins_and_errors_become_messages(qtbot, monkeypatch):
    import implicit_viz.gui.grad_worker as gw

    started = threading.Event()
    ran: list[float] = []

    def fake_lab(request: GradRequest, cancel=None):
        ran.append(request.spec.param("a").value)
        started.set()
        time.sleep(0.3)
        if request.spec.param("a").value == 0.7:
            raise RuntimeError("boom")
        return request

    monkeypatch.setattr(gw, "gradient_lab", fake_lab)
    worker = GradWorker()
    spec = load_spec("tanh_layer")
    busy: list[bool] = []
    failures: list[tuple[int, str]] = []
    worker.busyChanged.connect(busy.append)
    worker.failed.connect(lambda rid, msg: failures.append((rid, msg)))
    try:
        req = GradRequest(spec=spec, wrt=("a",))
        with qtbot.waitSignal(worker.reportReady, timeout=TIMEOUT) as first:
            worker.submit(req)
            started.wait(5)
            for a in (0.2, 0.3, 0.7):  # replaced while the first runs: only 0.7 runs next
                worker.submit(GradRequest(spec=spec.with_overrides({"a": a}), wrt=("a",)))
        assert first.args[0] == 1 and first.args[1] is req
        qtbot.waitUntil(lambda: bool(failures), timeout=TIMEOUT)
        assert failures == [(4, "internal error: RuntimeError: boom")]
        assert ran == [0.9, 0.7]
        qtbot.waitUntil(lambda: busy == [True, False, True, False], timeout=TIMEOUT)
        assert worker.duration(1) >= 0.3 and worker.duration(2) is None
    finally:
        worker.shutdown()


def test_worker_spec_error_message_as_is(qtbot):
    worker = GradWorker()
    try:
        req = GradRequest(spec=load_spec("tanh_layer"), wrt=("nope",))
        with pytest.raises(SpecError) as info:
            gradient_lab(req)
        with qtbot.waitSignal(worker.failed, timeout=TIMEOUT) as failed:
            worker.submit(req)
        assert failed.args == [1, str(info.value)]
    finally:
        worker.shutdown()


@pytest.mark.parametrize("width", [700, 950, 1400])
def test_plot_legends_never_widen_their_plots_beyond_the_window(qtbot, view, width):
    """The legends under the plots take as many columns as each plot's width holds, so no
    plot is laid out wider than its widget (its right part would be cut off)."""
    view.resize(width, 700)
    view.show()
    qtbot.waitExposed(view)
    qtbot.wait(50)
    for plot in (view._error_plot, view._memory_plot):
        pw = plot.widget
        item = pw.getPlotItem()
        assert item.geometry().width() <= pw.viewport().width() + 1
        assert 1 <= plot.legend.columnCount <= 3
