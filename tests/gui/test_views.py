"""The live plot views draw exactly what a snapshot holds, reuse their items, and survive
non-finite numbers. Snapshots are real solves (``run_live``) of the presets."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication, QSpinBox

from implicit_viz.core.live import LiveRequest, LiveSnapshot, SolverSettings, run_live
from implicit_viz.core.spec import load_spec
from implicit_viz.gui.colors import component_colors, solver_color, status_tint
from implicit_viz.gui.phase_view import PhaseView, staircase
from implicit_viz.gui.residual_view import (
    COLUMNS,
    RESIDUAL_FLOOR,
    ResidualView,
    format_cell,
    plotted_residuals,
)
from implicit_viz.gui.trajectory_view import TrajectoryView

ALL_SOLVERS = ("fixed_point", "damped", "anderson", "newton", "broyden")


@functools.cache
def snapshot(name: str, solvers: tuple[str, ...] | None = None, **values: float) -> LiveSnapshot:
    settings = SolverSettings() if solvers is None else SolverSettings(solvers=solvers)
    return run_live(LiveRequest(spec=load_spec(name), values=values, settings=settings))


def diverging() -> LiveSnapshot:
    """Gradient descent with eta = 0.6 > 2/L = 0.5: naive iteration diverges."""
    return snapshot("gradient_descent", eta=0.6)


def with_nonfinite(snap: LiveSnapshot) -> LiveSnapshot:
    """The first trace's last iterates and residuals made NaN / inf, a residual made zero."""
    first = snap.traces[0]
    traj = first.trajectory.copy()
    traj[-1, 0], traj[-2, -1] = np.nan, np.inf
    res = first.residuals.copy()
    res[-1], res[-2], res[1] = np.nan, np.inf, 0.0
    bad = dataclasses.replace(first, trajectory=traj, residuals=res)
    return dataclasses.replace(snap, traces=(bad, *snap.traces[1:]))


def shown(qtbot, widget):
    qtbot.addWidget(widget)
    widget.resize(720, 520)
    widget.show()
    return widget


def xy(item) -> tuple[np.ndarray, np.ndarray]:
    x, y = item.getData()
    return np.asarray(x, float), np.asarray(y, float)


# -- colours -------------------------------------------------------------------------------------
def test_solver_colors_distinct_hex():
    colors = [solver_color(s) for s in ALL_SOLVERS]
    assert len(set(colors)) == len(ALL_SOLVERS)
    assert all(c.startswith("#") and len(c) == 7 for c in colors)
    from implicit_viz.core.solvers import solver_class

    assert colors == [solver_class(s).color for s in ALL_SOLVERS]  # each declares its own
    assert solver_color("plugin") == solver_color("plugin")  # stable for unknown names


def test_component_colors_and_tints():
    assert len(set(component_colors(8))) == 8
    many = component_colors(64)
    assert len(many) == 64 and len(set(many)) == 64
    assert status_tint("converged") is None
    assert status_tint("diverged") and status_tint("periodic") and status_tint("max_iter")


# -- trajectory ----------------------------------------------------------------------------------
def test_trajectory_tabs_and_curves_equal_snapshot(qtbot):
    snap = snapshot("tanh_layer")
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(snap)
    assert view.tabs.count() == len(snap.traces) == 3
    plots = view.plot_widgets()
    assert list(plots) == [f"trajectory: {t.solver}" for t in snap.traces]
    for index, trace in enumerate(snap.traces):
        assert view.tabs.tabText(index) == trace.label
        curves = view.curves(trace.solver)
        assert len(curves) == snap.dim
        for i, curve in enumerate(curves):
            x, y = xy(curve)
            np.testing.assert_array_equal(x, np.arange(trace.iterations + 1))
            np.testing.assert_array_equal(y, trace.trajectory[:, i])
        title = plots[f"trajectory: {trace.solver}"].getPlotItem().titleLabel.text
        assert trace.message in title
    pi = view.current_plot().getPlotItem()
    assert pi.getAxis("bottom").labelText == "step"
    assert pi.getAxis("left").labelText == "z_i"
    legend = pi.legend
    assert legend is not None and legend.isVisible()
    assert [label.text for _, label in legend.items] == ["z_0", "z_1"]


