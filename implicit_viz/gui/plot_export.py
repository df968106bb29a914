"""Save a pyqtgraph plot as PNG, SVG or PDF (the app's "Export plot" action).

The plot's part of its scene is rendered into memory (PNG: a QImage at twice the on-screen size
with device pixel ratio 2; SVG: ``QSvgGenerator``; PDF: ``QPdfWriter`` on a page of the plot's
shape, vector) and the bytes are written atomically (a temporary file beside the target, renamed
into place; a symbolic link is written through), so a failure leaves an old file as it was and is
an :class:`~implicit_viz.core.export.ExportError` naming the path and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QMarginsF,
    QRect,
    QRectF,
    QSize,
    QSizeF,
    Qt,
)
from PySide6.QtGui import QColor, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QPicture
from PySide6.QtWidgets import QGraphicsItem

from implicit_viz.core.export import ExportError
from implicit_viz.core.files import FileWriteError, atomic_write_bytes

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: PNG pixels per on-screen pixel.
PNG_SCALE = 2


def _target_item(widget: Any) -> QGraphicsItem:
    """The graphics item to render: a PlotWidget's PlotItem, a layout's central item, or it."""
    if isinstance(widget, pg.PlotWidget):
        return widget.getPlotItem()
    if isinstance(widget, pg.GraphicsLayoutWidget):
        return widget.ci
    if isinstance(widget, QGraphicsItem):
        return widget
    raise TypeError(
        f"export_plot needs a pyqtgraph PlotWidget, GraphicsLayoutWidget or PlotItem, "
        f"got {type(widget).__name__}"
    )


def _check_destination(path: Path) -> None:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ExportError(
            f"cannot export plot to {path}: unknown format {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(PLOT_SUFFIXES)}"
        )
    if path.is_dir():
        raise ExportError(f"cannot export plot to {path}: it is a directory")
    if not path.parent.is_dir():
        raise ExportError(f"cannot export plot to {path}: directory {path.parent} does not exist")


def _background(item: QGraphicsItem) -> QColor:
    scene = item.scene()
    views = scene.views() if scene is not None else []
    if views:
        brush = views[0].backgroundBrush()
        if brush.style() != Qt.BrushStyle.NoBrush:
            return brush.color()
    return QColor(255, 255, 255)


def _source_rect(item: QGraphicsItem, path: Path) -> QRectF:
    if item.scene() is None:
        raise ExportError(f"cannot export plot to {path}: the plot is not in a scene")
    rect = item.sceneBoundingRect()
    if rect.width() < 1 or rect.height() < 1:
        raise ExportError(
            f"cannot export plot to {path}: the plot has no size yet (show it before exporting)"
        )
    return rect


def _paint_dpi() -> int:
    """Logical DPI that pyqtgraph's cached drawings (QPicture: axes) were recorded at.

    A QPicture played on a device of another DPI is scaled, so the SVG and PDF devices are given
    this resolution, or the axes would be drawn shrunk against the data.
    """
    return QPicture().logicalDpiX()


def _render_scene(item: QGraphicsItem, painter: QPainter, target: QRectF, source: QRectF) -> None:
    """Paint the item's part of the scene into ``target``, background first, in export mode."""
    exporter = pg.exporters.ImageExporter(item)  # used for its export-mode switch only
    painter.fillRect(target, _background(item))
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    exporter.setExportMode(
        True,
        {
            "antialias": True,
            "background": _background(item),
            "painter": painter,
            "resolutionScale": 1.0,
        },
    )
    try:
        item.scene().render(painter, target, source)
    finally:
        exporter.setExportMode(False)


