"""Trace export: files read back equal to the backend's arrays; bad paths give ExportError."""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_viz.core import export as export_mod
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import compare, solve
from implicit_viz.core.export import (
    MAX_SWEEP_JSON_BYTES,
    ExportError,
    sweep_json,
    trace_arrays,
    write_grad_report,
    write_sweep,
    write_trace,
)
from implicit_viz.core.gradients import GradRequest, gradient_lab
from implicit_viz.core.jsonsafe import json_safe
from implicit_viz.core.spec import load_spec, parse_spec
from implicit_viz.core.sweep import Axis, SweepRequest, sweep
from tests.helpers import fail_writes_after


@pytest.fixture(scope="module")
def logistic_batch():
    spec = load_spec("logistic")
    fmap = compile_spec(spec).with_values(r=torch.tensor([2.5, 3.2, 3.5]))
    return spec, solve(fmap, "fixed_point", trace=True)


def test_npz_holds_every_element_and_the_spec(tmp_path, logistic_batch):
    spec, res = logistic_batch
    path = write_trace(tmp_path / "t.npz", spec, [res])
    data = np.load(path)
    np.testing.assert_array_equal(data["status"][0], res.status.numpy())
    np.testing.assert_array_equal(data["period"][0], res.period.numpy())
    np.testing.assert_allclose(data["z"][0], res.z.numpy())
    t = res.residuals.shape[1]
    np.testing.assert_allclose(data["trajectory"][0, :, :t], res.trajectory.numpy())
    meta = json.loads(str(data["metadata"]))
    assert parse_spec(meta["spec"]) == spec  # the spec TOML round-trips
    assert meta["status_codes"][str(int(res.status[1]))] == "periodic"


def test_json_is_strict_json_even_with_nan(tmp_path):
    spec = parse_spec('dim = 1\nf = "2 * z + 1"\nz0 = [1.0]\n')  # diverges to inf
    res = compare(compile_spec(spec), ["fixed_point"], trace=True, max_iter=3000)
    assert res[0].statuses[0].label == "diverged"
    path = write_trace(tmp_path / "t.json", spec, res)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["results"][0]["status"] == "diverged"


def test_arrays_pad_shorter_runs_with_nan():
    spec = load_spec("tanh_layer")
    res = compare(compile_spec(spec), ["fixed_point", "newton"])
    arrays = trace_arrays(spec, res)
    n_newton = int(res[1].iterations[0])
    assert arrays["residuals"].shape[-1] == res[0].residuals.shape[1]
    assert np.isnan(arrays["residuals"][1, 0, n_newton + 1 :]).all()
    assert list(arrays["solvers"]) == ["fixed_point", "newton"]


@pytest.mark.parametrize("name", ["missing_dir/t.json", "t.xlsx", "t"])
def test_bad_paths_raise_export_error_naming_the_path(tmp_path, logistic_batch, name):
    spec, res = logistic_batch
    target = tmp_path / name
    with pytest.raises(ExportError, match="cannot write"):
        write_trace(target, spec, [res])
    assert not target.exists()


def test_unwritable_file_raises_export_error(tmp_path, logistic_batch):
    spec, res = logistic_batch
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / "t.csv"
    target.mkdir()  # a folder where the file should go: cannot be opened for writing
    with pytest.raises(ExportError, match=r"t\.csv"):
        write_trace(target, spec, [res])


# --- atomic writes: a failure in any writer leaves the old file byte for byte -------------------

OLD = b"an earlier, valid export\n" * 200


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def small_sweep():
    spec = load_spec("tanh_layer")
    return sweep(SweepRequest(spec, Axis("a", 0.0, 3.0, 40), Axis("x[0]", -2.0, 2.0, 30)))


@pytest.fixture(scope="module")
def grad_report():
    return gradient_lab(GradRequest(load_spec("tanh_layer"), ("a",)))


EXPORTS = [
    f"{kind}{suffix}"
    for kind, suffixes in (("trace", ".csv .npz .json"), ("grad", ".csv .npz .json"))
    for suffix in suffixes.split()
] + ["sweep.npz", "sweep.json"]


def _writer(name, logistic_batch, small_sweep, grad_report):
    spec, res = logistic_batch
    kind = name.split(".")[0]
    if kind == "trace":
        return lambda p: write_trace(p, spec, [res])
    if kind == "grad":
        return lambda p: write_grad_report(p, grad_report)
    return lambda p: write_sweep(p, small_sweep)


