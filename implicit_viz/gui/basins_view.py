"""The basins view: a parameter sweep drawn live, cell by cell, in parameter units.

Controls pick the two axes (a param, a start component ``z0[i]`` or an element of a small
tensor; y may be "(none)" for a 1-D sweep), their ranges and the resolution. Run builds a
:class:`~implicit_viz.core.sweep.SweepRequest` from the spec and the solver settings of the
window (:meth:`BasinsView.set_context`) and hands it to a :class:`SweepWorker`; the coarse
preview and then the refinement arrive as partial results and are drawn as they come.

2-D sweeps are an image of the cell colours of :func:`implicit_viz.core.palette.cell_colors`
(the colours of the CLI's ``--png``); 1-D sweeps are an orbit diagram (the last iterates of
``z[0]`` against the param, small dots) with the cell colours as a strip under it. Hovering a
cell describes it; clicking a cell emits its axis values (:attr:`BasinsView.cellClicked`).

The widget holds no numerics: the cell colours are computed on the worker thread by
:func:`implicit_viz.core.palette.sweep_picture`, everything drawn is read from the
:class:`SweepResult`, and the axes' targets and ranges, the cell under the pointer and the words
come from :mod:`implicit_viz.core.sweep_axes` and :mod:`implicit_viz.core.sweep_text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from implicit_viz.core.errors import SpecError, SweepError
from implicit_viz.core.export import ExportError
from implicit_viz.core.live import SolverSettings
from implicit_viz.core.palette import legend, shade_strip, sweep_picture
from implicit_viz.core.spec import Spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, SweepResult, axis_label
from implicit_viz.core.sweep_axes import (
    NO_AXIS,
    axis_targets,
    cell_assignments,
    cell_index,
    cell_rect,
    default_axes,
    default_range,
)
from implicit_viz.core.sweep_text import cancel_note, cell_description, status_text
from implicit_viz.gui.colors import FOREGROUND, new_plot_widget, set_title, settle
from implicit_viz.gui.param_panel import slider_range
from implicit_viz.gui.state import BasinsSettings, Problem
from implicit_viz.gui.sweep_worker import SweepWorker

#: Iterates recorded per cell for the orbit diagram of a 1-D sweep.
ORBIT_ITERATES = 64
DEFAULT_RESOLUTION = 128
_ERROR_STYLE = "color: #b00020;"
#: Shown while the map belongs to a spec the window no longer holds.
STALE_TEXT = (
    "the map is of the previous spec, which has changed since: run the sweep again (Ctrl+B)"
)
_MARKER_PEN = {"color": "#000000", "width": 1.5, "style": Qt.PenStyle.DashLine}


# --------------------------------------------------------------------------------------------
# Qt pictures of the palette's colours
# --------------------------------------------------------------------------------------------


def _color_icon(rgb: tuple[int, int, int], size: int = 12) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


def _rgb_pixmap(rgb: np.ndarray, width: int, height: int) -> QPixmap:
    data = np.ascontiguousarray(rgb)
    h, w = data.shape[:2]
    img = QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(
        img.scaled(
            width,
            height,
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
    )


# --------------------------------------------------------------------------------------------
# The widget
# --------------------------------------------------------------------------------------------


class BasinsView(QWidget):
    """Sweep controls, the live picture, its legend and the hovered cell.

    Signals
    -------
    cellClicked(dict)
        The axis values of a clicked cell, e.g. ``{"a": 1.23, "x[0]": -0.5}``.
    sweepFinished(object)
        The final :class:`SweepResult` of a sweep (also when cancelled).
    errorShown(str)
        A request could not start or a sweep failed; the message is shown in the view.
    """

    cellClicked = Signal(dict)
    sweepFinished = Signal(object)
    errorShown = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, worker: SweepWorker | None = None):
        super().__init__(parent)
        self._spec: Spec | None = None
        #: The window's problem (None before the first spec).
        self._problem: Problem | None = None
        #: rho(df/dz*) per hovered cell of the shown result: (id(result), ix, iy) -> rho.
        self._rho_cache: dict[tuple[int, int, int], float] = {}
        self._result: SweepResult | None = None
        self._shown: SweepResult | None = None
        self._sweep_id = 0
        #: The window's spec when the shown map's sweep started; the map is stale once the
        #: spec changes (its cells then describe another map: a click applies nothing).
        self._sweep_spec: Spec | None = None
        self._stale = False
        self._marker: dict[str, float] = {}
        self._legend_items: list[tuple[str, tuple[int, int, int]]] = []
        self.last_error = ""
        #: Partial pictures drawn for the current sweep.
        self.redraws = 0
        # One intra-op thread: a second OpenMP team beside the main thread's slowed a 512^2
        # sweep from the tab from 0.44 s to 0.62 s (bench_basins_stall.py), and every sweep in
        # the main thread after it from 0.36 s to 0.61 s.
        self.worker = worker or SweepWorker(self, render=sweep_picture, torch_threads=1)
        self._build()
        self.worker.rendered.connect(self._on_rendered)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)

    # layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        self.x_combo = self._axis_combo()
        self.y_combo = self._axis_combo()
        self.x_lo, self.x_hi = self._range_box(), self._range_box()
        self.y_lo, self.y_hi = self._range_box(), self._range_box()
        self.resolution = QSpinBox()
        self.resolution.setRange(2, 4096)
        self.resolution.setValue(DEFAULT_RESOLUTION)
        self.resolution.setToolTip("cells along each axis")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setEnabled(False)
        self.pause_button.setToolTip("hold the sweep where it is (the machine is free meanwhile)")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setTextVisible(True)
        self.x_combo.textActivated.connect(lambda t: self._on_target(t, self.x_lo, self.x_hi))
        self.y_combo.textActivated.connect(lambda t: self._on_target(t, self.y_lo, self.y_hi))
        self.run_button.clicked.connect(lambda _c=False: self.run())
        self.cancel_button.clicked.connect(lambda _c=False: self.cancel())
        self.pause_button.toggled.connect(self.set_paused)

        grid = QGridLayout()
        for row, (name, combo, lo, hi) in enumerate(
            (("x", self.x_combo, self.x_lo, self.x_hi), ("y", self.y_combo, self.y_lo, self.y_hi))
        ):
            grid.addWidget(QLabel(f"{name} axis"), row, 0)
            grid.addWidget(combo, row, 1)
            grid.addWidget(QLabel("from"), row, 2)
            grid.addWidget(lo, row, 3)
            grid.addWidget(QLabel("to"), row, 4)
            grid.addWidget(hi, row, 5)
        grid.addWidget(QLabel("cells per axis"), 0, 6)
        grid.addWidget(self.resolution, 0, 7)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.cancel_button)
        grid.addLayout(buttons, 1, 6, 1, 2)
        grid.addWidget(self.progress_bar, 0, 8, 2, 1)
        grid.setColumnStretch(1, 2)
        grid.setColumnStretch(8, 3)

        self.plot = new_plot_widget("", "")
        self.plot.setMinimumSize(320, 260)
        pi = self.plot.getPlotItem()
        pi.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        pi.addItem(self.image_item)
        self.scatter = pg.ScatterPlotItem(
            size=2, pen=None, brush=pg.mkBrush(40, 40, 40, 150), pxMode=True, symbol="s"
        )
        self.scatter.setVisible(False)
        pi.addItem(self.scatter)
        self.marker_x = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(**_MARKER_PEN))
        self.marker_y = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(**_MARKER_PEN))
        for line in (self.marker_x, self.marker_y):
            line.setVisible(False)
            line.setZValue(10)
            pi.addItem(line, ignoreBounds=True)
        scene = self.plot.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)

        self.legend_list = QListWidget()
        self.legend_list.setIconSize(QSize(12, 12))
        self.legend_list.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.legend_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.legend_list.setStyleSheet("QListWidget { border: none; background: transparent; }")
        self.shade_caption = QLabel("converged: shade = iterations\nfewer iterations → more")
        self.shade_bar = QLabel()
        self.shade_bar.setFixedHeight(12)
        self.hover_label = QLabel("hover over a cell to see it; click to apply its values")
        self.hover_label.setWordWrap(True)
        self.hover_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hover_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        side = QVBoxLayout()
        side.addWidget(QLabel("<b>Legend</b>"))
        side.addWidget(self.legend_list, 3)
        side.addWidget(self.shade_caption)
        side.addWidget(self.shade_bar)
        side.addWidget(QLabel("<b>Cell</b>"))
        side.addWidget(self.hover_label, 2)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setFixedWidth(240)
        self._set_shade_visible(False)

        self.note_label = QLabel()
        self.note_label.setStyleSheet(_ERROR_STYLE)
        self.note_label.setVisible(False)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        middle = QHBoxLayout()
        middle.addWidget(self.plot, 1)
        middle.addWidget(side_w)
        col = QVBoxLayout(self)
        col.addLayout(grid)
        col.addWidget(self.note_label)
        col.addLayout(middle, 1)
        col.addWidget(self.status_label)

    @staticmethod
    def _axis_combo() -> QComboBox:
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.setMinimumContentsLength(8)
        combo.setMaximumWidth(220)
        combo.setToolTip("a param, a start component z0[i] or a tensor element such as x[0]")
        return combo

    @staticmethod
    def _range_box() -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(-1e6, 1e6)
        box.setDecimals(4)
        box.setSingleStep(0.1)
        box.setKeyboardTracking(False)
        return box

    # spec and context ------------------------------------------------------------------------
    def set_spec(self, spec: Spec) -> None:
        """Offer ``spec``'s targets on the axes. While the same spec is edited the chosen axes
        stay when they still exist; another spec (a new name) starts from its own defaults."""
        old = self._spec
        self._spec = spec
        if self._problem is None or self._problem.spec != spec:
            self._problem = Problem(spec, settings=self._standalone_settings(spec))
        if (
            self._sweep_spec is not None
            and spec is not self._sweep_spec
            and spec != self._sweep_spec
        ):
            self._mark_stale()
        targets = axis_targets(spec)
        if old is not None and targets == axis_targets(old) and old.name == spec.name:
            return
        x_default, y_default = default_axes(spec)
        same = old is not None and old.name == spec.name
        keep_x = same and self.x_combo.currentText() in targets
        keep_y = same and self.y_combo.currentText() in [*targets, NO_AXIS]
        x = self.x_combo.currentText() if keep_x else x_default
        y = self.y_combo.currentText() if keep_y else y_default
        for combo, items in ((self.x_combo, targets), (self.y_combo, [NO_AXIS, *targets])):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            combo.blockSignals(False)
        self.set_axes(x, y, keep_ranges=keep_x and keep_y)

    def set_axes(
        self,
        x: str,
        y: str | None = None,
        *,
        x_range: tuple[float, float] | None = None,
        y_range: tuple[float, float] | None = None,
        keep_ranges: bool = False,
    ) -> None:
        """Choose the axes' targets (``y`` None or "(none)": 1-D) and optionally their ranges
        (default: :func:`default_range`)."""
        self.x_combo.setCurrentText(x)
        self.y_combo.setCurrentText(y or NO_AXIS)
        if not keep_ranges:
            self._on_target(x, self.x_lo, self.x_hi)
            self._on_target(y or NO_AXIS, self.y_lo, self.y_hi)
        for rng, lo, hi in ((x_range, self.x_lo, self.x_hi), (y_range, self.y_lo, self.y_hi)):
            if rng is not None:
                lo.setValue(rng[0])
                hi.setValue(rng[1])

    def set_problem(self, problem: Problem) -> None:
        """The window's problem (:meth:`AppState.problem`): its spec with slider values, seeds
        and start/tensor overrides applied is the base the axes override, its solver settings
        choose the solver. Raises :class:`SpecError` for a value the spec does not accept."""
        try:
            problem.resolved  # noqa: B018  (raises here, for the window to show)
        except SpecError:
            self.set_spec(problem.spec)  # the axes still follow the spec
            raise
        self._problem = problem  # first: set_spec then keeps it (same spec)
        self.set_spec(problem.spec)

    def _standalone_settings(self, spec: Spec) -> SolverSettings:
        """Solver settings for a spec given without a window's problem: the window's last
        ones, else fixed_point in float32 with the spec's own tol and max_iter."""
        if self._problem is not None:
            return self._problem.settings
        from implicit_viz.core.solver_settings import SolverSection

        base = SolverSettings(solvers=("fixed_point",), dtype="float32")
        try:
            from_spec = SolverSettings.from_spec(SolverSection.of(spec), base)
            return replace(from_spec, solvers=base.solvers)
        except ValueError:  # the spec's [solver] section is refused: the editor says why
            return base

    def settings(self) -> BasinsSettings:
        """The tab's controls, for the model and sessions."""
        y = self.y_combo.currentText()
        return BasinsSettings(
            x=self.x_combo.currentText(),
            x_range=(self.x_lo.value(), self.x_hi.value()),
            y="" if y == NO_AXIS else y,
            y_range=None if y == NO_AXIS else (self.y_lo.value(), self.y_hi.value()),
            resolution=int(self.resolution.value()),
        )

    def apply_settings(self, s: BasinsSettings) -> None:
        """Show ``s`` where the current spec has its targets (others keep their defaults)."""
        for combo, target, rng, lo, hi in (
            (self.x_combo, s.x, s.x_range, self.x_lo, self.x_hi),
            (self.y_combo, s.y or NO_AXIS, s.y_range, self.y_lo, self.y_hi),
        ):
            i = combo.findText(target) if target else -1
            if i < 0:
                continue
            combo.setCurrentIndex(i)
            if rng is not None:
                lo.setValue(rng[0])
                hi.setValue(rng[1])
        self.resolution.setValue(s.resolution)

    def _on_target(self, target: str, lo: QDoubleSpinBox, hi: QDoubleSpinBox) -> None:
        enabled = target != NO_AXIS
        lo.setEnabled(enabled)
        hi.setEnabled(enabled)
        if not enabled or self._spec is None:
            return
        try:
            a, b = default_range(target.replace(" ", ""), self._spec)
        except SpecError:
            return
        lo.setValue(a)
        hi.setValue(b)

    # requests --------------------------------------------------------------------------------
    def build_request(self) -> SweepRequest:
        """The sweep the controls describe; raises :class:`SweepError` / :class:`SpecError`
        (with the message to show) when it is impossible."""
        from implicit_viz.core.sweep import validate

        if self._problem is None:
            raise SweepError("no spec yet: load a spec before running a sweep")
        n = self.resolution.value()
        x = Axis(
            self.x_combo.currentText().replace(" ", ""), self.x_lo.value(), self.x_hi.value(), n
        )
        y_text = self.y_combo.currentText().replace(" ", "")
        y = None
        if y_text and y_text != NO_AXIS:
            y = Axis(y_text, self.y_lo.value(), self.y_hi.value(), n)
        request = self._problem.sweep_request(x, y, ORBIT_ITERATES if y is None else 0)
        validate(request)
        return request

    def run(self, request: SweepRequest | None = None) -> int | None:
        """Start a sweep (``request`` or :meth:`build_request`); returns its id, or None (with
        the message shown) when the request is impossible."""
        try:
            req = request if request is not None else self.build_request()
            if request is not None:
                from implicit_viz.core.sweep import validate

                validate(req)
        except (SweepError, SpecError) as exc:
            msg = exc.one_line() if isinstance(exc, SpecError) else str(exc)
            self._show_error(f"cannot run the sweep: {msg}")
            return None
        self._sweep_id = self.worker.start(req)
        self._sweep_spec = self._spec
        self._set_stale(False)
        self.redraws = 0
        self._prepare_plot(req)
        self.note_label.setVisible(False)
        self.status_label.setStyleSheet("")
        self.status_label.setText(f"sweeping {req.cells:,} cells…")
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("preview %p%")
        self.cancel_button.setEnabled(True)
        self.pause_button.setEnabled(True)
        self.set_paused(False)
        return self._sweep_id

    def cancel(self) -> None:
        """Stop the running sweep; the picture keeps the cells solved so far."""
        self.set_paused(False)
        self.worker.cancel()

    def set_paused(self, paused: bool) -> None:
        """Hold the running sweep at its next check point, or let it go on."""
        if paused:
            self.worker.pause()
            self.progress_bar.setFormat("paused %p%")
        else:
            self.worker.resume()
        if self.pause_button.isChecked() != paused:
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(paused)
            self.pause_button.blockSignals(False)
        self.pause_button.setText("Resume" if paused else "Pause")

    @property
    def running(self) -> bool:
        return self.cancel_button.isEnabled()

    @property
    def stale(self) -> bool:
        """True when the spec changed since the shown map's sweep started."""
        return self._stale

    def _mark_stale(self) -> None:
        """The spec changed: stop a running sweep, dim the map, and say so; clicks on it are
        refused until the sweep runs again."""
        if self._stale:
            return
        if self.running:
            self.worker.cancel()
        self._set_stale(True)
        self.status_label.setStyleSheet(_ERROR_STYLE)
        self.status_label.setText(STALE_TEXT)

    def _set_stale(self, stale: bool) -> None:
        self._stale = stale
        for item in (self.image_item, self.scatter):
            item.setOpacity(0.3 if stale else 1.0)

    def result(self) -> SweepResult | None:
        """The last finished (or cancelled) sweep's result."""
        return self._result

    def shown_result(self) -> SweepResult | None:
        """The result the picture shows (a partial one while a sweep runs)."""
        return self._shown

    def plot_widget(self) -> pg.PlotWidget:
        return self.plot

    def shutdown(self) -> None:
        """Stop the worker thread (call when the window closes)."""
        self.worker.shutdown()

    # worker signals --------------------------------------------------------------------------
    def _on_progress(self, sweep_id: int, fraction: float, stage: int) -> None:
        if sweep_id != self._sweep_id or self._stale:
            return
        word = "paused" if self.worker.paused else ("preview" if stage == 0 else "refining")
        self.progress_bar.setFormat(word + " %p%")
        self.progress_bar.setValue(round(1000 * fraction))

    def _on_rendered(self, sweep_id: int, result: SweepResult, rgb: np.ndarray) -> None:
        if sweep_id != self._sweep_id or self._stale:
            return
        self._show(result, rgb)
        self.redraws += 1

    def _on_finished(self, sweep_id: int, result: SweepResult) -> None:
        if sweep_id != self._sweep_id:
            return
        self._result = result
        self.cancel_button.setEnabled(False)
        self.pause_button.setEnabled(False)
        if self._stale:  # cancelled by a change of spec: the stale note stays
            self.progress_bar.setFormat("stopped: the spec changed")
            self.sweepFinished.emit(result)
            return
        self.progress_bar.setFormat("cancelled %p%" if result.cancelled else "done")
        self.progress_bar.setValue(round(1000 * float(result.done.mean())))
        self.status_label.setStyleSheet("")
        self.status_label.setText(status_text(result))
        if result.cancelled:
            self.note_label.setText(cancel_note(result) + " (grey cells were not solved)")
            self.note_label.setVisible(True)
        self.sweepFinished.emit(result)

    def _on_failed(self, sweep_id: int, message: str) -> None:
        if sweep_id != self._sweep_id:
            return
        self.cancel_button.setEnabled(False)
        self.pause_button.setEnabled(False)
        self.progress_bar.setFormat("failed")
        self._show_error(f"sweep failed: {message}")

    def _show_error(self, message: str) -> None:
        self.last_error = message
        self.status_label.setStyleSheet(_ERROR_STYLE)
        self.status_label.setText(message)
        self.errorShown.emit(message)

    # drawing ---------------------------------------------------------------------------------
    def _prepare_plot(self, req: SweepRequest) -> None:
        """Axes, labels and range of a new sweep (the view is zoomed to the grid once)."""
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", axis_label(req.x.target, req.spec), color=FOREGROUND)
        x0, w = cell_rect(req.x)
        one_d = req.y is None
        if one_d:
            pi.setLabel("left", "z[0] (last iterates)", color=FOREGROUND)
            self.image_item.clear()
            self.scatter.setData([], [])
            pi.enableAutoRange(y=True)
            pi.setXRange(x0, x0 + w, padding=0.0)
        else:
            pi.setLabel("left", axis_label(req.y.target, req.spec), color=FOREGROUND)
            y0, h = cell_rect(req.y)
            self.image_item.clear()
            pi.setRange(xRange=(x0, x0 + w), yRange=(y0, y0 + h), padding=0.0)
        self.scatter.setVisible(one_d)
        title = f"{req.spec.name}: {req.solver}, {req.dtype}, tol {req.options.tol:g}"
        set_title(self.plot, title)
        self._apply_marker(req)

    def _show(self, result: SweepResult, rgb: np.ndarray) -> None:
        """Draw a (partial or final) result with its precomputed colours ``rgb``."""
        req = result.request
        self._shown = result
        x0, w = cell_rect(req.x)
        if req.y is None:
            self._show_orbit(result, rgb, x0, w)
        else:
            y0, h = cell_rect(req.y)
            self.image_item.setImage(rgb, autoLevels=False)
            self.image_item.setRect(x0, y0, w, h)
        title = f"{req.spec.name}: {req.solver}, {req.dtype}, tol {req.options.tol:g}"
        if result.cancelled:
            title += f"  ({cancel_note(result)})"
        set_title(self.plot, title)
        self._update_legend(result)
        settle(self.plot)

    def _show_orbit(self, result: SweepResult, rgb: np.ndarray, x0: float, w: float) -> None:
        """The orbit diagram (dots) with the cell colours as a strip under it."""
        orbit = result.orbit[:, :, 0] if result.orbit is not None else np.zeros((len(rgb[0]), 0))
        finite = np.isfinite(orbit)
        xs = np.broadcast_to(result.x_values[:, None], orbit.shape)[finite]
        ys = orbit[finite].astype(np.float64)
        self.scatter.setData(x=xs, y=ys)
        if ys.size:
            lo, hi = float(ys.min()), float(ys.max())
        else:
            lo, hi = 0.0, 1.0
        span = max(hi - lo, 1e-9)
        self.image_item.setImage(rgb, autoLevels=False)
        self.image_item.setRect(x0, lo - 0.1 * span, w, 0.06 * span)

    def orbit_points(self) -> int:
        """Dots in the orbit diagram."""
        return len(self.scatter.data)

    def _update_legend(self, result: SweepResult) -> None:
        items = legend(result.status, result.basin, result.period, result.fixed_points)
        if items != self._legend_items:
            self._legend_items = items
            self.legend_list.clear()
            for label, color in items:
                QListWidgetItem(_color_icon(color), label, self.legend_list)
        has_conv = bool((result.status == int(Status.CONVERGED)).any())
        self._set_shade_visible(has_conv)
        if has_conv:
            basin = 0 if result.basins_resolved and len(result.fixed_points) else -1
            strip = shade_strip(result.request.options.max_iter, basin)
            self.shade_bar.setPixmap(_rgb_pixmap(strip, 200, 12))

    def _set_shade_visible(self, visible: bool) -> None:
        self.shade_caption.setVisible(visible)
        self.shade_bar.setVisible(visible)

    def legend_labels(self) -> list[str]:
        return [label for label, _ in self._legend_items]

    # cells, hover, click, marker ------------------------------------------------------------
    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """``(ix, iy)`` of the shown result's cell at axis values ``(x, y)``, or None (for a
        1-D sweep ``y`` is ignored and ``iy`` is 0)."""
        res = self._shown
        if res is None:
            return None
        req = res.request
        ix = cell_index(req.x, x)
        if ix is None:
            return None
        if req.y is None:
            return ix, 0
        iy = cell_index(req.y, y)
        return None if iy is None else (ix, iy)

    def describe_at(self, x: float, y: float) -> str:
        """The hover text for axis values ``(x, y)`` ("" outside the grid): the cell in words
        and, for a converged cell, ``rho(df/dz*)`` at its own ``z*`` (what the live table
        shows after a click on it)."""
        cell = self.cell_at(x, y)
        if cell is None or self._shown is None:
            return ""
        text = cell_description(self._shown, *cell)
        rho = self.cell_spectral_radius(*cell)
        return f"{text}, ρ(df/dz*) = {rho:.4g}" if math.isfinite(rho) else text

    def cell_spectral_radius(self, ix: int, iy: int) -> float:
        """``rho(df/dz*)`` of the shown sweep's cell ``(ix, iy)`` at its last iterate, where it
        converged (NaN elsewhere, or where the sweep kept no iterates); cached per cell."""
        res = self._shown
        if res is None or res.z is None or int(res.status[iy, ix]) != int(Status.CONVERGED):
            return math.nan
        key = (id(res), ix, iy)
        if key not in self._rho_cache:
            from implicit_viz.core.diagnostics import spectral_radius_at

            spec = res.request.spec.with_overrides(cell_assignments(res, ix, iy))
            try:
                rho = spectral_radius_at(spec, res.z[iy, ix])
            except (ValueError, RuntimeError, OSError):  # a cell the spec refuses
                rho = math.nan
            self._rho_cache = {k: v for k, v in self._rho_cache.items() if k[0] == id(res)}
            self._rho_cache[key] = rho
        return self._rho_cache[key]

    def _emit_click_at(self, x: float, y: float) -> dict[str, float] | None:
        """Emit :attr:`cellClicked` for the cell at axis values ``(x, y)``; returns what was
        sent (None outside the grid)."""
        cell = self.cell_at(x, y)
        if cell is None or self._shown is None:
            return None
        if self._stale:
            self._show_error(f"a click on this map applies nothing: {STALE_TEXT}")
            return None
        values = cell_assignments(self._shown, *cell)
        outside = self._outside_slider_range(values)
        if outside:
            self._show_error(outside)
            return None
        self.cellClicked.emit(values)
        return values

    def _outside_slider_range(self, values: Mapping[str, float]) -> str:
        """Why a click setting ``values`` cannot be applied: a param value beyond its slider's
        range (the slider would clamp it and show a solve that is not this cell's); ''."""
        spec = self._spec
        if spec is None:
            return ""
        params = {p.name: p for p in spec.params}
        for name, v in values.items():
            p = params.get(name)
            if p is None:
                continue
            lo, hi = slider_range(p)
            if not lo <= v <= hi:
                return (
                    f"{name} = {v:.6g} lies outside its slider range [{lo:.6g}, {hi:.6g}]: "
                    "not applied; widen min/max in the spec"
                )
        return ""

    def _scene_to_axes(self, pos: QPointF) -> tuple[float, float] | None:
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            return None
        p = vb.mapSceneToView(pos)
        return p.x(), p.y()

    def _on_mouse_moved(self, pos: QPointF) -> None:
        xy = self._scene_to_axes(pos)
        text = self.describe_at(*xy) if xy is not None else ""
        if text:
            self.hover_label.setText(text)

    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        xy = self._scene_to_axes(event.scenePos())
        if xy is not None and self._emit_click_at(*xy) is not None:
            event.accept()

    def set_marker(self, assignments: Mapping[str, float]) -> None:
        """Mark the current slider position: lines at the values of the axes' targets when
        ``assignments`` holds them (the window calls this when sliders move)."""
        self._marker = {str(k): float(v) for k, v in assignments.items()}
        req = self._shown.request if self._shown is not None else None
        self._apply_marker(req)

    def _apply_marker(self, req: SweepRequest | None) -> None:
        if req is not None:
            x_target = req.x.target
            y_target = req.y.target if req.y is not None else None
        else:
            x_target = self.x_combo.currentText().replace(" ", "")
            y_target = self.y_combo.currentText().replace(" ", "")
        for line, target in ((self.marker_x, x_target), (self.marker_y, y_target)):
            value = self._marker.get(target) if target else None
            line.setVisible(value is not None)
            if value is not None:
                line.setValue(value)

    # exports ---------------------------------------------------------------------------------
    def export_picture(self, path: str | Path) -> Path:
        """Save the plot as PNG, SVG or PDF; raises :class:`ExportError`."""
        from implicit_viz.gui.plot_export import export_plot

        if self._shown is None:
            raise ExportError(f"cannot export the picture to {path}: no sweep has run yet")
        return export_plot(self.plot_widget(), path)

    def export_data(self, path: str | Path) -> Path:
        """Save the last result's arrays (.npz or .json); raises :class:`ExportError`."""
        from implicit_viz.core.export import write_sweep

        if self._result is None:
            raise ExportError(f"cannot export sweep data to {path}: no sweep has finished yet")
        return write_sweep(path, self._result)
