"""Basins of a sweep: which distinct fixed point each converged cell reached.

:class:`BasinIndex` numbers distinct points greedily (points within ``tol (1 + ||z||)`` are
one; too many distinct points means the fixed point moves with the params, and basins are not
resolved); :func:`relabel` renumbers them in a canonical order (by their coordinates) as the
sweep goes, so colours do not depend on the order tiles ran in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.sweep import SweepResult

#: At most this many distinct fixed points are told apart (more: basins not resolved).
MAX_BASINS = 256


class BasinIndex:
    """Distinct fixed points, found greedily: a point within tolerance of a known one joins it."""

    def __init__(self, tol: float, dim: int, limit: int = MAX_BASINS) -> None:
        self.tol = tol
        self.limit = limit
        self.points = np.zeros((0, dim))
        self.overflow = False  # too many distinct points: the fixed point varies continuously

    def assign(self, z: np.ndarray) -> np.ndarray:
        """Ids (discovery order) for points ``z: (n, D)``; new points become new ids.

        Points are first bucketed on a grid of cell ``tol`` (``np.unique``), so the greedy
        matching only sees one representative per occupied cell.
        """
        ids = np.full(len(z), -1, np.int64)
        if self.overflow or not len(z):
            return ids
        finite = np.isfinite(z).all(axis=1)
        # clipped so that far-away points (a huge div_bound) cannot overflow int64 or a span
        with np.errstate(over="ignore"):  # |z| / tol beyond float64: clipped below
            scaled = np.floor(z[finite] / self.tol)
        keys = np.clip(scaled, -(2.0**61), 2.0**61).astype(np.int64)
        if len(keys) > 64 * self.limit:
            # A sample with too many distinct keys already decides it (its count is a lower
            # bound of the whole's), without sorting every point.
            step = len(keys) // (16 * self.limit)
            if len(unique_rows(keys[::step])[0]) > 4 * self.limit:
                self.overflow = True
                return ids
        first, inverse = unique_rows(keys)
        if len(first) > 4 * self.limit:
            self.overflow = True
            return ids
        rep_ids = self._assign_few(z[finite][first])
        if self.overflow:
            return ids
        ids[finite] = rep_ids[inverse.reshape(-1)]
        return ids

    def _assign_few(self, z: np.ndarray) -> np.ndarray:
        ids = self._nearest(z) if len(self.points) else np.full(len(z), -1, np.int64)
        todo = np.flatnonzero(ids < 0)
        while todo.size:
            if len(self.points) >= self.limit:
                self.overflow = True
                return ids
            self.points = np.vstack([self.points, z[todo[0]]])
            new = self._nearest(z[todo], only_last=True)
            ids[todo[new >= 0]] = len(self.points) - 1
            todo = todo[new < 0]
        return ids

    def _nearest(self, z: np.ndarray, only_last: bool = False) -> np.ndarray:
        pts = self.points[-1:] if only_last else self.points
        with np.errstate(over="ignore"):  # points near the float64 limit: distance inf
            scale = 1.0 + np.abs(z).max(axis=1)
            dist = np.abs(z[:, None, :] - pts[None, :, :]).max(axis=2)  # (n, K)
        best = dist.argmin(axis=1)
        ok = dist[np.arange(len(z)), best] <= self.tol * scale
        base = len(self.points) - 1 if only_last else 0
        return np.where(ok, best + base, -1)


def unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, axis=0, return_index=True, return_inverse=True)[1:]`` for int64 rows
    ``(n, D)``: the index of the first occurrence of each distinct row (rows in lexicographic
    order) and each row's position among them. Rows whose value ranges fit in 62 bits are
    packed into one integer each first (mixed radix, last column fastest, which keeps the
    lexicographic order): a 1-D unique is about 10x faster than ``axis=0``."""
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = keys.min(axis=0)
    span = keys.max(axis=0) - lo + 1
    # log2 of the product of the spans: a product of 128 spans overflows float64 (with a NumPy
    # warning on stderr) where its log does not
    if np.all(span > 0) and float(np.log2(span.astype(np.float64)).sum()) < 62.0:
        radix = np.cumprod(np.concatenate([[1], span[::-1][:-1]]))[::-1]
        packed = (keys - lo) @ radix.astype(np.int64)
        _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    else:  # spans too wide (or an overflow in them): the slower row-wise unique
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def relabel(result: SweepResult, basins: BasinIndex, rank: np.ndarray | None) -> np.ndarray | None:
    """Number fixed points in sorted (lexicographic, rounded) order, independent of discovery.

    ``rank`` maps discovery ids to the labels already written into ``result.basin``; when a new
    point changes the order, those labels are renumbered in place. Returns the new map (None
    once the basins overflowed: then every label is -1 and ``fixed_points`` empty).
    """
    pts = basins.points
    result.basins_resolved = not basins.overflow
    if basins.overflow:
        result.fixed_points = np.zeros((0, pts.shape[1]))
        if rank is not None:
            result.basin.fill(-1)
        return None
    if not len(pts):
        result.fixed_points = pts.copy()
        return np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        scaled = np.round(pts / max(basins.tol, 1e-12))
    key = np.clip(scaled, -(2.0**62), 2.0**62).astype(np.int64)
    order = np.lexsort(key.T[::-1])
    new = np.empty(len(pts), np.int64)
    new[order] = np.arange(len(pts))
    result.fixed_points = pts[order].copy()
    old = rank if rank is not None else np.zeros(0, np.int64)
    if len(old) and not np.array_equal(new[: len(old)], old):
        lut = np.full(len(old) + 1, -1, np.int32)  # old label -> new label; lut[-1] = -1
        lut[old] = new[: len(old)]
        remap(result.basin.reshape(-1), lut)
    return new


def remap(flat: np.ndarray, lut: np.ndarray, chunk: int = 1 << 20) -> None:
    """``flat[:] = lut[flat]`` in place, a block at a time (bounded temporaries)."""
    for i in range(0, flat.size, chunk):
        seg = flat[i : i + chunk]
        seg[...] = lut[seg]
