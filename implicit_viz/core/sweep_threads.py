"""How a sweep spends its CPU cores: fixed chunks of cells on single-threaded workers.

A sweep's operations act on ``(D, B)`` tensors of a few thousand to a few hundred thousand
cells. Left to torch, each of them is an OpenMP team of ``torch.get_num_threads()`` threads that
meets at a barrier after every operation; when another process holds one of the cores, every
barrier waits for a thread that is not running, and a 128 x 128 sweep took 1.7 s on two
threads against 0.1 s on one (see ``benchmarks/README.md``, threads x load). Here the cells of a
tile are cut into chunks of at most :data:`CHUNK_CELLS`, and each chunk is solved on a worker
thread whose torch runs one intra-op thread: workers never wait for each other inside an
operation, torch releases the GIL inside its kernels, and a worker that loses its core delays
only its own chunk.

Results do not depend on the number of workers: the chunks are cut from the tile alone
(:func:`chunk_slices`), every chunk is solved by the same single-threaded code whichever worker
takes it, and the chunks' results are put back together in order (:func:`concat_results`).

Thread settings. ``torch.set_num_threads`` sets the calling thread's OpenMP team size, but also
two process-wide values: the count that threads starting later take on their first parallel
operation, and MKL's thread count. Workers set 1 for themselves. The sweep's own work in the
calling thread (setting up tiles, merging chunks, writing results out) runs on one thread too
(:meth:`ChunkRunner.drive`): an idle OpenMP team spins for milliseconds after each operation,
and the caller's team would take a core from the workers. Before every tile is handed back (each
``yield`` of :func:`~implicit_viz.core.sweep.iter_sweep`), the calling thread's own count is set
again, which also puts the process-wide values back: between tiles and after the sweep, torch's
settings are what the caller had. With one worker (or off the CPU) chunks run inline in the
calling thread; a caller already on one thread then changes nothing at all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any, TypeVar

import torch

from implicit_viz.core.result import SolveResult

#: Most cells of one chunk on the CPU. On the 2-core development machine a 512 x 512 tanh sweep
#: on one thread ran 0.44-0.47 s in batches of 131,072 to 262,144 cells, 0.54 s in 65,536 and
#: 0.64 s in 32,768: 65,536 keeps the per-batch overhead small while a 512 x 512 tile still
#: splits into four chunks for two workers.
CHUNK_CELLS = 65_536
#: Most workers a sweep starts, whatever the machine.
MAX_WORKERS = 16
#: Fields of :class:`SolveResult` indexed by step, not by element.
_PER_STEP = frozenset({"step_time_s"})

T = TypeVar("T")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def default_threads(device: str | torch.device = "cpu") -> int:
    """Workers a sweep uses when not told: on the CPU, as many as torch would give the calling
    thread's operations (``torch.get_num_threads()``), at most the usable cores and
    :data:`MAX_WORKERS`; one on other devices (a GPU runs a tile as one batch)."""
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), usable_cores(), MAX_WORKERS))


def chunk_slices(n: int, device: str | torch.device = "cpu") -> list[slice]:
    """How ``n`` cells of a tile are cut into chunks: slices of at most :data:`CHUNK_CELLS`
    cells, of near-equal sizes, on the CPU; one slice elsewhere. Depends on ``n`` alone, never
    on the number of workers, so results are the same whatever the thread count."""
    if n <= 0:
        return []
    if torch.device(device).type != "cpu" or n <= CHUNK_CELLS:
        return [slice(0, n)]
    k = -(-n // CHUNK_CELLS)
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(k)]


def _cat_padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)`` along dim 0, padding the other dims to the largest (NaN for floating
    tensors, 0 otherwise): e.g. ``residuals (B_i, T_i + 1)`` of chunks that ran different steps."""
    shape = [max(p.shape[i] for p in parts) for i in range(1, parts[0].ndim)]
    if all(list(p.shape[1:]) == shape for p in parts):
        return torch.cat(parts)
    fill = float("nan") if parts[0].is_floating_point() else 0
    out = []
    for p in parts:
        q = p.new_full((p.shape[0], *shape), fill)
        q[tuple(slice(0, s) for s in p.shape)] = p
        out.append(q)
    return torch.cat(out)


