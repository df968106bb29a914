"""Compiled maps: batched evaluation against NumPy and a per-sample loop, per-row values, tensor
draws, dtypes and devices, and shape errors found at compile time with their positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.errors import SpecError
from implicit_viz.core.spec import load_spec
from tests.helpers import ZOO, ZOO_IDS, make_spec, requires_cuda

RNG = np.random.default_rng(7)


def values(fmap: FixedPointMap, name: str) -> np.ndarray:
    return fmap.values[name][..., 0].numpy()


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_batch_equals_numpy_and_a_loop_of_single_samples(prob):
    fmap = compile_spec(prob.spec)
    assert isinstance(fmap, FixedPointMap)
    assert fmap.dim == prob.spec.dim and fmap.dtype == torch.float64
    z = RNG.uniform(-1.0, 1.0, (9, fmap.dim)) + prob.z_star  # around z*, away from poles
    batch = fmap(torch.tensor(z)).numpy()
    assert batch.shape == z.shape
    for i, row in enumerate(z):
        single = fmap(torch.tensor(row[None, :])).numpy()[0]
        np.testing.assert_allclose(batch[i], single, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(batch[i], prob.f_np(row), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("prob", ZOO[:3], ids=ZOO_IDS[:3])
def test_batch_last_is_the_transpose(prob):
    fmap = compile_spec(prob.spec)
    z = torch.tensor(RNG.standard_normal((4, fmap.dim)))
    torch.testing.assert_close(fmap.batch_last(z.T.contiguous()), fmap(z).T, rtol=0, atol=0)


def test_the_fixed_point_is_fixed():
    for prob in ZOO:
        fmap = compile_spec(prob.spec)
        z = torch.tensor(prob.z_star[None, :])
        np.testing.assert_allclose(fmap(z).numpy()[0], prob.z_star, atol=1e-11, err_msg=prob.name)


def test_start_repeats_z0():
    spec = load_spec("newton_cubic")
    fmap = compile_spec(spec)
    s = fmap.start(4)
    assert s.shape == (4, 2) and s.dtype == torch.float64
    np.testing.assert_array_equal(s.numpy(), np.tile(spec.z0, (4, 1)))
    s[0, 0] = 99.0  # a copy, not a view into the spec
    assert fmap.start(1)[0, 0] == spec.z0[0]


def test_a_map_that_ignores_z_still_returns_one_row_per_sample():
    fmap = compile_spec(make_spec("x + 0", 2, tensors={"x": [1.0, 2.0]}))
    out = fmap(torch.zeros(3, 2, dtype=torch.float64))
    np.testing.assert_array_equal(out.numpy(), [[1.0, 2.0]] * 3)


def test_nan_at_the_start_is_not_a_compile_error():
    fmap = compile_spec(make_spec("log(z)", 1, z0=[-1.0]))
    assert torch.isnan(fmap(fmap.start(1))).all()


# ----------------------------------------------------------------------------------------------
# Per-row values
# ----------------------------------------------------------------------------------------------


def test_per_row_param_equals_separately_compiled_specs(logistic_map):
    spec = logistic_map.spec
    r = np.array([0.5, 1.5, 2.8, 3.2, 3.9])
    z = RNG.uniform(0, 1, (5, 1))
    fmap = logistic_map.with_values(r=torch.tensor(r))
    assert fmap.batch == 5
    out = fmap(torch.tensor(z)).numpy()
    np.testing.assert_allclose(out, r[:, None] * z * (1 - z), rtol=1e-15)
    for i in range(5):
        single = compile_spec(spec.with_values(r=float(r[i])))
        np.testing.assert_array_equal(out[i], single(torch.tensor(z[i : i + 1])).numpy()[0])


def test_per_row_tensors_match_numpy(tanh_map):
    b = 6
    w = RNG.standard_normal((b, 2, 2))
    x = RNG.standard_normal((b, 2))
    a = RNG.uniform(0.1, 2.0, b)
    z = RNG.standard_normal((b, 2))
    fmap = tanh_map.with_values(W=w, x=x, a=a)
    out = fmap(torch.tensor(z)).numpy()
    for i in range(b):
        np.testing.assert_allclose(out[i], np.tanh(a[i] * (w[i] @ z[i]) + x[i]), rtol=1e-13)


def test_shared_value_replaces_for_every_row(tanh_map):
    w = np.array([[0.1, 0.2], [0.3, 0.4]])
    fmap = tanh_map.with_values(W=w, a=2.0)
    assert fmap.batch is None
    z = RNG.standard_normal((3, 2))
    x = values(tanh_map, "x")
    np.testing.assert_allclose(
        fmap(torch.tensor(z)).numpy(), np.tanh(2.0 * z @ w.T + x), rtol=1e-14
    )


def test_with_values_rejects_wrong_shapes_names_and_row_counts(tanh_map):
    with pytest.raises(SpecError):
        tanh_map.with_values(W=np.zeros(3))
    with pytest.raises(SpecError):
        tanh_map.with_values(x=np.zeros((4, 3)))
    with pytest.raises(SpecError, match="unknown"):
        tanh_map.with_values(q=1.0)
    with pytest.raises(SpecError, match="rows"):
        tanh_map.with_values(a=np.ones(3), x=np.zeros((4, 2)))


def test_with_element_sweeps_one_entry(tanh_map):
    rows = np.array([-1.0, 0.0, 0.5, 2.0])
    fmap = tanh_map.with_element("W", (0, 1), torch.tensor(rows))
    assert fmap.batch == 4
    w0, x = values(tanh_map, "W"), values(tanh_map, "x")
    z = RNG.standard_normal((4, 2))
    out = fmap(torch.tensor(z)).numpy()
    for i, v in enumerate(rows):
        w = w0.copy()
        w[0, 1] = v
        np.testing.assert_allclose(out[i], np.tanh(0.9 * w @ z[i] + x), rtol=1e-14)
    np.testing.assert_array_equal(values(tanh_map, "W"), w0)  # the original map is unchanged


def test_take_selects_rows(logistic_map):
    r = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    fmap = logistic_map.with_values(r=r).take(torch.tensor([3, 1]))
    assert fmap.batch == 2
    out = fmap(torch.full((2, 1), 0.5, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy()[:, 0], [4.0 * 0.25, 2.0 * 0.25])
    assert logistic_map.take(torch.tensor([0])) is logistic_map  # shared values: nothing to take


# ----------------------------------------------------------------------------------------------
# Tensor draws
# ----------------------------------------------------------------------------------------------


def drawn(shape, **kw) -> np.ndarray:
    t = {"shape": list(shape), **kw}
    spec = make_spec("z + 0 * sum(T)", 1, tensors={"T": t})
    return values(compile_spec(spec), "T")


def test_normal_draw_is_seeded_and_standard():
    a, b, c = drawn([300, 300], seed=1), drawn([300, 300], seed=1), drawn([300, 300], seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    np.testing.assert_allclose(drawn([300, 300], seed=1, scale=0.5), 0.5 * a, rtol=1e-15)


def test_uniform_draw_is_in_minus_scale_to_scale():
    u = drawn([100_000], init="uniform", seed=3, scale=2.0)
    assert u.min() >= -2.0 and u.max() <= 2.0
    assert u.min() < -1.99 and u.max() > 1.99
    assert abs(u.mean()) < 0.03
    assert abs(u.var() - 4.0 / 3.0) < 0.03  # variance of U(-2, 2)


@pytest.mark.parametrize("shape", [[4, 4], [6, 3], [3, 6]])
def test_orthogonal_draw_is_orthonormal(shape):
    q = drawn(shape, init="orthogonal", seed=4)
    m, n = shape
    small = min(m, n)
    gram = q.T @ q if m >= n else q @ q.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-13)


def test_constant_inits_and_spectral_norm():
    np.testing.assert_array_equal(drawn([3, 4], init="eye"), np.eye(3, 4))
    np.testing.assert_array_equal(drawn([2, 3], init="zeros"), np.zeros((2, 3)))
    np.testing.assert_array_equal(drawn([2, 3], init="ones", scale=1.5), np.full((2, 3), 1.5))
    for init in ("normal", "uniform", "orthogonal"):
        w = drawn([7, 5], init=init, seed=9, spectral_norm=0.37)
        assert np.linalg.norm(w, 2) == pytest.approx(0.37, rel=1e-12), init


def test_set_entries_apply_after_the_draw():
    base = drawn([3, 3], seed=2, spectral_norm=1.0)
    w = drawn([3, 3], seed=2, spectral_norm=1.0, set=[[0, 2, 7.0], [2, 1, -1.0]])
    assert w[0, 2] == 7.0 and w[2, 1] == -1.0
    mask = np.ones((3, 3), bool)
    mask[0, 2] = mask[2, 1] = False
    np.testing.assert_array_equal(w[mask], base[mask])


def test_draws_are_the_same_numbers_in_float32():
    spec = load_spec("deq_cell")
    w64 = values(compile_spec(spec, dtype="float64"), "W")
    w32 = values(compile_spec(spec, dtype="float32"), "W")
    assert w32.dtype == np.float32
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# dtype and device
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_float32_agrees_with_float64(prob):
    f32 = compile_spec(prob.spec, dtype="float32")
    f64 = compile_spec(prob.spec, dtype=torch.float64)
    assert f32.dtype == torch.float32
    z = RNG.uniform(-0.5, 0.5, (5, prob.spec.dim)) + prob.z_star
    out32 = f32(torch.tensor(z, dtype=torch.float32))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(
        out32.double().numpy(), f64(torch.tensor(z)).numpy(), rtol=2e-5, atol=2e-5
    )


def test_unsupported_dtype_and_device_are_clear_errors():
    spec = load_spec("cosine")
    with pytest.raises(ValueError, match="float32 or float64"):
        compile_spec(spec, dtype="float16")
    with pytest.raises(ValueError, match=r"(unknown|unsupported) device"):
        compile_spec(spec, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        compile_spec(load_spec("cosine"), device="cuda")


@requires_cuda
@pytest.mark.parametrize("prob", ZOO, ids=ZOO_IDS)
def test_cuda_map_equals_cpu_map(prob):
    cpu = compile_spec(prob.spec)
    gpu = compile_spec(prob.spec, device="cuda")
    assert gpu.device.type == "cuda"
    z = torch.tensor(RNG.uniform(-0.5, 0.5, (7, prob.spec.dim)) + prob.z_star)
    torch.testing.assert_close(gpu(z.cuda()).cpu(), cpu(z), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Shape errors at compile time
# ----------------------------------------------------------------------------------------------

W3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
SHAPE_ERRORS = [
    # f, dim, token the error points at (None: no position), message fragment
    ("tanh(a * (W @ z) + x)", 2, "W @ z", "shape mismatch"),
    ("z + x", 2, "z + x", "shape mismatch"),
    ("z[5] + z", 2, "z[5]", "out of range"),
    ("z[0, 0] + z", 2, "z[0, 0]", "too many indices"),
    ("softmax(W) + z", 3, "softmax", "softmax"),
    ("transpose(z)", 3, "transpose", "transpose"),
    ("concat(W)", 3, "concat", "concat"),
    ("dot(z, x) * z", 2, "dot", "dot"),
    ("z if W > 0 else z", 2, "z if", "if/else"),
    ("[z[0], z[1], z[0]]", 2, None, "dim = 2"),
    ("W @ W", 3, None, "dim = 3"),
    ("outer(z, z)", 2, None, "dim = 2"),
    ("sum(z)", 2, None, "dim = 2"),
    ("[z, z]", 2, None, "dim = 2"),
]


@pytest.mark.parametrize(
    ("f", "dim", "token", "fragment"), SHAPE_ERRORS, ids=[s[0] for s in SHAPE_ERRORS]
)
def test_shape_errors_are_found_at_compile_time(f, dim, token, fragment):
    spec = make_spec(f, dim, params={"a": 1.0}, tensors={"W": W3, "x": [1.0, 2.0, 3.0]})
    with pytest.raises(SpecError) as info:
        compile_spec(spec)
    err = info.value
    assert fragment in err.message, err.message
    assert err.field == "f"
    if token is not None:
        assert (err.line, err.column) == (1, f.index(token) + 1), (err.line, err.column)


def test_shape_error_on_a_later_line_and_in_a_definition():
    spec = make_spec("tanh(z\n     + W @ z)", 2, tensors={"W": W3})
    with pytest.raises(SpecError) as info:
        compile_spec(spec)
    assert (info.value.line, info.value.column) == (2, 8)
    spec = make_spec("h", 2, tensors={"W": W3}, define={"h": "2 * (W @ z)"})
    with pytest.raises(SpecError) as info:
        compile_spec(spec)
    assert info.value.field == "define.h"
    assert info.value.column == len("2 * (") + 1


def test_a_scalar_output_is_fine_in_dimension_one():
    fmap = compile_spec(make_spec("sum(z) * 0.5", 1))
    np.testing.assert_allclose(
        fmap(torch.tensor([[2.0], [4.0]], dtype=torch.float64)).numpy(), [[1.0], [2.0]]
    )
