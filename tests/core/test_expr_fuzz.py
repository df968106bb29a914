"""Hostile and random expressions: compiling one (and evaluating what compiles) lets nothing but
SpecError escape, and runs nothing outside the whitelist.

An audit hook records the interpreter's security-relevant events (exec, import, open,
os.system, subprocess.Popen, ...) while a flag is set around compile + evaluate; none may occur.
A module-level sentinel, the builtins and a marker file that hostile expressions try to change
must stay as they were.
"""

from __future__ import annotations

import builtins
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import SpecError
from implicit_viz.core.expr import FUNCTIONS
from implicit_viz.core.spec import parse_spec, spec_from_dict

SENTINEL = {"value": "untouched"}
MARKER = Path(tempfile.gettempdir()) / "implicit_viz_fuzz_marker_do_not_create"
MARKER_TEXT = str(MARKER)
THIS = __name__

# ----------------------------------------------------------------------------------------------
# The audit hook: installed once, records only while armed
# ----------------------------------------------------------------------------------------------

BLOCKED = {
    "exec",
    "import",
    "open",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.remove",
    "os.rename",
    "os.mkdir",
    "os.rmdir",
    "os.chdir",
    "os.chmod",
    "os.putenv",
    "os.unsetenv",
    "os.listdir",
    "os.scandir",
    "shutil.rmtree",
    "shutil.copyfile",
    "subprocess.Popen",
    "socket.__new__",
    "socket.connect",
    "socket.bind",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "builtins.input",
    "builtins.breakpoint",
    "sys.settrace",
    "sys.setprofile",
    "sys.addaudithook",
    "object.__getattr__",
    "object.__setattr__",
    "object.__delattr__",
    "code.__new__",
    "function.__new__",
    "marshal.loads",
    "pickle.find_class",
    "urllib.Request",
    "webbrowser.open",
}


class _Audit:
    armed = False
    events: list[tuple[str, str]] = []  # noqa: RUF012
    installed = False


def _hook(event: str, args: tuple) -> None:
    if not _Audit.armed:
        return
    if event in BLOCKED:
        _Audit.events.append((event, repr(args)[:200]))
    elif event == "compile":
        # ast.parse compiles to a tree with filename '<unknown>'; anything else would be code
        filename = args[1] if len(args) > 1 else None
        if filename != "<unknown>":
            _Audit.events.append((event, repr(args)[:200]))


if not _Audit.installed:
    sys.addaudithook(_hook)
    _Audit.installed = True


# ----------------------------------------------------------------------------------------------
# The tiny spec every expression is compiled in
# ----------------------------------------------------------------------------------------------

BASE = {
    "name": "fuzz",
    "dim": 2,
    "z0": [0.1, -0.2],
    "params": {"a": {"value": 0.5, "min": 0.0, "max": 1.0}},
    "tensors": {"W": [[0.5, -0.3], [0.2, 0.4]], "x": [0.3, -0.1]},
}
Z_EVAL = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (3, 2)))


def _warm_up() -> None:
    """Load every lazily imported module before the hook is armed."""
    for name in FUNCTIONS:
        arg = "W + 0.5" if name == "transpose" else "z * z + 0.5"
        lo = FUNCTIONS[name][0]
        f = f"sum({name}({', '.join([arg] * lo)})) + 0 * z"
        fmap = compile_spec(spec_from_dict({**BASE, "f": f}))
        fmap(Z_EVAL)
    fmap = compile_spec(
        spec_from_dict({**BASE, "f": "tanh(a * (W @ z) + x) % 2 ** 1 if z[0] < 1 else z"})
    )
    solve(fmap, "fixed_point", max_iter=3)
    for bad in ("q", "z.x", "tanh(", "'s'"):
        try:
            compile_spec(spec_from_dict({**BASE, "f": bad}))
        except SpecError as exc:
            exc.pretty()


_warm_up()


def state() -> tuple:
    return (dict(SENTINEL), sorted(vars(builtins)), MARKER.exists())


BEFORE = state()


