"""The spec expression language: text -> ``ast`` whitelist -> a tree of torch operations.

User text is never passed to ``eval``/``exec``. It is parsed with :func:`ast.parse`, every node is
checked against a whitelist (numbers, known names, arithmetic, ``@``, comparisons, ``a if c else b``,
indexing with constant indices, vector literals and calls of the functions in :data:`FUNCTIONS`),
and the tree is compiled into nested Python closures that call torch functions.

Layout: compiled expressions evaluate a whole batch at once in *batch-last* layout. A value whose
per-sample shape is ``s`` is a tensor of shape ``(*s, B)`` or ``(*s, 1)`` (shared by all rows), so
per-sample semantics (``W @ z``, ``z[0]``, ``sum(z)``) act on the leading dimensions and per-row
parameters broadcast for free. :mod:`implicit_viz.core.compiled_map` converts from the public batch-first
``(B, D)`` layout.

Parsing and checking (:func:`parse_expression`) need no torch; compiling does.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from implicit_viz.core.errors import SpecError

MAX_EXPRESSION_LENGTH = 20_000
MAX_DEPTH = 100

#: Names every expression may use besides the spec's own.
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

#: Function name -> (min args, max args, one-line help). The torch implementations are in
#: :func:`_implementations`; a test keeps the two tables in step.
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    # elementwise, one argument
    "tanh": (1, 1, "hyperbolic tangent"),
    "sigmoid": (1, 1, "logistic sigmoid 1 / (1 + exp(-x))"),
    "relu": (1, 1, "max(x, 0)"),
    "softplus": (1, 1, "log(1 + exp(x))"),
    "gelu": (1, 1, "Gaussian error linear unit"),
    "silu": (1, 1, "x * sigmoid(x)"),
    "sin": (1, 1, "sine"),
    "cos": (1, 1, "cosine"),
    "tan": (1, 1, "tangent"),
    "asin": (1, 1, "inverse sine"),
    "acos": (1, 1, "inverse cosine"),
    "atan": (1, 1, "inverse tangent"),
    "sinh": (1, 1, "hyperbolic sine"),
    "cosh": (1, 1, "hyperbolic cosine"),
    "exp": (1, 1, "exponential"),
    "log": (1, 1, "natural logarithm"),
    "log1p": (1, 1, "log(1 + x)"),
    "expm1": (1, 1, "exp(x) - 1"),
    "sqrt": (1, 1, "square root"),
    "abs": (1, 1, "absolute value"),
    "sign": (1, 1, "sign (-1, 0 or 1)"),
    "square": (1, 1, "x * x"),
    "erf": (1, 1, "error function"),
    # elementwise, several arguments
    "minimum": (2, 2, "elementwise minimum of two values"),
    "maximum": (2, 2, "elementwise maximum of two values"),
    "atan2": (2, 2, "atan2(y, x)"),
    "clamp": (3, 3, "clamp(x, lo, hi)"),
    "where": (3, 3, "where(cond, a, b): a where cond != 0, else b"),
    # reductions over the sample dimensions
    "sum": (1, 1, "sum of all entries"),
    "mean": (1, 1, "mean of all entries"),
    "norm": (1, 1, "Euclidean (Frobenius) norm"),
    "max": (1, 1, "largest entry"),
    "min": (1, 1, "smallest entry"),
    "logsumexp": (1, 1, "log(sum(exp(v)))"),
    "dot": (2, 2, "dot(u, v) = sum(u * v)"),
    # vector and matrix helpers
    "softmax": (1, 1, "softmax over a vector's entries"),
    "layernorm": (1, 1, "(v - mean(v)) / sqrt(var(v) + 1e-5)"),
    "outer": (2, 2, "outer(u, v): the matrix u_i v_j"),
    "transpose": (1, 1, "transpose of a matrix"),
    "concat": (1, 16, "concat(u, v, ...): vectors joined end to end"),
}

_FORBIDDEN_NAMES = {
    ast.Attribute: "attribute access",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.Dict: "dict literal",
    ast.Set: "set literal",
    ast.Starred: "star expression",
    ast.NamedExpr: "assignment expression (:=)",
    ast.JoinedStr: "string",
    ast.BoolOp: "'and'/'or' (use minimum/maximum or where)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_BINOPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.Mod: "%",
}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _error(node: ast.AST | None, message: str, source: str, field: str | None) -> SpecError:
    line = getattr(node, "lineno", None)
    col = getattr(node, "col_offset", None)
    return SpecError(
        message,
        field=field,
        line=line,
        column=None if col is None else col + 1,
        source=source,
    )


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def parse_expression(text: str, names: Iterable[str], *, field: str | None = "f") -> ast.Expression:
    """Parse ``text`` and check every node against the whitelist.

    Parameters
    ----------
    text : str
        One expression, e.g. ``"tanh(a * (W @ z) + x)"``. Line breaks are allowed.
    names : iterable of str
        The names the expression may use besides :data:`CONSTANTS` (``z``, params, tensors, ...).
    field : str
        Used in error messages.

    Returns
    -------
    ast.Expression
        The checked tree.

    Raises
    ------
    SpecError
        On a syntax error, an unknown name or function, or any construct outside the whitelist.
    """
    if not isinstance(text, str):
        raise SpecError(f"expression must be a string, not {type(text).__name__}", field=field)
    text = text.strip()
    if not text:
        raise SpecError("expression is empty", field=field)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SpecError(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}",
            field=field,
        )
    tree = _parse(text, field)
    allowed = set(names) | set(CONSTANTS)
    _check(tree.body, allowed, text, field, 0)
    return tree


def _parse(text: str, field: str | None) -> ast.Expression:
    with warnings.catch_warnings():
        # e.g. "invalid decimal literal" for '1if', or an invalid escape in a string literal
        # (a DeprecationWarning before Python 3.12): the SyntaxError or SpecError says enough
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _parse_quiet(text, field)


def _parse_quiet(text: str, field: str | None) -> ast.Expression:
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        first = exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise SpecError(f"expression could not be parsed: {exc}", field=field) from None
    if "\n" in text:
        # A multi-line expression parses once wrapped in parentheses; positions shift by one
        # column on the first line, which is undone below.
        try:
            tree = ast.parse("(" + text + "\n)", mode="eval")
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            pass
        else:
            for node in ast.walk(tree):
                if getattr(node, "lineno", None) == 1 and hasattr(node, "col_offset"):
                    node.col_offset = max(node.col_offset - 1, 0)
            return tree
    lines = text.splitlines() or [""]
    line = min(max(first.lineno or 1, 1), len(lines))
    col = first.offset or 0
    if not 1 <= col <= len(lines[line - 1]):
        col = len(lines[line - 1]) + 1  # Python reports 0 (or past the end) at end of input
    raise SpecError(
        f"syntax error: {first.msg or 'invalid syntax'}",
        field=field,
        line=line,
        column=max(col, 1),
        source=text,
    ) from None


def _check(node: ast.AST, allowed: set[str], src: str, field: str | None, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _error(node, f"expression is nested more than {MAX_DEPTH} levels deep", src, field)
    recurse = functools.partial(_check, allowed=allowed, src=src, field=field, depth=depth + 1)
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            kind = "string" if isinstance(v, (str, bytes)) else type(v).__name__
            raise _error(node, f"forbidden construct: {kind} literal {v!r:.40}", src, field)
        if isinstance(v, int) and abs(v) > 2**1023:
            raise _error(node, "number literal too large for a float", src, field)
        return
    if isinstance(node, ast.Name):
        if node.id not in allowed:
            if node.id in FUNCTIONS:
                raise _error(
                    node, f"'{node.id}' is a function: call it, e.g. {node.id}(z)", src, field
                )
            raise _error(node, f"unknown name '{node.id}'{_suggest(node.id, allowed)}", src, field)
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _error(
                node, f"forbidden operator {type(node.op).__name__}; use + - * / ** @ %", src, field
            )
        recurse(node.left)
        recurse(node.right)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _error(node, f"forbidden unary operator {type(node.op).__name__}", src, field)
        recurse(node.operand)
        return
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise _error(node, f"forbidden comparison {type(op).__name__}", src, field)
        recurse(node.left)
        for c in node.comparators:
            recurse(c)
        return
    if isinstance(node, ast.IfExp):
        recurse(node.test)
        recurse(node.body)
        recurse(node.orelse)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _error(
                node, "forbidden call: only the built-in functions may be called", src, field
            )
        name = node.func.id
        if name not in FUNCTIONS:
            raise _error(node, f"unknown function '{name}'{_suggest(name, FUNCTIONS)}", src, field)
        if node.keywords:
            raise _error(node, f"{name}() takes no keyword arguments", src, field)
        lo, hi, _ = FUNCTIONS[name]
        n = len(node.args)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _error(node, "forbidden construct: star expression", src, field)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise _error(node, f"{name}() takes {want} argument(s), got {n}", src, field)
        for a in node.args:
            recurse(a)
        return
    if isinstance(node, ast.Subscript):
        recurse(node.value)
        _check_index(node.slice, src, field)
        return
    if isinstance(node, (ast.List, ast.Tuple)):
        if isinstance(node, ast.Tuple):
            raise _error(node, "forbidden construct: tuple (use [a, b] for a vector)", src, field)
        if not node.elts:
            raise _error(node, "empty vector literal []", src, field)
        for e in node.elts:
            recurse(e)
        return
    kind = _FORBIDDEN_NAMES.get(type(node), type(node).__name__)
    raise _error(node, f"forbidden construct: {kind}", src, field)


def _const_int(node: ast.AST) -> int | None:
    """The value of an integer literal, possibly negated; None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _const_int(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _check_index(node: ast.AST, src: str, field: str | None) -> None:
    parts = node.elts if isinstance(node, ast.Tuple) else [node]
    if not parts:
        raise _error(node, "empty index", src, field)
    for c in ast.walk(node):
        if isinstance(c, ast.Constant) and type(c.value) is int and abs(c.value) > 2**62:
            raise _error(c, "index too large", src, field)
    for p in parts:
        if isinstance(p, ast.Slice):
            for b in (p.lower, p.upper, p.step):
                if b is not None and _const_int(b) is None:
                    raise _error(p, "slice bounds must be integer literals", src, field)
            if p.step is not None and (_const_int(p.step) or 0) <= 0:
                raise _error(p, "slice step must be a positive integer", src, field)
        elif _const_int(p) is None:
            raise _error(p, "indices must be integer literals such as z[0] or W[1, 0]", src, field)


def _index_value(node: ast.AST) -> tuple[int | slice, ...]:
    parts = node.elts if isinstance(node, ast.Tuple) else [node]
    out: list[int | slice] = []
    for p in parts:
        if isinstance(p, ast.Slice):
            out.append(
                slice(
                    None if p.lower is None else _const_int(p.lower),
                    None if p.upper is None else _const_int(p.upper),
                    None if p.step is None else _const_int(p.step),
                )
            )
        else:
            out.append(_const_int(p))  # type: ignore[arg-type]
    return tuple(out)


def free_names(tree: ast.Expression) -> set[str]:
    """The names (not function names) an expression reads."""
    nodes = list(ast.walk(tree))
    called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    return {n.id for n in nodes if isinstance(n, ast.Name) and id(n) not in called}


# --------------------------------------------------------------------------------------------
# Compilation to torch
# --------------------------------------------------------------------------------------------

Env = Mapping[str, Any]
Node = Callable[[Env], Any]


def sample_shape(value: Any) -> tuple[int, ...]:
    """Per-sample shape of a batch-last value (drops the trailing batch dimension)."""
    return tuple(value.shape[:-1])


@functools.lru_cache(maxsize=1)
def _implementations() -> dict[str, Callable[..., Any]]:
    import torch
    import torch.nn.functional as F

    def sample_dims(v: torch.Tensor) -> tuple[int, ...]:
        return tuple(range(v.ndim - 1))

    def reduce(fn: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def out(v: torch.Tensor) -> torch.Tensor:
            dims = sample_dims(v)
            return fn(v, dims) if dims else v

        return out

    def softmax(v: torch.Tensor) -> torch.Tensor:
        if v.ndim != 2:
            raise ValueError(f"softmax needs a vector, got shape {sample_shape(v)}")
        return torch.softmax(v, dim=0)

    def layernorm(v: torch.Tensor) -> torch.Tensor:
        dims = sample_dims(v)
        if not dims:
            raise ValueError("layernorm needs a vector or matrix, got a scalar")
        mu = v.mean(dim=dims, keepdim=True)
        var = (v - mu).square().mean(dim=dims, keepdim=True)
        return (v - mu) / torch.sqrt(var + 1e-5)

    def outer(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if u.ndim != 2 or v.ndim != 2:
            raise ValueError(
                f"outer needs two vectors, got shapes {sample_shape(u)} and {sample_shape(v)}"
            )
        return u[:, None, :] * v[None, :, :]

    def transpose(m: torch.Tensor) -> torch.Tensor:
        if m.ndim != 3:
            raise ValueError(f"transpose needs a matrix, got shape {sample_shape(m)}")
        return m.transpose(0, 1)

    def concat(*vs: torch.Tensor) -> torch.Tensor:
        for v in vs:
            if v.ndim not in (1, 2):
                raise ValueError(f"concat joins scalars and vectors, got shape {sample_shape(v)}")
        vs2 = [v.unsqueeze(0) if v.ndim == 1 else v for v in vs]
        b = max(v.shape[-1] for v in vs2)
        return torch.cat([v.expand(v.shape[0], b) for v in vs2], dim=0)

    def where(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(c != 0, a, b)

    def clamp(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x, lo), hi)

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if sample_shape(u) != sample_shape(v):
            raise ValueError(f"dot needs equal shapes, got {sample_shape(u)} and {sample_shape(v)}")
        p = u * v
        dims = sample_dims(p)
        return p.sum(dim=dims) if dims else p

    from implicit_viz.core.cpu_ufuncs import NUMPY_FASTER, cpu_fast

    table: dict[str, Callable[..., Any]] = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "softplus": F.softplus,
        "gelu": F.gelu,
        "silu": F.silu,
        "sin": torch.sin,
        "cos": torch.cos,
        "tan": torch.tan,
        "asin": torch.asin,
        "acos": torch.acos,
        "atan": torch.atan,
        "sinh": torch.sinh,
        "cosh": torch.cosh,
        "exp": torch.exp,
        "log": torch.log,
        "log1p": torch.log1p,
        "expm1": torch.expm1,
        "sqrt": torch.sqrt,
        "abs": torch.abs,
        "sign": torch.sign,
        "square": torch.square,
        "erf": torch.erf,
        "minimum": torch.minimum,
        "maximum": torch.maximum,
        "atan2": torch.atan2,
        "clamp": clamp,
        "where": where,
        "sum": reduce(lambda v, d: v.sum(dim=d)),
        "mean": reduce(lambda v, d: v.mean(dim=d)),
        "norm": reduce(lambda v, d: torch.linalg.vector_norm(v, dim=d)),
        "max": reduce(lambda v, d: v.amax(dim=d)),
        "min": reduce(lambda v, d: v.amin(dim=d)),
        "logsumexp": reduce(lambda v, d: torch.logsumexp(v, dim=d)),
        "dot": dot,
        "softmax": softmax,
        "layernorm": layernorm,
        "outer": outer,
        "transpose": transpose,
        "concat": concat,
    }
    for name, ufunc in NUMPY_FASTER.items():
        table[name] = cpu_fast(table[name], ufunc)
    return table


def _matmul(a: Any, b: Any) -> Any:
    """Per-sample ``a @ b`` on batch-last tensors: (m,n,B)@(n,B), (n,B)@(n,B), ..."""
    import torch

    na, nb = a.ndim - 1, b.ndim - 1
    if na == 2 and nb == 1:
        if a.shape[-1] == 1:
            return a[..., 0] @ b  # one GEMM: (m, n) @ (n, B)
        if b.shape[-1] == 1:
            return torch.einsum("mnb,n->mb", a, b[:, 0])
        return torch.einsum("mnb,nb->mb", a, b)
    if na == 1 and nb == 1:
        if a.shape[0] != b.shape[0]:
            raise ValueError("size mismatch")
        return (a * b).sum(dim=0)
    if na == 2 and nb == 2:
        if a.shape[-1] == 1 and b.shape[-1] == 1:
            return (a[..., 0] @ b[..., 0]).unsqueeze(-1)
        bsz = max(a.shape[-1], b.shape[-1])
        a2 = a.expand(*a.shape[:-1], bsz)
        b2 = b.expand(*b.shape[:-1], bsz)
        return torch.einsum("mnb,nkb->mkb", a2, b2)
    if na == 1 and nb == 2:
        if b.shape[-1] == 1:
            return (a.transpose(0, 1) @ b[..., 0]).transpose(0, 1)
        bsz = max(a.shape[-1], b.shape[-1])
        return torch.einsum("nb,nkb->kb", a.expand(a.shape[0], bsz), b.expand(*b.shape[:-1], bsz))
    raise ValueError("'@' needs vectors or matrices")


def _binop_fn(op: type) -> Callable[[Any, Any], Any]:
    import torch

    return {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.Pow: lambda a, b: torch.pow(a, b),
        ast.Mod: lambda a, b: torch.remainder(a, b),
        ast.MatMult: _matmul,
    }[op]


def _cmp_fn(op: type) -> Callable[[Any, Any], Any]:
    return {
        ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b,
        ast.Gt: lambda a, b: a > b,
        ast.GtE: lambda a, b: a >= b,
        ast.Eq: lambda a, b: a == b,
        ast.NotEq: lambda a, b: a != b,
    }[op]


_CATCH = (RuntimeError, IndexError, TypeError, ValueError, ZeroDivisionError)


def _shape_text(v: Any) -> str:
    if isinstance(v, (int, float)):
        return "scalar"
    s = sample_shape(v)
    return "scalar" if not s else str(s)


@dataclass(frozen=True)
class CompiledExpression:
    """A checked expression compiled to closures over torch.

    Call ``expr(env)`` with ``env`` mapping every name to a batch-last tensor ``(*shape, B|1)``;
    constants are read from ``env`` too (see :meth:`constants`).
    """

    text: str
    field: str | None
    names: frozenset[str]
    constants: frozenset[float]
    _fn: Node

    def __call__(self, env: Env) -> Any:
        return self._fn(env)


def compile_expression(
    text: str, names: Iterable[str], *, field: str | None = "f"
) -> CompiledExpression:
    """Parse, check and compile ``text``; see :func:`parse_expression` for the rules.

    Shape errors (``W @ z`` with mismatched sizes, an index out of range) surface as
    :class:`SpecError` with the position of the offending node when the expression is first
    evaluated; :func:`implicit_viz.core.compiled_map.compile_spec` does that once at compile time.
    """
    names = set(names)
    tree = parse_expression(text, names, field=field)
    fn = _Compiler(text.strip(), field).build(tree.body)
    return CompiledExpression(
        text=text,
        field=field,
        names=frozenset(free_names(tree)),
        constants=frozenset(literal_constants(tree)),
        _fn=fn,
    )


class _Compiler:
    def __init__(self, src: str, field: str | None) -> None:
        self.src = src
        self.field = field

    def err(self, node: ast.AST, message: str) -> SpecError:
        return _error(node, message, self.src, self.field)

    def build(self, node: ast.AST) -> Node:
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    # leaves ---------------------------------------------------------------------------------
    def _Constant(self, node: ast.Constant) -> Node:
        key = constant_key(node.value)
        return lambda env: env[key]

    def _Name(self, node: ast.Name) -> Node:
        key = node.id
        return lambda env: env[key]

    # operators ------------------------------------------------------------------------------
    def _BinOp(self, node: ast.BinOp) -> Node:
        left, right = self.build(node.left), self.build(node.right)
        fn = _binop_fn(type(node.op))
        sym = _BINOPS[type(node.op)]
        err = self.err

        # A literal operand is passed as a Python float: cheaper, and keeps dtype and device.
        lconst = _literal(node.left)
        rconst = _literal(node.right)
        if rconst is not None and sym != "@":

            def run(env: Env) -> Any:
                a = left(env)
                try:
                    return fn(a, rconst)
                except _CATCH as exc:
                    raise err(node, f"cannot apply '{sym}' to {_shape_text(a)}: {exc}") from None

            return run
        if lconst is not None and sym not in ("@", "**"):

            def run(env: Env) -> Any:
                b = right(env)
                try:
                    return fn(lconst, b)
                except _CATCH as exc:
                    raise err(node, f"cannot apply '{sym}' to {_shape_text(b)}: {exc}") from None

            return run

        def run(env: Env) -> Any:
            a = left(env)
            b = right(env)
            try:
                return fn(a, b)
            except _CATCH:
                raise err(
                    node,
                    f"shape mismatch: cannot apply '{sym}' to shapes "
                    f"{_shape_text(a)} and {_shape_text(b)}",
                ) from None

        return run

    def _UnaryOp(self, node: ast.UnaryOp) -> Node:
        inner = self.build(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        return lambda env: -inner(env)

    def _Compare(self, node: ast.Compare) -> Node:
        operands = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        fns = [_cmp_fn(type(op)) for op in node.ops]
        err = self.err

        def run(env: Env) -> Any:
            vals = [o(env) for o in operands]
            try:
                out = fns[0](vals[0], vals[1])
                for i in range(1, len(fns)):
                    out = out & fns[i](vals[i], vals[i + 1])
                return out.to(vals[0].dtype)
            except _CATCH:
                shapes = " and ".join(_shape_text(v) for v in vals)
                raise err(node, f"shape mismatch in comparison of shapes {shapes}") from None

        return run

    def _IfExp(self, node: ast.IfExp) -> Node:
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
        where = _implementations()["where"]
        err = self.err

        def run(env: Env) -> Any:
            c, a, b = test(env), body(env), orelse(env)
            try:
                return where(c, a, b)
            except _CATCH:
                raise err(
                    node,
                    f"shape mismatch in 'if/else': {_shape_text(a)}, {_shape_text(b)}, "
                    f"condition {_shape_text(c)}",
                ) from None

        return run

    def _Call(self, node: ast.Call) -> Node:
        name = node.func.id  # type: ignore[attr-defined]
        fn = _implementations()[name]
        args = [self.build(a) for a in node.args]
        err = self.err
        if len(args) == 1:
            (arg,) = args

            def run1(env: Env) -> Any:
                a = arg(env)
                try:
                    return fn(a)
                except _CATCH as exc:
                    raise err(node, f"{name}() of shape {_shape_text(a)}: {exc}") from None

            return run1

        def run(env: Env) -> Any:
            vals = [a(env) for a in args]
            try:
                return fn(*vals)
            except _CATCH as exc:
                shapes = ", ".join(_shape_text(v) for v in vals)
                raise err(node, f"{name}() of shapes {shapes}: {exc}") from None

        return run

    def _Subscript(self, node: ast.Subscript) -> Node:
        value = self.build(node.value)
        index = _index_value(node.slice)
        err = self.err
        n_index = len(index)

        def run(env: Env) -> Any:
            v = value(env)
            shape = sample_shape(v)
            if n_index > len(shape):
                raise err(node, f"too many indices ({n_index}) for shape {_shape_text(v)}")
            for i, (ix, size) in enumerate(zip(index, shape)):
                if isinstance(ix, int) and not -size <= ix < size:
                    raise err(
                        node,
                        f"index {ix} is out of range for axis {i} of size {size} "
                        f"(shape {_shape_text(v)})",
                    )
            try:
                return v[index]
            except _CATCH as exc:
                raise err(node, f"bad index for shape {_shape_text(v)}: {exc}") from None

        return run

    def _List(self, node: ast.List) -> Node:
        import torch

        elts = [self.build(e) for e in node.elts]
        err = self.err

        def run(env: Env) -> Any:
            vals = [e(env) for e in elts]
            try:
                vals = torch.broadcast_tensors(*vals)
                return torch.stack(vals, dim=0)
            except _CATCH:
                shapes = ", ".join(_shape_text(v) for v in vals)
                raise err(node, f"vector literal mixes shapes {shapes}") from None

        return run


def _literal(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    return None


def literal_constants(tree: ast.AST) -> set[float]:
    """Every numeric literal in a tree, as floats (their tensors go into the env)."""
    return {
        float(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))
    }


def constant_key(value: float) -> str:
    """The env key under which a literal's tensor is stored."""
    return "#" + repr(float(value))
