"""Cancelling the gradient lab: one poll object shared by every loop of a run."""

from __future__ import annotations

import time
from collections.abc import Callable

from implicit_viz.core.errors import Cancelled


class CancelPoll:
    """Wraps the caller's ``cancel() -> bool``; once it has returned True it stays True.

    :meth:`check` (between methods and at every step of a step loop) raises
    :class:`~implicit_viz.core.errors.Cancelled`; :attr:`for_driver` is what the driver's
    ``solve(cancel=...)`` polls, and :meth:`after_solve` raises once such a solve was cut short.
    ``waited_s`` adds up the time spent inside ``cancel`` (a paused GUI blocks there), so that
    timings can leave it out. With ``cancel`` None every check is a no-op.
    """

    def __init__(self, cancel: Callable[[], bool] | None = None) -> None:
        self._cancel = cancel
        self.cancelled = False
        self.waited_s = 0.0

    def __call__(self) -> bool:
        """Poll once; True once cancelled."""
        if self._cancel is not None and not self.cancelled:
            t0 = time.perf_counter()
            try:
                self.cancelled = bool(self._cancel())
            finally:
                self.waited_s += time.perf_counter() - t0
        return self.cancelled

    @property
    def for_driver(self) -> Callable[[], bool] | None:
        """The callable to pass as ``solve(cancel=...)``; None when nothing can cancel."""
        return None if self._cancel is None else self

    def check(self) -> None:
        """Poll; raise :class:`Cancelled` when cancelled."""
        if self._cancel is not None and self():
            raise Cancelled()

    def after_solve(self) -> None:
        """Raise :class:`Cancelled` when a driver solve polled a True (its result is partial)."""
        if self.cancelled:
            raise Cancelled()


#: The poll of a run that nothing can cancel.
NEVER = CancelPoll(None)