def test_trajectory_reuses_items_and_keeps_tab(qtbot):
    first, second = snapshot("tanh_layer"), snapshot("tanh_layer", a=1.4)
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(first)
    view.tabs.setCurrentIndex(2)
    plots = view.plot_widgets()
    curves = {t.solver: view.curves(t.solver) for t in first.traces}
    view.show_snapshot(second)
    assert view.tabs.currentIndex() == 2
    assert view.current_plot() is plots["trajectory: newton"]
    again = view.plot_widgets()
    for key, plot in plots.items():
        assert again[key] is plot
    for trace in second.traces:
        new = view.curves(trace.solver)
        assert all(a is b for a, b in zip(new, curves[trace.solver], strict=True))
        np.testing.assert_array_equal(xy(new[1])[1], trace.trajectory[:, 1])


def test_trajectory_hidden_tab_is_drawn_when_shown(qtbot):
    first, second = snapshot("tanh_layer"), snapshot("tanh_layer", a=1.4)
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(first)
    view.show_snapshot(second)
    view.tabs.setCurrentIndex(1)  # anderson: drawn now, from the latest snapshot
    items = view.tabs.widget(1).getPlotItem().listDataItems()
    anderson = second.traces[1]
    assert len(items) == second.dim
    for i, item in enumerate(items):
        np.testing.assert_array_equal(xy(item)[1], anderson.trajectory[:, i])


def test_trajectory_large_dim_draws_every_component_without_legend(qtbot):
    snap = snapshot("deq_cell")
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(snap)
    for trace in snap.traces:
        curves = view.curves(trace.solver)
        assert len(curves) == 32
        for i in (0, 17, 31):
            np.testing.assert_array_equal(xy(curves[i])[1], trace.trajectory[:, i])
        assert len({c.opts["pen"].color().name() for c in curves}) == 32
    legend = view.current_plot().getPlotItem().legend
    assert legend is None or not legend.isVisible()


def test_trajectory_solver_set_change_keeps_current_solver(qtbot):
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(snapshot("tanh_layer"))
    view.tabs.setCurrentIndex(2)  # newton
    five = snapshot("tanh_layer", ALL_SOLVERS)
    view.show_snapshot(five)
    assert view.solvers() == ALL_SOLVERS
    assert view.tabs.count() == 5
    assert view.tabs.currentIndex() == ALL_SOLVERS.index("newton")
    assert [view.tabs.tabText(i) for i in range(5)] == [t.label for t in five.traces]
    # dim change (2 -> 1): the curves are rebuilt
    view.show_snapshot(snapshot("logistic"))
    assert view.tabs.count() == 3
    assert len(view.curves("fixed_point")) == 1


def test_trajectory_nonfinite_values_are_gaps(qtbot):
    snap = with_nonfinite(snapshot("tanh_layer"))
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(snap)
    y0 = xy(view.curves("fixed_point")[0])[1]
    assert np.isnan(y0[-1])
    y1 = xy(view.curves("fixed_point")[1])[1]
    assert np.isnan(y1[-2])  # inf -> gap
    QApplication.processEvents()
    assert not view.grab().isNull()


def test_trajectory_diverged_title(qtbot):
    snap = diverging()
    view = shown(qtbot, TrajectoryView())
    view.show_snapshot(snap)
    title = view.current_plot().getPlotItem().titleLabel.text
    assert snap.traces[0].status == "diverged"
    assert "diverged at step" in title


