"""Timing and reporting helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import gc
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from implicit_viz.core.jsonsafe import json_safe


def make_sync(device: str) -> Callable[[], None]:
    """A function that waits for the device (cuda) or does nothing (cpu)."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_round_robin(
    fns: list[Callable[[], Any]],
    reps: int,
    sync: Callable[[], None],
    *,
    warmup: int = 0,
    before: list[Callable[[], None] | None] | None = None,
    collect_each: bool = False,
) -> list[list[float]]:
    """Per-callable wall times (s): ``warmup`` untimed calls each, then ``reps`` rounds, each
    running every callable once with the starting one rotating from round to round, so load
    changes hit all methods alike. GC is off inside a round (collected between rounds, or after
    every call with ``collect_each``). ``before[i]`` runs untimed just before callable ``i``.
    """
    n = len(fns)
    before = before or [None] * n
    for i, fn in enumerate(fns):
        for _ in range(warmup):
            if before[i]:
                before[i]()
            fn()
        sync()
    times: list[list[float]] = [[] for _ in fns]
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(reps):
            for j in range(n):
                i = (j + r) % n
                if before[i]:
                    before[i]()
                sync()
                t0 = time.perf_counter()
                fns[i]()
                sync()
                times[i].append(time.perf_counter() - t0)
                if collect_each:
                    gc.collect()
            gc.collect()
    finally:
        if gc_was:
            gc.enable()
    return times


def git_state() -> dict[str, Any]:
    """The commit measured and the library files changed in the working tree."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "implicit_viz"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_head": head, "library_changes": [ln[3:] for ln in dirty if ln.strip()]}


def loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


clean = json_safe  # NaN/inf -> None (strict JSON), through dicts and lists


def json_default(o: Any) -> Any:
    """``json.dump(default=...)`` for numpy scalars and arrays."""
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        v = o.item()
        return v if not isinstance(v, float) or math.isfinite(v) else None
    if isinstance(o, np.ndarray):
        return clean(o.tolist())
    return str(o)


class BusyCore:
    """A child process spinning on one core while the block runs (a noisy neighbour on a
    shared 2-core machine); it stops itself after ``limit_s`` in any case, and is ended
    through its own handle."""

    def __init__(self, limit_s: float = 120.0) -> None:
        self.limit_s = limit_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BusyCore:
        code = f"import time\nt = time.time() + {self.limit_s}\nwhile time.time() < t: pass\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()


def environment(device: str, scipy: Any = None, torchdeq: Any = None) -> dict[str, Any]:
    """Versions, threads, load and the commit measured: the header of every benchmark."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": getattr(scipy, "__version__", None),
        "torchdeq": getattr(torchdeq, "__version__", "installed" if torchdeq else None),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "loadavg_start": loadavg(),
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    env.update(git_state())
    return env


def gui_environment() -> dict[str, Any]:
    """:func:`environment` on the CPU plus the Qt binding's and pyqtgraph's versions."""
    import pyqtgraph
    import PySide6

    env = environment("cpu")
    env.update(pyside6=PySide6.__version__, pyqtgraph=pyqtgraph.__version__)
    return env
