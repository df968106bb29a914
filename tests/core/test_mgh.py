"""Newton and Broyden on the Moré-Garbow-Hillstrom systems (ACM TOMS 7(1), 1981) from their
standard starts, against SciPy's ``root``: ``hybr`` (MINPACK's dogleg) for Newton, ``broyden1``
for Broyden. Each system ``F(x) = 0`` is posed as the fixed point of ``f(z) = z - F(z)`` and run
through the driver (:mod:`tests.core.mgh_problems`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from implicit_viz.core.driver import iterate
from implicit_viz.core.status import Status
from tests.core.mgh_problems import (
    CLASSIC,
    EXTRA,
    MINPACK_ROOTS,
    MGHProblem,
    Run,
    make_problem,
    run_ours,
    run_scipy,
)

TOL = 1e-10
MAX_ITER = {"newton": 200, "broyden": 1000}
ALL = CLASSIC + EXTRA
IDS = [p.label for p in ALL]


@functools.cache
def ours(p: MGHProblem, solver: str, line_search: bool) -> Run:
    return run_ours(p, solver, line_search, max_iter=MAX_ITER[solver], tol=TOL)


@functools.cache
def scipy_run(p: MGHProblem, method: str) -> Run:
    return run_scipy(p, method)


# ----------------------------------------------------------------------------------------------
# The definitions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(MINPACK_ROOTS), ids=str)
def test_F_vanishes_at_the_roots_minpack_prints(key):
    """MINPACK's hybrd test prints these 16-digit roots: F vanishes there to their precision."""
    p = make_problem(*key) if key[0] > 5 else make_problem(key[0])
    x = np.asarray(MINPACK_ROOTS[key])
    assert p.norm(x) <= 1e-7 * max(1.0, p.norm(np.asarray(p.x0))), p.label


@pytest.mark.parametrize("p", [p for p in ALL if p.root is not None], ids=lambda p: p.label)
def test_F_vanishes_at_the_closed_form_roots(p):
    assert p.norm(np.asarray(p.root)) <= 1e-14


@pytest.mark.parametrize(
    ("number", "n", "sum_sq"),
    [
        (1, None, 24.2),  # Rosenbrock, f(x0) of the paper
        (2, None, 215.0),  # Powell singular
        (5, None, 2500.0),  # helical valley
        (8, 10, 9 * 5.5**2 + (0.5**10 - 1) ** 2),  # Brown: 9 (0.5 - 6)^2 + (0.5^10 - 1)^2
    ],
)
def test_initial_sums_of_squares(number, n, sum_sq):
    p = make_problem(number, n) if n else make_problem(number)
    assert p.norm(np.asarray(p.x0)) ** 2 == pytest.approx(sum_sq, rel=1e-12)


def _loop_watson(x: np.ndarray) -> np.ndarray:
    """Watson's gradient system written as loops over the 29 points (the paper's formula)."""
    n = len(x)
    out = np.zeros(n)
    for i in range(1, 30):
        t = i / 29
        s1 = sum((j - 1) * x[j - 1] * t ** (j - 2) for j in range(2, n + 1))
        s2 = sum(x[j - 1] * t ** (j - 1) for j in range(1, n + 1))
        r = s1 - s2**2 - 1
        for k in range(1, n + 1):
            out[k - 1] += t ** (k - 2) * ((k - 1) - 2 * t * s2) * r
    e = x[1] - x[0] ** 2 - 1
    out[0] += x[0] * (1 - 2 * e)
    out[1] += e
    return out


def _loop_chebyquad(x: np.ndarray) -> np.ndarray:
    n = len(x)
    out = np.zeros(n)
    for i in range(1, n + 1):
        out[i - 1] = np.mean(np.cos(i * np.arccos(2 * x - 1)))  # T_i(y) = cos(i arccos y)
        if i % 2 == 0:
            out[i - 1] += 1 / (i * i - 1)
    return out


def _loop_integral(x: np.ndarray) -> np.ndarray:
    n = len(x)
    h = 1 / (n + 1)
    t = np.arange(1, n + 1) * h
    c = (x + t + 1) ** 3
    return np.array(
        [
            x[k]
            + h
            / 2
            * (
                (1 - t[k]) * np.sum(t[: k + 1] * c[: k + 1])
                + t[k] * np.sum((1 - t[k + 1 :]) * c[k + 1 :])
            )
            for k in range(n)
        ]
    )


