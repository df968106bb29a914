"""Sweeps on single-threaded workers: the same answer for any thread count, workers that really
run side by side on one intra-op thread each, and torch's thread settings as they were after.

Truths: the closed-form logistic fixed point ``1 - 1/r`` and the map itself for orbits (so a
chunk written to the wrong cells fails), a ``threading.Barrier`` that only two concurrent
workers can pass, one batched ``solve`` for the merged chunks, and torch's own
``get_num_threads`` read in the caller and in a thread started afterwards.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch

import implicit_viz.core.sweep as sweep_mod
import implicit_viz.core.sweep_threads as threads_mod
from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.errors import SweepError
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, iter_sweep, sweep, sweep_options
from implicit_viz.core.sweep_threads import (
    ChunkRunner,
    chunk_slices,
    concat_results,
    default_threads,
)

ARRAYS = ("status", "iterations", "residual", "period", "basin", "lyapunov", "z")


def fresh_thread_count() -> int:
    """``torch.get_num_threads()`` as a thread started now sees it."""
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def tanh_request(n: int, **kw) -> SweepRequest:
    spec = load_spec("tanh_layer")
    return SweepRequest(
        spec,
        Axis.parse(f"a=0:3:{n}"),
        Axis.parse(f"x[0]=-2:2:{n}"),
        options=sweep_options(spec, dtype="float32"),
        **kw,
    )


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of at most 500 cells, so small grids split into several."""
    monkeypatch.setattr(threads_mod, "CHUNK_CELLS", 500)
    return 500


def test_chunk_slices_partition_a_tile_whatever_the_workers(small_chunks):
    for n in (1, 499, 500, 501, 2160, 10_001):
        s = chunk_slices(n)
        sizes = [c.stop - c.start for c in s]
        assert s[0].start == 0 and s[-1].stop == n
        assert all(a.stop == b.start for a, b in itertools.pairwise(s))
        assert max(sizes) <= small_chunks and max(sizes) - min(sizes) <= 1
        assert len(s) == -(-n // small_chunks)
    assert chunk_slices(0) == []
    assert chunk_slices(10_001, "cuda") == [slice(0, 10_001)]  # a GPU takes the tile whole


def test_same_arrays_for_one_two_and_three_threads(small_chunks):
    # 48 x 48 with the preview: tiles of 144 and 2160 cells, the second in 5 chunks
    results = [sweep(tanh_request(48, threads=t)) for t in (1, 2, 3)]
    counts = results[0].counts()
    assert counts["converged"] > 0 and counts["converged"] < 48 * 48  # a mixed picture
    for other in results[1:]:
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(other, name), getattr(results[0], name), name)
        np.testing.assert_array_equal(other.fixed_points, results[0].fixed_points)


def test_chunks_land_on_their_cells_logistic_fixed_point_and_orbit(small_chunks, monkeypatch):
    monkeypatch.setattr(threads_mod, "CHUNK_CELLS", 37)
    spec = load_spec("logistic")
    req = SweepRequest(
        spec,
        Axis("r", 1.5, 3.9, 301),
        options=sweep_options(spec, dtype="float64", tol=1e-12, max_iter=2000),
        dtype="float64",
        orbit=16,
        preview=1,
        threads=3,
    )
    res = sweep(req)
    r = res.x_values
    conv = res.status[0] == int(Status.CONVERGED)
    assert conv[r < 2.9].all()
    np.testing.assert_allclose(res.z[0, conv, 0], 1 - 1 / r[conv], atol=1e-9)
    o = res.orbit[:, :, 0].astype(float)
    np.testing.assert_allclose(o[:, 1:], r[:, None] * o[:, :-1] * (1 - o[:, :-1]), atol=1e-5)
    np.testing.assert_allclose(o[:, 0], r * res.z[0, :, 0] * (1 - res.z[0, :, 0]), atol=1e-5)


def test_workers_run_side_by_side_on_one_thread_each(small_chunks, two_torch_threads, monkeypatch):
    seen: list[tuple[int, int]] = []
    barrier = threading.Barrier(2, timeout=20)
    lock = threading.Lock()
    real = sweep_mod.solve

    def spy(*a, **kw):
        with lock:
            seen.append((threading.get_ident(), torch.get_num_threads()))
            first_two = len(seen) <= 2
        if first_two:
            barrier.wait()  # passes only when two chunks are being solved at the same time
        return real(*a, **kw)

    monkeypatch.setattr(sweep_mod, "solve", spy)
    res = sweep(tanh_request(48, threads=2, preview=1))
    assert res.complete
    assert len(seen) == len(chunk_slices(48 * 48))
    assert {n for _, n in seen} == {1}  # the caller too, while it works on chunks
    assert len({t for t, _ in seen}) == 2
    assert threading.get_ident() in {t for t, _ in seen}  # the calling thread is a worker
    assert torch.get_num_threads() == 2


