"""Spec TOML colours: each kind of token gets its own format, expressions are coloured inside."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QTextCharFormat, QTextCursor, QTextDocument

from implicit_viz.core.expr import FUNCTIONS
from implicit_viz.core.presets import preset_names, preset_path
from implicit_viz.gui.highlighter import SpecHighlighter

TEXT = """\
# a comment
name = "demo"
dim = 2
f = "tanh(a * (W @ z) + x)"
notes = \"\"\"
[not a header] 1.5 "quoted"
\"\"\"
flag = true

[params]
a = { value = 0.9, min = 0.0, max = 3.0 }

[define]
h = "sin(z) + 2"

[tensors]
W = { shape = [2, 2], init = "normal" }
x = [0.5, -0.2]
"""


def make_doc(text: str) -> QTextDocument:
    d = QTextDocument()
    d.documentLayout()  # with a layout, edits are coloured at once (as in an editor)
    d.highlighter = SpecHighlighter(d)  # keep it alive with the document
    d.setPlainText(text)
    return d


@pytest.fixture
def doc(qapp):
    return make_doc(TEXT)


def kind_at(doc: QTextDocument, line: str, needle: str, offset: int = 0, nth: int = 0) -> str:
    """Name of the highlighter format at ``needle`` (+offset) in the first line equal to ``line``."""
    hl: SpecHighlighter = doc.highlighter
    block = doc.begin()
    while block.isValid() and block.text() != line:
        block = block.next()
    assert block.isValid(), line
    col = -1
    for _ in range(nth + 1):
        col = block.text().index(needle, col + 1)
    col += offset
    ranges = block.layout().formats()  # keep alive: each format belongs to its range
    found = [QTextCharFormat(r.format) for r in ranges if r.start <= col < r.start + r.length]
    if not found:
        return "none"
    fmt = found[-1]
    names = [k for k, f in hl.formats.items() if f == fmt]
    return names[0] if names else "other"


def test_basic_tokens_have_distinct_formats(doc):
    kinds = {
        "comment": kind_at(doc, "# a comment", "comment"),
        "key": kind_at(doc, "dim = 2", "dim"),
        "number": kind_at(doc, "dim = 2", "2"),
        "string": kind_at(doc, 'name = "demo"', "demo"),
        "bool": kind_at(doc, "flag = true", "true"),
        "header": kind_at(doc, "[params]", "params"),
    }
    assert kinds == {k: k for k in kinds}
    hl = doc.highlighter
    colors = {
        hl.formats[k].foreground().color().name() for k in ("comment", "key", "number", "string")
    }
    assert len(colors) == 4


def test_expression_inside_f_is_coloured(doc):
    line = 'f = "tanh(a * (W @ z) + x)"'
    assert kind_at(doc, line, "f") == "key"
    assert kind_at(doc, line, '"') == "string"
    assert kind_at(doc, line, "tanh") == "func"
    assert kind_at(doc, line, "tanh", offset=3) == "func"
    assert kind_at(doc, line, "z") == "var"
    assert kind_at(doc, line, "@") == "op"
    assert kind_at(doc, line, "W") == "expr"


def test_define_entries_are_expressions(doc):
    assert kind_at(doc, 'h = "sin(z) + 2"', "sin") == "func"
    assert kind_at(doc, 'h = "sin(z) + 2"', "2") == "number"
    # a string elsewhere is just a string, even when it reads like a function name
    assert kind_at(doc, 'W = { shape = [2, 2], init = "normal" }', "normal") == "string"


def test_inline_table_keys_and_numbers(doc):
    line = "a = { value = 0.9, min = 0.0, max = 3.0 }"
    assert kind_at(doc, line, "value") == "key"
    assert kind_at(doc, line, "max") == "key"
    assert kind_at(doc, line, "0.9") == "number"
    assert kind_at(doc, "x = [0.5, -0.2]", "-0.2") == "number"


def test_multiline_string_hides_headers_and_numbers(doc):
    line = '[not a header] 1.5 "quoted"'
    assert kind_at(doc, line, "not") == "string"
    assert kind_at(doc, line, "1.5") == "string"
    assert kind_at(doc, '"""', '"') == "string"
    assert kind_at(doc, "flag = true", "flag") == "key"


def test_multiline_expression_and_state_follow_edits(qapp):
    d = make_doc('f = """\n  tanh(z)\n"""\ndim = 1\n')
    assert kind_at(d, "  tanh(z)", "tanh") == "func"
    assert kind_at(d, "dim = 1", "dim") == "key"
    # a string opened at the top: its end moves to the next """, and so on down the text
    cursor = QTextCursor(d)
    cursor.insertText('notes = """\n')
    assert kind_at(d, 'notes = """', "notes") == "key"
    assert kind_at(d, 'f = """', "f") == "string"
    assert kind_at(d, "  tanh(z)", "tanh") == "none"
    assert kind_at(d, "dim = 1", "dim") == "string"
    cursor.movePosition(QTextCursor.MoveOperation.Start)
    cursor.movePosition(QTextCursor.MoveOperation.Down, QTextCursor.MoveMode.KeepAnchor)
    cursor.removeSelectedText()
    assert kind_at(d, "  tanh(z)", "tanh") == "func"
    assert kind_at(d, "dim = 1", "dim") == "key"


def test_every_function_name_is_recognised(qapp):
    d = make_doc("\n".join(f'f = "{name}(z)"' for name in FUNCTIONS))
    for name in FUNCTIONS:
        assert kind_at(d, f'f = "{name}(z)"', name) == "func", name


def test_unfinished_text_does_not_break(qapp):
    d = make_doc('f = "tanh(z\n[par\nx = [1, 2\ns = \'abc\nt = """\n')
    assert kind_at(d, 'f = "tanh(z', "tanh") == "func"


@pytest.mark.parametrize("key", preset_names())
def test_presets_highlight(qapp, key):
    d = make_doc(preset_path(key).read_text(encoding="utf-8"))
    line = next(b for b in d.toPlainText().splitlines() if b.startswith("f = "))
    assert kind_at(d, line, "f") == "key"
    assert kind_at(d, line, "z") == "var"
