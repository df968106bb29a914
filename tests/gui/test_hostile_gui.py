"""Hostile and unlucky input to the window (issue 15): session files that aborted the app, param
ranges that overflowed the sliders, huge values pyqtgraph could not range, a large dim that froze
the window, stale basins maps and gradient reports, and files written over symbolic links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from implicit_viz.core.presets import preset_path
from implicit_viz.gui.main_window import MainWindow
from implicit_viz.gui.session import SEED_MAX, SessionError, load_session, read_session

TIMEOUT = 20_000
ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture
def window(qtbot):
    w = MainWindow(devices=["cpu"])
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.shutdown()


def settle(qtbot, w: MainWindow, timeout: int = TIMEOUT) -> None:
    qtbot.waitUntil(
        lambda: w.snapshot is not None and w._shown_id >= w.worker.last_id, timeout=timeout
    )


def load(qtbot, w: MainWindow, key: str) -> None:
    with qtbot.waitSignal(w.snapshotShown, timeout=TIMEOUT):
        w.load_preset(key)
    settle(qtbot, w)


def open_text(qtbot, w: MainWindow, text: str, timeout: int = TIMEOUT) -> None:
    with qtbot.waitSignal(w.snapshotShown, timeout=timeout):
        w.editor.set_text(text)
        w.editor.check_now()
    settle(qtbot, w, timeout)


def deq_session(**fields) -> dict:
    text = preset_path("deq_cell").read_text(encoding="utf-8")
    return {"format": "implicit-viz-session", "version": 1, "spec_text": text, **fields}


def deep_session() -> str:
    base = json.dumps(deq_session())
    return base[:-1] + ', "view": ' + "[" * 100_000 + "]" * 100_000 + "}"


HOSTILE = {
    "seed_1e23": (deq_session(seeds={"W": 10**23}), "seeds.W"),
    "seed_negative": (deq_session(seeds={"W": -1}), "seeds.W"),
    "components_2_40": (deq_session(view={"phase_components": [0, 2**40]}), "phase_components"),
    "components_over_dim": (deq_session(view={"phase_components": [0, 32]}), "dim is 32"),
    "version_-7": (deq_session(version=-7), "version -7"),
    "version_true": (deq_session(version=True), "version True"),
    "tol_true": (deq_session(solver={"tol": True}), "solver.tol"),
    "view_tab_9": (deq_session(view={"view_tab": 9}), "view.view_tab"),
    "value_1e400": (
        '{"format": "implicit-viz-session", "version": 1, "spec_text": "",'
        ' "values": {"a": 1' + "0" * 400 + "}}",
        "values.a",
    ),
    "deep_view": (deep_session(), "nested"),
}


def write(tmp_path: Path, name: str, content) -> Path:
    p = tmp_path / f"{name}.ivsession"
    p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


# -- sessions, without a window -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_session_is_refused_naming_the_field(tmp_path, name):
    content, words = HOSTILE[name]
    p = write(tmp_path, name, content)
    with pytest.raises(SessionError) as info:
        load_session(p)
    assert words in str(info.value) and str(p) in str(info.value)
    assert "\n" not in str(info.value)


def test_seed_the_old_spin_box_overflowed_on_is_accepted_and_drawn(qtbot, window, tmp_path):
    """2**40 overflowed the int32 seed box (OverflowError, then SIGABRT); it is a valid torch
    seed, so the session opens and the solve uses it."""
    p = write(tmp_path, "big_seed", deq_session(seeds={"W": 2**40}))
    assert read_session(p).seeds == {"W": 2**40}
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        assert window.open_session(p)
    settle(qtbot, window)
    assert window.params.seeds()["W"] == 2**40
    assert window.snapshot.traces  # solved with that seed
    assert SEED_MAX == 2**63 - 1


@pytest.mark.parametrize("name", ["seed_1e23", "components_2_40", "version_-7", "deep_view"])
def test_bad_session_from_the_window_changes_nothing(qtbot, window, tmp_path, name):
    load(qtbot, window, "tanh_layer")
    text, values, spec = window.editor.text(), window.params.values(), window.spec
    p = write(tmp_path, name, HOSTILE[name][0])
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert not window.open_session(p)
    assert str(p) in window.last_error and HOSTILE[name][1] in window.last_error
    assert window.editor.text() == text
    assert window.params.values() == values
    assert window.spec is spec


def run_app(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [str(PYTHON), "-m", "implicit_viz", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", ["seed_1e23", "components_2_40", "version_true", "deep_view"])
def test_hostile_session_on_the_command_line_is_one_line_not_an_abort(tmp_path, name):
    p = write(tmp_path, name, HOSTILE[name][0])
    out = tmp_path / "x.png"
    r = run_app("--session", str(p), "--screenshot", str(out))
    assert r.returncode not in (0, -6, 134), r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("implicit-viz")]
    assert len(lines) == 1 and HOSTILE[name][1] in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "terminate called" not in r.stderr
    assert not out.exists()


def test_unknown_preset_screenshot_fails_with_one_message(tmp_path):
    out = tmp_path / "a.png"
    r = run_app("nosuchpreset", "--screenshot", str(out), timeout=60)
    assert r.returncode != 0
    assert "no preset or spec file named 'nosuchpreset'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_slot_exception_is_reported_not_an_abort(tmp_path):
    """An exception escaping a Qt slot goes to the app's hook (a message), the app goes on."""
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from implicit_viz.gui import app as a\n"
        "qa = QApplication([])\n"
        "class W:\n"
        "    def report_error(self, m, dialog=False): print('REPORTED', m, flush=True)\n"
        "a._install_excepthook(W())\n"
        "def bad(): raise OverflowError('boom')\n"
        "QTimer.singleShot(0, bad)\n"
        "QTimer.singleShot(50, qa.quit)\n"
        "qa.exec()\n"
        "print('ALIVE')\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [str(PYTHON), "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert "REPORTED internal error: OverflowError: boom" in r.stdout
    assert "ALIVE" in r.stdout


