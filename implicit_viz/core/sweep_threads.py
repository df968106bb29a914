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
operation, and MKL's thread count. Workers set 1 for themselves (so those globals read 1 while a
sweep runs); :class:`ChunkRunner` puts them back on :meth:`~ChunkRunner.close` by setting, in
the thread that closes it, the count that thread had when the runner was made. A caller whose
torch already runs one thread, with one worker asked for, runs every chunk inline and changes
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def _one_thread(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` run with one intra-op thread in the worker that calls it."""

    def run() -> T:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        return fn()

    return run


class ChunkRunner:
    """Runs a sweep's chunk jobs on ``threads`` single-threaded workers; results in order.

    Use as a context manager (or call :meth:`close`): the worker pool is started on the first
    :meth:`run` that needs it and the torch thread settings are restored when it closes.

    Parameters
    ----------
    threads : int
        Workers (>= 1).
    """

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self._caller_threads = torch.get_num_threads()
        # one worker for a caller already on one thread: run inline, change nothing
        self._inline = threads == 1 and self._caller_threads == 1
        self._pool: ThreadPoolExecutor | None = None

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Call every job (each with one intra-op thread), in parallel where workers allow;
        returns their results in the order of ``jobs``. A job's exception is raised here."""
        if self._inline:
            return [job() for job in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="implicit-viz-sweep")
        futures = [self._pool.submit(_one_thread(job)) for job in jobs]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:  # after an error: drop what has not started
                f.cancel()

    def close(self) -> None:
        """Stop the workers and restore torch's thread settings (see the module doc)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(self._caller_threads)

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
