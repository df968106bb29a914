"""The workers' one abstraction: ids, newest request wins, cancel, pause/resume, shutdown, and
the three app workers standing on it (real sweeps; stand-ins for the solve and the lab where a
run must last long enough to be overtaken)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Signal

from implicit_viz.core import errors
from implicit_viz.core.live import LiveRequest
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, sweep, sweep_options
from implicit_viz.gui.grad_worker import GradWorker
from implicit_viz.gui.solve_worker import STALE_AFTER_S, SolveWorker
from implicit_viz.gui.sweep_worker import SweepWorker
from implicit_viz.gui.workers import Worker, describe_error

TIMEOUT_MS = 30_000


class Toy(Worker):
    """A worker whose run is the test's ``run(rid, request, cancel)``."""

    answer = Signal(int, object)

    def __init__(self, run, supersede_after=None):
        super().__init__(name="toy", supersede_after=supersede_after)
        self.run = run

    def _work(self, rid, request, cancel):
        return self.run(rid, request, cancel)

    def _deliver(self, rid, answer):
        self._emit("answer", rid, answer)


@pytest.fixture
def make_toy():
    made: list[Worker] = []

    def make(run, supersede_after=None):
        w = Toy(run, supersede_after)
        made.append(w)
        return w

    yield make
    for w in made:
        w.shutdown(2)


def until_cancelled(limit_s: float, ticks: list[int] | None = None):
    """A run polling ``cancel`` every 5 ms: ("cancelled" | "done", seconds it took)."""

    def run(_rid, _request, cancel):
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < limit_s:
            if cancel():
                return "cancelled", time.perf_counter() - t0
            if ticks is not None:
                ticks.append(i)
            i += 1
            time.sleep(0.005)
        return "done", time.perf_counter() - t0

    return run


def collect(signal) -> list:
    got: list = []
    signal.connect(lambda *args: got.append(args))
    return got


# -- the abstraction --------------------------------------------------------------------------
def test_ids_increase_and_the_newest_waiting_request_replaces_the_others(make_toy, qtbot):
    gate, started, ran = threading.Event(), threading.Event(), []

    def run(rid, request, _cancel):
        ran.append(rid)
        started.set()
        gate.wait(10)
        return request

    w = make_toy(run)
    answers = collect(w.answer)
    assert w.last_id == 0 and not w.busy
    ids = [w.submit("a")]
    assert started.wait(10)
    ids += [w.submit(v) for v in "bcde"]
    assert ids == [1, 2, 3, 4, 5] and w.last_id == 5 and w.busy
    gate.set()
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=TIMEOUT_MS)
    assert answers == [(1, "a"), (5, "e")] and ran == [1, 5]  # b, c, d never ran
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)
    assert w.duration(1) is not None and w.duration(3) is None


@pytest.mark.parametrize(
    ("grace", "outcome", "low", "high"),
    [(0.0, "cancelled", 0.0, 0.5), (0.3, "cancelled", 0.3, 1.0), (None, "done", 1.5, 10.0)],
)
def test_a_newer_request_cancels_the_running_one_per_the_policy(
    make_toy, qtbot, grace, outcome, low, high
):
    w = make_toy(until_cancelled(1.5), supersede_after=grace)
    answers = collect(w.answer)
    busy = collect(w.busyChanged)
    w.submit("first")
    qtbot.waitUntil(lambda: busy == [(True,)], timeout=TIMEOUT_MS)
    w.submit("second")
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=TIMEOUT_MS)
    (rid, (how, took)), second = answers
    assert rid == 1 and how == outcome and low <= took < high
    assert second[0] == 2 and second[1][0] == "done"


def test_cancel_stops_the_running_request_and_drops_the_waiting_one(make_toy, qtbot):
    w = make_toy(until_cancelled(5.0))
    answers = collect(w.answer)
    busy = collect(w.busyChanged)
    w.submit("first")
    qtbot.waitUntil(lambda: busy == [(True,)], timeout=TIMEOUT_MS)
    w.submit("second")
    w.cancel()
    qtbot.waitUntil(lambda: busy == [(True,), (False,)], timeout=TIMEOUT_MS)
    qtbot.wait(100)
    assert [(rid, how) for rid, (how, _) in answers] == [(1, "cancelled")]
    assert answers[0][1][1] < 1.0 and not w.busy and busy == [(True,), (False,)]


def test_pause_holds_the_run_at_its_next_check_and_resume_goes_on(make_toy, qtbot):
    ticks: list[int] = []
    w = make_toy(until_cancelled(0.4, ticks))
    answers = collect(w.answer)
    w.submit("x")
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=TIMEOUT_MS)
    w.pause()
    assert w.paused
    time.sleep(0.2)  # the run reaches its next check and blocks there
    held = len(ticks)
    time.sleep(0.5)
    assert len(ticks) == held and w.busy and not answers
    w.resume()
    assert not w.paused
    qtbot.waitUntil(lambda: bool(answers), timeout=TIMEOUT_MS)
    # the run went on where it stopped (its own clock ran past its limit meanwhile)
    assert answers[0][1][0] == "done" and ticks == list(range(len(ticks)))
    assert w.duration(1) < answers[0][1][1] - 0.6  # the time held paused is left out


