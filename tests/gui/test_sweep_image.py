"""The sweep picture (``sweep --png``): written atomically, and each cell in its colour."""

from __future__ import annotations

import os

import pytest
from PySide6.QtGui import QImage

from implicit_viz.core.export import ExportError
from implicit_viz.core.palette import cell_colors
from implicit_viz.core.spec import load_spec
from implicit_viz.core.sweep import Axis, SweepRequest, sweep
from implicit_viz.gui.sweep_image import MARGIN_L, MARGIN_T, PLOT, save_sweep_png
from tests.helpers import fail_writes_after


@pytest.fixture(scope="module")
def result():
    spec = load_spec("tanh_layer")
    return sweep(SweepRequest(spec, Axis("a", 0.0, 3.0, 8), Axis("x[0]", -2.0, 2.0, 4)))


def test_png_cells_have_their_colours_with_row_zero_at_the_bottom(tmp_path, result):
    img = QImage(str(save_sweep_png(result, tmp_path / "s.png")))
    rgb = cell_colors(
        result.status,
        result.iterations,
        result.basin,
        result.period,
        result.request.options.max_iter,
    )
    ny, nx = result.status.shape
    for iy in range(ny):
        for ix in range(nx):
            x = MARGIN_L + int((ix + 0.5) * PLOT / nx)
            y = MARGIN_T + PLOT - 1 - int((iy + 0.5) * PLOT / ny)  # y = lo at the bottom
            c = img.pixelColor(x, y)
            assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in rgb[iy, ix])


@pytest.mark.parametrize("failure", ["enospc", "ctrl-c"])
def test_failed_png_write_keeps_the_old_file(tmp_path, monkeypatch, result, failure):
    path = tmp_path / "s.png"
    old = b"an earlier picture" * 50
    path.write_bytes(old)
    fail_writes_after(monkeypatch, 100, KeyboardInterrupt() if failure == "ctrl-c" else None)
    with pytest.raises(KeyboardInterrupt if failure == "ctrl-c" else ExportError) as info:
        save_sweep_png(result, path)
    if failure == "enospc":
        assert str(path) in str(info.value)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_png_to_a_full_device_is_an_export_error(tmp_path, result):
    link = tmp_path / "full.png"
    link.symlink_to("/dev/full")
    with pytest.raises(ExportError, match="no space left"):
        save_sweep_png(result, link)
    assert link.is_symlink()
