"""Measuring a gradient method: bytes autograd saves for backward, wall time, CUDA peak."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.gradients.cancel import NEVER, CancelPoll


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward inside ``with meter.active():`` blocks.

    Each distinct storage counts once (a vector saved by two operations is one tensor), and
    the storages of ``exclude`` (the map's own params, tensors and constants, which exist
    whether or not anything is differentiated) not at all. Packed tensors are held until
    :meth:`release`, so a freed address cannot be mistaken for a new tensor. ``bytes`` only
    grows: it is the peak for graphs that live until their backward pass, which is how every
    method here uses them.
    """

    def __init__(self, enabled: bool = True, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.enabled = enabled
        self.bytes = 0
        self._held: dict[Any, torch.Tensor | None] = {self._key(t)[0]: None for t in exclude}

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[Any, int]:
        try:
            storage = t.untyped_storage()
            return (t.device, storage.data_ptr()), int(storage.nbytes())
        except (RuntimeError, NotImplementedError, TypeError):
            return id(t), t.numel() * t.element_size()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key, nbytes = self._key(t)
        if key not in self._held:
            self._held[key] = t
            self.bytes += nbytes
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @contextmanager
    def active(self) -> Iterator[SavedTensorMeter]:
        if not self.enabled:
            yield self
            return
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self

    def release(self) -> None:
        """Drop the references to packed tensors (the count stays)."""
        for key in self._held:
            self._held[key] = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Measured:
    value: Any
    time_s: float
    memory_bytes: int
    device_peak_bytes: int | None


def _measure(
    fn: Callable[[SavedTensorMeter], Any],
    device: torch.device,
    repeats: int,
    exclude: Iterable[torch.Tensor] = (),
    poll: CancelPoll = NEVER,
) -> _Measured:
    """Run ``fn`` once with a meter (its value and memory), then ``repeats`` times timed
    without one (best time; on CUDA the peak allocation of the first timed run). Time spent
    inside ``poll``'s cancel callback (a pause) is not counted."""
    meter = SavedTensorMeter(exclude=exclude)
    value = fn(meter)
    meter.release()
    best = math.inf
    peak: int | None = None
    off = SavedTensorMeter(enabled=False)
    for i in range(repeats):
        poll.check()
        if device.type == "cuda" and i == 0:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        _sync(device)
        waited = poll.waited_s
        t0 = time.perf_counter()
        fn(off)
        _sync(device)
        best = min(best, time.perf_counter() - t0 - (poll.waited_s - waited))
        if device.type == "cuda" and i == 0:
            peak = int(torch.cuda.max_memory_allocated(device) - base)
    return _Measured(value, best, meter.bytes, peak)
