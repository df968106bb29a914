"""Spec files: reading every field, every invalid spec raising one SpecError that names the problem
(with positions), overrides changing the compiled values, and TOML round trips."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.errors import SpecError
from implicit_viz.core.presets import preset_names
from implicit_viz.core.spec import Spec, load_spec, parse_spec, parse_target, spec_from_dict

SAMPLE = '''
name = "sample"
description = 'a "quoted" description with a back\\slash'
notes = """
first line
second line"""
dim = 3
f = "tanh(a * (W @ h) + x) * k"
z0 = [0.1, 0.2, 0.3]

[define]
h = "z + b"
g = "h * 2"

[params]
a = { value = 0.5, min = 0.0, max = 2.0, description = "scale" }
k = 2.0

[tensors]
W = { shape = [3, 3], init = "normal", seed = 7, scale = 0.5, spectral_norm = 0.9 }
x = [1.0, 2.0, 3.0]
b = { shape = [3], init = "zeros" }
M = { value = [[1.0, 2.0], [3.0, 4.0]] }
Q = { shape = [3, 3], init = "orthogonal", seed = 1, set = [[0, 0, 5.0]] }

[solver]
tol = 1e-9
max_iter = 123
solvers = ["anderson", "newton"]

[solver.anderson]
m = 3
'''


def base(**changes: object) -> dict:
    """A valid spec as a dict; ``changes`` replace or add top-level keys."""
    data: dict = {
        "name": "t",
        "dim": 2,
        "f": "tanh(a * (W @ z) + x)",
        "params": {"a": {"value": 0.5, "min": 0.0, "max": 1.0}},
        "tensors": {"W": [[0.5, 0.1], [0.2, 0.3]], "x": [1.0, -1.0]},
    }
    data.update(changes)
    return data


def tensor_value(fmap, name: str) -> np.ndarray:
    return fmap.values[name][..., 0].numpy()


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def test_parse_spec_reads_every_field():
    spec = parse_spec(SAMPLE, path="sample.toml")
    assert spec.name == "sample"
    assert spec.description == 'a "quoted" description with a back\\slash'
    assert spec.notes == "first line\nsecond line"
    assert spec.dim == 3
    assert spec.f == "tanh(a * (W @ h) + x) * k"
    assert spec.z0 == (0.1, 0.2, 0.3)
    assert spec.define == (("h", "z + b"), ("g", "h * 2"))
    a = spec.param("a")
    assert (a.value, a.min, a.max, a.description) == (0.5, 0.0, 2.0, "scale")
    k = spec.param("k")
    assert k.value == 2.0 and k.min <= 2.0 <= k.max and k.min < k.max
    assert spec.param_values == {"a": 0.5, "k": 2.0}
    w = spec.tensor("W")
    assert (w.shape, w.init, w.seed, w.scale, w.spectral_norm) == ((3, 3), "normal", 7, 0.5, 0.9)
    assert spec.tensor("x").data == (1.0, 2.0, 3.0) and spec.tensor("x").shape == (3,)
    assert spec.tensor("M").shape == (2, 2) and spec.tensor("M").data == (1.0, 2.0, 3.0, 4.0)
    assert spec.tensor("Q").set == (((0, 0), 5.0),)
    assert spec.solver["tol"] == 1e-9 and spec.solver["max_iter"] == 123
    assert list(spec.solver["solvers"]) == ["anderson", "newton"]
    assert spec.solver["anderson"] == {"m": 3}
    assert spec.path == "sample.toml"
    assert spec.source == SAMPLE


def test_sample_compiles_to_the_formula():
    spec = parse_spec(SAMPLE)
    fmap = compile_spec(spec)
    w = tensor_value(fmap, "W")
    assert np.linalg.norm(w, 2) == pytest.approx(0.9, rel=1e-12)
    q = tensor_value(fmap, "Q")
    assert q[0, 0] == 5.0
    # the rest of the orthogonal draw: columns 1 and 2 orthonormal
    np.testing.assert_allclose(q[:, 1:].T @ q[:, 1:], np.eye(2), atol=1e-12)
    z = np.array([[0.3, -0.2, 0.7], [1.0, 0.0, -1.0]])
    ref = np.tanh(0.5 * (z @ w.T) + [1.0, 2.0, 3.0]) * 2.0
    np.testing.assert_allclose(fmap(torch.tensor(z)).numpy(), ref, rtol=1e-13)


def test_missing_z0_starts_at_zero_and_one_value_fills_every_entry():
    spec = spec_from_dict(base())
    assert spec.z0 == () and spec.start == (0.0, 0.0)
    assert spec_from_dict(base(z0=[0.25])).start == (0.25, 0.25)
    assert spec_from_dict(base(z0=0.5)).start == (0.5, 0.5)


def test_load_spec_by_preset_name_and_by_path(tmp_path):
    for name in preset_names():
        spec = load_spec(name)
        assert isinstance(spec, Spec)
        assert spec.path is not None and Path(spec.path).stem == name
    p = tmp_path / "mine.toml"
    p.write_text(SAMPLE, encoding="utf-8")
    assert load_spec(p) == parse_spec(SAMPLE)
    assert load_spec(str(p)) == parse_spec(SAMPLE)


def test_load_spec_missing_file_or_unknown_preset(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "absent.toml")
    with pytest.raises(SpecError) as info:
        load_spec("no_such_preset")
    assert "no_such_preset" in info.value.message
    for name in preset_names():
        assert name in info.value.message


def test_load_spec_reports_bad_toml_in_a_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\ndim = 2\nf = tanh(z)\n', encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert info.value.field == "toml" and info.value.line == 3


# ----------------------------------------------------------------------------------------------
# Invalid specs: one SpecError each, naming the problem
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('name = "x"\ndim = 2\nf = tanh(z)\n', 3),
        ('dim = 2\nf = "z"\n[params\na = 1\n', 3),
        ('dim = 2\nf = "z"\ndim = 3\n', 3),
        ('dim = 2\n\n\n\nf = "z\n', 5),
    ],
    ids=["unquoted", "unclosed-table", "duplicate-key", "unclosed-string"],
)
def test_bad_toml_reports_its_line(text, line):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    err = info.value
    assert err.field == "toml"
    assert "TOML" in err.message
    assert err.line == line
    assert err.column is not None and err.column >= 1
    assert f"line {line}" in str(err)


def test_bad_toml_at_the_end_of_the_document_still_has_a_line():
    """tomllib says "at end of document" without a position; the error should still say where."""
    text = 'dim = 2\nf = "z"\nz0 = [1, 2\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == "toml"
    assert info.value.line in (3, 4)  # the unclosed array's line or the last line


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"dim": 0}, "dim", "dim"),
        ({"dim": -3}, "dim", "dim"),
        ({"dim": 1.5}, "dim", "integer"),
        ({"dim": "two"}, "dim", "integer"),
        ({"dim": True}, "dim", "integer"),
        ({"dim": 10**6}, "dim", "dim"),
        ({"dim": [2]}, "dim", "integer"),
    ],
    ids=["zero", "negative", "fraction", "word", "bool", "huge", "list"],
)
def test_bad_dim(changes, field, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(**changes))
    assert info.value.field == field
    assert fragment in info.value.message


@pytest.mark.parametrize("key", ["dim", "f"])
def test_missing_required_key(key):
    data = base()
    del data[key]
    with pytest.raises(SpecError, match=f"missing required key '{key}'"):
        spec_from_dict(data)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (base(foo=1), "foo"),
        (base(solvr={"tol": 1}), "solvr"),
        (base(params={"a": {"value": 0.5, "mx": 1.0}}), "mx"),
        (base(tensors={"W": {"shape": [2, 2], "intit": "normal"}}), "intit"),
        (base(solver={"tolerance": 1e-3}), "tolerance"),
    ],
    ids=["top", "top-typo", "param", "tensor", "solver"],
)
def test_unknown_key_is_named(data, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(data)
    assert fragment in info.value.message


def test_unknown_top_level_key_in_toml_is_named():
    with pytest.raises(SpecError, match="colour"):
        parse_spec('dim = 1\nf = "z"\ncolour = "red"\n')


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (base(tensors={"a": [1.0, 2.0], "W": [[1.0, 0.0], [0.0, 1.0]], "x": [0.0, 0.0]}), "both"),
        (base(define={"a": "z * 2"}), "both"),
        (base(define={"W": "z"}), "both"),
    ],
    ids=["param-tensor", "param-define", "tensor-define"],
)
def test_duplicate_names(data, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(data)
    assert fragment in info.value.message


@pytest.mark.parametrize("name", ["z", "pi", "e", "tanh", "sum", "where"])
@pytest.mark.parametrize("section", ["params", "tensors", "define"])
def test_reserved_names(name, section):
    data = base()
    if section == "params":
        data["params"] = {**data["params"], name: 1.0}
    elif section == "tensors":
        data["tensors"] = {**data["tensors"], name: [1.0, 2.0]}
    else:
        data["define"] = {name: "z * 2"}
    with pytest.raises(SpecError) as info:
        spec_from_dict(data)
    assert "reserved" in info.value.message
    assert info.value.field == f"{section}.{name}"


@pytest.mark.parametrize("name", ["a-b", "2x", "a b", ""])
def test_invalid_identifiers(name):
    with pytest.raises(SpecError, match="not a valid name"):
        spec_from_dict(base(params={"a": 0.5, name: 1.0}))


@pytest.mark.parametrize(
    ("param", "fragment"),
    [
        ({"value": 5.0, "min": 0.0, "max": 1.0}, "outside"),
        ({"value": -0.1, "min": 0.0, "max": 1.0}, "outside"),
        ({"value": 0.5, "min": 1.0, "max": 0.0}, "empty"),
        ({"value": 0.5, "min": 0.5, "max": 0.5}, "empty"),
        ({"min": 0.0, "max": 1.0}, "needs a value"),
        ({"value": "abc"}, "not a number"),
        ({"value": float("nan")}, "finite"),
        ({"value": float("inf"), "min": 0.0}, "finite"),
    ],
    ids=["above", "below", "reversed", "degenerate", "no-value", "word", "nan", "inf"],
)
def test_bad_param(param, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(params={"a": param}))
    assert info.value.field == "params.a"
    assert fragment in info.value.message


def test_param_out_of_range_in_a_toml_file():
    text = 'dim = 1\nf = "a * z"\n[params]\na = { value = 3.5, min = 0.0, max = 3.0 }\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == "params.a"
    assert "3.5" in info.value.message and "[0, 3]" in info.value.message


def test_with_values_checks_the_range_and_keeps_the_original():
    spec = spec_from_dict(base())
    assert spec.with_values(a=1.0).param("a").value == 1.0
    assert spec.with_values(a=0.0).param("a").value == 0.0
    for bad in (1.0000001, -0.5, 12.0):
        with pytest.raises(SpecError) as info:
            spec.with_values(a=bad)
        assert info.value.field == "params.a"
        assert "outside" in info.value.message
    with pytest.raises(SpecError):
        spec.with_values(a=float("nan"))
    with pytest.raises(SpecError, match="unknown target 'b'"):
        spec.with_values(b=0.5)
    assert spec.param("a").value == 0.5  # specs are immutable


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ([[1.0, 2.0], [3.0]], "ragged"),
        ([], "empty"),
        ([1.0, "x"], "expected numbers"),
        ({"shape": [2, 2], "init": "gaussian"}, "unknown init"),
        ({"init": "normal"}, "needs a shape"),
        ({"shape": [2, 2, 2]}, "1 or 2"),
        ({"shape": [0, 2]}, "positive"),
        ({"shape": [3], "init": "orthogonal"}, "2-D"),
        ({"shape": [3], "init": "eye"}, "2-D"),
        ({"shape": [3], "spectral_norm": 1.0}, "2-D"),
        ({"shape": [2, 2], "set": [[0, 5, 1.0]]}, "out of range"),
        ({"shape": [2, 2], "set": [[0, 1.0]]}, "index"),
        ({"shape": [3], "value": [1.0, 2.0]}, "declared"),
        ({"shape": "big"}, "list of integers"),
        ({"shape": [2, 2], "seed": "x"}, "integer"),
    ],
    ids=[
        "ragged",
        "empty",
        "string-entry",
        "unknown-init",
        "no-shape",
        "3d",
        "zero-size",
        "orthogonal-1d",
        "eye-1d",
        "spectral-1d",
        "set-range",
        "set-arity",
        "value-shape",
        "shape-word",
        "seed-word",
    ],
)
def test_bad_tensor(tensor, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(tensors={"W": [[0.5, 0.1], [0.2, 0.3]], "x": [1.0, -1.0], "T": tensor}))
    assert info.value.field == "tensors.T"
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("solver", "fragment"),
    [
        ({"tol": -1.0}, "positive"),
        ({"tol": 0.0}, "positive"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 2.5}, "integer"),
        ({"solvers": "anderson"}, "list"),
        ({"period_tol": "x"}, "number"),
    ],
)
def test_bad_solver_section(solver, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(solver=solver))
    assert info.value.field.startswith("solver.")
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"z0": [1.0, 2.0, 3.0]}, "z0", "dim"),
        ({"z0": ["a", 1.0]}, "z0", "number"),
        ({"f": 3}, "f", "string"),
        ({"name": 3}, "name", "string"),
        ({"params": [1, 2]}, "params", "table"),
        ({"define": {"h": 3}}, "define.h", "string"),
    ],
)
def test_bad_field_types(changes, field, fragment):
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(**changes))
    assert info.value.field == field
    assert fragment in info.value.message


def test_expression_errors_in_a_toml_file_point_inside_the_expression():
    text = 'dim = 2\nf = "tanh(a * (W @ z) + q)"\n[params]\na = 1.0\n[tensors]\nW = [[1.0, 0.0], [0.0, 1.0]]\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    err = info.value
    assert err.field == "f"
    assert "unknown name 'q'" in err.message
    assert (err.line, err.column) == (1, "tanh(a * (W @ z) + q)".index("q") + 1)


def test_expression_errors_in_a_multiline_toml_string():
    text = 'dim = 2\nf = """\ntanh(W @ z\n     + q)"""\n[tensors]\nW = [[1.0, 0.0], [0.0, 1.0]]\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert (info.value.line, info.value.column) == (2, 8)


def test_definition_errors_name_the_definition():
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(define={"h": "W @ z", "g": "h + nope"}))
    err = info.value
    assert err.field == "define.g"
    assert "unknown name 'nope'" in err.message
    assert err.column == len("h + ") + 1


def test_definitions_only_see_earlier_names():
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(define={"g": "h * 2", "h": "W @ z"}, f="g"))
    assert info.value.field == "define.g" and "'h'" in info.value.message


def test_error_one_line_and_pretty():
    err = SpecError("unknown name 'q'", field="f", line=1, column=6, source="z + 2*q")
    assert str(err) == "f: unknown name 'q' (line 1, column 6)"
    assert err.pretty().splitlines()[1:] == ["    z + 2*q", "         ^"]
    assert isinstance(err, ValueError)


# ----------------------------------------------------------------------------------------------
# Targets and overrides
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drawn():
    return parse_spec(
        'dim = 3\nf = "tanh(a * (W @ z) + x)"\nz0 = [0.0, 0.0, 0.0]\n'
        "[params]\na = { value = 0.5, min = 0.0, max = 2.0 }\n"
        "[tensors]\n"
        'W = { shape = [3, 3], init = "normal", seed = 0, spectral_norm = 0.8 }\n'
        "x = [0.5, -0.2, 0.1]\n"
    )


@pytest.mark.parametrize(
    ("text", "kind", "name", "index"),
    [
        ("a", "param", "a", None),
        ("x[0]", "tensor", "x", (0,)),
        ("x[-1]", "tensor", "x", (2,)),
        ("W[0,1]", "tensor", "W", (0, 1)),
        (" W[ 2 , -1 ] ", "tensor", "W", (2, 2)),
        ("W", "tensor", "W", None),
        ("z0", "z0", "z0", None),
        ("z0[1]", "z0", "z0", (1,)),
        ("z0[-1]", "z0", "z0", (2,)),
        ("W.seed", "seed", "W", None),
    ],
)
def test_parse_target(drawn, text, kind, name, index):
    t = parse_target(text, drawn)
    assert (t.kind, t.name, t.index) == (kind, name, index)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("b", "unknown target 'b'"),
        ("x[3]", "does not fit"),
        ("W[0]", "does not fit"),
        ("W[0,1,2]", "does not fit"),
        ("z0[3]", "out of range"),
        ("a[0]", "scalar"),
        ("x[a]", "integers"),
        ("x[]", "integers"),
        ("W.size", "cannot read"),
        ("1x", "cannot read"),
    ],
)
def test_bad_targets(drawn, text, fragment):
    with pytest.raises(SpecError) as info:
        parse_target(text, drawn)
    assert fragment in info.value.message


def test_unknown_target_lists_the_known_ones(drawn):
    with pytest.raises(SpecError) as info:
        drawn.with_overrides({"q": 1.0})
    for known in ("a", "W", "x", "z0"):
        assert known in info.value.message


def test_overrides_change_the_compiled_values(drawn):
    before = compile_spec(drawn)
    w0, x0 = tensor_value(before, "W"), tensor_value(before, "x")
    spec = drawn.with_overrides({"x[0]": 0.3, "W[0,1]": 0.5, "z0[1]": 1.0, "a": 1.0})
    after = compile_spec(spec)
    w1, x1 = tensor_value(after, "W"), tensor_value(after, "x")
    np.testing.assert_array_equal(x1, [0.3, -0.2, 0.1])
    expected_w = w0.copy()
    expected_w[0, 1] = 0.5
    np.testing.assert_array_equal(w1, expected_w)  # the rest of the draw is untouched
    np.testing.assert_array_equal(after.start(2).numpy(), [[0.0, 1.0, 0.0]] * 2)
    assert float(after.values["a"]) == 1.0
    z = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(
        after(torch.tensor(z)).numpy(), np.tanh(1.0 * z @ expected_w.T + x1), rtol=1e-14
    )
    # the original spec did not change
    np.testing.assert_array_equal(tensor_value(compile_spec(drawn), "x"), x0)


def test_seed_override_equals_a_spec_written_with_that_seed(drawn):
    w0 = tensor_value(compile_spec(drawn), "W")
    w3 = tensor_value(compile_spec(drawn.with_overrides({"W.seed": 3})), "W")
    written = parse_spec(drawn.source.replace("seed = 0", "seed = 3"))
    np.testing.assert_array_equal(w3, tensor_value(compile_spec(written), "W"))
    assert not np.allclose(w0, w3)
    # both draws honour spectral_norm
    for w in (w0, w3):
        assert np.linalg.norm(w, 2) == pytest.approx(0.8, rel=1e-12)
    # the same seed twice gives the same draw
    again = tensor_value(compile_spec(drawn.with_overrides({"W.seed": 3})), "W")
    np.testing.assert_array_equal(w3, again)


def test_element_override_survives_a_seed_change(drawn):
    spec = drawn.with_overrides({"W[1,2]": -4.0}).with_overrides({"W.seed": 5})
    w = tensor_value(compile_spec(spec), "W")
    assert w[1, 2] == -4.0
    w5 = tensor_value(compile_spec(drawn.with_overrides({"W.seed": 5})), "W")
    mask = np.ones((3, 3), bool)
    mask[1, 2] = False
    np.testing.assert_array_equal(w[mask], w5[mask])


def test_whole_tensor_and_whole_z0_overrides(drawn):
    spec = drawn.with_overrides({"x": [1.0, 2.0, 3.0], "z0": [0.5], "W": 0.25})
    fmap = compile_spec(spec)
    np.testing.assert_array_equal(tensor_value(fmap, "x"), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(tensor_value(fmap, "W"), np.full((3, 3), 0.25))
    assert spec.start == (0.5, 0.5, 0.5)
    assert spec.tensor("W").init is None  # a literal now, no longer drawn
    with pytest.raises(SpecError, match="3 entries"):
        drawn.with_overrides({"x": [1.0, 2.0]})
    with pytest.raises(SpecError, match="z0 needs 3"):
        drawn.with_overrides({"z0": [1.0, 2.0]})


def test_override_values_given_as_strings_are_read_as_numbers(drawn):
    spec = drawn.with_overrides({"a": "1.5", "x[1]": "-2", "z0": "[1, 2, 3]", "W.seed": "4"})
    assert spec.param("a").value == 1.5
    assert spec.tensor("x").data == (0.5, -2.0, 0.1)
    assert spec.z0 == (1.0, 2.0, 3.0)
    assert spec.tensor("W").seed == 4
    with pytest.raises(SpecError, match="not a number"):
        drawn.with_overrides({"a": "fast"})


def test_seed_of_a_literal_tensor_is_an_error(drawn):
    with pytest.raises(SpecError, match="not drawn at random"):
        drawn.with_overrides({"x.seed": 1})


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


def assert_round_trip(spec: Spec) -> None:
    text = spec.to_toml()
    again = parse_spec(text)
    assert again == spec
    assert spec_from_dict(spec.to_dict()) == spec
    assert again.to_toml() == text
    # and the compiled maps agree
    f1, f2 = compile_spec(spec), compile_spec(again)
    z = torch.linspace(-0.5, 0.5, 3 * spec.dim, dtype=torch.float64).reshape(3, spec.dim)
    torch.testing.assert_close(f1(z), f2(z), rtol=0, atol=0)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_round_trips(name):
    assert_round_trip(load_spec(name))


def test_sample_round_trips():
    assert_round_trip(parse_spec(SAMPLE))


def test_overridden_specs_round_trip(drawn):
    assert_round_trip(drawn.with_overrides({"x[0]": 0.3, "W[0,1]": 0.5, "z0[1]": 1.0}))
    assert_round_trip(drawn.with_overrides({"W.seed": 9, "a": 2.0}))
    assert_round_trip(drawn.with_overrides({"W": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]}))
    assert_round_trip(load_spec("deq_cell").with_overrides({"W[3,4]": 0.125, "U.seed": 2}))


def test_awkward_strings_round_trip():
    spec = spec_from_dict(
        base(
            name='quote " and back\\slash',
            description="tab\there, unicode π ≈ 3.14",
            notes='line one\nline "two"\n\\ three """ four',
        )
    )
    assert_round_trip(spec)


