"""The spec editor: checking while typing, error places, undo, debounce; the preset picker."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from implicit_viz.core.presets import list_presets, preset_names, preset_path
from implicit_viz.core.spec import Spec, load_spec
from implicit_viz.gui import spec_editor as spec_editor_module
from implicit_viz.gui.preset_picker import PresetPicker
from implicit_viz.gui.spec_editor import (
    CHECK_DELAY_MS,
    MAX_SPEC_CHARS,
    SpecEditor,
)

SETTLE_MS = CHECK_DELAY_MS + 400


def preset_text(key: str) -> str:
    path = preset_path(key)
    assert path is not None
    return path.read_text(encoding="utf-8")


TANH = preset_text("tanh_layer")


class Recorder:
    def __init__(self, editor: SpecEditor) -> None:
        self.accepted: list[Spec] = []
        self.rejected: list[str] = []
        editor.specAccepted.connect(self.accepted.append)
        editor.specRejected.connect(self.rejected.append)

    @property
    def checks(self) -> int:
        return len(self.accepted) + len(self.rejected)


@pytest.fixture
def editor(qtbot):
    w = SpecEditor()
    qtbot.addWidget(w)
    w.resize(720, 520)
    w.show()
    qtbot.waitExposed(w)
    return w


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, computed independently of the editor."""
    lines = text[:index].split("\n")
    return len(lines), len(lines[-1]) + 1


def move_cursor(editor: SpecEditor, position: int) -> None:
    cursor = editor.text_edit.textCursor()
    cursor.setPosition(position)
    editor.text_edit.setTextCursor(cursor)


def load_checked(editor: SpecEditor, text: str) -> None:
    editor.set_text(text, undoable=False)
    assert editor.check_now() is not None


# --------------------------------------------------------------------------------------------
# valid specs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", preset_names())
def test_every_preset_is_accepted(qtbot, editor, key):
    rec = Recorder(editor)
    text = preset_text(key)
    with qtbot.waitSignal(editor.specAccepted, timeout=5000) as blocker:
        editor.set_text(text)
    spec = blocker.args[0]
    assert isinstance(spec, Spec)
    assert spec.name == load_spec(key).name
    assert spec.source == text
    assert editor.last_good_spec() is spec
    assert editor.error_message() == ""
    assert editor.error_position() is None
    assert editor.error_label.isHidden()
    assert editor.text_edit.extraSelections() == []
    assert rec.rejected == []
    assert editor.text() == text


# --------------------------------------------------------------------------------------------
# errors while typing
# --------------------------------------------------------------------------------------------


def test_typed_unknown_function_is_placed_on_the_token(qtbot, editor):
    load_checked(editor, TANH)
    good = editor.last_good_spec()
    rec = Recorder(editor)
    insert_at = TANH.index('f = "tanh(') + len('f = "tanh')
    move_cursor(editor, insert_at)
    with qtbot.waitSignal(editor.specRejected, timeout=5000) as blocker:
        qtbot.keyClicks(editor.text_edit, "h")
    typed = TANH[:insert_at] + "h" + TANH[insert_at:]
    assert editor.text() == typed  # the check never touches the text

    line, col = line_col(typed, typed.index("tanhh("))
    assert editor.error_position() == (line, col)
    message = blocker.args[0]
    assert message == editor.error_message()
    assert message.startswith(f"line {line}, column {col}: ")
    assert "unknown function 'tanhh'" in message
    assert editor.error_label.isVisibleTo(editor)
    assert editor.error_label.text() == message
    marked = [s.cursor.selectedText() for s in editor.text_edit.extraSelections()]
    assert "tanhh" in marked
    assert editor.last_good_spec() is good
    assert rec.accepted == []

    # fixing it again is accepted, and the text is still exactly what was typed
    with qtbot.waitSignal(editor.specAccepted, timeout=5000) as blocker:
        qtbot.keyClick(editor.text_edit, Qt.Key.Key_Backspace)
    assert editor.text() == TANH
    assert blocker.args[0].source == TANH
    assert editor.last_good_spec() is blocker.args[0]
    assert editor.error_message() == ""
    assert editor.error_label.isHidden()
    assert editor.text_edit.extraSelections() == []


def test_toml_syntax_error_names_its_line(qtbot, editor):
    load_checked(editor, TANH)
    header = TANH.index("[params]")
    move_cursor(editor, header + len("[params"))
    with qtbot.waitSignal(editor.specRejected, timeout=5000):
        qtbot.keyClick(editor.text_edit, Qt.Key.Key_Delete)  # drop the closing bracket
    typed = TANH.replace("[params]", "[params", 1)
    assert editor.text() == typed
    line, _ = line_col(typed, header)
    assert editor.error_position() is not None
    assert editor.error_position()[0] == line
    assert editor.error_message().startswith(f"line {line}, column ")
    assert "invalid TOML" in editor.error_message()
    assert editor.last_good_spec().source == TANH


