"""Parameter sweeps off the GUI thread, where the newest request wins.

One background thread runs :func:`implicit_viz.core.sweep.iter_sweep`. :meth:`SweepWorker.start`
cancels the sweep that is running (at its next check point, inside a tile) and queues the new
one. Progress, partial pictures, the final result and errors come back as Qt signals carrying
plain data, delivered on the GUI thread.

``iter_sweep`` fills one result object in place, so every result sent to the GUI thread is a
copy (:func:`copy_result`). Partial results are throttled (:data:`PARTIAL_INTERVAL_S`, and never
more often than copying costs allows), since each one is a redraw.

An optional ``render`` callable runs on the worker thread for every result sent (partial and
final) and its output travels with it in :attr:`SweepWorker.rendered`: the basins view uses it
to compute the cell colours there, so a 512 x 512 picture costs the GUI thread only its upload.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from implicit_viz.core.sweep import SweepRequest, SweepResult, iter_sweep
from implicit_viz.gui.latest_slot import LatestSlot
from implicit_viz.gui.solve_worker import describe_error as _describe

log = logging.getLogger(__name__)

#: At most one partial result per this many seconds (about 10 a second).
PARTIAL_INTERVAL_S = 0.1
#: Copies may take at most this share of the worker's time (larger grids send fewer partials).
COPY_SHARE = 0.2


def describe_error(exc: BaseException) -> str:
    """One line for the view (see :func:`implicit_viz.gui.solve_worker.describe_error`)."""
    return _describe(exc, "lower the resolution or the spec's dim")


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


class SweepWorker(QObject):
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
    failed = Signal(int, str)
    busyChanged = Signal(bool)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        render: Callable[[SweepResult], Any] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        """``render`` runs on the worker thread for each result sent; ``torch_threads`` sets
        ``torch.set_num_threads`` when the thread starts (None: leave torch's setting)."""
        super().__init__(parent)
        self._render = render
        self._torch_threads = torch_threads
        self._slot: LatestSlot[SweepRequest] = LatestSlot()
        self._running_id = 0
        self._cancel_up_to = 0
        self._thread = threading.Thread(target=self._loop, name="implicit-viz-sweep", daemon=True)
        self._thread.start()

    # GUI side --------------------------------------------------------------------------------
    def start(self, request: SweepRequest) -> int:
        """Queue ``request``, cancelling the running sweep and any waiting one; returns its id."""
        return self._slot.put(lambda _rid: request, on_put=self._cancel_before)

    def cancel(self) -> None:
        """Stop the running sweep (it still sends ``finished`` with what it solved) and drop a
        waiting one."""
        self._slot.clear(on_clear=self._cancel_through)

    @property
    def last_id(self) -> int:
        return self._slot.last_id

    @property
    def busy(self) -> bool:
        """A sweep is running or waiting."""
        return self._slot.locked(lambda: self._running_id != 0 or self._slot.waiting)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread (a running sweep is cancelled at its next check point)."""
        self._slot.stop()
        self._thread.join(timeout)

    # thread side -----------------------------------------------------------------------------
    def _cancel_before(self, new_id: int) -> None:
        self._cancel_up_to = new_id - 1

    def _cancel_through(self, last_id: int) -> None:
        self._cancel_up_to = last_id

    def _set_running(self, sweep_id: int) -> None:
        self._running_id = sweep_id

    def _cancelled(self, sweep_id: int) -> bool:
        return self._slot.stopping or sweep_id <= self._cancel_up_to

    def _loop(self) -> None:
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)
        while (taken := self._slot.take(self._set_running)) is not None:
            sweep_id, request = taken
            self.busyChanged.emit(True)
            try:
                self._run(sweep_id, request)
            except BaseException as exc:  # every failure becomes a message, never a crash
                if not isinstance(exc, ValueError):
                    log.exception("sweep %d failed", sweep_id)
                try:
                    self.failed.emit(sweep_id, describe_error(exc))
                except Exception:  # pragma: no cover - the receiver is gone (shutdown)
                    pass
            finally:
                self._running_id = 0
                self.busyChanged.emit(False)

    def _run(self, sweep_id: int, request: SweepRequest) -> None:
        result: SweepResult | None = None
        last_sent = -float("inf")
        interval = PARTIAL_INTERVAL_S
        for result, prog in iter_sweep(request, cancel=lambda: self._cancelled(sweep_id)):
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
        final = copy.copy(result)  # the sweep is over: nothing fills the arrays any more
        if self._render is not None:
            self.rendered.emit(sweep_id, final, self._render(final))
        self.finished.emit(sweep_id, final)

    def _send_partial(self, sweep_id: int, snapshot: SweepResult) -> None:
        if self._render is not None:
            self.rendered.emit(sweep_id, snapshot, self._render(snapshot))
        self.partial.emit(sweep_id, snapshot)