# -- session and window images over a symbolic link ---------------------------------------------
def test_session_save_writes_through_a_symlink(qtbot, window, tmp_path):
    load(qtbot, window, "tanh_layer")
    target = tmp_path / "real.ivsession"
    target.write_text("old")
    link = tmp_path / "link.ivsession"
    link.symlink_to(target)
    assert window.save_session(link) is not None
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_session(target).spec_text == window.editor.text()
    img_target = tmp_path / "real.png"
    img_target.write_bytes(b"old")
    img_link = tmp_path / "w.png"
    img_link.symlink_to(img_target)
    assert window.save_window_image(img_link) is not None
    assert img_link.is_symlink() and img_target.read_bytes()[:4] == b"\x89PNG"
    spec_target = tmp_path / "real.toml"
    spec_target.write_text("old")
    spec_link = tmp_path / "s.toml"
    spec_link.symlink_to(spec_target)
    assert window.save_spec(spec_link)
    assert spec_link.is_symlink() and spec_target.read_text() == window.editor.text()


# -- param ranges and huge values -------------------------------------------------------------
RANGES = {
    "pm_1.7e308": (
        'name = "r1"\ndim = 2\nf = "0.5*z + a*0"\n[params]\n'
        "a = { value = 0, min = -1.7e308, max = 1.7e308 }\n"
    ),
    "auto_range_to_inf": 'name = "r2"\ndim = 1\nf = "0.5*z + a*1e-308"\n[params]\na = 1e308\n',
    "tiny": 'name = "r3"\ndim = 1\nf = "0.5*z + a"\n[params]\na = { value = 0, min = -1e-300, '
    "max = 1e-300 }\n",
}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_extreme_param_ranges_get_sliders_and_a_solve(qtbot, window, name):
    load(qtbot, window, "cosine")
    open_text(qtbot, window, RANGES[name])
    s = window.params.slider("a")
    lo, hi = s.minimum(), s.maximum()
    assert np.isfinite([lo, hi]).all() and lo < hi
    assert window.snapshot.spec_name == RANGES[name].split('"')[1]
    assert window.snapshot.traces[0].status == "converged"
    # the ends and the middle reach the solve, finite
    for v in (lo, hi, lo / 2 + hi / 2):
        with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
            s.setValue(v)
        settle(qtbot, window)
        assert np.isfinite(window.params.values()["a"])


def test_huge_start_draws_without_pyqtgraph_errors(qtbot, window, monkeypatch):
    """z0 = [1e308, 1e308] made pyqtgraph raise 'Cannot set range [-inf, inf]' on every paint."""
    errors: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: errors.append(f"{t.__name__}: {e}"))
    load(qtbot, window, "cosine")
    open_text(qtbot, window, 'name = "r4"\ndim = 2\nz0 = [1e308, 1e308]\nf = "0.5*z"\n')
    for plot in (window.trajectory.current_plot(), window.phase.current_plot()):
        plot.grab()  # paint: the auto range is computed here
        for ax in plot.getPlotItem().getViewBox().viewRange():
            assert np.isfinite(ax).all()
    qtbot.wait(100)
    window.grab()
    assert errors == []


