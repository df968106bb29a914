"""Hostile CLI invocations, one row per attempt (issue 15, items 4, 7, 10 and 11).

Every row runs the real command. A bad input must end with exit 1 or 2 and exactly one
``implicit-viz: error: ...`` line that names the argument or spec field (no traceback, no usage
dump, no 300-digit number); with ``--json`` stdout still holds exactly one JSON document. A valid
input exits 0. Rows that read from a device or a FIFO run in a subprocess with a timeout, since
the old code read ``/dev/zero`` until the machine ran out of memory and blocked on a FIFO.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from implicit_viz.cli.main import main

PREFIX = "implicit-viz: error:"
#: Longest error line accepted: a message must show huge numbers compactly.
MAX_LINE = 300

# ------------------------------------------------------------------------------------------------
# A small spec whose parts the spec-file rows replace
# ------------------------------------------------------------------------------------------------

_BASE = {
    "top": "",
    "dim": "2",
    "f": '"tanh(a * (W @ z) + x)"',
    "a": "{ value = 0.5, min = 0.0, max = 2.0 }",
    "W": '{ shape = [2, 2], init = "normal", seed = 0, scale = 0.5 }',
    "x": "[0.1, 0.2]",
    "solver": "",
}


def spec_text(**parts: str) -> str:
    """The base spec with some parts replaced (``solver`` lines go under ``[solver]``)."""
    p = {**_BASE, **parts}
    return (
        f'name = "hostile"\n{p["top"]}\ndim = {p["dim"]}\nf = {p["f"]}\n'
        f"[params]\na = {p['a']}\n[tensors]\nW = {p['W']}\nx = {p['x']}\n"
        f"[solver]\n{p['solver']}\n"
    )


def nested(depth: int) -> str:
    return "[" * depth + "1.0" + "]" * depth


# (id, spec text, expected exit code, a word the error line must hold or None)
SPEC_ROWS: list[tuple[str, str, int, str | None]] = [
    ("valid", spec_text(), 0, None),
    # item 7: tracebacks
    ("set-is-int", spec_text(W="{ shape = [2, 2], set = 5 }"), 2, "tensors.W"),
    ("set-is-string", spec_text(W='{ shape = [2, 2], set = "abc" }'), 2, "tensors.W"),
    ("set-is-table", spec_text(W="{ shape = [2, 2], set = { a = 1 } }"), 2, "tensors.W"),
    ("set-short-entry", spec_text(W="{ shape = [2, 2], set = [[0, 0]] }"), 2, "tensors.W"),
    ("set-out-of-range", spec_text(W="{ shape = [2, 2], set = [[5, 5, 1.0]] }"), 2, "tensors.W"),
    ("set-negative-index", spec_text(W="{ shape = [2, 2], set = [[-1, 0, 1.0]] }"), 2, "tensors.W"),
    ("set-float-index", spec_text(W="{ shape = [2, 2], set = [[0.5, 0, 1.0]] }"), 2, "tensors.W"),
    ("set-nan-value", spec_text(W="{ shape = [2, 2], set = [[0, 0, nan]] }"), 2, "tensors.W"),
    ("set-text-value", spec_text(W='{ shape = [2, 2], set = [[0, 0, "x"]] }'), 2, "tensors.W"),
    ("set-huge-index", spec_text(W="{ shape = [2, 2], set = [[0, 1e300, 1.0]] }"), 2, "tensors.W"),
    ("shape-int-with-value", spec_text(x="{ shape = 2, value = [0.1, 0.2] }"), 0, None),
    ("shape-int-mismatch", spec_text(x="{ shape = 3, value = [0.1, 0.2] }"), 2, "tensors.x"),
    ("shape-text-with-value", spec_text(x='{ shape = "2", value = [0.1, 0.2] }'), 2, "tensors.x"),
    ("shape-table-with-value", spec_text(x="{ shape = { a = 1 }, value = [0.1, 0.2] }"), 2, "x"),
    ("nested-3000", spec_text(x=nested(3000)), 2, "nested"),
    ("nested-50", spec_text(x=nested(50)), 2, "tensors.x"),
    ("value-text", spec_text(x='{ value = "abc" }'), 2, "tensors.x"),
    ("value-mixed", spec_text(x='{ value = [1.0, "a"] }'), 2, "tensors.x"),
    ("value-bool", spec_text(x="{ value = [true, false] }"), 2, "tensors.x"),
    # item 11: values accepted without complaint or shown as 300-digit numbers
    ("spectral-norm-negative", spec_text(W="{ shape = [2, 2], spectral_norm = -1 }"), 2, "W"),
    ("spectral-norm-zero", spec_text(W="{ shape = [2, 2], spectral_norm = 0 }"), 2, "W"),
    ("spectral-norm-nan", spec_text(W="{ shape = [2, 2], spectral_norm = nan }"), 2, "W"),
    ("spectral-norm-1d", spec_text(x="{ shape = [2], spectral_norm = 1.0 }"), 2, "tensors.x"),
    (
        "spectral-norm-of-zeros",
        spec_text(W='{ shape = [2, 2], init = "zeros", spectral_norm = 1.0 }'),
        2,
        "W",
    ),
    (
        "seed-1e23-int",
        spec_text(W="{ shape = [2, 2], seed = 100000000000000000000000 }"),
        2,
        "seed",
    ),
    ("seed-1e23-float", spec_text(W="{ shape = [2, 2], seed = 1e23 }"), 2, "seed"),
    ("seed-2-to-64", spec_text(W="{ shape = [2, 2], seed = 18446744073709551616 }"), 2, "seed"),
    ("seed-negative", spec_text(W="{ shape = [2, 2], seed = -1 }"), 2, "seed"),
    ("seed-fraction", spec_text(W="{ shape = [2, 2], seed = 1.5 }"), 2, "tensors.W"),
    ("seed-bool", spec_text(W="{ shape = [2, 2], seed = true }"), 2, "tensors.W"),
    ("seed-text", spec_text(W='{ shape = [2, 2], seed = "3" }'), 2, "tensors.W"),
    ("seed-max-valid", spec_text(W="{ shape = [2, 2], seed = 9223372036854775807 }"), 0, None),
    ("dim-1e300", spec_text(dim="1e300"), 2, "dim"),
    ("dim-huge-int", spec_text(dim="99999999999999999999999999"), 2, "dim"),
    ("dim-5000-digits", spec_text(dim="9" * 5000), 2, "toml"),
    ("dim-zero", spec_text(dim="0"), 2, "dim"),
    ("dim-negative", spec_text(dim="-3"), 2, "dim"),
    ("dim-fraction", spec_text(dim="2.5"), 2, "dim"),
    ("dim-bool", spec_text(dim="true"), 2, "dim"),
    ("dim-text", spec_text(dim='"2"'), 2, "dim"),
    ("dim-nan", spec_text(dim="nan"), 2, "dim"),
    ("dim-inf", spec_text(dim="inf"), 2, "dim"),
    ("dim-list", spec_text(dim="[2]"), 2, "dim"),
    ("dim-mismatch", spec_text(dim="3"), 2, None),
    ("tol-bool", spec_text(solver="tol = true"), 2, "solver.tol"),
    ("tol-nan", spec_text(solver="tol = nan"), 2, "solver.tol"),
    ("tol-huge", spec_text(solver="tol = 1e200"), 2, "solver.tol"),
    ("rtol-huge", spec_text(solver="rtol = 1e200"), 2, "solver.rtol"),
    (
        "too-many-params",
        spec_text(a="1.0\n" + "".join(f"p{i} = 0.5\n" for i in range(100))),
        2,
        "params",
    ),
    ("tol-inf", spec_text(solver="tol = inf"), 2, "solver.tol"),
    ("tol-negative", spec_text(solver="tol = -1.0"), 2, "solver.tol"),
    ("tol-zero", spec_text(solver="tol = 0.0"), 2, "solver.tol"),
    ("tol-underflow", spec_text(solver="tol = 1e-400"), 2, "solver.tol"),
    ("tol-text", spec_text(solver='tol = "1e-6"'), 2, "solver.tol"),
    ("tol-list", spec_text(solver="tol = [1e-6]"), 2, "solver.tol"),
    ("rtol-negative", spec_text(solver="rtol = -1.0"), 2, "solver.rtol"),
    ("max-iter-1e300", spec_text(solver="max_iter = 1e300"), 2, "solver.max_iter"),
    ("max-iter-huge-int", spec_text(solver="max_iter = 99999999999999999999999"), 2, "max_iter"),
    ("max-iter-zero", spec_text(solver="max_iter = 0"), 2, "solver.max_iter"),
    ("max-iter-negative", spec_text(solver="max_iter = -1"), 2, "solver.max_iter"),
    ("max-iter-fraction", spec_text(solver="max_iter = 2.5"), 2, "solver.max_iter"),
    ("max-iter-bool", spec_text(solver="max_iter = true"), 2, "solver.max_iter"),
    ("max-period-absurd", spec_text(solver="max_period = 10000000"), 2, "solver.max_period"),
    ("max-period-one", spec_text(solver="max_period = 1"), 2, "solver.max_period"),
    ("div-bound-zero", spec_text(solver="div_bound = 0.0"), 2, "solver.div_bound"),
    ("div-bound-inf", spec_text(solver="div_bound = inf"), 2, "solver.div_bound"),
    ("period-tol-zero", spec_text(solver="period_tol = 0.0"), 2, "solver.period_tol"),
    ("solvers-text", spec_text(solver='solvers = "anderson"'), 2, "solver.solvers"),
    ("solvers-numbers", spec_text(solver="solvers = [1]"), 2, "solver.solvers"),
    ("solvers-unknown", spec_text(solver='solvers = ["nosuch"]'), 2, "nosuch"),
    ("solver-unknown-key", spec_text(solver="foo = 1"), 2, "solver.foo"),
    ("solver-option-unknown", spec_text(solver="[solver.anderson]\nnosuch = 1"), 2, "nosuch"),
    ("solver-option-bool", spec_text(solver="[solver.anderson]\nbeta = true"), 2, "beta"),
    ("solver-option-nan", spec_text(solver="[solver.anderson]\nlam = nan"), 2, "lam"),
    ("param-bool", spec_text(a="true"), 2, "params.a"),
    ("param-nan", spec_text(a="nan"), 2, "params.a"),
    ("param-text", spec_text(a='"abc"'), 2, "params.a"),
    ("param-list", spec_text(a="[1, 2]"), 2, "params.a"),
    ("param-empty", spec_text(a="{}"), 2, "params.a"),
    ("param-unknown-key", spec_text(a="{ value = 1.0, step = 2 }"), 2, "params.a"),
    ("param-outside-range", spec_text(a="{ value = 5.0, min = 0.0, max = 1.0 }"), 2, "params.a"),
    ("param-empty-range", spec_text(a="{ value = 1.0, min = 2.0, max = 1.0 }"), 2, "params.a"),
    ("param-inf-min", spec_text(a="{ value = 1.0, min = -inf }"), 2, "params.a"),
    ("param-huge-range", spec_text(a="{ value = 0.5, min = -1.7e308, max = 1.7e308 }"), 0, None),
    ("param-1e308", spec_text(a="1e308"), 0, None),
    ("param-minus-1e308", spec_text(a="-1e308"), 0, None),
    ("tensor-text", spec_text(x='"abc"'), 2, "tensors.x"),
    ("tensor-empty", spec_text(x="[]"), 2, "tensors.x"),
    ("tensor-ragged", spec_text(W="[[1.0, 2.0], [3.0]]"), 2, "tensors.W"),
    ("tensor-empty-row", spec_text(W="[[]]"), 2, "tensors.W"),
    ("tensor-nan-entry", spec_text(x="[nan, 0.0]"), 2, "tensors.x"),
    ("shape-empty", spec_text(W="{ shape = [] }"), 2, "tensors.W"),
    ("shape-absurd", spec_text(W="{ shape = [100000, 100000] }"), 2, "tensors.W"),
    ("shape-1e300", spec_text(W="{ shape = [1e300, 1] }"), 2, "tensors.W"),
    ("shape-negative", spec_text(W="{ shape = [-1, 2] }"), 2, "tensors.W"),
    ("shape-text-entry", spec_text(W='{ shape = ["a"] }'), 2, "tensors.W"),
    ("shape-fraction", spec_text(W="{ shape = [2.5, 2] }"), 2, "tensors.W"),
    ("shape-bool", spec_text(W="{ shape = true }"), 2, "tensors.W"),
    ("shape-3d", spec_text(W="{ shape = [2, 2, 2] }"), 2, "tensors.W"),
    ("shape-missing", spec_text(W='{ init = "normal" }'), 2, "tensors.W"),
    ("init-number", spec_text(W="{ shape = [2, 2], init = 5 }"), 2, "tensors.W"),
    ("init-unknown", spec_text(W='{ shape = [2, 2], init = "bogus" }'), 2, "tensors.W"),
    ("init-eye-1d", spec_text(x='{ shape = [2], init = "eye" }'), 2, "tensors.x"),
    ("scale-nan", spec_text(W="{ shape = [2, 2], scale = nan }"), 2, "tensors.W"),
    ("scale-bool", spec_text(W="{ shape = [2, 2], scale = true }"), 2, "tensors.W"),
    ("tensor-unknown-key", spec_text(W="{ shape = [2, 2], foo = 1 }"), 2, "tensors.W"),
    ("unknown-top-key", spec_text(top="foo = 1"), 2, "foo"),
    ("name-number", spec_text(top="description = 5"), 2, "description"),
    ("f-number", spec_text(f="5"), 2, "f"),
    ("f-empty", spec_text(f='""'), 2, "f"),
    ("f-unknown-name", spec_text(f='"q + z"'), 2, "f"),
    ("f-deep-unary", spec_text(f='"' + "-" * 5000 + 'z"'), 2, "f"),
    ("f-long", spec_text(f='"z' + "+z" * 20000 + '"'), 2, "f"),
    ("z0-text", spec_text(top='z0 = "abc"'), 2, "z0"),
    ("z0-length", spec_text(top="z0 = [1.0, 2.0, 3.0]"), 2, "z0"),
    ("z0-nan", spec_text(top="z0 = [nan, 0.0]"), 2, "z0"),
    ("z0-bool", spec_text(top="z0 = true"), 2, "z0"),
    ("z0-nested", spec_text(top="z0 = [[1.0, 2.0]]"), 2, "z0"),
    ("z0-table", spec_text(top="z0 = { a = 1 }"), 2, "z0"),
    ("z0-huge", spec_text(top="z0 = [1e308, 1e308]"), 0, None),
    ("define-number", spec_text(top="") + "[define]\nh = 5\n", 2, "define.h"),
    ("define-reserved", spec_text(top="") + '[define]\nz = "1"\n', 2, "define.z"),
    ("params-not-table", spec_text().replace("[params]\na = ", "params = 5\n#"), 2, "params"),
    ("toml-syntax", "dim = \nf = 'z'\n", 2, "toml"),
    ("empty-file", "", 2, "dim"),
    ("missing-f", "dim = 1\n", 2, "f"),
]


@pytest.mark.parametrize(
    ("text", "code", "needle"),
    [pytest.param(t, c, n, id=i) for i, t, c, n in SPEC_ROWS],
)
def test_hostile_spec_file(tmp_path, capsys, text, code, needle):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    argv = ["solve", str(path), "--solver", "fixed_point", "--max-iter", "20", "--json"]
    check(run_in_process(argv, capsys), code, needle, json_out=True)


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------

S = ["solve", "tanh_layer", "--solver", "fixed_point", "--json"]
D = ["solve", "deq_cell", "--solver", "fixed_point", "--json"]
W1 = ["sweep", "tanh_layer", "--x", "a=0:1:4", "--max-iter", "20", "--json"]
W0 = ["sweep", "tanh_layer", "--max-iter", "20", "--json"]
G = ["grad", "tanh_layer", "--wrt", "a", "--unroll-max", "3", "--json"]

# (id, argv, expected exit codes, a word the error line must hold or None)
ARG_ROWS: list[tuple[str, list[str], tuple[int, ...], str | None]] = [
    ("solve-valid", S, (0,), None),
    # --set, every form
    ("set-no-equals", [*S, "--set", "a"], (2,), "--set"),
    ("set-no-name", [*S, "--set", "=1"], (2,), "--set"),
    ("set-no-value", [*S, "--set", "a="], (2,), "--set"),
    ("set-double-equals", [*S, "--set", "a==1"], (2,), "a"),
    ("set-nan", [*S, "--set", "a=nan"], (2,), "--set a"),
    ("set-inf", [*S, "--set", "a=inf"], (2,), "--set a"),
    ("set-minus-inf", [*S, "--set", "a=-inf"], (2,), "--set a"),
    ("set-overflow", [*S, "--set", "a=1e309"], (2,), "--set a"),
    ("set-text", [*S, "--set", "a=abc"], (2,), "--set a"),
    ("set-bool", [*S, "--set", "a=true"], (2,), "--set a"),
    ("set-out-of-range", [*S, "--set", "a=5"], (2,), "params.a"),
    ("set-absurd", [*S, "--set", "a=1e300"], (2,), "params.a"),
    ("set-unknown", [*S, "--set", "nosuch=1"], (2,), "nosuch"),
    ("set-bad-target", [*S, "--set", "1a=3"], (2,), "1a"),
    ("set-space-target", [*S, "--set", "a b=1"], (2,), "a b"),
    ("set-two-numbers", [*S, "--set", "a=1 2"], (2,), "--set a"),
    ("set-elem-nan", [*S, "--set", "x[0]=nan"], (2,), "x[0]"),
    ("set-elem-overflow", [*S, "--set", "x[0]=1e400"], (2,), "x[0]"),
    ("set-elem-out-of-range", [*S, "--set", "x[5]=1"], (2,), "x"),
    ("set-elem-text-index", [*S, "--set", "x[a]=1"], (2,), "x[a]"),
    ("set-elem-empty-index", [*S, "--set", "x[]=1"], (2,), "x[]"),
    ("set-elem-two-indices", [*S, "--set", "x[0,0]=1"], (2,), "x"),
    ("set-elem-huge-index", [*S, "--set", "x[99999999999999999999999]=1"], (2,), "x"),
    ("set-elem-float-index", [*S, "--set", "x[0.5]=1"], (2,), "x"),
    ("set-elem-valid", [*S, "--set", "W[0,1]=0.5"], (0,), None),
    ("set-elem-negative-valid", [*S, "--set", "x[-1]=0.3"], (0,), None),
    ("set-matrix-out-of-range", [*S, "--set", "W[2,0]=1"], (2,), "W"),
    ("set-whole-broadcast", [*S, "--set", "x=1"], (0,), None),
    ("set-whole-list", [*S, "--set", "x=[1, 2]"], (0,), None),
    ("set-whole-count", [*S, "--set", "W=1,2"], (2,), "tensors.W"),
    ("set-whole-nan", [*S, "--set", "W=nan"], (2,), "--set W"),
    ("set-whole-junk", [*S, "--set", "x=1;2"], (2,), "--set x"),
    ("set-seed-of-literal", [*S, "--set", "W.seed=3"], (2,), "W"),
    ("set-seed-of-param", [*S, "--set", "a.seed=1"], (2,), "a"),
    ("set-index-of-param", [*S, "--set", "a[0]=1"], (2,), "a"),
    ("set-z0-count", [*S, "--set", "z0=1,2,3"], (2,), "z0"),
    ("set-z0-nan", [*S, "--set", "z0=nan"], (2,), "z0"),
    ("set-z0-index", [*S, "--set", "z0[5]=1"], (2,), "z0"),
    ("set-z0-inf", [*S, "--set", "z0[0]=inf"], (2,), "z0"),
    ("set-z0-seed", [*S, "--set", "z0.seed=1"], (2,), "z0"),
    ("set-z0-valid", [*S, "--set", "z0[-1]=0.5"], (0,), None),
    ("set-z0-huge", [*S, "--set", "z0=1e308,1e308"], (0,), None),
    ("set-seed-1e23", [*D, "--set", "W.seed=100000000000000000000000"], (2,), "W.seed"),
    ("set-seed-1e23-float", [*D, "--set", "W.seed=1e23"], (2,), "W.seed"),
    ("set-seed-2-to-64", [*D, "--set", "W.seed=18446744073709551616"], (2,), "W.seed"),
    ("set-seed-negative", [*D, "--set", "W.seed=-1"], (2,), "W.seed"),
    ("set-seed-text", [*D, "--set", "W.seed=abc"], (2,), "W.seed"),
    ("set-seed-fraction", [*D, "--set", "W.seed=1.5"], (2,), "W.seed"),
    ("set-seed-nan", [*D, "--set", "W.seed=nan"], (2,), "W.seed"),
    ("set-seed-valid", [*D, "--set", "W.seed=7"], (0,), None),
    ("set-drawn-elem-nan", [*D, "--set", "U[0,0]=nan"], (2,), "U[0,0]"),
    # --tol, --rtol, --max-iter
    ("tol-nan", [*S, "--tol", "nan"], (2,), "--tol"),
    # a tol whose square overflows float64 (the stop test compares squared norms)
    ("tol-huge", [*S, "--tol", "1e200"], (2,), "--tol"),
    ("tol-huge-grad", [*G, "--tol", "1e200"], (2,), "--tol"),
    ("tol-huge-sweep", ["sweep", "tanh_layer", "--x", "a=0:1:4", "--tol", "1e200"], (2,), "--tol"),
    ("tol-largest", [*S, "--tol", "1e100"], (0,), None),
    ("tol-inf", [*S, "--tol", "inf"], (2,), "--tol"),
    ("tol-overflow", [*S, "--tol", "1e400"], (2,), "--tol"),
    ("tol-negative", [*S, "--tol", "-1"], (2,), "--tol"),
    ("tol-zero", [*S, "--tol", "0"], (2,), "--tol"),
    ("tol-text", [*S, "--tol", "abc"], (2,), "--tol"),
    ("tol-empty", [*S, "--tol", ""], (2,), "--tol"),
    ("tol-missing", [*S, "--tol"], (2,), "--tol"),
    ("tol-valid", [*S, "--tol", "1e-9"], (0,), None),
    ("rtol-nan", [*S, "--rtol", "nan"], (2,), "--rtol"),
    ("rtol-negative", [*S, "--rtol", "-1"], (2,), "--rtol"),
    ("max-iter-negative", [*S, "--max-iter", "-1"], (2,), "--max-iter"),
    ("max-iter-zero", [*S, "--max-iter", "0"], (2,), "--max-iter"),
    ("max-iter-text", [*S, "--max-iter", "abc"], (2,), "--max-iter"),
    ("max-iter-fraction", [*S, "--max-iter", "1.5"], (2,), "--max-iter"),
    ("max-iter-exponent", [*S, "--max-iter", "1e9"], (2,), "--max-iter"),
    ("max-iter-absurd", [*S, "--max-iter", "99999999999999999999"], (2,), "--max-iter"),
    ("max-iter-nan", [*S, "--max-iter", "nan"], (2,), "--max-iter"),
    # --device, --dtype, --solver, --opt
    ("device-unknown", [*S, "--device", "nosuch"], (2,), "nosuch"),
    ("device-empty", [*S, "--device", ""], (2,), "--device"),
    ("device-cuda-99", [*S, "--device", "cuda:99"], (2,), "cuda"),
    ("device-cuda-negative", [*S, "--device", "cuda:-1"], (2,), "cuda"),
    ("device-meta", [*S, "--device", "meta"], (2,), "meta"),
    ("device-upper", [*S, "--device", "CPU"], (2,), "CPU"),
    ("device-auto", [*S, "--device", "auto"], (0,), None),
    ("dtype-float16", [*S, "--dtype", "float16"], (2,), "--dtype"),
    ("solver-unknown", ["solve", "tanh_layer", "--solver", "nosuch", "--json"], (2,), "nosuch"),
    ("solver-empty", ["solve", "tanh_layer", "--solver", ",,", "--json"], (0,), None),
    ("opt-no-equals", [*S, "--opt", "m"], (2,), "--opt"),
    ("opt-no-key", [*S, "--opt", "=3"], (2,), "--opt"),
    ("opt-unknown-solver", [*S, "--opt", "nosuch.m=3"], (2,), "nosuch"),
    ("opt-unknown-option", [*S, "--opt", "fixed_point.nosuch=1"], (2,), "nosuch"),
    ("opt-nan", ["solve", "cosine", "--solver", "anderson", "--opt", "lam=nan"], (2,), "lam"),
    ("opt-bool", ["solve", "cosine", "--solver", "damped", "--opt", "beta=true"], (2,), "beta"),
    ("opt-inf", ["solve", "cosine", "--solver", "damped", "--opt", "beta=inf"], (2,), "beta"),
    ("opt-text", ["solve", "cosine", "--solver", "anderson", "--opt", "m=abc"], (2,), "m"),
    # argparse's own errors: one line too
    ("no-spec", ["solve"], (2,), "SPEC"),
    ("unknown-option", [*S, "--bogus"], (2,), "--bogus"),
    ("grad-no-wrt", ["grad", "tanh_layer"], (2,), "--wrt"),
    ("sweep-no-x", ["sweep", "tanh_layer"], (2,), "--x"),
    ("presets-bogus", ["presets", "--bogus"], (2,), "--bogus"),
    ("presets-valid", ["presets", "--json"], (0,), None),
    # spec files that are not files
    ("spec-missing", ["solve", "/nonexistent/s.toml", "--json"], (2,), "/nonexistent/s.toml"),
    ("spec-folder", ["solve", "/tmp", "--json"], (2,), "/tmp"),
    ("spec-dev-null", ["solve", "/dev/null", "--json"], (2,), "/dev/null"),
    ("spec-unknown-preset", ["solve", "nosuchpreset", "--json"], (2,), "nosuchpreset"),
    ("spec-name-too-long", ["solve", "a" * 5000, "--json"], (2,), "neither a spec file"),
    ("spec-toml-name-too-long", ["solve", "a" * 5000 + ".toml", "--json"], (2,), "spec file"),
    ("spec-preset-traversal", ["solve", "../presets/cosine", "--json"], (2,), "neither"),
    ("spec-empty-name", ["solve", "", "--json"], (2,), None),
    # sweep: axes at the argument layer, --tile, --orbit, --basin-tol, --memory-mb
    ("sweep-valid-1d", W1, (0,), None),
    ("sweep-valid-2d", [*W1, "--y", "x[0]=-1:1:3"], (0,), None),
    ("x-no-equals", [*W0, "--x", "a"], (2,), "--x"),
    ("x-two-fields", [*W0, "--x", "a=0:1"], (2,), "--x"),
    ("x-four-fields", [*W0, "--x", "a=0:1:10:5"], (2,), "--x"),
    ("x-no-target", [*W0, "--x", "=0:1:10"], (2,), "--x"),
    ("x-n-text", [*W0, "--x", "a=0:1:abc"], (2,), "--x"),
    ("x-n-exponent", [*W0, "--x", "a=0:1:1e3"], (2,), "--x"),
    ("x-lo-text", [*W0, "--x", "a=lo:1:4"], (2,), "--x"),
    ("x-n-zero", [*W0, "--x", "a=0:1:0"], (2,), None),
    ("x-n-negative", [*W0, "--x", "a=0:1:-5"], (2,), None),
    ("x-n-absurd", [*W0, "--x", "a=0:1:99999999999999999999"], (2,), None),
    ("x-lo-nan", [*W0, "--x", "a=nan:1:4"], (2,), None),
    ("x-hi-inf", [*W0, "--x", "a=0:inf:4"], (2,), None),
    ("x-empty-range", [*W0, "--x", "a=1:1:4"], (2,), None),
    ("x-unknown-target", [*W0, "--x", "nosuch=0:1:4"], (2,), "nosuch"),
    ("x-index-out", [*W0, "--x", "x[9]=0:1:4"], (2,), "x"),
    ("y-no-equals", [*W1, "--y", "b"], (2,), "--y"),
    ("y-n-text", [*W1, "--y", "x[0]=0:1:q"], (2,), "--y"),
    ("tile-zero", [*W1, "--tile", "0"], (2,), "--tile"),
    ("tile-negative", [*W1, "--tile", "-1"], (2,), "--tile"),
    ("tile-text", [*W1, "--tile", "abc"], (2,), "--tile"),
    ("tile-absurd", [*W1, "--tile", "1000000000000"], (0, 2), None),
    ("orbit-negative", [*W1, "--orbit", "-1"], (2,), "--orbit"),
    ("orbit-text", [*W1, "--orbit", "abc"], (2,), "--orbit"),
    ("orbit-absurd", [*W1, "--orbit", "1000000000"], (2,), "orbit"),
    ("orbit-valid", [*W1, "--orbit", "3"], (0,), None),
    ("basin-tol-nan", [*W1, "--basin-tol", "nan"], (2,), "--basin-tol"),
    ("basin-tol-inf", [*W1, "--basin-tol", "inf"], (2,), "--basin-tol"),
    ("basin-tol-negative", [*W1, "--basin-tol", "-1"], (2,), "--basin-tol"),
    ("basin-tol-zero", [*W1, "--basin-tol", "0"], (2,), "--basin-tol"),
    ("basin-tol-text", [*W1, "--basin-tol", "abc"], (2,), "--basin-tol"),
    ("memory-inf", [*W1, "--memory-mb", "inf"], (2,), "--memory-mb"),
    ("memory-nan", [*W1, "--memory-mb", "nan"], (2,), "--memory-mb"),
    ("memory-negative", [*W1, "--memory-mb", "-1"], (2,), "--memory-mb"),
    ("memory-zero", [*W1, "--memory-mb", "0"], (2,), "--memory-mb"),
    ("memory-tiny", [*W1, "--memory-mb", "1e-9"], (2,), "--memory-mb"),
    ("memory-absurd", [*W1, "--memory-mb", "1e30"], (2,), "--memory-mb"),
    ("memory-text", [*W1, "--memory-mb", "abc"], (2,), "--memory-mb"),
    ("sweep-tol-nan", [*W1, "--tol", "nan"], (2,), "--tol"),
    ("sweep-max-iter-negative", [*W1, "--max-iter", "-1"], (2,), "--max-iter"),
    ("sweep-device-unknown", [*W1, "--device", "nosuch"], (2,), "nosuch"),
    ("sweep-solver-unknown", [*W1, "--solver", "nosuch"], (2,), "nosuch"),
    ("sweep-out-suffix", [*W1, "--out", "/tmp/g.txt"], (2,), "--out"),
    ("sweep-png-suffix", [*W1, "--png", "/tmp/g.jpg"], (2,), "--png"),
    ("sweep-out-no-folder", [*W1, "--out", "/nonexistent/g.npz"], (1,), "--out"),
    (
        "sweep-set-seed",
        ["sweep", "deq_cell", "--x", "s=0:1:2", "--set", "W.seed=1e23"],
        (2,),
        "W.seed",
    ),
    # grad
    ("grad-wrt-unknown", ["grad", "tanh_layer", "--wrt", "nosuch", "--json"], (2,), "nosuch"),
    ("grad-wrt-empty", ["grad", "tanh_layer", "--wrt", ",", "--json"], (2,), "--wrt"),
    ("grad-unroll-negative", [*G, "--unroll-max", "-1"], (2,), "--unroll-max"),
    ("grad-unroll-absurd", [*G, "--unroll-max", "1000000000"], (2,), "--unroll-max"),
    ("grad-phantom-steps-zero", [*G, "--phantom-steps", "0"], (2,), "--phantom-steps"),
    ("grad-phantom-lam-nan", [*G, "--phantom-lam", "nan"], (2,), "--phantom-lam"),
    ("grad-phantom-lam-inf", [*G, "--phantom-lam", "inf"], (2,), "--phantom-lam"),
    ("grad-phantom-lam-two", [*G, "--phantom-lam", "2"], (2,), "--phantom-lam"),
    ("grad-anderson-m-zero", [*G, "--anderson-m", "0"], (2,), "--anderson-m"),
    ("grad-anderson-m-negative", [*G, "--anderson-m", "-1"], (2,), "--anderson-m"),
    ("grad-tol-nan", [*G, "--tol", "nan"], (2,), "--tol"),
    ("grad-max-iter-negative", [*G, "--max-iter", "-1"], (2,), "--max-iter"),
    ("grad-loss-empty", [*G, "--loss", ""], (2,), "loss"),
    ("grad-loss-import", [*G, "--loss", "__import__('os')"], (2,), "loss"),
    ("grad-loss-unknown", [*G, "--loss", "nosuch"], (2,), "loss"),
    ("grad-out-suffix", [*G, "--out", "/tmp/g.txt"], (2,), "--out"),
    ("grad-set-nan", [*G, "--set", "a=nan"], (2,), "--set a"),
]


@pytest.mark.parametrize(
    ("argv", "codes", "needle"),
    [pytest.param(a, c, n, id=i) for i, a, c, n in ARG_ROWS],
)
def test_hostile_arguments(capsys, argv, codes, needle):
    check(run_in_process(argv, capsys), codes, needle, json_out="--json" in argv)


def test_memory_mb_too_small_for_one_cell_is_refused_before_work(tmp_path, capsys):
    """1 MB cannot hold one cell of a dim-65536 map: the sweep's own check names the budget."""
    spec = tmp_path / "wide.toml"
    spec.write_text('dim = 65536\nf = "a * z + 1"\n[params]\na = 0.5\n', encoding="utf-8")
    argv = ["sweep", str(spec), "--x", "a=0:1:4", "--memory-mb", "1", "--json"]
    check(run_in_process(argv, capsys), (2,), "cannot hold one cell", json_out=True)


