"""The main window: spec editor, params, solver panel, live plots, menus, status bar.

It wires widgets together and holds no numerics: a valid spec or a moved control becomes a
:class:`~implicit_viz.core.live.LiveRequest` for the :class:`SolveWorker`; the worker's
:class:`~implicit_viz.core.live.LiveSnapshot` goes to the views. Every failure (a bad spec, a bad
file, a solve that raises) becomes a message in the window; the spec text is never replaced
without an undo step.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from implicit_viz.core.live import LiveSnapshot, SolverSettings
from implicit_viz.core.spec import Spec
from implicit_viz.gui.basins_view import BasinsView
from implicit_viz.gui.gradient_view import GradientView
from implicit_viz.gui.param_panel import ParamPanel, slider_range
from implicit_viz.gui.phase_view import PhaseView
from implicit_viz.gui.preset_picker import PresetPicker
from implicit_viz.gui.residual_view import ResidualView
from implicit_viz.gui.session import SUFFIX as SESSION_SUFFIX
from implicit_viz.gui.session import Session, SessionError, load_session, write_session
from implicit_viz.gui.solve_worker import SolveWorker
from implicit_viz.gui.solver_panel import SolverPanel
from implicit_viz.gui.spec_editor import SpecEditor
from implicit_viz.gui.state import AppState, Problem, valid_overrides
from implicit_viz.gui.trajectory_view import TrajectoryView

log = logging.getLogger(__name__)

DEFAULT_PRESET = "tanh_layer"
#: Spec files larger than this are refused (a spec is a few hundred bytes).
MAX_SPEC_BYTES = 2 * 1024**2
_SPEC_FILTER = "Spec files (*.toml);;All files (*)"
_SESSION_FILTER = f"implicit-viz sessions (*{SESSION_SUFFIX} *.json);;All files (*)"
_PLOT_FILTER = "PNG image (*.png);;SVG vector image (*.svg);;PDF document (*.pdf)"
_TRACE_FILTER = "CSV table (*.csv);;NumPy archive (*.npz);;JSON document (*.json)"


class MainWindow(QMainWindow):
    """The app's window.

    Signals
    -------
    snapshotShown(int)
        The views now show the snapshot of this request id.
    errorShown(str)
        A message about bad input was shown.
    """

    snapshotShown = Signal(int)
    errorShown = Signal(str)

    def __init__(self, devices: list[str] | None = None) -> None:
        super().__init__()
        self.setWindowTitle("implicit-viz")
        self.resize(1500, 940)
        #: The model: spec, values, seeds, overrides, settings; views solve its problem().
        self.state = AppState()
        self._spec_solver: dict[str, Any] | None = None
        self._snapshot: LiveSnapshot | None = None
        self._shown_id = 0
        self._submitted_at: dict[int, float] = {}
        self.last_error = ""
        #: A status message kept over solve summaries: (text, last request id it covers).
        self._sticky: tuple[str, int] | None = None
        #: Per shown snapshot, seconds: (request -> views updated, time in the views' redraw).
        self.timings: list[tuple[float, float]] = []

        self.editor = SpecEditor()
        self.presets = PresetPicker()
        self.params = ParamPanel()
        self.solvers = SolverPanel(devices)
        self.trajectory = TrajectoryView()
        self.phase = PhaseView()
        self.residuals = ResidualView()
        self.basins = BasinsView()
        self.gradient = GradientView()
        self.worker = SolveWorker(self)
        self._build_layout()
        self._build_menus()

        self.editor.specAccepted.connect(self._on_spec_accepted)
        self.editor.specRejected.connect(self._on_spec_rejected)
        self.editor.modificationChanged.connect(lambda _m: self._update_title())
        self.presets.presetChosen.connect(self.load_preset)
        self.params.changed.connect(self.request_solve)
        self.solvers.changed.connect(self.request_solve)
        self.worker.snapshotReady.connect(self._on_snapshot)
        self.worker.failed.connect(self._on_failed)
        self.worker.busyChanged.connect(self._on_busy)
        self.basins.cellClicked.connect(self.apply_assignments)
        self.basins.errorShown.connect(lambda m: self.show_message(f"Basins: {m}", error=True))
        self.gradient.errorShown.connect(lambda m: self.show_message(f"Gradients: {m}", error=True))
        self.views.currentChanged.connect(lambda _i: self._update_context())

    # layout ----------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        bar = QToolBar("Presets")
        bar.setObjectName("presets_toolbar")
        bar.addWidget(QLabel(" Preset: "))
        bar.addWidget(self.presets)
        self.addToolBar(bar)

        controls = QWidget()
        col = QVBoxLayout(controls)
        for title, w in (("Parameters", self.params), ("Solvers", self.solvers)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(w)
            col.addWidget(box)
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(controls)

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.editor)
        left.addWidget(scroll)
        left.setSizes([430, 470])

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.trajectory)
        top.addWidget(self.phase)
        top.setSizes([530, 530])
        # The residuals and their table stay in view under every tab, so a click on the basins
        # map shows that cell's solve at once.
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.addTab(top, "Trajectories && phase")
        self.views.addTab(self.basins, "Basins")
        self.views.addTab(self.gradient, "Gradients")
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.views)
        right.addWidget(self.residuals)
        self._right = right
        self.views.currentChanged.connect(self._fit_panes)
        right.setSizes([520, 380])

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([440, 1060])
        main.setStretchFactor(1, 1)
        self.setCentralWidget(main)

        self.status_label = QLabel()
        # a new message must not re-lay out the window (that would repaint every plot)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy_label = QLabel()
        self.override_label = QLabel()
        self.override_label.setStyleSheet("color: #8a5a00;")
        self.override_label.setToolTip(
            "start/tensor values set by a click on the basins map; "
            "Solve > Clear start/tensor overrides drops them"
        )
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.override_label)
        self.statusBar().addPermanentWidget(self.busy_label)

    def _build_menus(self) -> None:
        def action(menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setStatusTip(tip)
            a.triggered.connect(lambda _checked=False: slot())
            menu.addAction(a)
            return a

        m = self.menuBar().addMenu("&File")
        action(m, "&Open spec…", self._ask_open_spec, QKeySequence.StandardKey.Open)
        action(m, "&Save spec", self._ask_save_spec, QKeySequence.StandardKey.Save)
        action(m, "Save spec &as…", self._ask_save_spec_as, QKeySequence.StandardKey.SaveAs)
        m.addSeparator()
        action(m, "Open s&ession…", self._ask_open_session, "Ctrl+Shift+O")
        action(m, "Save sess&ion…", self._ask_save_session, "Ctrl+Alt+S")
        m.addSeparator()
        exp = m.addMenu("E&xport plot")
        action(exp, "&Trajectories…", lambda: self._ask_export_plot("trajectory"), "Ctrl+E")
        action(exp, "&Phase portrait…", lambda: self._ask_export_plot("phase"), "Ctrl+Shift+P")
        action(exp, "&Residuals…", lambda: self._ask_export_plot("residuals"), "Ctrl+Shift+R")
        action(exp, "&Basins map…", lambda: self._ask_export_plot("basins"), "Ctrl+Shift+B")
        action(exp, "&Gradient errors…", lambda: self._ask_export_plot("gradient_error"))
        action(exp, "Gradient &memory…", lambda: self._ask_export_plot("gradient_memory"))
        action(m, "Export &traces…", self._ask_export_traces, "Ctrl+Shift+E")
        action(m, "Export basins &data…", self._ask_export_basins_data)
        action(m, "Export gradient &curves…", self._ask_export_gradient_curves)
        action(m, "Save &window image…", self._ask_window_image)
        m.addSeparator()
        action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        m = self.menuBar().addMenu("&Edit")
        action(m, "&Undo", lambda: self.editor.text_edit.undo(), QKeySequence.StandardKey.Undo)
        action(m, "&Redo", lambda: self.editor.text_edit.redo(), QKeySequence.StandardKey.Redo)
        action(m, "Check spec &now", self.editor.check_now, "F5")

        m = self.menuBar().addMenu("&Solve")
        action(m, "&Solve again", self.request_solve, "Ctrl+R")
        action(m, "Run &basins sweep", self._run_basins, "Ctrl+B")
        action(m, "&Cancel basins sweep", self.basins.cancel, "Esc")
        action(m, "Run &gradient lab", self._run_gradient, "Ctrl+G")
        action(m, "&Clear start/tensor overrides", self.clear_overrides)

        m = self.menuBar().addMenu("&Help")
        action(m, "&About implicit-viz", self._about)

    # spec ------------------------------------------------------------------------------------
    def load_preset(self, key: str) -> None:
        """Put a preset's text in the editor (one undo step) and check it at once."""
        try:
            text = self.presets.preset_text(key)
        except (OSError, KeyError, ValueError) as exc:
            self.report_error(f"cannot load preset '{key}': {exc}")
            return
        self.presets.set_current(key)
        self.state.preset_key = key
        self.state.spec_path = None
        self.state.overrides.clear()  # a click on the last spec's map says nothing about this one
        self.editor.set_text(text, undoable=True)
        self.editor.set_modified(False)
        self.editor.check_now()
        self._update_title()

    def open_spec(self, path: str | Path) -> bool:
        """Load a spec file into the editor; a message (and False) when it cannot be read."""
        from implicit_viz.core.files import read_text_limited

        p = Path(path).expanduser()
        try:
            text = read_text_limited(p, MAX_SPEC_BYTES, "spec file")
        except OSError as exc:  # FileReadError: the message names the file and the reason
            self.report_error(str(exc))
            return False
        self.state.spec_path = str(p)
        self.state.preset_key = None
        self.state.overrides.clear()
        self.editor.set_text(text, undoable=True)
        self.editor.set_modified(False)
        self.editor.check_now()
        self._update_title()
        return True

    def save_spec(self, path: str | Path) -> bool:
        """Write the editor's text (as typed, valid or not) to ``path``."""
        from implicit_viz.core.files import atomic_write_text

        p = Path(path).expanduser()
        try:
            atomic_write_text(p, self.editor.text())  # the old file stays whole on a failure
        except OSError as exc:
            self.report_error(f"cannot save the spec: {exc}")
            return False
        self.state.spec_path = str(p)
        self.editor.set_modified(False)
        self._update_title()
        self.show_message(f"saved spec to {p}")
        return True

    def _on_spec_accepted(self, spec: Spec) -> None:
        self.state.spec = spec
        self.state.overrides = valid_overrides(spec, self.state.overrides)
        self.params.set_spec(spec)
        solver = dict(spec.solver)
        if solver != self._spec_solver:  # the text's [solver] section changed: apply it
            self._spec_solver = solver
            self._apply_spec_solver(solver)
        self.phase.setEnabled(True)
        self.request_solve()

    def _apply_spec_solver(self, solver: dict[str, Any]) -> None:
        from implicit_viz.core.solver_settings import SolverSection

        try:
            new = SolverSettings.from_spec(SolverSection.of(solver), self.solvers.settings())
            new.check()
        except ValueError as exc:
            self.report_error(f"the spec's [solver] section: {exc}", dialog=False)
            return
        self.solvers.blockSignals(True)
        try:
            self.solvers.set_settings(new)
        finally:
            self.solvers.blockSignals(False)

    def _on_spec_rejected(self, message: str) -> None:
        self.last_error = message
        self.show_message(
            f"Spec error — {message} (the plots show the last valid spec)", error=True
        )
        self._stick_message()  # a solve already under way does not hide it

    # overrides -------------------------------------------------------------------------------
    def apply_assignments(self, assignments: dict[str, float]) -> None:
        """Set params (their sliders) and other targets (``z0[1]``, ``x[0]``) and re-solve."""
        if self.state.spec is None:
            return
        params = {p.name for p in self.state.spec.params}
        values = {k: v for k, v in assignments.items() if k in params}
        others = valid_overrides(
            self.state.spec, {k: v for k, v in assignments.items() if k not in params}
        )
        self.state.overrides.update(others)
        self.params.blockSignals(True)
        try:
            self.params.set_values(values)
        finally:
            self.params.blockSignals(False)
        if others:
            shown = ", ".join(f"{k} = {v:.6g}" for k, v in self.state.overrides.items())
            self.show_message(f"set {shown} (Solve > Clear start/tensor overrides to drop)")
        self.request_solve()

    def overrides(self) -> dict[str, float]:
        return dict(self.state.overrides)

    def clear_overrides(self) -> None:
        if self.state.overrides:
            self.state.overrides.clear()
            self.request_solve()

    # solving ---------------------------------------------------------------------------------
    def problem(self) -> Problem | None:
        """The problem every view solves now: the model, with what the panels show (None
        before a spec parsed). The one place the window resolves it."""
        st = self.state
        st.spec_text = self.editor.text()
        st.values = self.params.values()
        st.seeds = self.params.seeds()
        st.settings = self.solvers.settings()
        return st.problem()

    def request_solve(self) -> int | None:
        """Queue a solve of the current spec with the panels' values; returns its id."""
        problem = self.problem()
        if problem is None:
            return None
        self.override_label.setText(
            ", ".join(f"{k} = {v:.4g}" for k, v in problem.overrides.items())
        )
        rid = self.worker.submit(problem.live_request())
        self._submitted_at[rid] = time.perf_counter()
        self._update_context(problem)
        return rid

    def _update_context(self, problem: Problem | None = None) -> None:
        """Hand the basins and gradient views the problem the live solve has."""
        problem = problem or self.problem()
        if problem is None:
            return
        try:
            self.basins.set_problem(problem)
        except (ValueError, OSError) as exc:  # SpecError is a ValueError
            self.show_message(f"Basins: {exc}", error=True)
        self.basins.set_marker(problem.marker())
        if self.views.currentWidget() is self.gradient:  # re-runs itself only when visible
            self.gradient.set_problem(problem)

    def _fit_panes(self, _index: int = 0) -> None:
        """The gradient view needs height: under its tab the residual pane shrinks to its
        table; the other tabs share the height about 60/40."""
        total = sum(self._right.sizes()) or self.height()
        share = 0.72 if self.views.currentWidget() is self.gradient else 0.58
        self._right.setSizes([int(total * share), total - int(total * share)])

    def _run_basins(self) -> None:
        self.views.setCurrentWidget(self.basins)
        self._update_context()
        self.basins.run()

    def _run_gradient(self) -> None:
        self.views.setCurrentWidget(self.gradient)
        self._update_context()
        self.gradient.run()

    def _on_snapshot(self, snap: LiveSnapshot) -> None:
        if snap.request_id < self._shown_id:
            return  # an older answer arrived late: the newest value wins
        self._snapshot = snap
        self._shown_id = snap.request_id
        t_views = time.perf_counter()
        self.trajectory.show_snapshot(snap)
        self.phase.show_snapshot(snap)
        self.residuals.show_snapshot(snap)
        t_done = time.perf_counter()
        bad = [t for t in snap.traces if t.status != "converged"]
        sticky = self._sticky
        if sticky is not None and snap.request_id <= sticky[1]:
            self.status_label.setToolTip(f"{sticky[0]}\n{snap.summary()}")  # the notice stays
        else:
            self._sticky = None
            self.show_message(snap.summary(), warn=bool(bad))
        t0 = self._submitted_at.pop(snap.request_id, None)
        for rid in [r for r in self._submitted_at if r < snap.request_id]:
            del self._submitted_at[rid]
        if t0 is not None:
            self.timings.append((t_done - t0, t_done - t_views))
            del self.timings[:-1000]
        self.snapshotShown.emit(snap.request_id)

    def _on_failed(self, request_id: int, message: str) -> None:
        self._submitted_at.pop(request_id, None)
        if request_id >= self._shown_id:
            self.report_error(f"solve failed: {message}", dialog=False)

    def _on_busy(self, busy: bool) -> None:
        self.busy_label.setText("solving…" if busy else "")

    @property
    def snapshot(self) -> LiveSnapshot | None:
        """The snapshot the plots show."""
        return self._snapshot

    @property
    def spec(self) -> Spec | None:
        """The last valid spec."""
        return self.state.spec

    # messages --------------------------------------------------------------------------------
    def show_message(self, text: str, *, error: bool = False, warn: bool = False) -> None:
        color = "#b00020" if error else ("#8a5a00" if warn else "")
        self.status_label.setStyleSheet(f"color: {color};" if color else "")
        self.status_label.setText(text)
        self.status_label.setToolTip(text)

    def report_error(self, message: str, *, dialog: bool = True) -> None:
        """Show bad input as a message in the window (status bar, and a dialog for file errors)."""
        self.last_error = message
        self.show_message(message, error=True)
        log.info("%s", message)
        if dialog:
            box = QMessageBox(QMessageBox.Icon.Warning, "implicit-viz", message, parent=self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # window-modal without a nested event loop: nothing blocks
        self.errorShown.emit(message)

    # exports ---------------------------------------------------------------------------------
    def plot_widget(self, which: str):
        """The plot named ``which``: ``"trajectory"`` (the visible tab), ``"phase"``,
        ``"residuals"``, ``"basins"``, ``"gradient_error"`` or ``"gradient_memory"``."""
        if which == "basins":
            return self.basins.plot_widget()
        if which.startswith("gradient_"):
            return self.gradient.plot_widgets()[which.removeprefix("gradient_")]
        view = {"trajectory": self.trajectory, "phase": self.phase, "residuals": self.residuals}
        return view[which].current_plot()

    def export_plot(self, which: str, path: str | Path) -> Path | None:
        from implicit_viz.gui.plot_export import export_plot

        return self._export(
            lambda: export_plot(self.plot_widget(which), path), "plot export failed"
        )

    def export_traces(self, path: str | Path) -> Path | None:
        """z and the residual per step, per solver, of the shown solve (.csv, .npz, .json)."""
        from implicit_viz.core.export import write_trace

        if self._snapshot is None or self.state.spec is None:
            self.report_error("nothing to export yet: no solve has finished")
            return None
        spec = self.state.spec.with_overrides(self._snapshot.values)
        results = list(self._snapshot.results)
        return self._export(lambda: write_trace(path, spec, results), "trace export failed")

    def export_basins_data(self, path: str | Path) -> Path | None:
        """The last sweep's arrays (.npz/.json, as `implicit-viz sweep --out`)."""
        return self._export(lambda: self.basins.export_data(path), "basins export failed")

    def export_gradient_curves(self, path: str | Path) -> Path | None:
        """The last gradient report (.csv/.npz/.json, as `implicit-viz grad`)."""
        return self._export(lambda: self.gradient.export_curves(path), "gradient export failed")

    def _export(self, write, what: str) -> Path | None:
        from implicit_viz.core.export import ExportError

        try:
            out = write()
        except (ExportError, OSError, ValueError) as exc:
            self.report_error(f"{what}: {exc}")
            return None
        self.show_message(f"wrote {out}")
        return out

    def save_window_image(self, path: str | Path) -> Path | None:
        p = Path(path).expanduser()
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            self.report_error(f"cannot save {p}: use a .png or .jpg file name")
            return None
        try:
            write_widget_image(self, p)
        except OSError as exc:
            self.report_error(f"cannot write the window image: {exc}")
            return None
        self.show_message(f"wrote {p}")
        return p

    # sessions --------------------------------------------------------------------------------
    def sync_state(self) -> AppState:
        """The model with everything the widgets show written into it."""
        self.problem()
        st = self.state
        st.view = {
            "phase_components": list(self.phase.components()),
            "trajectory_tab": self.trajectory.tabs.currentIndex(),
            "view_tab": self.views.currentIndex(),
            "window_size": [self.width(), self.height()],
        }
        st.basins = self.basins.settings()
        st.gradients = self.gradient.settings()
        return st

    def session(self) -> Session:
        """The current state as a :class:`Session` (a dump of the model)."""
        return Session.of(self.sync_state())

    def save_session(self, path: str | Path) -> Path | None:
        try:
            out = write_session(path, self.session())
        except SessionError as exc:
            self.report_error(str(exc))
            return None
        self.show_message(f"saved session to {out}")
        return out

    def open_session(self, path: str | Path) -> bool:
        """Restore a session; a corrupt file leaves the window as it was, with a message.

        The whole file is checked (against its own spec text too) before anything changes.
        A session whose spec text does not check is opened for its text only (its values,
        seeds, overrides and view are not applied to another spec), with a message saying so."""
        try:
            s, _spec = load_session(path)
        except SessionError as exc:
            self.report_error(str(exc))
            return False
        applied, notes = self.apply_session(s)
        if not applied:
            self.report_error(f"opened session {path}, but {notes[0]}", dialog=False)
            self._stick_message()
        elif notes:
            self.show_message(f"opened session {path}; {'; '.join(notes)}", warn=True)
            self._stick_message()
        else:
            self.show_message(f"opened session {path}")
        return True

    def apply_session(self, s: Session) -> tuple[bool, list[str]]:
        """Show session ``s``. Returns ``(applied, notes)``: ``applied`` is False when its spec
        text does not check (the text is in the editor to be fixed, its error shown there; the
        values, seeds, overrides and view that belong to that text are not applied to the last
        valid spec, whose state stays); ``notes`` says, one phrase each, what was not applied
        as stored (a value clamped to its param's range, names the spec does not have)."""
        self.state.spec_path = s.spec_path
        self.state.preset_key = None
        previous = self.state.overrides
        self.state.overrides = dict(s.overrides)
        self.editor.set_text(s.spec_text, undoable=True)
        self.editor.set_modified(False)
        spec = self.editor.check_now()  # accepted -> panels rebuilt with the text's defaults
        self.solvers.blockSignals(True)
        try:
            self.solvers.set_settings(s.solver)  # checked by the session, spec-independent
        finally:
            self.solvers.blockSignals(False)
        if spec is None:
            self.state.overrides = previous  # those of the last valid spec, still shown
            self._update_title()
            self.request_solve()
            error = self.editor.error_message() or "it does not check"
            return False, [
                f"its spec does not check ({error}): the session's slider values, seeds and "
                "overrides were not applied; fix the spec in the editor (the plots show the "
                "last valid spec)"
            ]
        notes = _session_notes(spec, s, self.state.overrides)
        self.params.blockSignals(True)
        try:
            self.params.set_values(s.values, s.seeds)
        finally:
            self.params.blockSignals(False)
        self.basins.apply_settings(s.basins)
        self.gradient.apply_settings(s.gradients)
        comps = s.view.get("phase_components")  # checked by the session: two ints < dim
        if comps is not None:
            self.phase.set_components(*comps)
        view_tab = s.view.get("view_tab")
        if isinstance(view_tab, int) and 0 <= view_tab < self.views.count():
            self.views.setCurrentIndex(view_tab)
        tab = s.view.get("trajectory_tab")
        self._pending_tab = tab if isinstance(tab, int) else None
        self.snapshotShown.connect(self._restore_tab, Qt.ConnectionType.SingleShotConnection)
        self._update_title()
        self.request_solve()
        return True, notes

    def _stick_message(self) -> None:
        """Keep the status message shown over the summaries of the solves queued so far (the
        next solve asked for afterwards shows its summary again)."""
        self._sticky = (self.status_label.text(), self.worker.last_id)

    def _restore_tab(self, _rid: int) -> None:
        tab = getattr(self, "_pending_tab", None)
        if tab is not None and 0 <= tab < self.trajectory.tabs.count():
            self.trajectory.tabs.setCurrentIndex(tab)

    # dialogs ---------------------------------------------------------------------------------
    def _ask_open_spec(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open spec", "", _SPEC_FILTER)
        if path:
            self.open_spec(path)

    def _ask_save_spec(self) -> None:
        if self.state.spec_path:
            self.save_spec(self.state.spec_path)
        else:
            self._ask_save_spec_as()

    def _ask_save(
        self, title: str, default: str, filters: str, then, *, add_suffix: bool = False
    ) -> None:
        """A save dialog; ``then(path)`` with the chosen path (with the chosen filter's suffix
        when ``add_suffix`` and the name has none), nothing when the dialog is cancelled."""
        path, chosen = QFileDialog.getSaveFileName(self, title, default, filters)
        if path:
            then(_with_suffix(path, chosen) if add_suffix else path)

    def _ask_save_spec_as(self) -> None:
        self._ask_save("Save spec", "spec.toml", _SPEC_FILTER, self.save_spec)

    def _ask_open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", _SESSION_FILTER)
        if path:
            self.open_session(path)

    def _ask_save_session(self) -> None:
        self._ask_save(
            "Save session", f"session{SESSION_SUFFIX}", _SESSION_FILTER, self.save_session
        )

    def _ask_export_plot(self, which: str) -> None:
        self._ask_save(
            "Export plot",
            f"{which}.png",
            _PLOT_FILTER,
            lambda path: self.export_plot(which, path),
            add_suffix=True,
        )

    def _ask_export_traces(self) -> None:
        self._ask_save(
            "Export traces", "trace.csv", _TRACE_FILTER, self.export_traces, add_suffix=True
        )

    def _ask_export_basins_data(self) -> None:
        self._ask_save(
            "Export basins data",
            "basins.npz",
            "NumPy archive (*.npz);;JSON document (*.json)",
            self.export_basins_data,
            add_suffix=True,
        )

    def _ask_export_gradient_curves(self) -> None:
        self._ask_save(
            "Export gradient curves",
            "gradients.csv",
            _TRACE_FILTER,
            self.export_gradient_curves,
            add_suffix=True,
        )

    def _ask_window_image(self) -> None:
        self._ask_save("Save window image", "window.png", "PNG (*.png)", self.save_window_image)

    def _about(self) -> None:
        from implicit_viz import __version__

        QMessageBox.about(
            self,
            "About implicit-viz",
            f"implicit-viz {__version__}\n\nExplore implicit layers: fixed-point maps "
            "z = f(x, z), their solvers and outcomes.",
        )

    def _update_title(self) -> None:
        name = (
            Path(self.state.spec_path).name
            if self.state.spec_path
            else (self.state.spec.name if self.state.spec else "")
        )
        star = "*" if self.editor.is_modified() else ""
        self.setWindowTitle(f"{name}{star} — implicit-viz" if name else "implicit-viz")
        self._sync_picker()

    def _sync_picker(self) -> None:
        """The preset picker names a preset only while the editor holds that preset's text as
        loaded; otherwise it shows where the text came from (a file, an edited preset)."""
        key = self.state.preset_key
        if self.state.spec_path:
            self.presets.show_other(Path(self.state.spec_path).name)
        elif key is not None and not self.editor.is_modified():
            self.presets.set_current(key)
        elif key is not None:
            self.presets.show_other(f"{self.presets.itemText(self.presets.findData(key))} (edited)")
        else:
            self.presets.show_other("custom spec")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every background thread (solve, sweep, gradient)."""
        self.worker.shutdown()
        self.basins.shutdown()
        self.gradient.shutdown()

    def start(self, spec: str | None = None) -> None:
        """Open ``spec`` (a preset name or a file path), else the default preset."""
        from implicit_viz.core.presets import preset_path

        if spec is None:
            self.load_preset(DEFAULT_PRESET)
        elif preset_path(spec) is not None and not Path(spec).is_file():
            self.load_preset(spec)
        elif not self.open_spec(spec):
            QTimer.singleShot(0, lambda: self.load_preset(DEFAULT_PRESET))


def write_widget_image(widget: QWidget, path: Path) -> Path:
    """Grab ``widget`` and write it (PNG or JPEG by suffix) atomically, a symbolic link
    written through; raises ``OSError`` naming the path."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    from implicit_viz.core.files import atomic_write_bytes

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    fmt = "JPG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    ok = widget.grab().save(buffer, fmt)
    buffer.close()
    if not ok:
        raise OSError(f"cannot encode the window image for '{path}'")
    return atomic_write_bytes(path, bytes(data.data()))


def _session_notes(spec: Spec, s: Session, overrides: dict[str, float]) -> list[str]:
    """What of session ``s`` does not apply to ``spec`` as stored: values outside a param's
    slider range (clamped), names ``spec`` does not have, overrides it refuses (dropped:
    ``overrides`` are those kept)."""
    params = {p.name: p for p in spec.params}
    notes = []
    for name, v in s.values.items():
        p = params.get(name)
        if p is None:
            continue
        lo, hi = slider_range(p)
        if not lo <= v <= hi:
            notes.append(
                f"{name} = {v:.6g} lies outside its range [{lo:.6g}, {hi:.6g}]: "
                f"set to {min(max(v, lo), hi):.6g}"
            )
    unknown = [n for n in s.values if n not in params]
    random = {t.name for t in spec.tensors if t.is_random}
    unknown += [f"{n}.seed" for n in s.seeds if n not in random]
    if unknown:
        notes.append(f"not in this spec, ignored: {', '.join(sorted(unknown))}")
    dropped = [k for k in s.overrides if k not in overrides]
    if dropped:
        notes.append(f"overrides this spec refuses, dropped: {', '.join(dropped)}")
    return notes


def _with_suffix(path: str, chosen_filter: str) -> str:
    """Add the suffix of the chosen file-dialog filter when the name has none."""
    if Path(path).suffix:
        return path
    for suffix in (".png", ".svg", ".pdf", ".csv", ".npz", ".json"):
        if f"*{suffix}" in chosen_filter:
            return path + suffix
    return path
