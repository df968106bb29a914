"""`implicit-viz grad`: run the real command, read what it printed and wrote."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from implicit_viz.cli.main import main

# z = A z + c v with ||A||_2 = 0.5: sum(z*) = 1^T (I - A)^-1 c v, so d/dc = 1^T (I - A)^-1 v
A = np.array([[0.3, 0.2, 0.0], [-0.1, 0.25, 0.1], [0.05, 0.0, -0.2]])
V = np.array([1.0, -0.5, 0.25])
LINEAR_TOML = f"""
name = "linear"
dim = 3
f = "A @ z + c * v"
[params]
c = {{ value = 0.7, min = -2.0, max = 2.0 }}
[tensors]
A = {A.tolist()}
v = {V.tolist()}
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["grad", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)  # exactly one document: json.loads rejects trailing text


@pytest.fixture
def linear_spec(tmp_path):
    p = tmp_path / "linear.toml"
    p.write_text(LINEAR_TOML)
    return str(p)


def test_table_on_presets(capsys):
    code, out, err = run(capsys, "tanh_layer", "--wrt", "a,x", "--unroll-max", "12")
    assert code == 0, err
    for name in ("unrolled", "implicit_exact", "implicit_fixed_point", "implicit_anderson"):
        assert name in out
    assert "jacobian_free" in out and "phantom" in out
    assert "rho(df/dz*)" in out and "warning" not in out
    code, out, err = run(capsys, "deq_cell", "--wrt", "s", "--wrt", "x", "--unroll-max", "8")
    assert code == 0, err
    assert "err k=8" in out


def test_json_is_one_document_with_every_field_and_the_closed_form(capsys, linear_spec):
    doc = run_json(capsys, linear_spec, "--wrt", "c", "--unroll-max", "60", "--tol", "1e-13")
    for key in (
        "spec",
        "options",
        "loss",
        "wrt",
        "forward",
        "reference",
        "methods",
        "curves",
        "spectral_radius",
        "sigma_min",
        "ill_posed",
        "warnings",
    ):
        assert key in doc, key
    want = np.ones(3) @ np.linalg.solve(np.eye(3) - A, V)
    assert doc["reference"]["gradient"][0] == pytest.approx(want, rel=1e-12)
    methods = {m["method"]: m for m in doc["methods"]}
    assert methods["implicit_exact"]["gradient"][0] == pytest.approx(want, rel=1e-12)
    assert methods["unrolled"]["gradient"][0] == pytest.approx(want, rel=1e-10)
    for m in methods.values():
        for key in ("rel_error", "cosine", "time_s", "memory_bytes", "steps"):
            assert key in m
    curves = {c["method"]: c for c in doc["curves"]}
    assert len(curves["unrolled"]["rel_error"]) == 60
    assert doc["ill_posed"] is False
    rho = max(abs(np.linalg.eigvals(A)))
    assert doc["spectral_radius"] == pytest.approx(rho, rel=1e-10)


@pytest.mark.parametrize("suffix", [".csv", ".npz", ".json"])
def test_out_files_read_back_equal_to_the_json(capsys, tmp_path, suffix):
    path = tmp_path / f"curves{suffix}"
    doc = run_json(capsys, "deq_cell", "--wrt", "s", "--unroll-max", "9", "--out", str(path))
    curves = {c["method"]: c for c in doc["curves"]}

    def same(got, want):
        got = [None if (g is None or math.isnan(g)) else g for g in map(_num, got)]
        assert got == want

    if suffix == ".json":
        extra = ("spec_path", "out")  # what the command adds to the report's own document
        assert json.loads(path.read_text()) == {k: v for k, v in doc.items() if k not in extra}
    elif suffix == ".npz":
        data = np.load(path)
        meta = json.loads(str(data["metadata"]))
        assert meta["wrt"][0]["name"] == "s" and 'f = "tanh(' in meta["spec"]
        assert meta["options"]["unroll_max"] == 9
        for name, c in curves.items():
            same(data[f"{name}_rel_error"].tolist(), c["rel_error"])
            assert data[f"{name}_memory_bytes"].tolist() == c["memory_bytes"]
        assert data["reference"].tolist() == doc["reference"]["gradient"]
        for m in doc["methods"]:
            assert data[f"gradient_{m['method']}"].tolist() == m["gradient"]
    else:
        lines = path.read_text().splitlines()
        comments = [ln for ln in lines if ln.startswith("#")]
        meta = json.loads(comments[1][2:])
        assert meta["options"]["wrt"] == ["s"] and meta["loss"] == "sum(z)"
        assert any(ln.startswith("# spec> ") for ln in comments)
        rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
        assert len(rows) == 4 * 9
        for name, c in curves.items():
            mine = [r for r in rows if r["method"] == name]
            assert [int(r["k"]) for r in mine] == list(range(1, 10))
            same([r["rel_error"] for r in mine], c["rel_error"])
            assert [int(r["memory_bytes"]) for r in mine] == c["memory_bytes"]
            col = "forward_residual" if c["residual_kind"] == "forward" else "backward_residual"
            same([r[col] for r in mine], c["residual"])


