"""Parameter sweeps off the GUI thread, where the newest request wins.

A :class:`~implicit_viz.gui.workers.Worker` running :func:`implicit_viz.core.sweep.iter_sweep`.
:meth:`SweepWorker.start` cancels the sweep that is running (at its next check point, inside a
tile) and queues the new one. Progress, partial pictures, the final result and errors come back
as Qt signals carrying plain data, delivered on the GUI thread.

``iter_sweep`` fills one result object in place, so every result sent to the GUI thread is a
copy (:func:`copy_result`). Partial results are throttled (:data:`PARTIAL_INTERVAL_S`, and never
more often than copying costs allows), since each one is a redraw.

An optional ``render`` callable runs on the worker thread for every result sent (partial and
final) and its output travels with it in :attr:`SweepWorker.rendered`: the basins view uses it
to compute the cell colours there, so a 512 x 512 picture costs the GUI thread only its upload.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from implicit_viz.core.sweep import SweepRequest, SweepResult, iter_sweep
from implicit_viz.gui.workers import Worker
from implicit_viz.gui.workers import describe_error as _describe

#: At most one partial result per this many seconds (about 10 a second).
PARTIAL_INTERVAL_S = 0.1
#: Copies may take at most this share of the worker's time (larger grids send fewer partials).
COPY_SHARE = 0.2
#: How a sweep's out-of-memory message ends.
MEMORY_HINT = "lower the resolution or the spec's dim"


def describe_error(exc: BaseException) -> str:
    """One line for the view (see :func:`implicit_viz.gui.workers.describe_error`)."""
    return _describe(exc, MEMORY_HINT)


def copy_result(result: SweepResult) -> SweepResult:
    """A copy of ``result`` whose arrays are independent of the sweep still filling it."""
    fields = {
        name: np.array(getattr(result, name), copy=True)
        for name in ("status", "iterations", "residual", "period", "basin", "lyapunov")
    }
    return replace(
        result,
        **fields,
        fixed_points=result.fixed_points.copy(),
        orbit=None if result.orbit is None else result.orbit.copy(),
        z=None if result.z is None else result.z.copy(),
    )


class SweepWorker(Worker):
    """Runs sweeps on a background thread, one at a time; the newest request wins.

    Signals
    -------
    progress(int, float, int)
        ``(sweep_id, fraction of cells solved, stage)``; stage 0 is the coarse preview, 1 the
        refinement.
    partial(int, object)
        ``(sweep_id, SweepResult copy)`` while the sweep runs (throttled).
    rendered(int, object, object)
        ``(sweep_id, SweepResult copy, render(copy))`` for every partial and the final result,
        when the worker was given a ``render`` callable.
    finished(int, object)
        ``(sweep_id, SweepResult)`` at the end, also when cancelled (``result.cancelled`` True,
        the cells solved so far kept).
    failed(int, str)
        ``(sweep_id, message)`` for a request that raised.
    busyChanged(bool)
        The thread started or finished a sweep.
    """

    progress = Signal(int, float, int)
    partial = Signal(int, object)
    rendered = Signal(int, object, object)
    finished = Signal(int, object)

    memory_hint = MEMORY_HINT

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        render: Callable[[SweepResult], Any] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        """``render`` runs on the worker thread for each result sent; ``torch_threads`` sets
        ``torch.set_num_threads`` when the thread starts (None: leave torch's setting)."""
        super().__init__(
            parent, name="implicit-viz-sweep", supersede_after=0.0, torch_threads=torch_threads
        )
        self._render = render

    def start(self, request: SweepRequest) -> int:
        """Queue ``request``, cancelling the running sweep and any waiting one; returns its id."""
        return self.submit(request)

    # thread side -----------------------------------------------------------------------------
    def _work(
        self, sweep_id: int, request: SweepRequest, cancel: Callable[[], bool]
    ) -> SweepResult:
        result: SweepResult | None = None
        last_sent = -float("inf")
        interval = PARTIAL_INTERVAL_S
        for result, prog in iter_sweep(request, cancel=cancel):
            self.progress.emit(sweep_id, prog.fraction, prog.stage)
            now = time.perf_counter()
            if result.cancelled or now - last_sent < interval:
                continue
            t0 = time.perf_counter()
            self._send_partial(sweep_id, copy_result(result))
            spent = time.perf_counter() - t0
            last_sent = time.perf_counter()
            interval = max(PARTIAL_INTERVAL_S, spent / COPY_SHARE)
        if result is None:  # pragma: no cover - iter_sweep yields at least once
            raise RuntimeError("the sweep produced no result")
        return copy.copy(result)  # the sweep is over: nothing fills the arrays any more

    def _deliver(self, sweep_id: int, final: SweepResult) -> None:
        if self._render is not None:
            self.rendered.emit(sweep_id, final, self._render(final))
        self.finished.emit(sweep_id, final)

    def _send_partial(self, sweep_id: int, snapshot: SweepResult) -> None:
        if self._render is not None:
            self.rendered.emit(sweep_id, snapshot, self._render(snapshot))
        self.partial.emit(sweep_id, snapshot)