def _loop_banded(x: np.ndarray) -> np.ndarray:
    n = len(x)
    out = np.zeros(n)
    for k in range(n):
        near = [j for j in range(max(0, k - 5), min(n, k + 2)) if j != k]
        out[k] = x[k] * (2 + 5 * x[k] ** 2) + 1 - sum(x[j] * (1 + x[j]) for j in near)
    return out


@pytest.mark.parametrize(
    ("number", "n", "loop"),
    [
        (6, 6, _loop_watson),
        (6, 9, _loop_watson),
        (7, 7, _loop_chebyquad),
        (10, 10, _loop_integral),
        (14, 10, _loop_banded),
    ],
)
def test_batched_F_matches_a_loop_transcription(number, n, loop):
    p = make_problem(number, n)
    rng = np.random.default_rng(number)
    xs = rng.uniform(0.05, 0.95, (n, 5))
    batched = p.F(torch.as_tensor(xs)).numpy()
    for b in range(5):
        np.testing.assert_allclose(batched[:, b], loop(xs[:, b]), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The targets
# ----------------------------------------------------------------------------------------------


def test_globalized_newton_reaches_as_many_roots_as_hybr():
    newton = [p.label for p in CLASSIC if ours(p, "newton", True).root]
    hybr = [p.label for p in CLASSIC if scipy_run(p, "hybr").root]
    assert len(newton) >= len(hybr), (newton, hybr)
    assert len(hybr) >= 13  # the reference does what MINPACK's paper reports


def test_globalized_broyden_reaches_as_many_roots_as_broyden1():
    broyden = [p.label for p in CLASSIC if ours(p, "broyden", True).root]
    scipy_b = [p.label for p in CLASSIC if scipy_run(p, "broyden1").root]
    assert len(broyden) >= len(scipy_b), (broyden, scipy_b)


def test_globalized_methods_beat_the_plain_ones():
    for solver in ("newton", "broyden"):
        glob = sum(ours(p, solver, True).root for p in CLASSIC)
        plain = sum(ours(p, solver, False).root for p in CLASSIC)
        assert glob > plain, solver


@pytest.mark.parametrize("line_search", [True, False], ids=["globalized", "plain"])
@pytest.mark.parametrize("solver", ["newton", "broyden"])
@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_converged_only_at_a_root(p, solver, line_search):
    """Whatever happens on the way, ``converged`` means ||F(z)|| <= tol, recomputed here."""
    run = ours(p, solver, line_search)
    if run.status == "converged":
        assert p.norm(np.asarray(run.x)) <= TOL * (1 + 1e-9), run
    if not p.has_root:
        assert run.status != "converged", run


@pytest.mark.parametrize("n", [7, 9])
def test_plain_newton_diverges_on_chebyquad_7_and_9(n):
    """The failure of undamped Newton that the paper's Chebyquad is known for; the globalized
    Newton solves both."""
    p = make_problem(7, n)
    plain = ours(p, "newton", False)
    assert plain.status == "diverged" and not plain.root, plain
    assert ours(p, "newton", True).root


def test_chebyquad_8_ends_at_the_papers_least_squares_minimum():
    """Chebyquad n = 8 has no root; the paper gives the minimum of ||F||^2 as 3.51687e-3. The
    globalized Newton ends there, running out of budget rather than claiming convergence."""
    p = make_problem(7, 8)
    run = ours(p, "newton", True)
    assert run.status == "max_iter"
    assert p.norm(np.asarray(run.x)) ** 2 == pytest.approx(3.51687e-3, rel=1e-4)


def test_line_search_steps_are_per_element_in_a_batch():
    """MINPACK's starts x0, 10 x0, 100 x0 of Rosenbrock and Powell badly scaled in one batch:
    each element takes its own step lengths, so the batch equals the elements run alone."""
    for number in (1, 3):
        p = make_problem(number)
        starts = torch.tensor([[s * v for v in p.x0] for s in (1, 10, 100)], dtype=torch.float64)
        for solver in ("newton", "broyden"):
            batch = list(iterate(p.fixed_point_map, solver, starts, tol=TOL, max_iter=300))[-1]
            for i in range(3):
                alone = list(iterate(p.fixed_point_map, solver, starts[i], tol=TOL, max_iter=300))[
                    -1
                ]
                assert int(batch.status[i]) == int(alone.status[0]), (number, solver, i)
                torch.testing.assert_close(batch.z[i], alone.z[0], rtol=0, atol=1e-12)
                if int(alone.status[0]) == int(Status.CONVERGED):
                    assert p.norm(alone.z[0].numpy()) <= TOL * (1 + 1e-9)