def test_round_trip_keeps_extreme_numbers():
    spec = spec_from_dict(
        base(
            params={"a": {"value": 1e-300, "min": -1e300, "max": 1e300}},
            tensors={"W": [[0.1, 1 / 3], [-2.5e-8, math.pi]], "x": [1e20, -0.0]},
            solver={"tol": 1e-15, "max_iter": 10_000_000},
        )
    )
    assert_round_trip(spec)


# ----------------------------------------------------------------------------------------------
# Hostile input (issue 15): bounded reads, seeds, huge numbers, nesting, solver ranges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_load_spec_refuses_an_endless_device_at_once(device):
    """The old reader read /dev/zero until the machine ran out of memory."""
    with pytest.raises(SpecError) as info:
        load_spec(device)
    assert device in info.value.message and "not a regular file" in info.value.message


def test_load_spec_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(fifo)


def test_load_spec_refuses_a_file_over_the_gui_cap(tmp_path):
    from implicit_viz.core.limits import MAX_INPUT_FILE_BYTES

    big = tmp_path / "big.toml"
    text = 'dim = 1\nf = "z"\n'
    big.write_text(text + "#" * (MAX_INPUT_FILE_BYTES - len(text)) + "\n")
    with pytest.raises(SpecError, match=r"over the limit of 2\.0 MiB"):
        load_spec(big)
    big.write_text(text + "#" * (MAX_INPUT_FILE_BYTES - len(text) - 1) + "\n")  # exactly the cap
    assert load_spec(big).dim == 1


