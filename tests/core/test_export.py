"""Trace export: files read back equal to the backend's arrays; bad paths give ExportError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from implicit_viz.core.driver import compare, solve
from implicit_viz.core.export import ExportError, trace_arrays, write_trace
from implicit_viz.core.problem import compile_spec
from implicit_viz.core.spec import load_spec, parse_spec


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
