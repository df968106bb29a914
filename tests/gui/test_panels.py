"""The param and solver panels, driven through their widgets."""

from __future__ import annotations

import pytest

from implicit_viz.core.live import SolverSettings
from implicit_viz.core.spec import load_spec, parse_spec
from implicit_viz.gui.param_panel import ParamPanel
from implicit_viz.gui.solver_panel import SolverPanel


@pytest.fixture
def panel(qtbot):
    p = ParamPanel()
    qtbot.addWidget(p)
    return p


def test_sliders_follow_the_spec_ranges(panel):
    spec = load_spec("tanh_layer")
    panel.set_spec(spec)
    s = panel.slider("a")
    p = spec.param("a")
    assert (s.minimum(), s.maximum()) == (p.min, p.max)
    assert panel.values() == {"a": p.value}
    assert panel.seeds() == {}


def test_seed_boxes_for_random_tensors(panel):
    spec = load_spec("deq_cell")
    panel.set_spec(spec)
    assert panel.seeds() == {t.name: t.seed for t in spec.tensors if t.is_random}
    assert set(panel.seeds()) == {"W", "U", "x", "b"}


def test_moving_a_slider_emits_changed_with_the_new_value(panel, qtbot):
    panel.set_spec(load_spec("tanh_layer"))
    with qtbot.waitSignal(panel.changed, timeout=1000):
        panel.slider("a").setValue(1.7)
    assert panel.values()["a"] == pytest.approx(1.7)


def test_set_values_clamps_and_ignores_unknown_names(panel):
    panel.set_spec(load_spec("tanh_layer"))
    panel.set_values({"a": 99.0, "nope": 1.0})
    assert panel.values() == {"a": 3.0}


def test_user_values_survive_an_edit_unless_the_text_changes_them(panel):
    spec = load_spec("tanh_layer")
    panel.set_spec(spec)
    panel.set_values({"a": 2.0})
    edited = parse_spec(
        spec.source.replace('f = "tanh(a * (W @ z) + x)"', 'f = "tanh(a * (W @ z))"')
    )
    panel.set_spec(edited)
    assert panel.values()["a"] == 2.0  # the user's value is kept
    moved = parse_spec(spec.source.replace("value = 0.9", "value = 0.4"))
    panel.set_spec(moved)
    assert panel.values()["a"] == 0.4  # the text changed the default: it wins
    wider = parse_spec(spec.source.replace("max = 3.0", "max = 5.0"))
    panel.set_spec(wider)
    assert panel.slider("a").maximum() == 5.0


def test_set_spec_does_not_emit(panel, qtbot):
    with qtbot.assertNotEmitted(panel.changed):
        panel.set_spec(load_spec("tanh_layer"))
        panel.set_spec(load_spec("logistic"))
    assert set(panel.values()) == {"r"}


def test_solver_panel_round_trip(qtbot):
    sp = SolverPanel(["cpu"])
    qtbot.addWidget(sp)
    s = SolverSettings(
        solvers=("damped", "broyden"),
        tol=1e-9,
        max_iter=321,
        options={"damped": {"beta": 0.3}, "anderson": {"m": 3}},
    )
    with qtbot.waitSignal(sp.changed, timeout=1000):
        sp.set_settings(s)
    assert sp.settings() == s


def test_solver_panel_keeps_one_solver_and_refuses_bad_tol(qtbot):
    sp = SolverPanel(["cpu"])
    qtbot.addWidget(sp)
    sp.set_settings(SolverSettings(solvers=("newton",)))
    sp.check("newton").setChecked(False)
    assert sp.settings().solvers == ("newton",)
    sp.tol.setText("abc")
    sp.tol.editingFinished.emit()
    assert sp.settings().tol == 1e-6
    assert "not a tolerance in (0, 1e+100]" in sp.tol.toolTip()
    sp.tol.setText("1e200")  # its square overflows the stop test: refused the same way
    sp.tol.editingFinished.emit()
    assert sp.settings().tol == 1e-6
    assert "'1e200' is not a tolerance" in sp.tol.toolTip()
    with qtbot.waitSignal(sp.changed, timeout=1000):
        sp.tol.setText("1e-9")
        sp.tol.editingFinished.emit()
    assert sp.settings().tol == 1e-9
    with qtbot.waitSignal(sp.changed, timeout=1000):
        sp.check("anderson").setChecked(True)
    assert sp.settings().solvers == ("anderson", "newton")


def test_solver_panel_switches_to_a_disjoint_set(qtbot):
    sp = SolverPanel(["cpu"])
    qtbot.addWidget(sp)
    sp.set_settings(SolverSettings(solvers=("fixed_point",)))
    sp.set_settings(SolverSettings(solvers=("newton",)))
    assert sp.settings().solvers == ("newton",)


def test_solver_panel_shows_yes_no_options_as_check_boxes(qtbot):
    """Newton's line search is a switch: a check box, on by default as the solver declares;
    unticking it reaches the settings (and the solver) as False."""
    from PySide6.QtWidgets import QCheckBox

    from implicit_viz.core.solvers import get_solver, solver_options

    sp = SolverPanel()
    qtbot.addWidget(sp)
    box = sp.option_box("newton", "line_search")
    assert isinstance(box, QCheckBox)
    assert box.isChecked() is solver_options("newton")["line_search"] is True
    with qtbot.waitSignal(sp.changed, timeout=1000):
        box.setChecked(False)
    s = sp.settings()
    assert s.options["newton"] == {"line_search": False}
    assert s.build("newton") == get_solver("newton", line_search=False)
    sp.set_settings(SolverSettings())
    assert box.isChecked()
    sp.set_settings(s)
    assert not box.isChecked() and SolverSettings.from_dict(s.to_dict()) == s


def test_a_session_keeps_a_switched_off_option(tmp_path):
    from implicit_viz.gui.session import Session, read_session, write_session

    s = Session(
        spec_text="dim = 1\nf = 'cos(z)'\n",
        solver=SolverSettings(solvers=("newton",), options={"newton": {"line_search": False}}),
    )
    assert read_session(write_session(tmp_path / "s.ivsession", s)).solver == s.solver
