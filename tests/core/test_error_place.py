"""Where a spec error lies in the TOML text (core/error_place.py): positions inside an
expression mapped through the string that holds it, checked against the index of the
offending token found independently in the text."""

from __future__ import annotations

import pytest

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.error_place import locate_error
from implicit_viz.core.errors import SpecError
from implicit_viz.core.presets import preset_path
from implicit_viz.core.spec import parse_spec

TANH = preset_path("tanh_layer").read_text(encoding="utf-8")


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    lines = text[:index].split("\n")
    return len(lines), len(lines[-1]) + 1


def spec_error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_spec(parse_spec(text))
    return info.value


@pytest.mark.parametrize(
    "f_line",
    [
        'f = "\\u0074anh(a * (W @ z) + \\tqq)"',  # escapes shift the columns
        "f = '  tanh(a * (W @ z) + qq)'",  # a literal string, leading spaces
        'f = "h"\ndefine = { h = "tanh(a * (W @ z) + qq)" }',  # inside a definition
        'f = """\ntanh(a * (W @ z)\n   + qq)"""',  # a multi-line string
    ],
    ids=["escapes", "literal", "define", "multiline"],
)
def test_expression_errors_map_to_the_token_in_the_file(f_line):
    text = TANH.replace('f = "tanh(a * (W @ z) + x)"', f_line)
    place = locate_error(text, spec_error(text))
    assert place is not None and not place.whole_line
    assert (place.line, place.column) == line_col(text, text.index("qq)"))


def test_toml_errors_keep_their_own_position():
    text = TANH.replace("dim = 2", "dim = = 2")
    place = locate_error(text, spec_error(text))
    assert place is not None and place.line == line_col(text, text.index("dim = ="))[0]


def test_a_value_error_points_at_its_key():
    text = TANH.replace("value = 0.9", "value = 9.0")  # outside a's range [0, 3]
    err = spec_error(text)
    place = locate_error(text, err)
    assert place is not None and place.whole_line
    assert place.line == line_col(text, text.index("a = {"))[0]
