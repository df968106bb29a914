"""The lab as a whole: the report's shape and exports, clear errors for bad requests,
ill-posed problems flagged, float32 against the float64 reference, CUDA against CPU, and
cancellation."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from implicit_viz.core.errors import Cancelled, SolverError, SpecError
from implicit_viz.core.gradients import CURVE_METHODS, METHODS, GradRequest, gradient_lab
from implicit_viz.core.spec import load_spec
from tests.core.gradients.problems import LINEAR, TANH8, lab
from tests.helpers import make_spec, requires_cuda

# ----------------------------------------------------------------------------------------------
# Ill-posed problems
# ----------------------------------------------------------------------------------------------


def test_a_repelling_fixed_point_is_flagged_ill_posed():
    # z = 2 z + x: z* = -x exists and dz*/dx = (1 - 2)^-1 = -1, but it repels iteration
    spec = make_spec("2 * z + x", 3, tensors={"x": [0.5, -1.0, 0.25]})
    report = lab(spec, ["x"], unroll_max=20)
    assert report.ill_posed
    assert "contraction" in report.ill_posed_message
    assert report.spectral_radius == pytest.approx(2.0)
    np.testing.assert_allclose(report.reference.gradient, -np.ones(3), rtol=1e-12)
    assert report.forward.status == "diverged"
    assert report.warnings  # the forward solve did not reach z*
    # J = 2 I: u_k = g (2^k - 1), so the fixed-point backward residual grows; Anderson solves
    # the linear system exactly in two steps. The message says which did what.
    fp, aa = report.curve("implicit_fixed_point"), report.curve("implicit_anderson")
    assert fp.residual[fp.steps_used - 1] > fp.residual[0]
    assert "implicit_fixed_point: the backward residual grew" in report.ill_posed_message
    assert aa.residual[aa.steps_used - 1] < 1e-10
    assert "implicit_anderson: reached a backward residual of" in report.ill_posed_message
    assert "implicit_anderson" not in report.ill_posed_message.split("grew")[0]


def test_tanh_layer_with_a_large_weight_scale_is_ill_posed():
    report = lab(load_spec("tanh_layer").with_values(a=3.0), ["x"], unroll_max=10)
    assert report.ill_posed and report.spectral_radius > 1
    contraction = lab(load_spec("tanh_layer"), ["x"], unroll_max=10)
    assert not contraction.ill_posed and contraction.ill_posed_message == ""


def test_a_singular_jacobian_is_flagged():
    # z = z - (z - x)^3: J = I at z* = x, so I - J = 0
    spec = make_spec("z - (z - x) ** 3", 2, tensors={"x": [0.3, -0.2]}, z0=[0.5, 0.1])
    report = lab(spec, ["x"], unroll_max=10)
    assert report.ill_posed
    assert "singular" in report.ill_posed_message
    assert report.sigma_min < 1e-6


# ----------------------------------------------------------------------------------------------
# The report, errors and devices
# ----------------------------------------------------------------------------------------------


def test_report_holds_every_method_and_curve():
    report = lab(load_spec("tanh_layer"), ["a", "x"], unroll_max=7)
    assert [m.method for m in report.methods] == list(METHODS)
    assert [c.method for c in report.curves] == list(CURVE_METHODS)
    for c in report.curves:
        assert c.k.tolist() == list(range(1, 8))
        assert c.rel_error.shape == c.memory_bytes.shape == c.residual.shape == (7,)
    for m in report.methods:
        assert m.time_s > 0 and m.memory_bytes > 0 and m.gradient.shape == (3,)
        assert -1 - 1e-12 <= m.cosine <= 1 + 1e-12
    doc = report.to_dict()
    assert doc["ill_posed"] is False and len(doc["curves"]) == 4
    assert doc["forward"]["status"] == "converged"
    rows = list(report.curve_rows())
    assert len(rows) == 4 * 7 and rows[0]["method"] == "unrolled" and rows[0]["k"] == 1


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"wrt": ("q",)}, SpecError, "no param or tensor named 'q'"),
        ({"wrt": ()}, SpecError, "at least one"),
        ({"wrt": ("s",), "loss": "z"}, SpecError, "one number"),
        ({"wrt": ("s",), "loss": "sum(zz)"}, SpecError, "unknown name"),
        ({"wrt": ("s",), "loss": "sum(z - x)"}, SpecError, "shape"),
        ({"wrt": ("s",), "solver": "nope"}, SolverError, "unknown solver"),
        ({"wrt": ("s",), "unroll_max": 0}, SolverError, "unroll_max"),
        ({"wrt": ("s",), "phantom_lam": 1.5}, SolverError, "phantom_lam"),
    ],
)
def test_bad_requests_raise_clear_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        gradient_lab(GradRequest(load_spec("deq_cell"), **kwargs))


def test_float32_is_compared_with_a_float64_reference():
    report = lab(load_spec("deq_cell"), ["x"], dtype="float32", unroll_max=20)
    assert report.dtype == "float32"
    assert report.reference.gradient.dtype == np.float64
    err = report.method("implicit_exact").rel_error
    assert 1e-9 < err < 1e-4  # float32 accuracy, not float64


@requires_cuda
def test_cuda_gives_the_cpu_gradients():
    cpu = lab(TANH8, ["a", "W"], tol=1e-13, unroll_max=10)
    gpu = lab(TANH8, ["a", "W"], tol=1e-13, unroll_max=10, device="cuda")
    assert gpu.device.startswith("cuda")
    for m in METHODS:
        np.testing.assert_allclose(
            gpu.method(m).gradient, cpu.method(m).gradient, rtol=1e-9, atol=1e-12
        )
    assert gpu.method("unrolled").device_peak_bytes is not None


# ----------------------------------------------------------------------------------------------
# Cancellation
# ----------------------------------------------------------------------------------------------


class CancelAfter:
    """``cancel()`` that returns True from its ``n``-th call on, recording when each call came;
    with ``inside``, it counts only calls made from inside the function of that name."""

    def __init__(self, n: float, inside: str | None = None) -> None:
        self.n = n
        self.inside = inside
        self.times: list[float] = []

    def __call__(self) -> bool:
        if self.inside is not None and not _on_stack(self.inside):
            return False
        self.times.append(time.perf_counter())
        return len(self.times) >= self.n


def _on_stack(name: str) -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


def request(k: int = 30) -> GradRequest:
    return GradRequest(LINEAR, ("c", "v"), unroll_max=k, time_repeats=1)


def test_a_cancel_that_never_fires_changes_nothing():
    never = CancelAfter(float("inf"))
    polled, plain = gradient_lab(request(), cancel=never), gradient_lab(request())
    assert len(never.times) > 100  # polled all along: solves, methods and every step
    for m in METHODS:
        np.testing.assert_array_equal(polled.method(m).gradient, plain.method(m).gradient)
        assert polled.method(m).memory_bytes == plain.method(m).memory_bytes
    for c in CURVE_METHODS:
        np.testing.assert_array_equal(polled.curve(c).rel_error, plain.curve(c).rel_error)
    np.testing.assert_array_equal(polled.reference.gradient, plain.reference.gradient)


def test_cancel_raises_cancelled_at_the_first_true_wherever_it_comes():
    count = CancelAfter(float("inf"))
    gradient_lab(request(), cancel=count)
    total = len(count.times)
    for n in sorted({1, 2, 5, total // 10, total // 3, total // 2, total - 1, total}):
        cancel = CancelAfter(n)
        with pytest.raises(Cancelled, match=r"^cancelled$"):
            gradient_lab(request(), cancel=cancel)
        assert len(cancel.times) == n  # it stopped polling (and working) at the first True


@pytest.mark.parametrize(
    "inside, n",
    [
        ("solve", 3),  # the driver's solves: forward, reference, polish, finite differences
        ("_reference_solve", 10),  # 3 of its polls are the polish
        ("_newton_in_chunks", 1),
        ("_measure", 2),  # between a method's timed runs and inside them
        ("_iterative", 5),  # backward fixed-point / Anderson steps
        ("_unroll", 5),  # unrolled and phantom steps
    ],
)
def test_every_loop_polls_cancel(inside, n):
    cancel = CancelAfter(n, inside)
    with pytest.raises(Cancelled):
        gradient_lab(request(), cancel=cancel)
    assert len(cancel.times) == n


def test_cancel_stops_a_long_lab_promptly():
    """Cancelled at the 40th step of the phantom curve (one backward pass through k steps for
    every k up to K): the lab raises within one step's work, not after the rest of the curve."""
    unroll_polls = 2 * 150 + 2 * 5 + 150  # timed methods (meter run + 1 timed), unrolled curve
    full = CancelAfter(float("inf"), "_unroll")
    gradient_lab(request(150), cancel=full)
    end = time.perf_counter()
    n = unroll_polls + 40
    assert len(full.times) == unroll_polls + 150
    rest_uncancelled = end - full.times[n - 1]
    cancel = CancelAfter(n, "_unroll")
    with pytest.raises(Cancelled):
        gradient_lab(request(150), cancel=cancel)
    rest_cancelled = time.perf_counter() - cancel.times[-1]
    assert rest_uncancelled > 0.1
    assert rest_cancelled < 0.1 * rest_uncancelled
