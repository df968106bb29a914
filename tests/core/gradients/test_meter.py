"""The saved-tensor meter counts each stored tensor once, and timings leave out the time spent
inside the caller's cancel callback (a paused GUI)."""

from __future__ import annotations

import time

import torch

from implicit_viz.core.gradients import SavedTensorMeter
from implicit_viz.core.gradients.cancel import CancelPoll
from implicit_viz.core.gradients.meter import _measure


def test_meter_counts_each_saved_storage_once():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    meter = SavedTensorMeter()
    with meter.active():
        y = x.exp()  # saves its output: 800 bytes
    assert meter.bytes == 800
    with meter.active():
        (x * x).sum()  # saves x twice: one more storage
    assert meter.bytes == 1600
    y.sum()  # outside the block: not counted
    assert meter.bytes == 1600
    # excluded storages (the map's own values) are never counted
    w = torch.randn(10, 10, dtype=torch.float64, requires_grad=True)
    meter = SavedTensorMeter(exclude=[w])
    with meter.active():
        w @ x[:10]  # saves w (excluded) and x (800 bytes: the whole storage of x)
    assert meter.bytes == 800


def test_time_spent_paused_in_the_cancel_callback_is_not_counted():
    def paused() -> bool:
        time.sleep(0.05)
        return False

    poll = CancelPoll(paused)
    x = torch.randn(50, dtype=torch.float64, requires_grad=True)

    def work(meter: SavedTensorMeter) -> torch.Tensor:
        poll.check()  # a step loop polling: blocks 50 ms each time
        with meter.active():
            return x.exp().sum()

    m = _measure(work, torch.device("cpu"), 3, poll=poll)
    assert poll.waited_s >= 0.05 * 7  # polled in each of the 4 runs and before each timed one
    assert 0 < m.time_s < 0.02
    assert m.memory_bytes == 400