# -- large dim --------------------------------------------------------------------------------
def big_spec(dim: int) -> str:
    return (
        f'name = "big{dim}"\ndim = {dim}\nf = "0.5*z + 1"\n\n'
        '[solver]\nsolvers = ["fixed_point", "anderson"]\n'
    )


def test_large_dim_does_not_freeze_the_window(qtbot, window):
    """dim 65536 froze the window for 80 s (a curve per component); the longest gap of a 5 ms
    timer from the spec change to the drawn plots stays under 2 s, and a note says what is drawn."""
    from implicit_viz.gui.trajectory_view import MAX_CURVES

    load(qtbot, window, "cosine")
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(20)
    ticks.append(time.perf_counter())
    open_text(qtbot, window, big_spec(65536), timeout=240_000)
    qtbot.wait(100)
    ticks.append(time.perf_counter())
    timer.stop()
    assert window.snapshot.dim == 65536
    stall = float(np.diff(ticks).max())
    assert stall < 2.0, f"the window froze for {stall:.1f} s"
    solver = window.trajectory.solvers()[0]
    assert len(window.trajectory.curves(solver)) == MAX_CURVES
    note = window.trajectory.note
    assert note.isVisible() and f"{MAX_CURVES} of 65,536 components" in note.text()


def test_chosen_components_are_the_ones_that_move_most():
    from implicit_viz.gui.trajectory_view import chosen_components

    rng = np.random.default_rng(0)
    traj = rng.normal(scale=1e-3, size=(30, 1000))
    movers = np.array([3, 500, 999])
    traj[:, movers] += np.linspace(0, 5, 30)[:, None]
    traj[:, 7] = np.nan  # never finite: last
    traj[-1, 8] = np.inf  # blew up: first
    got = chosen_components(traj, most=4)
    np.testing.assert_array_equal(got, [3, 8, 500, 999])
    # all alike: an even spread
    even = chosen_components(np.tile(np.arange(10.0)[:, None], (1, 1000)), most=10)
    np.testing.assert_array_equal(even, np.arange(0, 1000, 100))
    assert len(chosen_components(traj[:, :50], most=200)) == 50


# -- stale basins map and gradient report --------------------------------------------------------
def test_click_on_a_map_of_the_previous_spec_applies_nothing(qtbot, window):
    load(qtbot, window, "newton_cubic")
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("z0[0]", "z0[1]", x_range=(-1.98, 1.5), y_range=(-1.5, 1.5))
    window.basins.resolution.setValue(16)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    x, y = float(res.x_values[0]), float(res.y_values[2])
    # the spec changes (a different map, same dim)
    text = window.editor.text().replace('name = "', 'name = "edited ', 1)
    assert text != window.editor.text()
    open_text(qtbot, window, text)
    assert window.basins.stale
    shown = window._shown_id
    with qtbot.waitSignal(window.basins.errorShown, timeout=TIMEOUT):
        assert window.basins._emit_click_at(x, y) is None
    qtbot.wait(200)
    assert window.overrides() == {} and window._shown_id == shown
    assert "previous spec" in window.basins.status_label.text()
    # running again makes the map current
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    assert not window.basins.stale
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        assert window.basins._emit_click_at(x, y) is not None


def test_spec_change_mid_sweep_stops_the_sweep_and_marks_the_map(qtbot, window):
    load(qtbot, window, "newton_cubic")
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("z0[0]", "z0[1]", x_range=(-1.98, 1.5), y_range=(-1.5, 1.5))
    window.basins.resolution.setValue(1024)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
        qtbot.waitUntil(lambda: window.basins.shown_result() is not None, timeout=30_000)
        load(qtbot, window, "logistic")
    assert window.basins.stale and not window.basins.running
    assert "previous spec" in window.basins.status_label.text()