@pytest.mark.parametrize("seed", [2**63, 10**23, 1e23, -1])
def test_seeds_outside_the_generators_range_name_the_field(seed):
    tensor = {"shape": [2, 2], "seed": seed}
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(tensors={"W": tensor, "x": [1.0, -1.0]}))
    assert info.value.field == "tensors.W" and "seed" in info.value.message
    assert len(info.value.message) < 80  # 1e+23, not 24 digits


def test_the_largest_seed_is_one_torch_takes(tanh_spec):
    from implicit_viz.core.spec import MAX_SEED

    torch.Generator().manual_seed(MAX_SEED)  # the bound is real: no overflow here
    with pytest.raises((RuntimeError, ValueError)):
        torch.Generator().manual_seed(2**64)  # ... and what the old spec let through is not
    spec = spec_from_dict(base(tensors={"W": {"shape": [2, 2], "seed": MAX_SEED}, "x": [1, 2]}))
    compile_spec(spec)
    deq = load_spec("deq_cell")
    with pytest.raises(SpecError) as info:
        deq.with_overrides({"W.seed": "100000000000000000000000"})
    assert info.value.field == "--set W.seed" and "1e+23" in info.value.message
    assert deq.with_overrides({"W.seed": "7"}).tensor("W").seed == 7


@pytest.mark.parametrize("norm", [-1.0, 0.0])
def test_spectral_norm_must_be_positive(norm):
    tensor = {"shape": [2, 2], "spectral_norm": norm}
    with pytest.raises(SpecError, match="spectral_norm must be positive"):
        spec_from_dict(base(tensors={"W": tensor, "x": [1.0, -1.0]}))
    zeros = {"shape": [2, 2], "init": "zeros", "spectral_norm": 1.0}
    with pytest.raises(SpecError, match="zeros"):
        spec_from_dict(base(tensors={"W": zeros, "x": [1.0, -1.0]}))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dim": 1e300}, "dim"),
        ({"dim": 10**40}, "dim"),
        ({"solver": {"max_iter": 1e300}}, "solver.max_iter"),
        ({"tensors": {"W": {"shape": [10**30, 10**30]}, "x": [1.0, 2.0]}}, "tensors.W"),
    ],
)
def test_huge_numbers_are_shown_compactly(changes, field):
    """``dim = 1e300`` printed a 301-digit number."""
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(**changes))
    assert info.value.field == field
    assert len(info.value.message) < 100 and "e+" in info.value.message