def _error_for(editor: SpecEditor, text: str) -> str:
    editor.set_text(text, undoable=False)
    assert editor.check_now() is None
    assert editor.text() == text
    return editor.error_message()


def test_unknown_name(editor):
    text = TANH.replace('f = "tanh(a * (W @ z) + x)"', 'f = "tanh(a * (W @ z) + q)"')
    message = _error_for(editor, text)
    assert "unknown name 'q'" in message
    assert editor.error_position() == line_col(text, text.index("q)"))


def test_shape_mismatch(editor):
    text = TANH.replace("W = [[0.6, -1.1], [0.9, 0.4]]", "W = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]")
    message = _error_for(editor, text)
    assert "shape mismatch" in message
    assert "(3, 3)" in message
    line, col = editor.error_position()
    assert (line, col) == line_col(text, text.index("W @ z"))


def test_param_outside_its_range(editor):
    text = TANH.replace("value = 0.9", "value = 5.0")
    message = _error_for(editor, text)
    line, _ = line_col(text, text.index("a = { value = 5.0"))
    assert message.startswith(f"line {line}: ")
    assert "params.a" in message
    assert "outside its range" in message
    assert editor.error_position() == (line, 1)


def test_error_in_a_definition_is_placed_in_its_line(editor):
    text = preset_text("newton_cubic").replace('r2 = "u**2 + v**2"', 'r2 = "u**2 + vv**2"')
    message = _error_for(editor, text)
    assert "unknown name 'vv'" in message
    assert editor.error_position() == line_col(text, text.index("vv**2"))


def test_error_in_a_multiline_expression(editor):
    text = TANH.replace(
        'f = "tanh(a * (W @ z) + x)"', 'f = """\n  tanh(a * (W @ z)\n    + qq)\n"""'
    )
    _error_for(editor, text)
    assert editor.error_position() == line_col(text, text.index("qq)"))


def test_unmappable_error_is_shown_without_position(editor):
    text = "bogus = 1\n" + TANH
    message = _error_for(editor, text)
    assert "unknown key(s) bogus" in message
    assert not message.startswith("line ")
    assert editor.error_position() is None