# -- phase portrait ------------------------------------------------------------------------------
def test_phase_portrait_paths_and_markers(qtbot):
    snap = snapshot("tanh_layer")
    view = shown(qtbot, PhaseView())
    view.show_snapshot(snap)
    assert view.mode() == "phase"
    assert view.components() == (0, 1)
    pi = view.current_plot().getPlotItem()
    assert (pi.getAxis("bottom").labelText, pi.getAxis("left").labelText) == ("z_0", "z_1")
    for trace in snap.traces:
        items = view.solver_items(trace.solver)
        x, y = xy(items.path)
        np.testing.assert_array_equal(x, trace.trajectory[:, 0])
        np.testing.assert_array_equal(y, trace.trajectory[:, 1])
        dots = items.dots.getData()
        np.testing.assert_array_equal(dots[0], trace.trajectory[:, 0])
        np.testing.assert_array_equal(dots[1], trace.trajectory[:, 1])
        np.testing.assert_array_equal(
            view.marker_points("start")[trace.solver], trace.trajectory[:1]
        )
        np.testing.assert_array_equal(
            view.marker_points("end")[trace.solver], trace.trajectory[-1:]
        )
        assert len(view.marker_points("cycle")[trace.solver]) == 0
    labels = [label.text for _, label in pi.legend.items]
    assert [t.label for t in snap.traces] == labels[: len(snap.traces)]
    assert "start" in labels and "end" in labels
    assert view.plot_widgets() == {"phase": view.current_plot()}


def test_phase_components_change_redraws_same_items(qtbot):
    snap = snapshot("deq_cell")
    view = shown(qtbot, PhaseView())
    view.show_snapshot(snap)
    before = {t.solver: view.solver_items(t.solver).path for t in snap.traces}
    with qtbot.waitSignal(view.componentsChanged) as blocker:
        view.set_components(3, 7)
    assert blocker.args == [3, 7]
    assert view.components() == (3, 7)
    for trace in snap.traces:
        path = view.solver_items(trace.solver).path
        assert path is before[trace.solver]
        x, y = xy(path)
        np.testing.assert_array_equal(x, trace.trajectory[:, 3])
        np.testing.assert_array_equal(y, trace.trajectory[:, 7])
    pi = view.current_plot().getPlotItem()
    assert (pi.getAxis("bottom").labelText, pi.getAxis("left").labelText) == ("z_3", "z_7")
    # the spin boxes drive it too
    spin_i, spin_j = view.findChildren(QSpinBox)
    assert (spin_i.value(), spin_j.value(), spin_j.maximum()) == (3, 7, 31)
    with qtbot.waitSignal(view.componentsChanged) as blocker:
        spin_j.setValue(30)
    assert blocker.args == [3, 30]
    first = snap.traces[0]
    np.testing.assert_array_equal(
        xy(view.solver_items(first.solver).path)[1], first.trajectory[:, 30]
    )


def test_phase_components_follow_dim(qtbot):
    view = shown(qtbot, PhaseView())
    view.set_components(5, 7)  # before any snapshot: kept for the next one
    assert view.components() == (5, 7)
    deq = snapshot("deq_cell")
    view.show_snapshot(deq)
    assert view.components() == (5, 7)
    np.testing.assert_array_equal(
        xy(view.solver_items("newton").path)[0], deq.traces[-1].trajectory[:, 5]
    )
    with qtbot.waitSignal(view.componentsChanged) as blocker:
        view.show_snapshot(snapshot("tanh_layer"))  # dim 2: back to (0, 1)
    assert blocker.args == [0, 1]
    spin_i, spin_j = view.findChildren(QSpinBox)
    assert (spin_i.maximum(), spin_j.maximum()) == (1, 1)