def test_deeply_nested_toml_is_one_spec_error():
    """tomllib recursed into a RecursionError on an array nested 3,000 deep."""
    text = 'dim = 1\nf = "z"\n[tensors]\nx = ' + "[" * 3000 + "1" + "]" * 3000 + "\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.field == "toml" and "nested" in info.value.message
    with pytest.raises(SpecError, match="nest at most 2 deep"):
        parse_spec('dim = 1\nf = "z"\n[tensors]\nx = [[[1.0]]]\n')


@pytest.mark.parametrize("bad", [5, "abc", {"a": 1}, [5]])
def test_set_that_is_not_a_list_of_entries_is_a_spec_error(bad):
    """``set = 5`` raised TypeError (int is not iterable)."""
    with pytest.raises(SpecError) as info:
        spec_from_dict(base(tensors={"W": {"shape": [2, 2], "set": bad}, "x": [1.0, 2.0]}))
    assert info.value.field == "tensors.W" and "set" in info.value.message


def test_a_single_size_shape_goes_with_a_value():
    """``x = { shape = 2, value = [...] }`` raised TypeError; it is the shape [2]."""
    spec = spec_from_dict(
        base(tensors={"W": [[0.5, 0.1], [0.2, 0.3]], "x": {"shape": 2, "value": [1, 2]}})
    )
    assert spec.tensor("x").shape == (2,) and spec.tensor("x").data == (1.0, 2.0)
    with pytest.raises(SpecError, match="declared"):
        spec_from_dict(base(tensors={"W": [[0.5]], "x": {"shape": 3, "value": [1, 2]}}))


