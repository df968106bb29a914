"""Sweep pictures drawn offscreen with QPainter: the CLI's ``--png`` and the app's export.

The picture has the grid image (or, for a 1-D sweep with an orbit, the orbit diagram), axes with
ticks in parameter units, a title and a legend. Colours come from
:mod:`implicit_viz.core.palette`, so the CLI and the app agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from implicit_viz.core.export import ExportError
from implicit_viz.core.files import FileWriteError, atomic_write_bytes
from implicit_viz.core.palette import cell_colors, legend
from implicit_viz.core.sweep import SweepResult, axis_label

PLOT = 560
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 80, 320, 44, 60


def ensure_gui_app():
    """A Qt application for offscreen drawing (the platform is offscreen unless one is set).

    It is a ``QApplication``, not a bare ``QGuiApplication``: widgets created later in the same
    process (the app, tests) need one, and Qt allows a single application object per process.
    The refcount guard (:mod:`implicit_viz.gui._refcount_guard`) is started first.
    """
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from implicit_viz.gui._refcount_guard import guard_singletons

    guard_singletons()
    app = QGuiApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication([])
    return app


def render_sweep(result: SweepResult, title: str | None = None):
    """Draw a sweep into a QImage (RGB)."""
    ensure_gui_app()
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen

    req = result.request
    one_d = req.y is None
    plot_h = PLOT if not one_d or result.orbit is not None else 120
    width = MARGIN_L + PLOT + MARGIN_R
    height = MARGIN_T + plot_h + MARGIN_B
    img = QImage(width, height, QImage.Format.Format_RGB888)
    img.fill(QColor(255, 255, 255))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    font = QFont()
    font.setPixelSize(12)
    p.setFont(font)
    plot = QRectF(MARGIN_L, MARGIN_T, PLOT, plot_h)

    if one_d and result.orbit is not None:
        rgb = cell_colors(
            result.status, result.iterations, result.basin, result.period, req.options.max_iter
        )
        orbit = result.orbit[:, :, 0].astype(float)  # (nx, M)
        finite = np.isfinite(orbit)
        lo, hi = (
            (float(orbit[finite].min()), float(orbit[finite].max())) if finite.any() else (0, 1)
        )
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        # Rasterise the points (a density image) instead of drawing them one by one.
        xs = result.x_values
        cols = np.rint((xs - xs[0]) / max(xs[-1] - xs[0], 1e-300) * (PLOT - 1)).astype(int)
        rows = np.rint((hi - orbit) / (hi - lo) * (plot_h - 1))
        density = np.zeros((plot_h, PLOT))
        ci = np.broadcast_to(cols[:, None], orbit.shape)[finite]
        np.add.at(density, (rows[finite].astype(int), ci), 1.0)
        shade = np.clip(np.log1p(density) / np.log1p(max(density.max(), 1.0)), 0, 1)
        gray = np.where(density > 0, 200 - 200 * shade, 255).astype(np.uint8)
        dens_rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        qd = QImage(dens_rgb.data, PLOT, plot_h, 3 * PLOT, QImage.Format.Format_RGB888).copy()
        p.drawImage(plot, qd)
        # status strip under the orbit diagram
        strip = np.ascontiguousarray(rgb[0][None, :, :].repeat(6, axis=0))
        qs = QImage(strip.data, strip.shape[1], 6, 3 * strip.shape[1], QImage.Format.Format_RGB888)
        p.drawImage(QRectF(plot.left(), plot.bottom() + 2, PLOT, 6), qs.copy())
        y_ticks = (lo, hi)
        y_title = "z[0] (last iterates)"
    else:
        # row 0 (y = lo) at the bottom: colours are written straight into a flipped buffer
        data = cell_colors(
            result.status[::-1],
            result.iterations[::-1],
            result.basin[::-1],
            result.period[::-1],
            req.options.max_iter,
        )
        ny, nx = data.shape[:2]
        qimg = QImage(data.data, nx, ny, 3 * nx, QImage.Format.Format_RGB888)  # no copy
        p.drawImage(
            plot,
            qimg.scaled(
                PLOT,
                int(plot_h),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.FastTransformation,
            ),
        )
        y_ticks = (req.y.lo, req.y.hi) if req.y else None
        y_title = axis_label(req.y.target, req.spec) if req.y else ""

    # frame, ticks, labels
    p.setPen(QPen(QColor(0, 0, 0), 1))
    p.drawRect(plot)
    for t in np.linspace(0, 1, 5):
        x = plot.left() + t * PLOT
        p.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 5))
        val = req.x.lo + t * (req.x.hi - req.x.lo)
        p.drawText(
            QRectF(x - 40, plot.bottom() + 8, 80, 16), Qt.AlignmentFlag.AlignHCenter, f"{val:.3g}"
        )
        if y_ticks is not None:
            y = plot.bottom() - t * plot_h
            p.drawLine(QPointF(plot.left() - 5, y), QPointF(plot.left(), y))
            yval = y_ticks[0] + t * (y_ticks[1] - y_ticks[0])
            p.drawText(
                QRectF(0, y - 8, MARGIN_L - 8, 16), Qt.AlignmentFlag.AlignRight, f"{yval:.3g}"
            )
    p.drawText(
        QRectF(plot.left(), plot.bottom() + 28, PLOT, 18),
        Qt.AlignmentFlag.AlignHCenter,
        axis_label(req.x.target, req.spec),
    )
    if y_title:
        p.save()
        p.translate(14, plot.center().y())
        p.rotate(-90)
        p.drawText(QRectF(-plot_h / 2, -8, plot_h, 18), Qt.AlignmentFlag.AlignHCenter, y_title)
        p.restore()
    bold = QFont(font)
    bold.setBold(True)
    p.setFont(bold)
    head = title or f"{req.spec.name}: {req.solver}, {req.dtype}, tol {req.options.tol:g}"
    if result.cancelled:
        head += "  (cancelled: grey cells not solved)"
    p.drawText(QRectF(MARGIN_L, 10, PLOT + MARGIN_R - 10, 20), Qt.AlignmentFlag.AlignLeft, head)
    p.setFont(font)

    # legend
    lx, ly = plot.right() + 16, plot.top()
    for label, color in legend(result.status, result.basin, result.period, result.fixed_points):
        p.fillRect(QRectF(lx, ly + 2, 12, 12), QColor(*color))
        p.setPen(QPen(QColor(0, 0, 0), 1))
        p.drawRect(QRectF(lx, ly + 2, 12, 12))
        p.drawText(QRectF(lx + 18, ly, MARGIN_R - 40, 16), Qt.AlignmentFlag.AlignLeft, label)
        ly += 18
    if (result.status == 1).any():
        p.drawText(
            QRectF(lx, ly + 6, MARGIN_R - 24, 32),
            Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap,
            "converged cells darker = more iterations",
        )
    p.end()
    return img


def png_bytes(image) -> bytes:
    """A QImage encoded as PNG, in memory."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = image.save(buf, "PNG")
    buf.close()
    return bytes(data.data()) if ok else b""


def save_sweep_png(result: SweepResult, path: str | Path, title: str | None = None) -> Path:
    """Render and write a PNG atomically (a failure leaves an old file as it was);
    :class:`ExportError` naming the path when it cannot be written."""
    p = Path(path)
    data = png_bytes(render_sweep(result, title))
    if not data:
        raise ExportError(f"cannot write '{p}': Qt could not encode the PNG")
    try:
        atomic_write_bytes(p, data)
    except FileWriteError as exc:
        raise ExportError(str(exc)) from None
    return p