def test_cobweb_for_one_dimension(qtbot):
    snap = snapshot("logistic")
    view = shown(qtbot, PhaseView())
    view.show_snapshot(snap)
    assert view.mode() == "cobweb"
    assert all(not s.isVisible() for s in view.findChildren(QSpinBox))
    curve, diagonal = view.cobweb_items()
    x, fx = xy(curve)
    np.testing.assert_array_equal(x, snap.cobweb.x)
    np.testing.assert_array_equal(fx, snap.cobweb.fx)
    dx, dy = xy(diagonal)
    np.testing.assert_array_equal(dx, dy)
    assert (dx[0], dx[-1]) == (snap.cobweb.x[0], snap.cobweb.x[-1])

    def on_map(z):
        return np.interp(z, snap.cobweb.x, snap.cobweb.fx)

    for trace in snap.traces:
        z = trace.trajectory[:, 0]
        sx, sy = xy(view.solver_items(trace.solver).path)
        assert len(sx) == 2 * len(z) - 1
        np.testing.assert_array_equal(sx[0::2], z)  # (z_k, z_k): on the diagonal
        np.testing.assert_array_equal(sy[0::2], z)
        np.testing.assert_array_equal(sx[1::2], z[:-1])  # vertical: (z_k, z_k) -> (z_k, z_k+1)
        np.testing.assert_array_equal(sy[1::2], z[1:])
        np.testing.assert_array_equal(view.marker_points("end")[trace.solver], [[z[-1], z[-1]]])
        np.testing.assert_array_equal(view.marker_points("start")[trace.solver], [[z[0], z[0]]])
        assert view.solver_items(trace.solver).dots is None
    # plain iteration: z_{k+1} = f(z_k), so the corners lie on the map's curve
    fp = snap.traces[0]
    assert fp.solver == "fixed_point"
    sx, sy = xy(view.solver_items("fixed_point").path)
    np.testing.assert_allclose(sy[1::2], on_map(sx[1::2]), atol=2e-3)
    # periodic: the cycle is marked on the diagonal
    assert fp.status == "periodic" and fp.cycle is not None
    cycle = view.marker_points("cycle")
    np.testing.assert_array_equal(cycle["fixed_point"], np.column_stack([fp.cycle, fp.cycle]))
    assert len(cycle["fixed_point"]) == 2 and len(cycle["newton"]) == 0
    # a converged solver ends on a fixed point of the map
    newton = snap.traces[-1]
    assert newton.status == "converged"
    assert abs(on_map(newton.z[0]) - newton.z[0]) < 2e-3
    pi = view.current_plot().getPlotItem()
    assert (pi.getAxis("bottom").labelText, pi.getAxis("left").labelText) == ("z", "f(z)")


def test_staircase_corners():
    sx, sy = staircase(np.array([0.0, 1.0, 2.0]))
    assert list(zip(sx, sy)) == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]


def test_phase_mode_switch_and_nonfinite(qtbot):
    view = shown(qtbot, PhaseView())
    view.show_snapshot(snapshot("tanh_layer"))
    view.show_snapshot(snapshot("logistic"))
    assert view.mode() == "cobweb"
    view.show_snapshot(with_nonfinite(snapshot("tanh_layer")))
    assert view.mode() == "phase"
    assert all(s.isVisibleTo(view) for s in view.findChildren(QSpinBox))
    x, y = xy(view.solver_items("fixed_point").path)
    assert np.isnan(x[-1]) and np.isnan(y[-2])
    end = view.marker_points("end")["fixed_point"]
    np.testing.assert_array_equal(end, snapshot("tanh_layer").traces[0].trajectory[-3:-2])
    view.show_snapshot(with_nonfinite(snapshot("logistic")))
    QApplication.processEvents()
    assert not view.grab().isNull()


# -- residuals and table -------------------------------------------------------------------------
def test_residual_curves_tolerance_and_legend(qtbot):
    snap = snapshot("tanh_layer")
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snap)
    pi = view.current_plot().getPlotItem()
    assert pi.getAxis("left").labelText == "||f(z) - z||"
    assert pi.getAxis("bottom").labelText == "step"
    curves = view.curves()
    assert list(curves) == [t.solver for t in snap.traces]
    for trace in snap.traces:
        x, y = curves[trace.solver].getOriginalDataset()
        np.testing.assert_array_equal(x, np.arange(trace.iterations + 1))
        np.testing.assert_array_equal(y, trace.residuals)
        _, shown_y = xy(curves[trace.solver])  # the log axis shows log10 of the residuals
        np.testing.assert_allclose(10**shown_y, trace.residuals, rtol=1e-12)
        assert curves[trace.solver].opts["pen"].color().name().upper() == solver_color(trace.solver)
    assert view.tol_line().value() == pytest.approx(np.log10(snap.tol))
    assert view.tol_line().label.toPlainText() == "tol"
    assert [label.text for _, label in pi.legend.items] == [t.label for t in snap.traces]
    assert view.plot_widgets() == {"residuals": view.current_plot()}


