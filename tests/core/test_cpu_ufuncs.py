"""NumPy's ufuncs standing in for torch's on CPU tensors: same values (to a few ulps), same
shapes and special values, and torch (with autograd) wherever a gradient is needed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from implicit_viz.core.cpu_ufuncs import NUMPY_FASTER, cpu_fast, numpy_eligible
from implicit_viz.core.expr import compile_expression

TORCH_FNS = {
    "tanh": torch.tanh,
    "atan": torch.atan,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "log": torch.log,
}
DOMAIN = {"asin": (-1, 1), "acos": (-1, 1), "log": (1e-30, 50), "tan": (-1.5, 1.5)}
SPECIAL = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-30, -1e-30, 1e-8, 30.0, -30.0]


def reference(name: str, x: torch.Tensor) -> np.ndarray:
    """The function in float64 (or longdouble for float64 inputs), rounded to x's dtype."""
    wide = np.longdouble if x.dtype == torch.float64 else np.float64
    fn = NUMPY_FASTER[name]
    with np.errstate(all="ignore"):
        return fn(x.numpy().astype(wide)).astype(x.numpy().dtype)


def ulp_error(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    finite = np.isfinite(ref)
    err = np.zeros(a.shape)
    err[finite] = np.abs(a[finite] - ref[finite]) / np.spacing(np.abs(ref[finite]))
    return err


def test_the_table_names_only_functions_the_compiler_knows():
    assert set(NUMPY_FASTER) == set(TORCH_FNS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(NUMPY_FASTER))
def test_values_match_a_wider_reference_within_a_few_ulps(name, dtype):
    lo, hi = DOMAIN.get(name, (-8, 8))
    gen = torch.Generator().manual_seed(3)
    x = lo + (hi - lo) * torch.rand(5000, generator=gen, dtype=torch.float64)
    x = x.to(dtype)
    fast = cpu_fast(TORCH_FNS[name], NUMPY_FASTER[name])
    got = fast(x)
    assert got.dtype == dtype and got.shape == x.shape
    ref = reference(name, x)
    assert ulp_error(got.numpy(), ref).max() <= 4
    # and torch's own kernel agrees with both to the same few ulps
    assert ulp_error(TORCH_FNS[name](x).numpy(), ref).max() <= 4


@pytest.mark.parametrize("name", sorted(NUMPY_FASTER))
def test_special_values_are_torchs(name):
    x = torch.tensor([*SPECIAL, -2.0, 2.0], dtype=torch.float64)
    fast = cpu_fast(TORCH_FNS[name], NUMPY_FASTER[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's floating-point warnings stay silent
        got = fast(x).numpy()
    want = TORCH_FNS[name](x).numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    both = ~np.isnan(want)
    np.testing.assert_allclose(got[both], want[both], rtol=1e-14, atol=0)
    assert np.array_equal(np.signbit(got[both]), np.signbit(want[both]))


def test_non_contiguous_and_batched_shapes_keep_their_layout_of_values():
    x = torch.linspace(-3, 3, 24, dtype=torch.float32).reshape(4, 6)
    view = x.T  # (6, 4), not contiguous
    assert not view.is_contiguous() and numpy_eligible(view)
    got = cpu_fast(torch.tanh, np.tanh)(view)
    assert got.shape == (6, 4)
    torch.testing.assert_close(got, torch.tanh(view), rtol=3e-7, atol=0)


def test_gradients_go_through_torch():
    x = torch.linspace(-2, 2, 7, dtype=torch.float64, requires_grad=True)
    assert not numpy_eligible(x)
    fast = cpu_fast(torch.tanh, np.tanh)
    (g,) = torch.autograd.grad(fast(x).sum(), x)
    torch.testing.assert_close(g, 1 - torch.tanh(x.detach()) ** 2)
    with torch.no_grad():  # no graph wanted: NumPy may serve it
        assert numpy_eligible(x)
        torch.testing.assert_close(fast(x), torch.tanh(x.detach()))


@pytest.mark.parametrize(
    "tensor",
    [
        torch.tensor(0.5, dtype=torch.float64),  # 0-d
        torch.tensor([1, 2], dtype=torch.int64),
        torch.tensor([0.5, 1.5], dtype=torch.float16),
        torch._neg_view(torch.tensor([0.5, -1.5], dtype=torch.float32)),  # lazy negation bit
    ],
    ids=["0-d", "int64", "float16", "neg-view"],
)
def test_tensors_numpy_cannot_take_go_to_torch(tensor):
    assert not numpy_eligible(tensor)
    got = cpu_fast(torch.tanh, np.tanh)(tensor)
    torch.testing.assert_close(got, torch.tanh(tensor))


def test_the_expression_compiler_uses_the_fast_path_with_torchs_values():
    expr = compile_expression("tanh(a * z) + log(z * z + 1)", {"a", "z"})
    z = torch.linspace(-4, 4, 4096, dtype=torch.float32)[None, :]
    a = torch.tensor([[1.7]], dtype=torch.float32)
    got = expr({"a": a, "z": z})
    want = torch.tanh(a * z) + torch.log(z * z + 1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    zg = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(expr({"a": a, "z": zg}).sum(), zg)
    want_g = 1.7 * (1 - torch.tanh(1.7 * z) ** 2) + 2 * z / (z * z + 1)
    torch.testing.assert_close(g, want_g, rtol=1e-5, atol=1e-5)