@pytest.mark.parametrize("name", EXPORTS)
def test_full_disk_mid_write_keeps_the_old_file(
    tmp_path, monkeypatch, logistic_batch, small_sweep, grad_report, name
):
    write = _writer(name, logistic_batch, small_sweep, grad_report)
    path = tmp_path / name
    path.write_bytes(OLD)
    fail_writes_after(monkeypatch, 1000, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(ExportError, match="no space left on device") as info:
        write(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == OLD
    assert temp_files(tmp_path) == []
    monkeypatch.undo()
    write(path)  # and with space, the new file is complete
    assert path.read_bytes() != OLD


@pytest.mark.parametrize("name", EXPORTS)
def test_second_ctrl_c_mid_write_keeps_the_old_file(
    tmp_path, monkeypatch, logistic_batch, small_sweep, grad_report, name
):
    write = _writer(name, logistic_batch, small_sweep, grad_report)
    path = tmp_path / name
    path.write_bytes(OLD)
    fail_writes_after(monkeypatch, 300, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write(path)
    assert path.read_bytes() == OLD
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("name", ["trace.json", "sweep.npz", "grad.csv"])
def test_dev_full_is_a_clear_export_error(tmp_path, logistic_batch, small_sweep, grad_report, name):
    write = _writer(name, logistic_batch, small_sweep, grad_report)
    link = tmp_path / name
    link.symlink_to("/dev/full")
    with pytest.raises(ExportError, match="no space left on device") as info:
        write(link)
    assert str(link) in str(info.value)
    assert link.is_symlink()


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_dev_null_and_symlinks_are_written_through(tmp_path, small_sweep, suffix):
    null = tmp_path / f"null{suffix}"
    null.symlink_to("/dev/null")
    write_sweep(null, small_sweep)  # a device is written directly, never replaced
    assert null.is_symlink() and os.path.realpath(null) == "/dev/null"
    target = tmp_path / f"real{suffix}"
    target.write_bytes(OLD)
    target.chmod(0o640)
    link = tmp_path / f"link{suffix}"
    link.symlink_to(target)
    write_sweep(link, small_sweep)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != OLD and oct(target.stat().st_mode & 0o777) == oct(0o640)


def _independent_sweep_doc(res) -> dict:
    """What the sweep JSON must hold: metadata, summary and every per-cell array as lists."""
    doc = json_safe(res.metadata())
    doc["summary"] = json_safe(res.summary())
    arrays = {k: v for k, v in res.arrays().items() if k not in ("metadata", "status_names")}
    doc["arrays"] = {k: json_safe(v.tolist()) for k, v in arrays.items()}
    return doc


def test_streamed_sweep_json_is_the_same_document(tmp_path, small_sweep):
    path = write_sweep(tmp_path / "s.json", small_sweep)
    expected = json.dumps(_independent_sweep_doc(small_sweep), allow_nan=False)
    assert path.read_text() == expected  # byte for byte what json.dumps of the whole gives
    assert json.loads(path.read_text()) == json.loads(json.dumps(sweep_json(small_sweep)))


def test_sweep_json_is_streamed_not_built_in_memory(tmp_path):
    """Writing a 256 x 256 sweep (about 4 MB of JSON) must not hold the document in memory:
    the old code built Python lists of every cell (tens of MB)."""
    spec = load_spec("tanh_layer")
    res = sweep(SweepRequest(spec, Axis("a", 0.0, 3.0, 256), Axis("x[0]", -2.0, 2.0, 256)))
    tracemalloc.start()
    try:
        path = write_sweep(tmp_path / "big.json", res)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > 3_000_000
    assert peak < size / 2, (peak, size)


def test_sweep_json_over_the_limit_is_refused_before_writing(tmp_path, monkeypatch, small_sweep):
    assert MAX_SWEEP_JSON_BYTES >= 1024**3
    monkeypatch.setattr(export_mod, "MAX_SWEEP_JSON_BYTES", 10_000)
    path = tmp_path / "s.json"
    path.write_bytes(OLD)
    with pytest.raises(ExportError, match=r"as JSON, over the limit.*write it as \.npz") as info:
        write_sweep(path, small_sweep)
    assert str(path) in str(info.value) and "1,200 cells" in str(info.value)
    assert path.read_bytes() == OLD and temp_files(tmp_path) == []
    write_sweep(tmp_path / "s.npz", small_sweep)  # NPZ has no such limit


def test_sweep_json_limit_can_be_checked_before_the_sweep_runs(small_sweep):
    """The request-based estimate agrees with the result's and refuses 8192 x 8192."""
    from implicit_viz.core.export import check_sweep_json, request_json_size, sweep_json_size

    est, real = request_json_size(small_sweep.request), sweep_json_size(small_sweep)
    assert 0.8 < est / real < 1.25
    big = SweepRequest(
        load_spec("tanh_layer"), Axis("a", 0.0, 3.0, 8192), Axis("x[0]", -2.0, 2.0, 8192)
    )
    with pytest.raises(ExportError, match=r"67,108,864 cells.*write it as \.npz"):
        check_sweep_json(big, "g.json")
    check_sweep_json(small_sweep.request, "g.json")


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_text_trace_over_the_limit_is_refused_before_writing(tmp_path, monkeypatch, suffix):
    """A text trace is built in memory (a 20 M-number JSON trace took 3.6 GB): above
    MAX_TEXT_TRACE_NUMBERS it is refused before anything is built, pointing to .npz, which
    writes the same trace; the old file stays."""
    spec = parse_spec('dim = 3\nf = "0.5 * z + 1"\nz0 = [0.0, 0.0, 0.0]\n')
    res = compare(compile_spec(spec), ["fixed_point"], trace=True, max_iter=100)
    # residuals (1, T + 1) and trajectory (1, T + 1, 3): 4 numbers a recorded step
    steps = int(res[0].iterations[0]) + 1
    assert export_mod.trace_numbers(res) == 4 * res[0].residuals.shape[1] >= 4 * steps
    monkeypatch.setattr(export_mod, "MAX_TEXT_TRACE_NUMBERS", export_mod.trace_numbers(res) - 1)
    built = []
    monkeypatch.setattr(export_mod, "trace_csv", lambda *a: built.append(1) or "")
    monkeypatch.setattr(export_mod, "trace_json", lambda *a: built.append(1) or {})
    target = tmp_path / f"t{suffix}"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(ExportError, match=r"numbers, over the limit .* write it as \.npz"):
        write_trace(target, spec, res)
    assert built == [] and target.read_text(encoding="utf-8") == "old"
    npz = write_trace(tmp_path / "t.npz", spec, res)  # the binary form has no such limit
    assert np.load(npz)["trajectory"].shape[-1] == 3