def test_between_tiles_the_caller_has_its_own_thread_count(two_torch_threads, monkeypatch):
    inside: list[int] = []
    real = sweep_mod._tile_problem

    def spy(*a, **kw):
        inside.append(torch.get_num_threads())
        return real(*a, **kw)

    monkeypatch.setattr(sweep_mod, "_tile_problem", spy)
    between = [torch.get_num_threads() for _ in iter_sweep(tanh_request(32, threads=1))]
    assert len(between) >= 2 and set(between) == {2}
    assert inside and set(inside) == {1}


def test_the_default_rule_leaves_cores_that_others_use(monkeypatch):
    jobs = [lambda i=i: i * i for i in range(5)]
    free = min(2, threads_mod.usable_cores())
    for taken, want in [(None, free), (0, free), (threads_mod.usable_cores(), 1)]:
        monkeypatch.setattr(threads_mod, "cores_taken_elsewhere", lambda t=taken: t)
        with ChunkRunner(2, adaptive=True) as runner:
            assert runner.run(jobs) == [0, 1, 4, 9, 16]
        assert runner.workers_used == [want]
    with ChunkRunner(2, adaptive=False) as runner:  # an explicit count is kept
        runner.run(jobs)
    assert runner.workers_used == [2]
    with ChunkRunner(2, device="cuda") as runner:  # a GPU takes the tile in the caller
        runner.run(jobs)
    assert runner.workers_used == [1]


@pytest.fixture
def two_torch_threads():
    """The caller and threads started later on two torch threads (whatever the machine), so a
    worker's one thread leaking out would show; the caller's own setting restored after."""
    own = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(own)


def test_torch_thread_settings_unchanged_after_a_sweep(small_chunks, two_torch_threads):
    before, before_fresh = torch.get_num_threads(), fresh_thread_count()
    assert (before, before_fresh) == (2, 2)
    for threads in (None, 1, 2):
        sweep(tanh_request(32, threads=threads))
        assert torch.get_num_threads() == before
        assert fresh_thread_count() == before_fresh
    # a generator closed after its first tile, and a cancelled sweep
    it = iter_sweep(tanh_request(48, threads=2))
    next(it)
    it.close()
    assert (torch.get_num_threads(), fresh_thread_count()) == (before, before_fresh)
    calls = iter(range(10**6))
    res = sweep(tanh_request(48, threads=2), cancel=lambda: next(calls) > 3)
    assert res.cancelled and not res.complete
    assert (torch.get_num_threads(), fresh_thread_count()) == (before, before_fresh)


def test_a_caller_on_one_thread_runs_inline_and_keeps_its_settings(small_chunks):
    got: dict[str, object] = {}

    def caller():
        torch.set_num_threads(1)  # this thread's own team size (and the global default)
        got["default"] = default_threads()
        ids: list[int] = []
        runner = ChunkRunner(1)
        got["ran"] = runner.run([lambda: ids.append(threading.get_ident()) or 7] * 3)
        runner.close()
        got["inline"] = set(ids) == {threading.get_ident()}

    before = torch.get_num_threads()
    t = threading.Thread(target=caller)
    t.start()
    t.join()
    torch.set_num_threads(before)  # undo the caller's global default
    assert got == {"default": 1, "ran": [7, 7, 7], "inline": True}


def test_default_threads_follow_torch_and_the_cores():
    n = default_threads()
    assert 1 <= n <= min(torch.get_num_threads(), threads_mod.usable_cores())
    assert default_threads("cuda") == 1


def test_merged_chunks_equal_one_batched_solve():
    # per-element results do not depend on the batch, and chunks that ran different numbers
    # of steps are padded with NaN to the longest
    spec = load_spec("logistic")
    fmap = compile_spec(spec, dtype="float64")
    r = torch.linspace(2.5, 3.2, 40, dtype=torch.float64)
    z0 = torch.full((40, 1), 0.3, dtype=torch.float64)

    def run(sl):
        return solve(fmap.with_values(r=r[sl]), "fixed_point", z0[sl], tol=1e-10, max_iter=300)

    whole = run(slice(0, 40))
    parts = [run(slice(0, 8)), run(slice(8, 40))]  # the first: r < 2.64, fast convergence
    assert parts[0].residuals.shape[1] < parts[1].residuals.shape[1]
    merged = concat_results(parts)
    for name in ("z", "status", "iterations", "residual", "period", "residuals"):
        np.testing.assert_allclose(
            getattr(merged, name).numpy(), getattr(whole, name).numpy(), rtol=1e-12, atol=0
        )


def test_invalid_thread_counts_are_refused():
    with pytest.raises(SweepError, match="threads"):
        sweep_mod.validate(tanh_request(8, threads=0))
    with pytest.raises(ValueError):
        ChunkRunner(0)
