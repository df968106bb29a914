"""Batched Jacobians ``df/dz`` by reverse-mode autograd, one backward pass for the whole batch.

The trick: repeat every sample ``D`` times along the batch, so column ``j*B + b`` holds sample
``b``; one vector-Jacobian product with the tangent ``e_j`` in that column gives row ``j`` of
sample ``b``'s Jacobian. Per-row params are repeated the same way (``BatchLastMap.take``).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from implicit_viz.core.limits import itemsize


class BatchLastMap(Protocol):
    """A map on batch-last states: ``(D, B) -> (D, B)``, whose per-row values can be sliced."""

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...

    def take(self, index: torch.Tensor) -> BatchLastMap: ...


def jacobian_bytes(dim: int, batch: int, dtype: Any, row_bytes: int = 0) -> int:
    """Working memory of :func:`jacobian_batch_last` (and of a dense solve with the result):
    the repeated ``z``, the tangents, the output and the gradient, ``(D, D B)`` each, and the
    ``D B`` repeated rows of the map, ``row_bytes`` each (its per-row values and what one
    evaluation writes, twice: autograd keeps it for the backward pass)."""
    return 4 * dim * dim * batch * itemsize(dtype) + 2 * dim * batch * row_bytes


def jacobian_batch_last(f: BatchLastMap, z: torch.Tensor) -> torch.Tensor:
    """``J[i, j, b] = d f_i / d z_j`` at sample ``b``.

    Parameters
    ----------
    f : BatchLastMap
        The map, with ``B`` rows (or shared values).
    z : Tensor, shape (D, B)

    Returns
    -------
    Tensor, shape (D, D, B)
    """
    d, b = z.shape
    rep = torch.arange(b, device=z.device).repeat(d)  # column j*B + b -> row b
    f_rep = f.take(rep)
    zz = z.detach().repeat(1, d)
    tangent = torch.eye(d, dtype=z.dtype, device=z.device).repeat_interleave(b, dim=1)
    with torch.enable_grad():
        zz.requires_grad_(True)
        out = f_rep(zz)
        if not out.requires_grad:
            return torch.zeros(d, d, b, dtype=z.dtype, device=z.device)
        (grad,) = torch.autograd.grad(out, zz, grad_outputs=tangent, allow_unused=True)
    if grad is None:
        return torch.zeros(d, d, b, dtype=z.dtype, device=z.device)
    # grad[i, j*B + b] = J_b[j, i]
    return grad.reshape(d, d, b).permute(1, 0, 2)


def jacobian(f: Any, z: torch.Tensor) -> torch.Tensor:
    """Batch-first Jacobian: ``z: (B, D)`` -> ``J: (B, D, D)`` with ``J[b, i, j] = df_i/dz_j``.

    ``f`` is a :class:`~implicit_viz.core.compiled_map.FixedPointMap` (its per-row values are used)
    or any :class:`BatchLastMap`.
    """
    if hasattr(f, "as_batch_last"):  # a FixedPointMap
        f = f.as_batch_last()
    return jacobian_batch_last(f, z.T.contiguous()).permute(2, 0, 1)