def test_broken_presets_in_the_user_folder_do_not_break_the_listing(tmp_path, capsys, monkeypatch):
    (tmp_path / "textdim.toml").write_text('name = "t"\ndim = "abc"\nf = "z"\n')
    (tmp_path / "nested.toml").write_text("x = " + nested(3000) + "\n")
    (tmp_path / "huge.toml").write_text("# " + "x" * (3 * 1024**2) + "\n")
    os.mkfifo(tmp_path / "fifo.toml")
    monkeypatch.setenv("IMPLICIT_VIZ_PRESETS", str(tmp_path))
    code, out, err = run_in_process(["presets", "--json"], capsys)
    assert code == 0, err
    keys = {p["key"]: p for p in json.loads(out)}
    assert "cosine" in keys and keys["textdim"]["dim"] == 0
    assert not {"nested", "huge", "fifo"} & set(keys)
    check(run_in_process(["solve", "fifo", "--json"], capsys), (2,), "fifo", json_out=True)


def test_trace_to_a_full_disk_is_one_line_exit_1(tmp_path, capsys):
    """``/dev/full`` through a link named ``.json``: the write fails with ENOSPC."""
    link = tmp_path / "t.json"
    link.symlink_to("/dev/full")
    argv = [*S, "--trace", str(link)]
    check(run_in_process(argv, capsys), (1,), "t.json", json_out=True)