def test_other_exceptions_become_messages(qtbot, editor, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(spec_editor_module, "parse_spec", boom)
    rec = Recorder(editor)
    editor.set_text(TANH, undoable=False)
    assert editor.check_now() is None
    assert editor.error_message() == "internal error while checking: RuntimeError: boom"
    assert rec.rejected == [editor.error_message()]
    # and through the timer, inside Qt's event loop (pytest-qt fails on escaped exceptions)
    with qtbot.waitSignal(editor.specRejected, timeout=5000):
        qtbot.keyClicks(editor.text_edit, " ")


def test_oversized_text_is_refused_with_a_message(editor):
    load_checked(editor, TANH)
    good = editor.last_good_spec()
    rec = Recorder(editor)
    big = TANH + "# padding padding padding\n" * (MAX_SPEC_CHARS // 20)
    assert len(big) > MAX_SPEC_CHARS
    editor.set_text(big, undoable=False)
    assert editor.check_now() is None
    message = editor.error_message()
    assert "over the limit of 200,000" in message
    assert "not checked" in message
    assert rec.rejected == [message]
    assert editor.error_position() is None
    assert editor.last_good_spec() is good
    assert editor.text() == big


# --------------------------------------------------------------------------------------------
# undo, modified flag, debounce
# --------------------------------------------------------------------------------------------


def test_set_text_is_one_undoable_edit(qtbot, editor):
    editor.set_text(TANH, undoable=False)
    move_cursor(editor, len(TANH))
    qtbot.keyClicks(editor.text_edit, "# my own note")
    before = editor.text()
    assert before == TANH + "# my own note"
    other = preset_text("logistic")
    editor.set_text(other)
    assert editor.text() == other
    editor.text_edit.undo()
    assert editor.text() == before
    editor.text_edit.redo()
    assert editor.text() == other


def test_modified_flag_passthrough(qtbot, editor):
    editor.set_text(TANH, undoable=False)
    editor.set_modified(False)
    assert not editor.is_modified()
    with qtbot.waitSignal(editor.modificationChanged, timeout=1000) as blocker:
        qtbot.keyClicks(editor.text_edit, "x")
    assert blocker.args == [True]
    assert editor.is_modified()
    with qtbot.waitSignal(editor.modificationChanged, timeout=1000) as blocker:
        editor.set_modified(False)
    assert blocker.args == [False]
    assert not editor.is_modified()


def test_quick_edits_trigger_one_check(qtbot, editor):
    editor.set_text(TANH, undoable=False)
    qtbot.wait(SETTLE_MS)
    rec = Recorder(editor)
    move_cursor(editor, len(TANH))
    for ch in "# a quick note":
        qtbot.keyClicks(editor.text_edit, ch)
        qtbot.wait(10)
    assert rec.checks == 0  # nothing yet: the timer restarts with every keystroke
    qtbot.waitUntil(lambda: rec.checks > 0, timeout=5000)
    qtbot.wait(SETTLE_MS)  # colouring and error marks must not start another check
    assert rec.checks == 1
    assert len(rec.accepted) == 1
    assert rec.accepted[0].source == TANH + "# a quick note"


def test_check_now_preempts_the_timer(qtbot, editor):
    rec = Recorder(editor)
    editor.set_text(TANH)
    assert editor.check_now() is not None
    qtbot.wait(SETTLE_MS)
    assert rec.checks == 1


def test_tab_inserts_spaces(qtbot, editor):
    editor.set_text("", undoable=False)
    qtbot.keyClicks(editor.text_edit, "ab")
    qtbot.keyClick(editor.text_edit, Qt.Key.Key_Tab)
    qtbot.keyClicks(editor.text_edit, "c")
    assert editor.text() == "ab  c"
    # several selected lines are indented and dedented together, each as one undo step
    editor.set_text("a\nb\nc", undoable=False)
    editor.text_edit.selectAll()
    qtbot.keyClick(editor.text_edit, Qt.Key.Key_Tab)
    assert editor.text() == "    a\n    b\n    c"
    qtbot.keyClick(editor.text_edit, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert editor.text() == "a\nb\nc"
    editor.text_edit.undo()
    assert editor.text() == "    a\n    b\n    c"


# --------------------------------------------------------------------------------------------
# preset picker
# --------------------------------------------------------------------------------------------


@pytest.fixture
def picker(qtbot):
    w = PresetPicker()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_picker_lists_every_preset(picker):
    assert picker.keys() == preset_names()
    infos = {i.key: i for i in list_presets()}
    for i, key in enumerate(picker.keys()):
        assert picker.itemText(i) == infos[key].name == load_spec(key).name
        assert picker.itemData(i, Qt.ItemDataRole.ToolTipRole) == infos[key].description


def test_picker_emits_on_user_choice_only(qtbot, picker):
    chosen: list[str] = []
    picker.presetChosen.connect(chosen.append)
    keys = picker.keys()
    picker.set_current(keys[2])
    assert picker.current_key() == keys[2]
    assert chosen == []
    qtbot.keyClick(picker, Qt.Key.Key_Down)  # the user steps to the next preset
    assert chosen == [keys[3]]
    assert picker.current_key() == keys[3]
    with pytest.raises(KeyError):
        picker.set_current("no_such_preset")


def test_picker_text_feeds_the_editor(qtbot, picker, editor):
    picker.presetChosen.connect(lambda key: editor.set_text(picker.preset_text(key)))
    index = picker.keys().index("cosine")
    with qtbot.waitSignal(editor.specAccepted, timeout=5000) as blocker:
        picker.activated.emit(index)
    assert blocker.args[0].name == load_spec("cosine").name
    assert editor.text() == preset_text("cosine") == picker.preset_text("cosine")
    with pytest.raises(KeyError):
        picker.preset_text("no_such_preset")


def test_cursor_api_edit_goes_through_the_check(qtbot, editor):
    load_checked(editor, TANH)
    cursor = editor.text_edit.textCursor()
    cursor.setPosition(TANH.index("dim = 2") + len("dim = "))
    cursor.movePosition(QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor)
    with qtbot.waitSignal(editor.specRejected, timeout=5000) as blocker:
        cursor.insertText("0")
    assert "dim must lie in" in blocker.args[0]
    line, _ = line_col(editor.text(), editor.text().index("dim = 0"))
    assert editor.error_position() == (line, 1)


# Issue 15, item 8: the keystroke check evaluates shapes and costs on meta tensors -------------
BIG_CHAIN = """dim = 1000
f = "tanh(W @ (W @ z)) * 0.5"
[tensors]
W = { shape = [1000, 1000], init = "normal", seed = 0, scale = 0.01 }
"""


def test_check_draws_no_tensor_and_computes_nothing(monkeypatch):
    """A 1000 x 1000 matmul chain blocked the editor for 1.5 s per keystroke: the check drew W
    and evaluated f. Now it draws nothing (so it takes milliseconds whatever the sizes)."""
    import implicit_viz.core.compiled_map as problem

    def refuse(t):
        raise AssertionError("the keystroke check drew a tensor")

    monkeypatch.setattr(problem, "materialize_tensor", refuse)
    spec = spec_editor_module.check_spec_text(BIG_CHAIN)
    assert spec.dim == 1000


def test_shape_errors_of_large_specs_are_still_reported():
    """Specs over the old 1M-entry cut-off were only parsed; their shape errors now show too."""
    text = BIG_CHAIN.replace("[1000, 1000]", "[4000, 3000]").replace("dim = 1000", "dim = 3000")
    with pytest.raises(spec_editor_module.SpecError, match="shape mismatch"):
        spec_editor_module.check_spec_text(text)


def test_a_too_costly_map_is_shown_as_a_spec_error(editor):
    text = BIG_CHAIN.replace("W @ (W @ z)", "(W @ W @ W) @ z")
    message = _error_for(editor, text)
    assert "f: one evaluation of f costs" in message
    assert "W @ (W @ z)" in message
