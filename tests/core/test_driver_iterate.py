"""``iterate``: one Step per step, stopping by ``solve``'s rules (its last Step is ``solve``'s
result, element for element), finished elements frozen, plain callables, solver summaries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import Step, iterate, solve
from implicit_viz.core.errors import SpecError
from implicit_viz.core.result import SolveOptions
from implicit_viz.core.solvers import available_solvers
from implicit_viz.core.status import Status
from tests.helpers import ZOO, ZOO_IDS

ALL_SOLVERS = available_solvers()


def run(*args, **kw) -> list[Step]:
    return list(iterate(*args, **kw))


def stop_steps(steps: list[Step]) -> torch.Tensor:
    """Per element the ``k`` of the first Step where its status is set: ``(B,)``."""
    status = torch.stack([s.status for s in steps])  # (T+1, B)
    ks = torch.tensor([s.k for s in steps])
    first = (status != 0).to(torch.int8).argmax(dim=0)
    assert (status[-1] != 0).all(), "every element has finished by the last Step"
    return ks[first]


def assert_agrees_with_solve(steps: list[Step], res) -> None:
    last = steps[-1]
    assert last.status.tolist() == res.status.tolist()
    assert stop_steps(steps).tolist() == res.iterations.tolist()
    assert last.k == int(res.iterations.max())
    assert torch.equal(last.z.nan_to_num(7.0), res.z.nan_to_num(7.0))
    torch.testing.assert_close(last.residual, res.residual, equal_nan=True)


@pytest.mark.parametrize("history", [True, False], ids=["general", "lean-where-it-applies"])
@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.parametrize("problem", ZOO, ids=ZOO_IDS)
def test_last_step_agrees_with_solve(problem, solver, history):
    fmap = compile_spec(problem.spec)
    opts = SolveOptions(tol=problem.tol, max_iter=problem.max_iter, history=history)
    res = solve(fmap, solver, options=opts)
    steps = run(fmap, solver, options=opts)
    assert [s.k for s in steps] == list(range(len(steps)))
    assert_agrees_with_solve(steps, res)
    if res.statuses == [Status.CONVERGED]:
        np.testing.assert_allclose(steps[-1].z[0].numpy(), problem.z_star, atol=1e-6)


@pytest.mark.parametrize("solver", ALL_SOLVERS)
def test_a_mixed_batch_agrees_with_solve_and_stays_frozen(solver, logistic_map):
    # converged (2.5, 2.9), periodic (3.2, 3.5), chaotic (3.9): solve compacts, iterate does not
    r = torch.tensor([2.5, 3.2, 3.5, 3.9, 2.9], dtype=torch.float64)
    fm = logistic_map.with_values(r=r)
    opts = SolveOptions(max_iter=400, tol=1e-12, compact_every=4, period_every=8)
    res = solve(fm, solver, options=opts)
    steps = run(fm, solver, options=opts)
    assert_agrees_with_solve(steps, res)
    if solver == "fixed_point":
        assert res.statuses == [
            Status.CONVERGED,
            Status.PERIODIC,
            Status.PERIODIC,
            Status.CHAOTIC,
            Status.CONVERGED,
        ]
    # a finished element never moves again and keeps its status
    for a, b in itertools.pairwise(steps):
        done = a.status != 0
        assert torch.equal(b.status[done], a.status[done])
        assert torch.equal(b.z[done], a.z[done]) and torch.equal(b.fz[done], a.fz[done])


def test_steps_follow_the_map_and_report_its_residual(logistic_map):
    fm = logistic_map.with_values(r=torch.tensor([2.5, 3.2], dtype=torch.float64))
    steps = run(fm, "fixed_point", max_iter=30)
    assert len(steps) == 31 and steps[0].k == 0
    np.testing.assert_array_equal(steps[0].z.numpy(), fm.start(2).numpy())  # the start
    r = np.array([2.5, 3.2])
    for s in steps:
        z, fz = s.z[:, 0].numpy(), s.fz[:, 0].numpy()
        np.testing.assert_allclose(fz, r * z * (1 - z), rtol=1e-15)  # fz = f(z), by hand
        np.testing.assert_allclose(s.residual.numpy(), np.abs(fz - z), rtol=1e-12)
    for a, b in itertools.pairwise(steps):
        live = a.status == 0
        assert torch.equal(b.z[live], a.fz[live])  # naive iteration: z_{k+1} = f(z_k)


def test_a_start_at_the_fixed_point_is_one_step(cosine_map):
    from tests.helpers import DOTTIE

    steps = run(cosine_map, "newton", z0=[DOTTIE], tol=1e-12)
    assert len(steps) == 1 and steps[0].status.tolist() == [int(Status.CONVERGED)]


def test_divergence_and_nan_stop_elements(logistic_map):
    fm = logistic_map.with_values(r=torch.tensor([2.5, 5.0], dtype=torch.float64))
    steps = run(fm, "fixed_point", z0=[[0.3], [0.9]], max_iter=200)
    assert steps[-1].status.tolist() == [int(Status.CONVERGED), int(Status.DIVERGED)]
    res = solve(fm, "fixed_point", z0=[[0.3], [0.9]], max_iter=200)
    assert_agrees_with_solve(steps, res)


def test_plain_callable_without_take():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 3))
    a *= 0.7 / np.linalg.norm(a, 2)
    c = rng.standard_normal(3)
    z_star = np.linalg.solve(np.eye(3) - a, c)
    at, ct = torch.tensor(a), torch.tensor(c)[:, None]

    def f(z):  # (D, B) -> (D, B), no take
        return at @ z + ct

    z0 = torch.zeros(2, 3, dtype=torch.float64)
    for solver in ALL_SOLVERS:
        steps = run(f, solver, z0, tol=1e-12, max_iter=2000)
        assert steps[-1].status.tolist() == [int(Status.CONVERGED)] * 2, solver
        np.testing.assert_allclose(steps[-1].z.numpy(), [z_star, z_star], atol=1e-10)
    # Newton solves an affine map in one step
    assert len(run(f, "newton", z0, tol=1e-12)) == 2
    with pytest.raises(SpecError):
        next(iterate(f, "fixed_point"))


def test_solver_state_summaries(tanh_map):
    steps = run(tanh_map, "anderson", solver_options={"m": 3}, tol=1e-13)
    assert [s.solver_state["history"] for s in steps[:5]] == [1, 2, 3, 3, 3]
    assert all(s.solver_state == {} for s in run(tanh_map, "fixed_point", max_iter=5))
    br = run(tanh_map, "broyden", max_iter=5)
    assert br[0].solver_state["h_change"] == 0.0  # H starts at -I
    assert br[-1].solver_state["h_change"] > 0.0


def test_steps_are_copies_and_grad_mode_is_the_callers(logistic_map):
    gen = iterate(logistic_map, "fixed_point", max_iter=10)
    s0 = next(gen)
    assert torch.is_grad_enabled()  # no_grad inside the generator does not leak out
    z0 = s0.z.clone()
    s0.z.fill_(123.0)
    s1 = next(gen)
    assert not s1.z.requires_grad
    assert torch.equal(s1.z, logistic_map.batch_last(z0.T).T)  # unaffected by the edit
    gen.close()
