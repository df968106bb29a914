"""Reductions over the leading (per-sample) dimensions of batch-last tensors ``(D, B)``.

torch's CPU reduction kernels are slow for a reduction over a short leading dimension of a
long batch: ``torch.linalg.vector_norm(g, dim=0)`` on ``(2, 65536)`` float32 takes about 5 ms,
``torch.linalg.vecdot(g, g, dim=0)`` about 0.07 ms. These helpers pick the fast form.
"""

from __future__ import annotations

import torch


def col_norm(g: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each column: ``(D, B)`` -> ``(B,)``."""
    return torch.linalg.vecdot(g, g, dim=0).sqrt_()


def col_absmax(g: torch.Tensor) -> torch.Tensor:
    """Largest absolute entry of each column: ``(D, B)`` -> ``(B,)``; NaN propagates."""
    if g.shape[0] <= 8:
        acc = g[0].abs()
        for i in range(1, g.shape[0]):
            acc = torch.maximum(acc, g[i].abs())
        return acc
    return g.abs().amax(dim=0)
