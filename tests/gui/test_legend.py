"""The legend's corner: the one where it hides the fewest plotted samples (pure functions),
and the live views moving their legends there (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from implicit_viz.gui.legend import (
    CORNERS,
    SAMPLE_STEP,
    corner_counts,
    emptiest_corner,
    place_legend,
    sample_polyline,
)
from implicit_viz.gui.residual_view import ResidualView
from tests.gui.test_views import diverging, shown, snapshot


def test_samples_lie_on_the_segments_and_skip_gaps():
    xs = np.array([0.0, 1.0, np.nan, 0.0, 0.0])
    ys = np.array([0.0, 1.0, 5.0, 0.5, 0.9])
    px, py = sample_polyline(xs, ys)
    assert np.isfinite(px).all() and np.isfinite(py).all()
    on_diagonal = np.isclose(px, py)
    on_vertical = np.isclose(px, 0.0) & (py >= 0.5 - 1e-12) & (py <= 0.9 + 1e-12)
    assert (on_diagonal | on_vertical).all()  # nothing across the gap (x = 1 -> 0 at y = 5)
    # spacing: the diagonal of length sqrt(2) gets about sqrt(2) / SAMPLE_STEP samples
    assert abs(on_diagonal.sum() - np.sqrt(2) / SAMPLE_STEP) < 5


def test_corner_counts_by_hand():
    xs = np.array([0.95, 0.95, 0.05, 0.5, 1.5])
    ys = np.array([0.95, 0.05, 0.95, 0.5, 0.95])  # the last one is outside the view
    assert corner_counts(xs, ys, 0.2, 0.2) == {
        "top-right": 1,
        "top-left": 1,
        "bottom-right": 1,
        "bottom-left": 0,
    }


def test_a_falling_curve_leaves_the_top_right_free():
    x = np.linspace(0, 1, 50)
    assert emptiest_corner([(x, 1 - x)], 0.3, 0.3) == "top-right"  # tie with bottom-left


def test_a_rising_curve_sends_the_legend_elsewhere():
    x = np.linspace(0, 1, 50)
    corner = emptiest_corner([(x, x)], 0.3, 0.3)
    assert corner == "top-left"  # the first corner the rising diagonal misses


def test_a_long_segment_through_a_corner_counts_there():
    # two vertices, both outside the top-right box; the segment between them crosses it
    seg = (np.array([0.5, 1.0]), np.array([1.0, 0.5]))
    assert emptiest_corner([seg], 0.3, 0.3) != "top-right"


def test_markers_count_and_a_blank_plot_keeps_the_first_corner():
    assert emptiest_corner([], 0.3, 0.3) == CORNERS[0]
    dots = (np.array([0.9, 0.1]), np.array([0.9, 0.9]))
    assert emptiest_corner([], 0.3, 0.3, points=[dots]) == "bottom-right"


def legend_corner_in_pixels(view: ResidualView) -> str:
    """Which quarter of the plot's view box the legend's centre lies in, read off the scene."""
    pi = view.current_plot().getPlotItem()
    vb = pi.getViewBox().sceneBoundingRect()
    c = pi.legend.sceneBoundingRect().center()
    right = c.x() > vb.center().x()
    top = c.y() < vb.center().y()  # scene y grows downwards
    return f"{'top' if top else 'bottom'}-{'right' if right else 'left'}"


def test_residual_legend_moves_off_a_diverging_curve_and_back(qtbot):
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot("tanh_layer"))  # residuals fall: top-right is free
    qtbot.wait(50)
    assert place_legend(view.current_plot()) == "top-right"
    assert legend_corner_in_pixels(view) == "top-right"
    view.show_snapshot(diverging())  # fixed_point's residual climbs to the top right
    qtbot.wait(50)
    corner = view.current_plot().getPlotItem().legend.corner
    assert corner != "top-right"
    assert legend_corner_in_pixels(view) == corner


class _Drag:
    """The parts of a pyqtgraph drag event that LegendItem reads."""

    def button(self):
        return Qt.MouseButton.LeftButton

    def accept(self):
        pass

    def pos(self):
        return QPointF(-30, 20)

    def lastPos(self):
        return QPointF(0, 0)


def test_a_legend_the_user_dragged_stays_put(qtbot):
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot("tanh_layer"))
    legend = view.current_plot().getPlotItem().legend
    legend.mouseDragEvent(_Drag())
    assert legend.auto_place is False
    before = legend.pos()
    view.show_snapshot(diverging())
    assert place_legend(view.current_plot()) is None
    assert legend.pos() == before


@pytest.mark.parametrize("name", ["tanh_layer", "logistic"])
def test_views_still_draw_with_auto_placed_legends(qtbot, name):
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot(name))
    assert view.current_plot().getPlotItem().legend.corner in CORNERS


def test_a_squeezed_plot_lays_its_legend_out_in_one_row_and_back(qtbot):
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot("tanh_layer"))  # three solvers
    qtbot.wait(50)
    legend = view.current_plot().getPlotItem().legend
    assert legend.columnCount == 1 and legend.rowCount == 3
    view.current_plot().setFixedHeight(130)  # a pane squeezed by its neighbours
    qtbot.waitUntil(lambda: legend.columnCount == 3, timeout=5000)  # re-placed on resize
    assert legend.rowCount == 1
    view.current_plot().setMinimumHeight(0)
    view.current_plot().setMaximumHeight(16777215)
    view.current_plot().setFixedHeight(500)
    qtbot.waitUntil(lambda: legend.columnCount == 1, timeout=5000)


@pytest.mark.parametrize("width", [200, 330])
def test_a_squeezed_legend_is_never_wider_than_its_plot(qtbot, width):
    """A plot short and narrow: the legend spreads over as many columns as the plot's width
    holds, and no more (all its entries stay in view)."""
    view = shown(qtbot, ResidualView())
    view.show_snapshot(snapshot("tanh_layer"))  # three solvers
    qtbot.wait(50)
    pw = view.current_plot()
    legend = pw.getPlotItem().legend
    pw.setFixedSize(width, 130)
    qtbot.waitUntil(lambda: legend.columnCount != 1 or width < 300, timeout=5000)
    qtbot.wait(100)
    place_legend(pw)
    vb = pw.getPlotItem().getViewBox()
    box = legend.mapRectToScene(legend.boundingRect())
    view_box = vb.mapRectToScene(vb.boundingRect())
    assert box.width() <= view_box.width()
    assert view_box.left() <= box.left() and box.right() <= view_box.right() + 1
    assert 1 <= legend.columnCount <= 3