def _num(v):
    if v is None:
        return None
    return float(v)


def test_ill_posed_map_prints_a_warning_and_json_carries_the_flag(capsys):
    code, out, err = run(capsys, "tanh_layer", "--wrt", "x", "--set", "a=3", "--unroll-max", "5")
    assert code == 0, err
    assert "ill-posed" in out and "warning" in out
    doc = run_json(capsys, "tanh_layer", "--wrt", "x", "--set", "a=3", "--unroll-max", "5")
    assert doc["ill_posed"] is True and "contraction" in doc["ill_posed_message"]


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--wrt", "q"], "no param or tensor named 'q'"),
        (["--wrt", "s", "--loss", "sum(zz)"], "unknown name 'zz'"),
        (["--wrt", "s", "--loss", "z"], "must be one number"),
        (["--wrt", "s", "--solver", "nope"], "unknown solver"),
        (["--wrt", "s", "--unroll-max", "0"], "--unroll-max"),
        (["--wrt", "s", "--out", "curves.txt"], ".csv, .npz, .json"),
    ],
)
def test_errors_give_one_error_line_and_a_nonzero_exit(capsys, argv, text):
    code, out, err = run(capsys, "deq_cell", *argv)
    assert code != 0
    assert out == ""
    first = err.splitlines()[0]
    assert first.startswith("implicit-viz: error:") and text in first
    assert err.count("implicit-viz: error:") == 1 and "Traceback" not in err
    code, out, err = run(capsys, "deq_cell", *argv, "--json")
    assert code != 0 and json.loads(out)["error"]


def test_anderson_is_refused_in_one_line_or_unrolled(capsys):
    """Anderson writes its history in place: refused with one clear line, until the library's
    step clones its history under autograd; then it simply runs."""
    code, out, err = run(
        capsys, "deq_cell", "--wrt", "s", "--solver", "anderson", "--unroll-max", "5"
    )
    if code == 0:
        assert "unrolled" in out and "anderson, 5 steps from z0" in out
    else:
        assert code == 2 and err.count("\n") == 1
        assert err.startswith("implicit-viz: error: unrolled backprop through 'anderson'")


def test_unwritable_out_fails_before_any_work(capsys, tmp_path):
    code, out, err = run(capsys, "deq_cell", "--wrt", "s", "--out", str(tmp_path / "no" / "x.csv"))
    assert code == 1 and "does not exist" in err and out == ""


def test_an_element_in_wrt_is_named_whole_not_split_at_its_comma(capsys):
    """``--wrt 'a,W[0,1]'``: the comma inside the brackets belongs to the element, and the error
    says the lab differentiates whole tensors (naming W), not that 'W[0' does not exist."""
    code, _out, err = run(capsys, "tanh_layer", "--wrt", "a,W[0,1]")
    assert code == 2
    assert "'W[0,1]' is one element of tensor W" in err and "W[0'" not in err
    doc = run_json(capsys, "tanh_layer", "--wrt", "a,W")
    assert [w["name"] for w in doc["wrt"]] == ["a", "W"]