def check_expression(expr: str, *, via_toml: bool = False) -> str:
    """Compile ``expr`` (and, if that works, evaluate and briefly solve it) with the hook armed.

    Returns "error" or "ok". Fails the test if anything but SpecError escapes, if a blocked
    event occurs, or if the sentinel, the builtins or the marker file changed.
    """
    _Audit.events.clear()
    outcome = "error"
    _Audit.armed = True
    try:
        if via_toml:
            # a TOML basic string accepts JSON's escapes
            spec = parse_spec(
                f"dim = 2\nf = {json.dumps(expr)}\n[params]\na = 0.5\n[tensors]\nW = [[0.5, -0.3], [0.2, 0.4]]\nx = [0.3, -0.1]\n"
            )
        else:
            spec = spec_from_dict({**BASE, "f": expr})
        fmap = compile_spec(spec)
        out = fmap(Z_EVAL)
        assert out.shape == (3, 2)
        solve(fmap, "fixed_point", max_iter=4, diagnostics=False)
        outcome = "ok"
    except SpecError as exc:
        # the error must be printable, with a position that lies inside the text when given
        exc.pretty()
        str(exc)
    finally:
        _Audit.armed = False
    assert _Audit.events == [], (expr, _Audit.events)
    assert state() == BEFORE, expr
    return outcome


# ----------------------------------------------------------------------------------------------
# The grammar
# ----------------------------------------------------------------------------------------------

SAFE_LEAVES = [
    "z",
    "z[0]",
    "z[1]",
    "z[-1]",
    "z[0:1]",
    "z[::2]",
    "a",
    "W",
    "x",
    "W[0, 1]",
    "W[:, 0]",
    "pi",
    "e",
    "0",
    "1",
    "2.5",
    "1e-3",
    "1e308",
    "1e400",
    "0.0",
    "[z[1], z[0]]",
]

HOSTILE_LEAVES = [
    "__import__('os')",
    f"__import__('os').system('touch {MARKER_TEXT}')",
    f"open('{MARKER_TEXT}', 'w')",
    f"open('{MARKER_TEXT}', 'w').write('x')",
    f"os.system('touch {MARKER_TEXT}')",
    "os",
    "sys",
    "exec",
    "eval",
    "exec('SENTINEL.update(value=1)')",
    "eval('1 + 1')",
    "compile('1', 'f', 'eval')",
    "globals()",
    "locals()",
    "vars()",
    "__builtins__",
    "__builtins__.__dict__",
    "().__class__.__bases__[0].__subclasses__()",
    "().__class__",
    "z.__class__",
    "z.real",
    "getattr(z, 'real')",
    "type(z)",
    "print(1)",
    "breakpoint()",
    "input()",
    "exit()",
    "setattr(__builtins__, 'pwned', 1)",
    f"__import__('{THIS}').SENTINEL.update(value='pwned')",
    "__import__('subprocess').Popen(['true'])",
    "lambda: 0",
    "(lambda: __import__('os'))()",
    "[v for v in z]",
    "{v for v in z}",
    "(v for v in z)",
    "{1: z}",
    "{z}",
    "(y := z)",
    "*z",
    "z and z",
    "z or z",
    "not z",
    "~z",
    "...",
    "None",
    "True",
    "1j",
    "'string'",
    '"string"',
    "b'bytes'",
    "f'{z}'",
    "'%s' % z",
    "z if z else exec('1')",
    "0x" + "f" * 40,
    "1" + "0" * 400,
    "9" * 5000,
    "1" + "0" * 30,
    "2 ** 2 ** 2 ** 2 ** 2",
    "10 ** 10 ** 10",
    "z[" + "1" + "0" * 30 + "]",
    "z[0:" + "1" + "0" * 30 + "]",
    "z[a]",
    "z['a']",
    "tanh(z, out=z)",
    "tanh(*[z])",
    "tanh(**{})",
    "sum(z, start=1)",
    "z # comment",
    "z; z",
    "z\n+ z",
    "z\\\n+ z",
    "import os",
    "yield z",
    "await z",
    "z = 1",
    "del z",
    "assert z",
    "raise SystemExit",
]