def test_no_new_request_starts_while_paused(make_toy, qtbot):
    ran: list[int] = []
    w = make_toy(lambda rid, request, cancel: ran.append(rid) or request)
    answers = collect(w.answer)
    w.pause()
    w.submit("x")
    time.sleep(0.3)
    assert not ran and w.busy
    w.resume()
    qtbot.waitUntil(lambda: answers == [(1, "x")], timeout=TIMEOUT_MS)


@pytest.mark.parametrize(("grace", "low", "high"), [(0.0, 0.0, 0.5), (0.3, 0.3, 1.0)])
def test_a_newer_request_cancels_a_paused_run_per_the_policy(make_toy, qtbot, grace, low, high):
    ticks: list[int] = []
    w = make_toy(until_cancelled(5.0, ticks), supersede_after=grace)
    answers = collect(w.answer)
    w.submit("first")
    qtbot.waitUntil(lambda: len(ticks) >= 1, timeout=TIMEOUT_MS)
    w.pause()
    w.submit("second")
    qtbot.waitUntil(lambda: bool(answers), timeout=TIMEOUT_MS)
    rid, (how, took) = answers[0]
    assert rid == 1 and how == "cancelled" and low <= took < high
    time.sleep(0.2)
    assert len(answers) == 1  # the second waits for resume
    ticks.clear()
    w.resume()
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=TIMEOUT_MS)
    w.cancel()
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=TIMEOUT_MS)
    assert answers[1][0] == 2 and answers[1][1][0] == "cancelled"


def test_shutdown_while_paused_returns_promptly(make_toy, qtbot):
    ticks: list[int] = []
    w = make_toy(until_cancelled(30.0, ticks))
    answers = collect(w.answer)
    w.submit("x")
    qtbot.waitUntil(lambda: len(ticks) >= 1, timeout=TIMEOUT_MS)
    w.pause()
    time.sleep(0.05)
    t0 = time.perf_counter()
    w.shutdown(timeout=5.0)
    assert time.perf_counter() - t0 < 1.0 and not w._thread.is_alive()
    w.submit("after")  # ignored: the thread is gone
    qtbot.wait(100)
    assert [how for _, (how, _) in answers] == ["cancelled"]


def test_a_raising_request_fails_with_its_id_and_the_next_is_served(make_toy, qtbot):
    def run(_rid, request, _cancel):
        if isinstance(request, BaseException):
            raise request
        return request

    w = make_toy(run)
    answers, failures = collect(w.answer), collect(w.failed)
    w.submit(RuntimeError("boom"))
    qtbot.waitUntil(lambda: len(failures) == 1, timeout=TIMEOUT_MS)
    w.submit(ValueError("a is out of range"))
    qtbot.waitUntil(lambda: len(failures) == 2, timeout=TIMEOUT_MS)
    w.submit("fine")
    qtbot.waitUntil(lambda: bool(answers), timeout=TIMEOUT_MS)
    assert failures == [(1, "internal error: RuntimeError: boom"), (2, "a is out of range")]
    assert answers == [(3, "fine")]


def test_a_cancelled_exception_is_a_silent_cancel(make_toy, qtbot, monkeypatch):

    def run(_rid, request, cancel):
        while request == "stop me" and not cancel():
            time.sleep(0.005)
        if request == "stop me":
            raise errors.Cancelled()
        return request

    w = make_toy(run)
    answers, failures, busy = collect(w.answer), collect(w.failed), collect(w.busyChanged)
    w.submit("stop me")
    qtbot.waitUntil(lambda: busy == [(True,)], timeout=TIMEOUT_MS)
    w.cancel()
    qtbot.waitUntil(lambda: len(busy) == 2, timeout=TIMEOUT_MS)
    w.submit("next")
    qtbot.waitUntil(lambda: bool(answers), timeout=TIMEOUT_MS)
    assert answers == [(2, "next")] and not failures


def test_describe_error_lines():
    assert describe_error(ValueError("bad tol")) == "bad tol"
    assert describe_error(MemoryError(), "lower it") == "out of memory: lower it"
    assert describe_error(KeyError("k")) == "internal error: KeyError: 'k'"


# -- the sweep worker on real sweeps --------------------------------------------------------
def tanh_sweep(n: int, max_iter: int, tile: int) -> SweepRequest:
    spec = load_spec("tanh_layer")
    return SweepRequest(
        spec=spec,
        x=Axis("a", 0.0, 3.0, n),
        y=Axis("x[0]", -2.0, 2.0, n),
        options=sweep_options(spec, "float32", max_iter=max_iter),
        tile_size=tile,
    )


@pytest.fixture
def sweeper():
    w = SweepWorker(torch_threads=1)  # as the basins view runs it (small tiles, one thread)
    yield w
    w.shutdown()