def test_report_of_the_previous_spec_is_never_shown(qtbot, window):
    """A report that arrives after the spec changed is dropped (it was shown briefly)."""
    view = window.gradient
    load(qtbot, window, "tanh_layer")
    window.views.setCurrentWidget(view)
    view.worker.reportReady.disconnect(view._on_report)  # hold reports back, deliver by hand
    got: list = []
    view.worker.reportReady.connect(lambda rid, rep: got.append((rid, rep)))
    rid = view.run()
    qtbot.waitUntil(lambda: any(r == rid for r, _ in got), timeout=60_000)
    report = dict(got)[rid]
    assert report.request.spec.name == window.spec.name
    load(qtbot, window, "cosine")  # the spec changes before the report is delivered
    window._update_context()
    view._on_report(rid, report)
    assert view.report() is None and view.shown_id != rid
    # the same report under its own spec is shown
    load(qtbot, window, "tanh_layer")
    window._update_context()
    rid2 = view.run()
    qtbot.waitUntil(lambda: any(r == rid2 for r, _ in got), timeout=60_000)
    view._on_report(rid2, dict(got)[rid2])
    assert view.shown_id == rid2 and view.report() is not None


@pytest.mark.parametrize(
    "lo, hi, value",
    [
        (-1.7e308, 1.7e308, 0.0),
        (0.0, float("inf"), 1e308),
        (1e308, 1.7e308, 1.2e308),
        (-1e-300, 1e-300, 0.0),
        (5e-324, 1e-323, 5e-324),
    ],
)
def test_slider_range_and_steps_stay_finite(lo, hi, value):
    from implicit_viz.core.spec import ParamSpec
    from implicit_viz.gui.param_panel import slider_range, slider_steps

    a, b = slider_range(ParamSpec("a", value, lo, hi))
    assert np.isfinite([a, b, b - a]).all() and a < b
    if np.isfinite(hi - lo):  # a representable span is kept whole: the value stays reachable
        assert (a, b) == (lo, min(hi, sys.float_info.max))
        assert a <= value <= b
    decimals, step, page = slider_steps(a, b)
    assert 2 <= decimals <= 8 and 0 < step <= page and np.isfinite([step, page]).all()


# -- red-team review after issue 15 ----------------------------------------------------------------
_AM = 'name = "am"\ndim = 1\nf = "cos(z)"\n[solver]\n'
BAD_SOLVER_SECTIONS = {
    "anderson_m": (
        'solvers = ["anderson"]\n[solver.anderson]\nm = 1000000000\n',
        "solver.anderson.m",
        "1..50",
    ),
    "unknown_solver": (
        'solvers = ["nope", "fixed_point"]\n',
        "solver.solvers",
        "known: fixed_point",
    ),
    "damped_beta_nan": ("[solver.damped]\nbeta = nan\n", "solver.damped.beta", "nan"),
    "max_iter_over_panel": ("max_iter = 10000000\n", "solver.max_iter", "1..100000"),
    "unknown_option": ("[solver.anderson]\nmm = 3\n", "solver.anderson", "options: m"),
}


@pytest.mark.parametrize("name", sorted(BAD_SOLVER_SECTIONS))
def test_bad_solver_section_is_a_spec_error_naming_the_field(name):
    from implicit_viz.core.errors import SpecError
    from implicit_viz.gui.spec_editor import check_spec_text

    extra, field, words = BAD_SOLVER_SECTIONS[name]
    with pytest.raises(SpecError) as info:
        check_spec_text(_AM + extra)
    assert info.value.field == field
    assert words in info.value.message


def test_good_solver_section_and_presets_still_check():
    from implicit_viz.core.presets import preset_names
    from implicit_viz.gui.spec_editor import check_spec_text

    spec = check_spec_text(_AM + 'solvers = ["anderson"]\n[solver.anderson]\nm = 7\nlam = 1e-3\n')
    assert spec.solver["anderson"]["m"] == 7
    for key in preset_names():
        check_spec_text(preset_path(key).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["anderson_m", "unknown_solver", "max_iter_over_panel"])
def test_bad_solver_section_stays_shown_and_changes_nothing(qtbot, window, name):
    """The error was set with no red line and the solve summary replaced it 50 ms later; the
    section was dropped and the panel kept its solvers. Now it is a spec error that stays."""
    load(qtbot, window, "tanh_layer")
    spec, settings = window.spec, window.solvers.settings()
    extra, field, words = BAD_SOLVER_SECTIONS[name]
    text = _AM + extra
    window.editor.set_text(text)
    assert window.editor.check_now() is None
    qtbot.wait(400)  # no solve summary replaces the message
    shown = window.editor.error_message()
    assert field in shown and words in shown and window.editor.error_label.isVisible()
    assert field in window.last_error and field in window.status_label.text()
    assert window.editor.text() == text
    assert window.spec is spec and window.solvers.settings() == settings
    # fixed, the section applies
    window.editor.set_text(_AM + 'solvers = ["anderson"]\n[solver.anderson]\nm = 7\n')
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.editor.check_now()
    assert window.solvers.settings().solvers == ("anderson",)
    assert window.solvers.settings().option("anderson", "m") == 7