LEAVES = st.sampled_from(SAFE_LEAVES) | st.sampled_from(HOSTILE_LEAVES)
OPERATORS = [
    "+",
    "-",
    "*",
    "/",
    "**",
    "@",
    "%",
    "<",
    "<=",
    "==",
    "!=",
    ">",
    ">=",
    "//",
    "<<",
    "&",
    "|",
    "^",
    "and",
    "or",
    "is",
    "in",
]
CALLABLES = [
    *FUNCTIONS,
    "open",
    "exec",
    "eval",
    "__import__",
    "getattr",
    "print",
    "compile",
    "globals",
    "type",
]
ATTRIBUTES = [
    "__class__",
    "real",
    "T",
    "__dict__",
    "system",
    "__globals__",
    "shape",
    "__subclasses__",
    "mro",
]


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", pair, st.sampled_from(OPERATORS)),
        st.builds(lambda p, op: f"{p[0]} {op} {p[1]}", pair, st.sampled_from(OPERATORS)),
        st.builds(
            lambda c, op: f"{op}{c}", children, st.sampled_from(["-", "+", "not ", "~", "--"])
        ),
        st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from(CALLABLES),
            st.lists(children, min_size=0, max_size=4),
        ),
        st.builds(lambda c, at: f"{c}.{at}", children, st.sampled_from(ATTRIBUTES)),
        st.builds(
            lambda c, ix: f"{c}[{ix}]",
            children,
            st.sampled_from(
                ["0", "1", "-1", "2", "0:1", "::2", "0, 1", ":, 0", "a", "'k'", "1:0", "-5"]
            ),
        ),
        st.builds(lambda p: f"[{p[0]}, {p[1]}]", pair),
        st.builds(lambda p, c: f"{p[0]} if {c} else {p[1]}", pair, children),
        st.builds(lambda c: f"[{c} for v in z]", children),
        st.builds(lambda c: f"(lambda: {c})()", children),
        st.builds(lambda c: f"{c}(z)", children),
    )


GRAMMAR = st.recursive(LEAVES, _extend, max_leaves=12)


def _deep(draw_n: int, inner: str, kind: str) -> str:
    if kind == "parens":
        return "(" * draw_n + inner + ")" * draw_n
    if kind == "calls":
        return "tanh(" * draw_n + inner + ")" * draw_n
    if kind == "unary":
        return "-" * draw_n + inner
    if kind == "lists":
        return "[" * draw_n + inner + "]" * draw_n
    return inner + " + z" * draw_n


ALLOWED_OPERATORS = ["+", "-", "*", "/", "**", "@", "%", "<", "<=", "==", "!=", ">", ">="]