def test_residual_table_rows_equal_trace_rows(qtbot):
    snap = snapshot("tanh_layer")
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snap)
    table = view.table()
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == [
        "solver",
        "outcome",
        "iterations",
        "residual",
        "f-evals",
        "time (ms)",
        "observed rate",
        "predicted rate",
        "ρ(df/dz*)",
        "z*",
    ]
    assert table.rowCount() == len(snap.traces)
    for row, trace in enumerate(snap.traces):
        values = trace.row()
        texts = [table.item(row, c).text() for c in range(table.columnCount())]
        assert texts == [format_cell(values[key]) for key, _ in COLUMNS]
        assert texts[1] == trace.message and texts[2] == str(trace.iterations)
        assert float(texts[3]) == pytest.approx(trace.residual, rel=5e-3)


def test_residual_table_marks_diverged(qtbot):
    snap = diverging()
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snap)
    table = view.table()
    statuses = [t.status for t in snap.traces]
    assert statuses[0] == "diverged" and "converged" in statuses
    for row, trace in enumerate(snap.traces):
        outcome = table.item(row, 1)
        assert outcome.text() == trace.message
        tint = status_tint(trace.status)
        if tint:
            assert outcome.background().color().name().upper() == tint.upper()
        else:
            assert outcome.background().style().name == "NoBrush"
    assert "diverged" in table.item(0, 1).text()
    col = [k for k, _ in COLUMNS]
    assert table.item(0, col.index("spectral_radius")).text() == "—"  # none at a diverged end
    assert table.item(0, col.index("z")).text() == "—"  # no z* either


def test_residual_view_reuses_items_and_follows_solver_set(qtbot):
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot("tanh_layer"))
    curves, cell = view.curves(), view.table().item(0, 1)
    second = snapshot("tanh_layer", a=1.4)
    view.show_snapshot(second)
    assert all(view.curves()[k] is v for k, v in curves.items())
    assert view.table().item(0, 1) is cell
    assert cell.text() == second.traces[0].message
    five = snapshot("tanh_layer", ALL_SOLVERS)
    view.show_snapshot(five)
    assert list(view.curves()) == list(ALL_SOLVERS)
    assert view.table().rowCount() == 5
    assert [view.table().item(r, 0).text() for r in range(5)] == [t.label for t in five.traces]
    view.show_snapshot(diverging())  # rows shrink, tints follow the new rows
    assert view.table().rowCount() == 3
    assert view.table().item(0, 1).background().color().name().upper() == (
        status_tint("diverged").upper()
    )


def test_residual_zero_and_nonfinite_do_not_break_the_log_plot(qtbot):
    snap = with_nonfinite(snapshot("tanh_layer"))
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snap)
    _, y = view.curves()["fixed_point"].getOriginalDataset()
    assert y[1] == RESIDUAL_FLOOR
    assert np.isnan(y[-1]) and np.isnan(y[-2])
    np.testing.assert_array_equal(y[2:-2], snap.traces[0].residuals[2:-2])
    QApplication.processEvents()
    assert not view.grab().isNull()
    np.testing.assert_array_equal(
        plotted_residuals(np.array([0.0, np.inf, 2.0])), [RESIDUAL_FLOOR, np.nan, 2.0]
    )


def test_format_cell():
    assert format_cell(None) == "—"
    assert format_cell(3.2e-07) == "3.2e-07"
    assert format_cell(0.852) == "0.852"
    assert format_cell(85) == "85"
    assert format_cell(float("nan")) == "—"
    assert format_cell("converged in 3 steps") == "converged in 3 steps"