def _png_bytes(item: QGraphicsItem, source: QRectF) -> bytes:
    """Render at :data:`PNG_SCALE` times the on-screen size as a high-DPI image.

    The image's device pixel ratio scales everything alike (text, cosmetic pens, markers);
    pyqtgraph's ImageExporter with a larger width leaves legend text and line widths at their
    on-screen pixel sizes, so they look thin and small.
    """
    w, h = round(source.width()), round(source.height())
    image = QImage(w * PNG_SCALE, h * PNG_SCALE, QImage.Format.Format_ARGB32)
    image.setDevicePixelRatio(PNG_SCALE)
    dpm = round(_paint_dpi() / 0.0254)
    image.setDotsPerMeterX(dpm)
    image.setDotsPerMeterY(dpm)
    painter = QPainter()
    if not painter.begin(image):  # pragma: no cover - a QImage always takes a painter
        raise ExportError("the PNG painter did not start")
    try:
        _render_scene(item, painter, QRectF(0, 0, w, h), source)
    finally:
        painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def _svg_bytes(item: QGraphicsItem, source: QRectF, path: Path) -> bytes:
    from PySide6.QtSvg import QSvgGenerator

    w, h = round(source.width()), round(source.height())
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    gen = QSvgGenerator()
    gen.setOutputDevice(buf)
    gen.setResolution(_paint_dpi())
    gen.setSize(QSize(w, h))
    gen.setViewBox(QRect(0, 0, w, h))
    gen.setTitle(path.stem)
    gen.setDescription("exported by implicit_viz")
    painter = QPainter()
    if not painter.begin(gen):
        raise ExportError(f"cannot export plot to {path}: the SVG painter did not start")
    try:
        _render_scene(item, painter, QRectF(0, 0, w, h), source)
    finally:
        painter.end()
    buf.close()
    return bytes(data.data())


def _pdf_bytes(item: QGraphicsItem, source: QRectF, path: Path) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buf)
    dpi = _paint_dpi()
    writer.setResolution(dpi)
    writer.setTitle(path.stem)
    writer.setCreator("implicit_viz")
    points = QSizeF(source.width() * 72.0 / dpi, source.height() * 72.0 / dpi)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(points, QPageSize.Unit.Point, "plot", QPageSize.SizeMatchPolicy.ExactMatch),
            QPageLayout.Orientation.Portrait,
            QMarginsF(0, 0, 0, 0),
        )
    )
    painter = QPainter()
    if not painter.begin(writer):
        raise ExportError(f"cannot export plot to {path}: the PDF painter did not start")
    try:
        # Fit the plot into the page keeping its aspect ratio, centred.
        page_w, page_h = writer.width(), writer.height()
        scale = min(page_w / source.width(), page_h / source.height())
        w, h = source.width() * scale, source.height() * scale
        target = QRectF((page_w - w) / 2, (page_h - h) / 2, w, h)
        _render_scene(item, painter, target, source)
    finally:
        painter.end()
    buf.close()
    return bytes(data.data())


def export_plot(widget: Any, path: str | Path) -> Path:
    """Save ``widget`` (PlotWidget, GraphicsLayoutWidget or PlotItem) to ``path``.

    The format follows the suffix (:data:`PLOT_SUFFIXES`). Returns the path written. Raises
    :class:`ExportError` (an ``OSError``) for an unknown suffix, a missing directory, a path
    that cannot be written, or a plot that has nothing to draw.
    """
    path = Path(path)
    _check_destination(path)
    item = _target_item(widget)
    source = _source_rect(item, path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        data = _png_bytes(item, source)
    elif suffix == ".svg":
        data = _svg_bytes(item, source, path)
    else:
        data = _pdf_bytes(item, source, path)
    if not data:
        raise ExportError(f"cannot export plot to {path}: rendering produced no {suffix} data")
    try:
        atomic_write_bytes(path, data)
    except FileWriteError as exc:
        raise ExportError(f"cannot export plot to {path}: {_reason(exc)}") from None
    return path


def _reason(exc: FileWriteError) -> str:
    """The reason part of a :class:`FileWriteError` ("cannot write 'p': reason")."""
    text = str(exc)
    return text.split("': ", 1)[1] if "': " in text else text