def _extend_allowed(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Only whitelisted constructs: what compiles must evaluate, row by row as in a batch."""
    pair = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", pair, st.sampled_from(ALLOWED_OPERATORS)),
        st.builds(lambda c: f"-{c}", children),
        st.builds(
            lambda name, args: f"{name}({', '.join(args)})",
            st.sampled_from(sorted(FUNCTIONS)),
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(
            lambda c, ix: f"{c}[{ix}]", children, st.sampled_from(["0", "-1", "0:1", "::2", "1, 0"])
        ),
        st.builds(lambda p: f"[{p[0]}, {p[1]}]", pair),
        st.builds(lambda p, c: f"({p[0]} if {c} else {p[1]})", pair, children),
    )


ALLOWED_GRAMMAR = st.recursive(st.sampled_from(SAFE_LEAVES), _extend_allowed, max_leaves=8)

DEEP = st.builds(
    _deep,
    st.integers(1, 400),
    st.sampled_from(["z", "z[0]", "x", "__import__('os')"]),
    st.sampled_from(["parens", "calls", "unary", "lists", "chain"]),
)


@st.composite
def mangled(draw) -> str:
    """A grammar expression with a random cut, insertion or deletion (unbalanced parens...)."""
    text = draw(GRAMMAR)
    how = draw(st.sampled_from(["cut", "insert", "delete"]))
    i = draw(st.integers(0, len(text)))
    if how == "cut":
        return text[:i]
    if how == "insert":
        return (
            text[:i]
            + draw(
                st.sampled_from(
                    ["(", ")", "[", "]", ",", ".", "'", '"', ":", "\\", "\n", "#", "lambda "]
                )
            )
            + text[i:]
        )
    return text[:i] + text[i + 1 :]


TOKENS = [
    "z", "a", "W", "x", "(", ")", "[", "]", ",", ".", ":", "+", "-", "*", "/", "**", "@", "%",
    "<", "==", "if", "else", "for", "in", "lambda", "not", "and", "'", '"', "0", "1", "1e9",
    "tanh", "sum", "open", "exec", "__import__", "__class__", "os", "system", " ", "\n", "=",
    ":=", "{", "}", "#", "\\", "...", "yield", "import",
]  # fmt: skip
SOUP = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25).map("".join)


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(GRAMMAR)
@example("__import__('os').system('touch /tmp/x')")
@example("z * 1" + "0" * 400)
@example("(" * 300 + "z" + ")" * 300)
def test_grammar_expressions_only_raise_spec_error(expr):
    check_expression(expr)


@settings(max_examples=200, deadline=None)
@given(ALLOWED_GRAMMAR)
def test_whitelisted_expressions_evaluate_row_by_row_as_in_a_batch(expr):
    if check_expression(expr) == "ok":
        fmap = compile_spec(spec_from_dict({**BASE, "f": expr}))
        batch = fmap(Z_EVAL)
        for i in range(Z_EVAL.shape[0]):
            single = fmap(Z_EVAL[i : i + 1])[0]
            torch.testing.assert_close(single, batch[i], rtol=1e-12, atol=1e-12, equal_nan=True)


@settings(max_examples=150, deadline=None)
@given(mangled())
def test_mangled_expressions_only_raise_spec_error(expr):
    check_expression(expr)


@settings(max_examples=100, deadline=None)
@given(DEEP)
def test_deeply_nested_expressions_only_raise_spec_error(expr):
    check_expression(expr)


@settings(max_examples=150, deadline=None)
@given(SOUP)
def test_token_soup_only_raises_spec_error(expr):
    check_expression(expr)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_only_raises_spec_error(expr):
    check_expression(expr)


@settings(max_examples=60, deadline=None)
@given(GRAMMAR)
def test_expressions_inside_toml_only_raise_spec_error(expr):
    check_expression(expr, via_toml=True)


# Odd but legal: comments, line breaks, huge numbers and slice bounds. They may compile (and
# then must evaluate); everything else in HOSTILE_LEAVES must be rejected with a SpecError.
LEGAL_ODDITIES = {
    "z # comment",
    "z\n+ z",
    "z\\\n+ z",
    "0x" + "f" * 40,
    "1" + "0" * 400,
    "1" + "0" * 30,
    "2 ** 2 ** 2 ** 2 ** 2",
    "10 ** 10 ** 10",
    "z[0:" + "1" + "0" * 30 + "]",
}


def test_legal_oddities_are_in_the_hostile_list():
    assert LEGAL_ODDITIES <= set(HOSTILE_LEAVES)


@pytest.mark.parametrize("expr", HOSTILE_LEAVES, ids=lambda e: repr(e)[:40])
def test_each_hostile_construct_is_rejected_or_harmless(expr):
    outcome = check_expression(expr)
    if outcome == "ok":
        assert expr in LEGAL_ODDITIES, expr


@pytest.mark.parametrize(
    "expr",
    [
        f"__import__('os').system('touch {MARKER_TEXT}')",
        f"open('{MARKER_TEXT}', 'w').write('x')",
        "exec('SENTINEL.update(value=1)')",
        f"__import__('{THIS}').SENTINEL.update(value='pwned')",
        "().__class__.__bases__[0].__subclasses__()",
        "(lambda: __import__('os'))()",
        "setattr(__builtins__, 'pwned', 1)",
    ],
)
def test_attacks_raise_spec_error(expr):
    with pytest.raises(SpecError):
        compile_spec(spec_from_dict({**BASE, "f": expr}))
    assert state() == BEFORE


def test_the_audit_hook_sees_what_it_should():
    """Self-check: the hook records an exec and an open while armed, and nothing when not."""
    _Audit.events.clear()
    _Audit.armed = True
    try:
        exec("1 + 1")
        with open(__file__, encoding="utf-8"):
            pass
    finally:
        _Audit.armed = False
    kinds = {e for e, _ in _Audit.events}
    assert {"exec", "open"} <= kinds
    _Audit.events.clear()
    exec("1 + 1")
    assert _Audit.events == []


def test_a_valid_expression_passes_the_checker():
    assert check_expression("tanh(a * (W @ z) + x)") == "ok"
    assert check_expression("tanh(a * (W @ z) + x)", via_toml=True) == "ok"
    assert check_expression("__import__('os')") == "error"