@pytest.mark.parametrize("value", [1e308, -1e308, 1.7976931348623157e308])
def test_automatic_range_of_an_extreme_param_stays_finite(value):
    """``a = 1e308`` gave the range [0, inf], which the app's sliders cannot show."""
    p = spec_from_dict(base(params={"a": value})).param("a")
    assert math.isfinite(p.min) and math.isfinite(p.max) and p.min <= value <= p.max


def test_solver_section_takes_what_the_solve_options_take():
    from implicit_viz.core.result import SolveOptions

    ok = spec_from_dict(base(solver={"max_period": 1024, "period_tol": 1e-9}))
    SolveOptions(max_period=ok.solver["max_period"], period_tol=ok.solver["period_tol"])
    for bad in ({"max_period": 1025}, {"max_period": 1}, {"period_tol": 0.0}, {"rtol": -1.0}):
        key = next(iter(bad))
        with pytest.raises(SpecError) as info:
            spec_from_dict(base(solver=bad))
        assert info.value.field == f"solver.{key}"


def test_text_is_not_a_number_in_a_file_but_is_in_an_override():
    with pytest.raises(SpecError, match="text, not a number"):
        spec_from_dict(base(solver={"tol": "1e-6"}))
    with pytest.raises(SpecError, match="text, not an integer"):
        spec_from_dict(base(dim="2"))
    assert spec_from_dict(base()).with_overrides({"a": "0.25"}).param("a").value == 0.25
