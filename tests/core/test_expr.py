"""The expression language: every function and operator against NumPy/SciPy, the whitelist, and
the errors (message, line and column) for everything outside it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.errors import SpecError
from implicit_viz.core.expr import (
    CONSTANTS,
    FUNCTIONS,
    MAX_EXPRESSION_LENGTH,
    compile_expression,
    free_names,
    parse_expression,
)
from tests.helpers import make_spec, np_softmax

RNG = np.random.default_rng(1234)
Z3 = np.vstack([RNG.uniform(-0.95, 0.95, (6, 3)), [[0.0, 0.5, -0.5]]])  # includes a zero
W3 = RNG.standard_normal((3, 3))
X3 = RNG.standard_normal(3)
NAMES = {"z", "a", "W", "x", "alpha"}


def evaluate(f: str, z: np.ndarray, dim: int | None = None, **kw) -> np.ndarray:
    """Compile ``f`` (dim from z) with W (3x3) and x (3,) available and evaluate it on rows z."""
    z = np.atleast_2d(np.asarray(z, dtype=float))
    kw.setdefault("tensors", {"W": W3, "x": X3})
    spec = make_spec(f, dim or z.shape[1], **kw)
    fmap = compile_spec(spec, dtype="float64")
    out = fmap(torch.tensor(z, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert out.shape == z.shape
    return out.numpy()


def rowwise(fn, z: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(fn(row), dtype=float) for row in z])


# ----------------------------------------------------------------------------------------------
# The whitelist itself
# ----------------------------------------------------------------------------------------------

WHITELIST = (
    "tanh sigmoid relu softplus gelu silu sin cos tan asin acos atan sinh cosh exp log log1p "
    "expm1 sqrt abs sign square erf minimum maximum atan2 clamp where sum mean norm max min "
    "logsumexp dot softmax layernorm outer transpose concat"
).split()


def test_function_whitelist_is_exactly_the_documented_one():
    assert set(FUNCTIONS) == set(WHITELIST)
    for name, (lo, hi, doc) in FUNCTIONS.items():
        assert 1 <= lo <= hi, name
        assert doc, name


def test_constants_table_is_pi_and_e():
    assert CONSTANTS == {"pi": math.pi, "e": math.e}


def test_constants_pi_and_e_evaluate():
    got = evaluate("pi * z + e", [[1.0, 2.0, 0.0]])
    np.testing.assert_allclose(got, [[math.pi + math.e, 2 * math.pi + math.e, math.e]], rtol=1e-15)


# ----------------------------------------------------------------------------------------------
# Elementwise functions against NumPy / SciPy
# ----------------------------------------------------------------------------------------------

UNARY = {
    "tanh": ("z", np.tanh),
    "sigmoid": ("z", scipy.special.expit),
    "relu": ("z", lambda v: np.maximum(v, 0.0)),
    "softplus": ("z", lambda v: np.log1p(np.exp(v))),
    "gelu": ("z", lambda v: 0.5 * v * (1 + scipy.special.erf(v / math.sqrt(2)))),
    "silu": ("z", lambda v: v * scipy.special.expit(v)),
    "sin": ("z", np.sin),
    "cos": ("z", np.cos),
    "tan": ("z", np.tan),
    "asin": ("z", np.arcsin),
    "acos": ("z", np.arccos),
    "atan": ("z", np.arctan),
    "sinh": ("z", np.sinh),
    "cosh": ("z", np.cosh),
    "exp": ("z", np.exp),
    "log": ("z * z + 0.1", lambda v: np.log(v * v + 0.1)),
    "log1p": ("z", np.log1p),
    "expm1": ("z", np.expm1),
    "sqrt": ("z * z + 0.1", lambda v: np.sqrt(v * v + 0.1)),
    "abs": ("z", np.abs),
    "sign": ("z", np.sign),
    "square": ("z", np.square),
    "erf": ("z", scipy.special.erf),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_function_matches_numpy(name):
    arg, ref = UNARY[name]
    got = evaluate(f"{name}({arg})", Z3)
    np.testing.assert_allclose(got, ref(Z3), rtol=1e-12, atol=1e-14)


def test_sign_of_zero_is_zero():
    assert evaluate("sign(z)", [[0.0, -2.0, 3.0]]).tolist() == [[0.0, -1.0, 1.0]]


def _atan2_ref(v: np.ndarray) -> np.ndarray:
    other = np.stack([v[:, 2], -v[:, 0], v[:, 1] + 0.1], axis=1)
    return np.arctan2(v, other)


BINARY = {
    "minimum": ("minimum(z, 0.2 - z)", lambda v: np.minimum(v, 0.2 - v)),
    "maximum": ("maximum(z, x)", lambda v: np.maximum(v, X3)),
    "atan2": ("atan2(z, [z[2], -z[0], z[1] + 0.1])", _atan2_ref),
    "clamp": ("clamp(z, -0.3, 0.4)", lambda v: np.clip(v, -0.3, 0.4)),
    "where": ("where(z > 0, z, 0.1 * z)", lambda v: np.where(v > 0, v, 0.1 * v)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_multi_argument_function_matches_numpy(name):
    text, ref = BINARY[name]
    np.testing.assert_allclose(evaluate(text, Z3), ref(Z3), rtol=1e-13, atol=1e-15)


def test_reductions_match_numpy():
    got = evaluate("[sum(z), mean(z), norm(z)]", Z3)
    ref = rowwise(lambda v: [v.sum(), v.mean(), np.linalg.norm(v)], Z3)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    got = evaluate("[max(z), min(z), logsumexp(z)]", Z3)
    ref = rowwise(lambda v: [v.max(), v.min(), scipy.special.logsumexp(v)], Z3)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    got = evaluate("[dot(z, W @ z), dot(z, z), sum(W)]", Z3)
    ref = rowwise(lambda v: [v @ W3 @ v, v @ v, W3.sum()], Z3)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)
    # reductions of a matrix act on all of its entries
    got = evaluate("[mean(W), norm(W), max(W)] + 0 * z", Z3)
    ref = np.broadcast_to([W3.mean(), np.linalg.norm(W3), W3.max()], Z3.shape)
    np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_softmax_and_layernorm_match_numpy():
    np.testing.assert_allclose(evaluate("softmax(z)", Z3), rowwise(np_softmax, Z3), rtol=1e-13)

    def ln(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5)

    np.testing.assert_allclose(evaluate("layernorm(z)", Z3), rowwise(ln, Z3), rtol=1e-12)
    got = evaluate("layernorm(W) @ z", Z3)
    np.testing.assert_allclose(got, rowwise(lambda v: ln(W3) @ v, Z3), rtol=1e-12, atol=1e-14)


def test_matrix_helpers_match_numpy():
    np.testing.assert_allclose(
        evaluate("transpose(W) @ z", Z3), rowwise(lambda v: W3.T @ v, Z3), rtol=1e-13
    )
    np.testing.assert_allclose(
        evaluate("outer(z, x) @ z", Z3), rowwise(lambda v: np.outer(v, X3) @ v, Z3), rtol=1e-12
    )
    np.testing.assert_allclose(evaluate("concat(z[2], z[0:2])", Z3), np.roll(Z3, 1, axis=1))
    np.testing.assert_allclose(
        evaluate("concat(sum(z), z[1], z[2:3])", Z3),
        np.stack([Z3.sum(1), Z3[:, 1], Z3[:, 2]], axis=1),
        rtol=1e-14,
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_compiles_at_both_arities_and_rejects_others(name):
    """Each whitelisted name has an implementation; argument counts outside its range fail."""
    lo, hi, _ = FUNCTIONS[name]
    # positive and below 1, inside every domain; transpose needs a matrix
    arg = "W * W * 0.01 + 0.5" if name == "transpose" else "z * z + 0.5"
    for n in {lo, hi}:
        text = f"{name}({', '.join([arg] * n)})"
        out = evaluate(f"sum({text}) + 0 * z", [[0.1, -0.2, 0.3]])
        assert np.isfinite(out).all(), text
    for n in (lo - 1, hi + 1):
        text = f"{name}({', '.join([arg] * n)})"
        with pytest.raises(SpecError, match=rf"{name}\(\) takes"):
            parse_expression(text, NAMES)


# ----------------------------------------------------------------------------------------------
# Operators
# ----------------------------------------------------------------------------------------------

OPERATORS = [
    ("z + x", lambda v: v + X3),
    ("z - 1", lambda v: v - 1),
    ("3 - z", lambda v: 3 - v),
    ("-z", lambda v: -v),
    ("+z", lambda v: v),
    ("--z", lambda v: v),
    ("2 * z * x", lambda v: 2 * v * X3),
    ("z / 3", lambda v: v / 3),
    ("1 / (z + 2)", lambda v: 1 / (v + 2)),
    ("z ** 2", lambda v: v**2),
    ("z ** 3", lambda v: v**3),
    ("2 ** z", lambda v: 2.0**v),
    ("(z * z + 1) ** 0.5", lambda v: np.sqrt(v * v + 1)),
    ("-z ** 2", lambda v: -(v**2)),  # power binds tighter than unary minus
    ("2 ** 3 ** 0.5 + 0 * z", lambda v: 0 * v + 2 ** (3**0.5)),  # right-associative
    ("z % 0.7", lambda v: np.mod(v, 0.7)),
    ("-z % 0.3", lambda v: np.mod(-v, 0.3)),
    ("z % -0.3", lambda v: np.mod(v, -0.3)),
    ("1 + 2 * z - z / 4 * 3", lambda v: 1 + 2 * v - v / 4 * 3),
    ("(z > 0) + 2 * (z >= 0.5)", lambda v: (v > 0) + 2.0 * (v >= 0.5)),
    ("(z < 0) - (z <= -0.5)", lambda v: (v < 0) * 1.0 - (v <= -0.5)),
    ("(z == 0) + (z != 0) * 3", lambda v: (v == 0) + (v != 0) * 3.0),
    ("0 < z < 0.5", lambda v: ((v > 0) & (v < 0.5)).astype(float)),
    ("z if z > 0 else -2 * z", lambda v: np.where(v > 0, v, -2 * v)),
    ("1 if z[0] > 0 else z", lambda v: np.where(v[:, :1] > 0, 1.0, v)),
]


@pytest.mark.parametrize(("text", "ref"), OPERATORS, ids=[t for t, _ in OPERATORS])
def test_operator_matches_numpy(text, ref):
    np.testing.assert_allclose(evaluate(text, Z3), ref(Z3), rtol=1e-14, atol=1e-15)


def test_comparisons_give_zero_or_one_in_the_working_dtype():
    spec = make_spec("(z > 0) * 1", 3)
    for dtype in (torch.float32, torch.float64):
        out = compile_spec(spec, dtype=dtype)(torch.tensor(Z3, dtype=dtype))
        assert out.dtype == dtype
        assert set(out.flatten().tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(out.numpy(), (Z3 > 0).astype(float))


def test_numeric_literal_forms():
    got = evaluate("1e-3 * z + 0.5 + 2. + 0x10 + 1_000", [[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(got, [[1018.501, 1018.502, 1018.503]], rtol=1e-15)


def test_huge_float_literal_is_infinite_not_an_error():
    got = evaluate("z * 1e400", [[1.0, -1.0, 0.5]])
    assert got.tolist() == [[math.inf, -math.inf, math.inf]]


@pytest.mark.parametrize(
    "text", ["z * 1" + "0" * 400, "z + 0x" + "f" * 300, "z[0:1" + "0" * 400 + "] + z"]
)
def test_huge_integer_literal_raises_spec_error_or_compiles(text):
    """An integer literal too large for a float must not escape as OverflowError."""
    try:
        out = evaluate(text, [[1.0, 2.0, 3.0]])
    except SpecError:
        return
    assert out.shape == (1, 3)


# ----------------------------------------------------------------------------------------------
# Indexing, slicing and vector literals
# ----------------------------------------------------------------------------------------------

INDEXING = [
    ("W[0, 1] * z", lambda v: W3[0, 1] * v),
    ("W[-1, -1] * z", lambda v: W3[2, 2] * v),
    ("W[:, 0] + z", lambda v: W3[:, 0] + v),
    ("W[1] - z", lambda v: W3[1] - v),
    ("W[1, :] * z", lambda v: W3[1] * v),
    ("z[-1] + 0 * z", lambda v: np.repeat(v[:, 2:3], 3, axis=1)),
    ("[z[2], z[0], z[1]]", lambda v: v[:, [2, 0, 1]]),
    (
        "[z[0] * z[1], 1, x[2]]",
        lambda v: np.stack([v[:, 0] * v[:, 1], 1 + 0 * v[:, 0], X3[2] + 0 * v[:, 0]], 1),
    ),
    (
        "concat(W[0:2, 1:3] @ z[0:2], z[2])",
        lambda v: np.concatenate([v[:, :2] @ W3[:2, 1:].T, v[:, 2:]], 1),
    ),
    ("concat(z[::2], z[1:2])", lambda v: v[:, [0, 2, 1]]),
    ("concat(z[1:], z[:1])", lambda v: np.roll(v, -1, axis=1)),
    ("W[::2, :][1] + z", lambda v: W3[2] + v),
]


@pytest.mark.parametrize(("text", "ref"), INDEXING, ids=[t for t, _ in INDEXING])
def test_indexing_matches_numpy(text, ref):
    np.testing.assert_allclose(evaluate(text, Z3), ref(Z3), rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# '@' for every pairing of shared and per-row operands
# ----------------------------------------------------------------------------------------------

B = 5
WB = RNG.standard_normal((B, 3, 3))
VB = RNG.standard_normal((B, 3, 3))
XB = RNG.standard_normal((B, 3))
ZB = RNG.standard_normal((B, 3))

MATMUL = [
    # text, per-row values, reference per row (v, W, V, x)
    ("W @ z", {}, lambda v, w, m, x: w @ v),
    ("W @ z", {"W": WB}, lambda v, w, m, x: w @ v),
    ("W @ x + 0 * z", {"W": WB}, lambda v, w, m, x: w @ x),
    ("W @ x + 0 * z", {"x": XB}, lambda v, w, m, x: w @ x),
    ("z @ z * x", {}, lambda v, w, m, x: (v @ v) * x),
    ("x @ x * z", {"x": XB}, lambda v, w, m, x: (x @ x) * v),
    ("x @ W + 0 * z", {}, lambda v, w, m, x: x @ w),
    ("z @ W", {}, lambda v, w, m, x: v @ w),
    ("z @ W", {"W": WB}, lambda v, w, m, x: v @ w),
    ("x @ W + 0 * z", {"W": WB, "x": XB}, lambda v, w, m, x: x @ w),
    ("W @ V @ z", {}, lambda v, w, m, x: w @ m @ v),
    ("W @ V @ z", {"V": VB}, lambda v, w, m, x: w @ m @ v),
    ("W @ V @ z", {"W": WB}, lambda v, w, m, x: w @ m @ v),
    ("W @ V @ z", {"W": WB, "V": VB}, lambda v, w, m, x: w @ m @ v),
    ("(W @ V) @ z", {"W": WB}, lambda v, w, m, x: (w @ m) @ v),
    ("z @ (W @ V)", {"V": VB}, lambda v, w, m, x: v @ (w @ m)),
]


@pytest.mark.parametrize(
    ("text", "per_row", "ref"),
    MATMUL,
    ids=[f"{t} per-row {','.join(p) or 'none'}" for t, p, _ in MATMUL],
)
def test_matmul_shared_and_per_row_match_a_numpy_loop(text, per_row, ref):
    v0 = RNG.standard_normal((3, 3))
    spec = make_spec(text, 3, tensors={"W": W3, "V": v0, "x": X3})
    fmap = compile_spec(spec).with_values(**per_row)
    got = fmap(torch.tensor(ZB)).numpy()
    for i in range(B):
        w = WB[i] if "W" in per_row else W3
        m = VB[i] if "V" in per_row else v0
        x = XB[i] if "x" in per_row else X3
        np.testing.assert_allclose(got[i], ref(ZB[i], w, m, x), rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# Parsing: accepted and rejected constructs, with positions
# ----------------------------------------------------------------------------------------------


def col(text: str, token: str, line: int = 1) -> int:
    """1-based column of the first ``token`` on ``line`` of ``text``."""
    return text.splitlines()[line - 1].index(token) + 1


def test_free_names_and_compile_expression_names():
    tree = parse_expression("tanh(a * (W @ z) + x) + pi", NAMES)
    assert free_names(tree) == {"a", "W", "z", "x", "pi"}
    ce = compile_expression("sum(z) * a", NAMES)
    assert ce.names == {"z", "a"}


REJECTED = [
    # text, token where the error points, message fragment
    ("tanh(a * (W @ z) + q)", "q", "unknown name 'q'"),
    ("tanh(W @ z) + alpah", "alpah", "did you mean 'alpha'"),
    ("z + foo(z)", "foo", "unknown function 'foo'"),
    ("z + tanhh(z)", "tanhh", "did you mean 'tanh'"),
    ("z + open('/etc/passwd')", "open", "unknown function 'open'"),
    ("__import__('os')", "__import__", "unknown function '__import__'"),
    ("z + exec('1')", "exec", "unknown function 'exec'"),
    ("z + eval('1')", "eval", "unknown function 'eval'"),
    ("z + getattr(z, 'x')", "getattr", "unknown function 'getattr'"),
    ("z + z.real", "z.real", "attribute"),
    ("().__class__", "()", "attribute"),
    ("z + tanh(z).sum", "tanh(z).sum", "attribute"),
    ("z + (lambda: z)", "lambda", "lambda"),
    ("z * 'abc'", "'abc'", "string"),
    ('z * "abc"', '"abc"', "string"),
    ("z * b'abc'", "b'abc'", "string"),
    ("z + f'{z}'", "f'", "string"),
    ("sum([v for v in z])", "[v for", "comprehension"),
    ("sum(v for v in z)", "(v for", "comprehension"),
    ("z + {1: 2}", "{", "dict"),
    ("z + {1}", "{", "set"),
    ("tanh(z, out=z)", "tanh", "keyword"),
    ("tanh(*z)", "tanh", "star"),
    ("[*z]", "*z", "star"),
    ("z + (y := 1)", "y :=", "assignment"),
    ("z and z", "z and", "'and'/'or'"),
    ("not z", "not", "Not"),
    ("~z", "~", "Invert"),
    ("z is z", "z is", "Is"),
    ("z in z", "z in", "In"),
    ("z + (1, 2)", "(1, 2)", "tuple"),
    ("z + True", "True", "bool"),
    ("z + None", "None", "NoneType"),
    ("z + 1j", "1j", "complex"),
    ("z[a]", "a", "integer literals"),
    ("z[0.5]", "0.5", "integer literals"),
    ("z[0:a]", "0:a", "integer literals"),
    ("z[::-1]", "::-1", "positive"),
    ("z[::0]", "::0", "positive"),
    ("z << 1", "z <<", "LShift"),
    ("z // 2", "z //", "FloorDiv"),
    ("tanh(z)(z)", "tanh(z)(z)", "only the built-in functions"),
    ("z[0](z)", "z[0](z)", "only the built-in functions"),
    ("z + tanh", "tanh", "is a function"),
    ("z + []", "[]", "empty vector"),
    ("exp()", "exp", "takes 1"),
    ("clamp(z, 1)", "clamp", "takes 3"),
]


@pytest.mark.parametrize(("text", "token", "fragment"), REJECTED, ids=[t for t, _, _ in REJECTED])
def test_rejected_construct_names_the_problem_and_its_position(text, token, fragment):
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES, field="f")
    err = info.value
    assert isinstance(err, ValueError)
    assert fragment in err.message, err.message
    assert err.field == "f"
    assert err.line == 1
    assert err.column == col(text, token), (err.column, col(text, token))
    assert f"(line 1, column {err.column})" in str(err)


SYNTAX = [
    ("tanh(z", "(", "never closed"),
    ("z + * 2", "*", "syntax"),
    ("z +)", ")", "unmatched"),
    ("a b", "b", "syntax"),
    ("z = 1", "=", "syntax"),
    ("import os", "import", "syntax"),
]


@pytest.mark.parametrize(("text", "token", "fragment"), SYNTAX, ids=[t for t, _, _ in SYNTAX])
def test_syntax_error_points_at_the_offending_token(text, token, fragment):
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES)
    err = info.value
    assert "syntax error" in err.message
    assert fragment in err.message
    assert (err.line, err.column) == (1, col(text, token))


@pytest.mark.parametrize("text", ["tanh(z) +", "z * (W @ z) -", "z +"])
def test_syntax_error_at_the_end_points_at_the_end(text):
    """An expression cut short is reported where it stops, not at column 1."""
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES)
    err = info.value
    assert err.line == 1
    assert err.column in (len(text), len(text) + 1), err.column


MULTILINE = [
    # text, line, token on that line, fragment
    ("tanh(W @ z\n     + q)", 2, "q", "unknown name 'q'"),
    ("W @ z\n+ q", 2, "q", "unknown name 'q'"),  # needs the wrapping parentheses to parse
    ("q\n+ z", 1, "q", "unknown name 'q'"),
    ("z + q\n+ z", 1, "q", "unknown name 'q'"),
    ("z\n+ z\n+ foo(z)", 3, "foo", "unknown function"),
    ("tanh(z +\n  z.real)", 2, "z.real", "attribute"),
    ("W @ z\n+ )", 2, ")", "unmatched"),
]


@pytest.mark.parametrize(("text", "line", "token", "fragment"), MULTILINE)
def test_multiline_expression_errors_have_line_and_column(text, line, token, fragment):
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES)
    err = info.value
    assert fragment in err.message
    assert (err.line, err.column) == (line, col(text, token, line))


def test_multiline_expression_compiles_and_evaluates():
    got = evaluate("tanh(W @ z\n     + x)\n- z * 0.5", Z3)
    np.testing.assert_allclose(got, np.tanh(Z3 @ W3.T + X3) - 0.5 * Z3, rtol=1e-13)


def test_pretty_puts_a_caret_under_the_error():
    text = "tanh(a * (W @ z) + q)"
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES)
    lines = info.value.pretty().splitlines()
    assert lines[0] == str(info.value)
    assert lines[1].strip() == text
    caret = lines[2]
    assert caret.strip() == "^"
    # the caret sits under the 'q' once the common indentation is taken off
    indent = len(lines[1]) - len(lines[1].lstrip())
    assert lines[1][caret.index("^")] == "q"
    assert caret.index("^") - indent == text.index("q")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("z + " * (MAX_EXPRESSION_LENGTH // 4 + 1) + "z", "limit"),
        ("-" * 500 + "z", ""),
        ("(" * 250 + "z" + ")" * 250, "nested"),
        ("tanh(" * 150 + "z" + ")" * 150, "nested"),
        ("z" + "+z" * 3000, ""),
        ("[" * 120 + "z" + "]" * 120, ""),
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "deep-unary",
        "deep-parens",
        "deep-calls",
        "long-chain",
        "deep-lists",
    ],
)
def test_degenerate_expressions_raise_spec_error_not_recursion_error(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_expression(text, NAMES)
    assert fragment in info.value.message


def test_expression_must_be_a_string():
    with pytest.raises(SpecError, match="string"):
        parse_expression(3.0, NAMES)  # type: ignore[arg-type]


def test_nesting_below_the_limit_is_fine():
    text = "tanh(" * 40 + "z" + ")" * 40
    ref = Z3
    for _ in range(40):
        ref = np.tanh(ref)
    np.testing.assert_allclose(evaluate(text, Z3), ref, rtol=1e-12)


def test_an_invalid_escape_in_a_string_is_a_spec_error_not_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning/SyntaxWarning would raise here
        with pytest.raises(SpecError, match="string literal"):
            compile_expression('z + "\\d"', {"z"})