def sweep_on_one_thread(request: SweepRequest):
    """The sweep's result computed here, on one torch thread like the worker's."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return sweep(request)
    finally:
        torch.set_num_threads(before)


def test_sweep_cancel_stops_promptly_with_the_cells_solved(sweeper, qtbot):
    progress = collect(sweeper.progress)
    sid = sweeper.start(tanh_sweep(200, 3000, 2000))  # about 5 s to the end
    qtbot.waitUntil(lambda: bool(progress), timeout=TIMEOUT_MS)
    t0 = time.perf_counter()
    with qtbot.waitSignal(sweeper.finished, timeout=TIMEOUT_MS) as done:
        sweeper.cancel()
    assert time.perf_counter() - t0 < 1.5
    assert done.args[0] == sid
    res = done.args[1]
    assert res.cancelled and not res.complete
    solved = res.status != int(Status.NOT_RUN)
    assert 0 < solved.sum() < solved.size


def test_sweep_pause_stops_progress_and_resume_gives_the_unpaused_result(sweeper, qtbot):
    request = tanh_sweep(80, 2000, 400)  # 17 tiles, about 1 s
    expected = sweep_on_one_thread(request)
    progress = collect(sweeper.progress)
    finished = collect(sweeper.finished)
    sid = sweeper.start(request)
    qtbot.waitUntil(lambda: bool(progress), timeout=TIMEOUT_MS)
    sweeper.pause()
    qtbot.wait(100)  # signals sent before the pause arrive
    held = len(progress)
    qtbot.wait(700)
    assert len(progress) == held and not finished and sweeper.busy
    sweeper.resume()
    qtbot.waitUntil(lambda: bool(finished), timeout=TIMEOUT_MS)
    assert len(progress) > held
    got_id, got = finished[0]
    assert got_id == sid and got.complete and not got.cancelled
    for name in ("status", "iterations", "residual", "period", "basin", "lyapunov"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    np.testing.assert_array_equal(got.fixed_points, expected.fixed_points)


# -- the solve and grad workers ---------------------------------------------------------------
def test_solve_worker_answers_the_first_and_or_last_of_a_burst(qtbot, monkeypatch):
    import implicit_viz.gui.solve_worker as sw

    started = threading.Event()

    def slow_live(request, *, cache, cancel):
        started.set()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2 * STALE_AFTER_S:
            if cancel():
                break
            time.sleep(0.005)
        return SimpleNamespace(request_id=request.request_id)

    monkeypatch.setattr(sw, "run_live", slow_live)
    worker = SolveWorker()
    snaps = collect(worker.snapshotReady)
    try:
        spec = load_spec("tanh_layer")
        ids = [worker.submit(LiveRequest(spec=spec))]
        assert started.wait(10)
        ids += [
            worker.submit(LiveRequest(spec=spec, values={"a": a})) for a in (0.2, 0.3, 0.4, 0.5)
        ]
        assert ids == [1, 2, 3, 4, 5]
        qtbot.waitUntil(lambda: any(s.request_id == 5 for (s,) in snaps), timeout=TIMEOUT_MS)
        # the first ran past the grace time while the last waited: cancelled, never shown
        assert [s.request_id for (s,) in snaps] == [5]
    finally:
        worker.shutdown()


def test_solve_worker_runs_a_real_burst(qtbot):
    worker = SolveWorker()
    snaps, failures = collect(worker.snapshotReady), collect(worker.failed)
    try:
        spec = load_spec("tanh_layer")
        for a in (0.5, 0.6, 0.7, 0.8, 0.9):
            worker.submit(LiveRequest(spec=spec, values={"a": a}))
        qtbot.waitUntil(lambda: any(s.request_id == 5 for (s,) in snaps), timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: not worker.busy, timeout=TIMEOUT_MS)
        assert {s.request_id for (s,) in snaps} <= {1, 5} and not failures
        last = next(s for (s,) in snaps if s.request_id == 5)
        assert last.traces and all(t.status == "converged" for t in last.traces)
    finally:
        worker.shutdown()


def test_grad_worker_cancel_reaches_a_lab_that_takes_cancel(qtbot, monkeypatch):
    import implicit_viz.gui.grad_worker as gw

    started = threading.Event()

    def lab(request, *, cancel=None):
        started.set()
        while request == "long":
            if cancel():
                raise errors.Cancelled()
            time.sleep(0.005)
        return f"report of {request}"

    monkeypatch.setattr(gw, "gradient_lab", lab)
    worker = GradWorker()
    reports, failures, busy = (
        collect(worker.reportReady),
        collect(worker.failed),
        collect(worker.busyChanged),
    )
    try:
        worker.submit("long")
        assert started.wait(10)
        worker.submit("short")
        qtbot.wait(300)  # the policy is "never": the newer request does not stop the lab
        assert busy == [(True,)]
        worker.cancel()
        qtbot.waitUntil(lambda: len(busy) == 2, timeout=TIMEOUT_MS)
        worker.submit("short")
        qtbot.waitUntil(lambda: bool(reports), timeout=TIMEOUT_MS)
        assert reports == [(3, "report of short")] and not failures
        assert worker.duration(1) is not None and worker.duration(2) is None
    finally:
        worker.shutdown()