def test_session_whose_spec_does_not_parse_applies_nothing_to_the_last_spec(
    qtbot, window, tmp_path
):
    """Its overrides were applied to deq_cell and every solve failed ("z0 index 99999 out of
    range for dim 32")."""
    load(qtbot, window, "deq_cell")
    spec, values, seeds = window.spec, window.params.values(), window.params.seeds()
    p = write(
        tmp_path,
        "broken",
        {
            "format": "implicit-viz-session",
            "version": 1,
            "spec_text": "nope = [",
            "values": {"s": 1e300, "zz": 5},
            "overrides": {"z0[99999]": 1.0, "W[5,5]": 3},
        },
    )
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        assert window.open_session(p)
    assert window.editor.text() == "nope = ["  # kept, to be fixed
    assert window.editor.error_message()
    assert "not applied" in window.last_error and str(p) in window.last_error
    assert window.spec is spec and window.overrides() == {}
    assert window.params.values() == values and window.params.seeds() == seeds
    # the window still solves the last valid spec
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        window.request_solve()
    settle(qtbot, window)
    assert all(t.status == "converged" for t in window.snapshot.traces)


def test_session_value_outside_its_range_is_clamped_and_said(qtbot, window, tmp_path):
    load(qtbot, window, "deq_cell")
    ranges = {q.name: (q.min, q.max) for q in window.spec.params}
    name = next(iter(ranges))
    lo, hi = ranges[name]
    p = write(tmp_path, "clamped", deq_session(values={name: 1e300, "zz": 5}))
    with qtbot.waitSignal(window.snapshotShown, timeout=TIMEOUT):
        assert window.open_session(p)
    settle(qtbot, window)
    qtbot.wait(100)
    status = window.status_label.text()
    assert f"{name} = 1e+300 lies outside its range [{lo:.6g}, {hi:.6g}]" in status
    assert "zz" in status and "\n" not in status
    assert window.params.values()[name] == pytest.approx(hi)


def test_click_on_a_cell_beyond_the_slider_range_applies_nothing(qtbot, window):
    """The click returned a = -1e6 while the slider clamped to 0 and x[0] = -1.2 was applied:
    the plots showed a solve that was not that cell's."""
    load(qtbot, window, "tanh_layer")
    window.views.setCurrentWidget(window.basins)
    window._update_context()
    window.basins.set_axes("a", "x[0]", x_range=(-1e6, 1e6), y_range=(-2, 2))
    window.basins.resolution.setValue(16)
    with qtbot.waitSignal(window.basins.sweepFinished, timeout=60_000):
        window.basins.run()
    res = window.basins.result()
    values, shown = window.params.values(), window._shown_id
    with qtbot.waitSignal(window.basins.errorShown, timeout=TIMEOUT):
        assert window.basins._emit_click_at(float(res.x_values[0]), float(res.y_values[2])) is None
    qtbot.wait(200)
    assert window.overrides() == {} and window.params.values() == values
    assert window._shown_id == shown
    message = window.basins.status_label.text()
    assert "a = -1e+06 lies outside its slider range [0, 3]: not applied" in message
    assert message in window.status_label.text()


def test_screenshot_of_a_spec_the_editor_refuses_fails_at_once(tmp_path):
    """A spec that parses but that the window's own check refuses (here its [solver] section)
    is never solved: a --screenshot run used to wait 60 s for that solve, then fail. The command
    line now runs the same check first: one line naming the field, nothing else opened."""
    from implicit_viz.gui.app import check_inputs

    spec = tmp_path / "am.toml"
    spec.write_text(
        'dim = 1\nf = "cos(z)"\n[solver]\nsolvers = ["anderson"]\n[solver.anderson]\nm = 1000000000\n',
        encoding="utf-8",
    )
    problem = check_inputs(str(spec), None, strict=True)
    assert problem.startswith(f"{spec}: solver.anderson.m: ") and "1..50" in problem
    good = tmp_path / "good.toml"
    good.write_text('dim = 1\nf = "cos(z)"\n', encoding="utf-8")
    assert check_inputs(str(good), None, strict=True) == ""
    assert check_inputs(str(spec), None, strict=False) == ""  # the window shows it instead
