"""Plots of the live views saved as PNG, SVG and PDF; bad destinations raise ExportError."""

from __future__ import annotations

import functools
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from implicit_viz.core.export import ExportError
from implicit_viz.core.live import LiveRequest, LiveSnapshot, run_live
from implicit_viz.core.spec import load_spec
from implicit_viz.gui.phase_view import PhaseView
from implicit_viz.gui.plot_export import PLOT_SUFFIXES, PNG_SCALE, export_plot
from implicit_viz.gui.residual_view import ResidualView
from implicit_viz.gui.trajectory_view import TrajectoryView
from tests.helpers import fail_writes_after

SVG_NS = "{http://www.w3.org/2000/svg}"


@functools.cache
def snapshot(name: str) -> LiveSnapshot:
    return run_live(LiveRequest(spec=load_spec(name)))


@pytest.fixture
def residual_view(qtbot):
    view = ResidualView()
    qtbot.addWidget(view)
    view.resize(700, 560)
    view.show()
    view.show_snapshot(snapshot("tanh_layer"))
    QApplication.processEvents()
    return view


def plot_size(plot: pg.PlotWidget) -> tuple[int, int]:
    rect = plot.getPlotItem().sceneBoundingRect()
    return round(rect.width()), round(rect.height())


def non_background_fraction(path) -> float:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB32)
    pixels = pg.functions.ndarray_from_qimage(image)[..., :3].reshape(-1, 3)
    background = pixels[0]  # the top-left corner is background
    return float(np.any(pixels != background, axis=1).mean())


def test_suffixes():
    assert PLOT_SUFFIXES == (".png", ".svg", ".pdf")


def test_png_has_twice_the_size_and_is_not_blank(residual_view, tmp_path):
    plot = residual_view.current_plot()
    out = export_plot(plot, tmp_path / "residuals.png")
    assert out == tmp_path / "residuals.png"
    image = QImage(str(out))
    assert not image.isNull()
    w, h = plot_size(plot)
    assert (image.width(), image.height()) == (PNG_SCALE * w, PNG_SCALE * h)
    assert 0.01 < non_background_fraction(out) < 0.9


@pytest.mark.parametrize("name", ["tanh_layer", "logistic", "deq_cell"])
@pytest.mark.parametrize("view_cls", [TrajectoryView, PhaseView, ResidualView])
def test_every_view_exports_png(qtbot, tmp_path, view_cls, name):
    view = view_cls()
    qtbot.addWidget(view)
    view.resize(640, 480)
    view.show()
    view.show_snapshot(snapshot(name))
    QApplication.processEvents()
    for key, plot in view.plot_widgets().items():
        out = export_plot(plot, tmp_path / f"{key.replace(': ', '_')}.png")
        assert non_background_fraction(out) > 0.005
    assert view.current_plot() in view.plot_widgets().values()


def test_svg_is_xml_with_paths(residual_view, tmp_path):
    plot = residual_view.current_plot()
    out = export_plot(plot, tmp_path / "residuals.svg")
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG_NS}svg"
    assert out.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    tags = {el.tag for el in root.iter()}
    assert f"{SVG_NS}path" in tags or f"{SVG_NS}polyline" in tags
    w, h = plot_size(plot)
    assert root.get("viewBox") == f"0 0 {w} {h}"
    texts = " ".join(el.text or "" for el in root.iter(f"{SVG_NS}text"))
    assert "step" in texts and "tol" in texts  # axis label and tolerance label are vector text


def test_pdf_page_has_the_plot_shape(residual_view, tmp_path):
    plot = residual_view.current_plot()
    out = export_plot(plot, tmp_path / "residuals.pdf")
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(data) > 5000
    box = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert box is not None
    w, h = plot_size(plot)
    assert float(box.group(1)) / float(box.group(2)) == pytest.approx(w / h, rel=0.01)


def test_suffix_is_case_insensitive(residual_view, tmp_path):
    out = export_plot(residual_view.current_plot(), tmp_path / "R.PNG")
    assert not QImage(str(out)).isNull()


def test_plot_item_and_layout_widget_are_accepted(qtbot, tmp_path):
    layout = pg.GraphicsLayoutWidget()
    qtbot.addWidget(layout)
    layout.resize(400, 300)
    item = layout.addPlot(title="two")
    item.plot([0, 1, 2], [2, 0, 1], pen="r")
    layout.show()
    QApplication.processEvents()
    assert non_background_fraction(export_plot(layout, tmp_path / "layout.png")) > 0.001
    assert export_plot(item, tmp_path / "item.svg").stat().st_size > 0
    assert export_plot(item, tmp_path / "item.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", ["plot.jpg", "plot", "plot.png.txt"])
def test_unknown_suffix_raises(residual_view, tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ExportError, match="unknown format") as info:
        export_plot(residual_view.current_plot(), path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)
    assert not path.exists()


def test_missing_directory_raises(residual_view, tmp_path):
    path = tmp_path / "no" / "such" / "plot.svg"
    with pytest.raises(ExportError, match="does not exist") as info:
        export_plot(residual_view.current_plot(), path)
    assert str(path) in str(info.value)


def test_directory_as_path_raises(residual_view, tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ExportError, match="directory") as info:
        export_plot(residual_view.current_plot(), folder)
    assert str(folder) in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory_raises(residual_view, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        path = locked / "plot.pdf"
        with pytest.raises(ExportError) as info:
            export_plot(residual_view.current_plot(), path)
        assert str(path) in str(info.value)
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("suffix", PLOT_SUFFIXES)
def test_failed_write_raises(residual_view, tmp_path, suffix):
    """The bytes are really written: a device that is always full makes the write fail."""
    path = tmp_path / f"full{suffix}"
    path.symlink_to("/dev/full")
    with pytest.raises(ExportError) as info:
        export_plot(residual_view.current_plot(), path)
    assert str(path) in str(info.value)
    assert "space" in str(info.value).lower()


def test_not_a_plot_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match="PlotWidget"):
        export_plot(object(), tmp_path / "x.png")


# --- atomic writes (issue 15): a failed export leaves the old file; links are written through ---


@pytest.mark.parametrize("suffix", PLOT_SUFFIXES)
@pytest.mark.parametrize("failure", ["enospc", "ctrl-c"])
def test_failed_export_keeps_the_old_file(residual_view, tmp_path, monkeypatch, suffix, failure):
    path = tmp_path / f"plot{suffix}"
    old = b"an earlier figure\n" * 100
    path.write_bytes(old)
    fail_writes_after(monkeypatch, 64, KeyboardInterrupt() if failure == "ctrl-c" else None)
    expect = KeyboardInterrupt if failure == "ctrl-c" else ExportError
    with pytest.raises(expect) as info:
        export_plot(residual_view.current_plot(), path)
    if failure == "enospc":
        assert str(path) in str(info.value) and "no space left" in str(info.value)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_export_through_a_symlink_keeps_the_link(residual_view, tmp_path):
    target = tmp_path / "real.svg"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.svg"
    link.symlink_to(target)
    export_plot(residual_view.current_plot(), link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().lstrip().startswith("<?xml")
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