def _merge(values: list[Any], batches: list[int]) -> Any:
    """One field of several chunks' results: per-element tensors concatenated, dicts merged key
    by key, anything else taken from the first chunk."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(
            isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == b
            for v, b in zip(values, batches)
        ):
            return _cat_padded(values)
        return first
    if isinstance(first, dict) and all(isinstance(v, dict) for v in values):
        keys = [k for k in first if all(k in v for v in values)]
        merged = {k: _merge([v[k] for v in values], batches) for k in keys}
        return {**first, **merged}
    return first


def concat_results(parts: Sequence[SolveResult]) -> SolveResult:
    """The result of a tile from its chunks' results, in order: every per-element tensor
    ``(B_i, ...)`` concatenated to ``(sum B_i, ...)`` (trailing dims padded with NaN), per-element
    tensors in ``extra`` too; ``time_s`` and per-step fields from the longest chunk."""
    if len(parts) == 1:
        return parts[0]
    batches = [p.batch for p in parts]
    longest = max(parts, key=lambda p: p.time_s)
    out: dict[str, Any] = {}
    for f in fields(SolveResult):
        vals = [getattr(p, f.name) for p in parts]
        if f.name == "time_s" or f.name in _PER_STEP:
            out[f.name] = getattr(longest, f.name)
        elif vals[0] is None:
            out[f.name] = None
        else:
            out[f.name] = _merge(vals, batches)
    return replace(parts[0], **out)


def cores_taken_elsewhere() -> int | None:
    """Threads running or ready to run on the machine now, besides the calling one (Linux:
    ``procs_running`` of ``/proc/stat``, which counts the whole machine, other processes and
    containers included); None where the OS does not say."""
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"procs_running"):
                    return max(0, int(line.split()[1]) - 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def workers_for(jobs: int, threads: int, adaptive: bool) -> int:
    """Workers for a tile of ``jobs`` chunks: at most ``threads`` and ``jobs``; when
    ``adaptive``, also at most the cores nobody else is using right now (at least one), so that
    a busy machine runs the tile on one thread rather than on workers fighting over a core."""
    n = min(threads, jobs)
    if adaptive and n > 1:
        taken = cores_taken_elsewhere()
        if taken is not None:
            n = min(n, max(1, usable_cores() - taken))
    return max(1, n)


class ChunkRunner:
    """Runs a sweep's chunk jobs on up to ``threads`` single-threaded workers; results in order.

    The calling thread is one of the workers (it runs on one thread inside :meth:`drive`); the
    others come from a pool started on the first tile that needs them. Use as a context manager
    (or call :meth:`close`).

    Parameters
    ----------
    threads : int
        Most workers (>= 1).
    device : str or torch.device
        Where the jobs compute. Off the CPU (a GPU runs a tile as one batch of kernels) every
        job runs in the calling thread and no thread setting is touched.
    adaptive : bool
        Use, for each tile, only as many workers as there are cores free at its start
        (:func:`workers_for`); the default rule. Results do not depend on it.
    """

    def __init__(
        self, threads: int, device: str | torch.device = "cpu", adaptive: bool = False
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self.adaptive = adaptive
        self._cpu = torch.device(device).type == "cpu"
        self._pool: ThreadPoolExecutor | None = None
        #: Workers used by each call of :meth:`run` with several jobs (tests, benchmarks).
        self.workers_used: list[int] = []

    @contextmanager
    def caller_on_one_thread(self) -> Iterator[None]:
        """The block runs with one intra-op thread in the calling thread (on the CPU); its own
        count, and the process-wide ones, are set back to what the calling thread had at the
        start of the block when it ends (see the module doc)."""
        own = torch.get_num_threads() if self._cpu else 1
        if own != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if own != 1 or self._pool is not None:
                torch.set_num_threads(own)

    def drive(self, items: Iterator[T]) -> Iterator[T]:
        """The items of a generator, each produced under :meth:`caller_on_one_thread`: the
        sweep's own work in the calling thread (per-tile set-up, merging, write-out) runs on
        one thread too, and the caller's code between items sees its own settings. (An OpenMP
        team of the calling thread would spin for milliseconds after each of its operations,
        taking a core from the workers.) The generator is closed when this one is."""
        try:
            while True:
                with self.caller_on_one_thread():
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Call every job, each on one intra-op thread, on up to ``threads`` workers that take
        the next job as they finish one; returns the results in the order of ``jobs``. The
        first exception of a job is raised here, after the running jobs end. The calling
        thread is one of the workers: call this inside :meth:`drive` (or on a thread already
        on one intra-op thread)."""
        n = workers_for(len(jobs), self.threads, self.adaptive) if self._cpu else 1
        if len(jobs) > 1:
            self.workers_used.append(n)
        if n == 1:
            return [job() for job in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.threads - 1, thread_name_prefix="implicit-viz-sweep"
            )
        results: list[Any] = [None] * len(jobs)
        order = iter(range(len(jobs)))
        lock = threading.Lock()
        failed = threading.Event()

        def lane(pooled: bool = True) -> None:
            if pooled:  # this worker's team; and the globals, while a tile runs
                torch.set_num_threads(1)
            while not failed.is_set():
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    results[i] = jobs[i]()
                except BaseException:
                    failed.set()
                    raise

        futures = [self._pool.submit(lane) for _ in range(n - 1)]
        error: BaseException | None = None
        try:
            lane(pooled=False)  # the calling thread works too (on one thread: see drive)
        except BaseException as exc:
            error = exc
        for f in futures:
            try:
                f.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    def close(self) -> None:
        """Stop the workers (waiting for the jobs that run)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