# ------------------------------------------------------------------------------------------------
# Devices and FIFOs: in a subprocess, with a timeout (item 4)
# ------------------------------------------------------------------------------------------------


def run_cli(argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "implicit_viz", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_spec_from_an_endless_device_is_refused_at_once(device):
    start = time.monotonic()
    proc = run_cli(["solve", device, "--json"])
    assert time.monotonic() - start < 20
    check((proc.returncode, proc.stdout, proc.stderr), (2,), device, json_out=True)
    assert "not a regular file" in proc.stderr


def test_spec_from_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    proc = run_cli(["solve", str(fifo)], timeout=20)
    check((proc.returncode, proc.stdout, proc.stderr), (2,), str(fifo))


def test_spec_file_over_the_limit_is_refused(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text(spec_text() + "# " + "x" * (3 * 1024**2) + "\n", encoding="utf-8")
    check(run_in_process(["solve", str(big), "--json"], capsys), (2,), "limit", json_out=True)


def test_spec_file_that_is_not_text_is_refused(tmp_path, capsys):
    junk = tmp_path / "junk.toml"
    junk.write_bytes(bytes(range(256)) * 4)
    check(run_in_process(["solve", str(junk)], capsys), (2,), "UTF-8")


def test_sigint_during_a_solve_exits_130_with_one_line(tmp_path):
    """A Ctrl-C while the CLI computes ends it at once: exit 130, one line, no traceback."""
    spec = tmp_path / "slow.toml"
    spec.write_text('dim = 1\nf = "4 * z * (1 - z)"\nz0 = [0.3]\n[solver]\nmax_iter = 10000000\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "implicit_viz",
            "solve",
            str(spec),
            "--solver",
            "fixed_point",
            "--tol",
            "1e-300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4.0)  # torch's import, then the solve's long budget
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    # 130, or killed by SIGINT (-2), which a shell shows as 130 too: CPython 3.11 ends that way
    # when the interrupt landed in code it ran through PyRun (torch's import), though caught
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines() == ["implicit-viz: interrupted"], err


def test_sigterm_during_a_trace_write_keeps_the_old_file_and_no_temp(tmp_path):
    """kill/timeout (SIGTERM) is handled like Ctrl-C: exit 143, one line, with --json one JSON
    document; a trace being written leaves neither a temp file nor a changed old file."""
    spec = tmp_path / "circle.toml"
    spec.write_text('dim = 1\nf = "(z + 0.6180339887) % 1"\n', encoding="utf-8")
    old = tmp_path / "t.npz"
    old.write_bytes(b"an older trace")
    argv = [sys.executable, "-m", "implicit_viz", "solve", str(spec), "--solver", "fixed_point"]
    argv += ["--max-iter", "10000000", "--trace", str(old), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["implicit-viz: terminated"], err
    assert json.loads(out) == {"error": "terminated", "exit_code": 143}
    assert old.read_bytes() == b"an older trace"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["circle.toml", "t.npz"]


def test_a_full_stdout_with_json_is_one_line_exit_1():
    """stdout on /dev/full: one error line naming standard output, no traceback (the JSON
    error document cannot be written either, and nothing is printed at exit)."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "implicit_viz", "presets", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "implicit-viz: error: cannot write to standard output: no space left on device"
    ], proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "tanh_layer", "--js", "--tol", "nan"],  # argparse takes --js for --json
        ["sweep", "tanh_layer", "--x", "a=0:3:8", "--out", "", "--json"],
    ],
    ids=["json-abbreviated", "out-empty"],
)
def test_errors_keep_the_json_promise(capsys, argv):
    code, out, err = run_in_process(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert json.loads(out)["exit_code"] == 2


def test_out_through_a_loop_of_links_is_refused_and_the_links_stay(tmp_path, capsys):
    a, b = tmp_path / "l1.npz", tmp_path / "l2.npz"
    a.symlink_to(b)
    b.symlink_to(a)
    code, _, err = run_in_process(
        ["sweep", "tanh_layer", "--x", "a=0:3:8", "--out", str(a)], capsys
    )
    assert code == 1 and "loop of symbolic links" in err
    assert a.is_symlink() and b.is_symlink()


# ------------------------------------------------------------------------------------------------
# Harness
# ------------------------------------------------------------------------------------------------


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``main(argv)``: an exception that escapes it fails the row (that is a traceback)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exit: its usage and message are two lines
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check(
    result: tuple[int, str, str], codes, needle: str | None, *, json_out: bool = False
) -> None:
    code, out, err = result
    codes = (codes,) if isinstance(codes, int) else tuple(codes)
    assert code in codes, f"exit {code}, wanted {codes}\nstderr: {err}\nstdout: {out[:500]}"
    assert "Traceback" not in err, err
    assert "usage:" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(PREFIX)]
    if code == 0:
        assert not lines, err
    else:
        assert len(lines) == 1, err
        line = lines[0]
        assert len(line) <= MAX_LINE, line
        if needle is not None:
            assert needle.lower() in line.lower(), line
    if json_out:
        doc = json.loads(out)  # exactly one JSON document
        if code != 0:
            assert doc["exit_code"] == code and doc["error"]
