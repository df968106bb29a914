"""Anderson acceleration (type II): mix the last ``m`` iterates to minimise the residual."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.errors import SolverError
from implicit_viz.core.limits import check_memory, itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver


@register_solver("anderson")
@dataclass(frozen=True)
class Anderson(Solver):
    """Anderson acceleration with memory ``m``, regularisation ``lam`` and mixing ``beta``.

    Each step solves ``min_a ||sum_i a_i g_i||`` subject to ``sum_i a_i = 1`` over the last
    ``k = min(n, m)`` residuals ``g_i = f(z_i) - z_i``, then sets
    ``z <- beta sum a_i f(z_i) + (1 - beta) sum a_i z_i``. ``lam`` is relative: the Gram matrix
    gets ``lam * max(diag)`` on its diagonal, so the regularisation keeps its effect as the
    residuals shrink.
    """

    m: int = 5
    lam: float = 1e-4
    beta: float = 1.0
    summary = "Anderson acceleration over the last m iterates"

    def __post_init__(self) -> None:
        if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
            raise SolverError(f"anderson.m: must be a whole number of at least 1, got {self.m!r}")
        if isinstance(self.lam, bool) or not (math.isfinite(self.lam) and self.lam >= 0):
            raise SolverError(f"anderson.lam: must be a finite number >= 0, got {self.lam!r}")
        if isinstance(self.beta, bool) or not 0 < self.beta <= 2:
            raise SolverError(f"anderson.beta: must lie in (0, 2], got {self.beta!r}")

    def history_bytes(self, batch: int, dim: int, dtype: Any) -> int:
        """Bytes of the history ``init`` allocates (iterates and images, ``(B, m, D)`` each) and
        of a step's temporaries: the residuals ``(B, m, D)`` and three ``(B, m, m)`` Gram-sized
        arrays (the Gram matrix, its regularised copy, the solver's factorisation)."""
        m = self.m
        return batch * (3 * m * dim + 3 * m * m + 2 * m) * itemsize(dtype)

    def check_history(
        self, batch: int, dim: int, dtype: Any, *, field: str = "anderson.m", hint: str = ""
    ) -> None:
        """Raise :class:`~implicit_viz.core.errors.LimitError` (naming ``field``) when the
        history would exceed the memory budget; call it before any work that precedes ``init``."""
        check_memory(
            f"Anderson's history and Gram systems (B={batch}, m={self.m}, dim={dim}, "
            f"{str(dtype).replace('torch.', '')})",
            self.history_bytes(batch, dim, dtype),
            field=field,
            hint=hint or "lower m (5 to 20 is typical)",
        )

    # History is stored batch-first, (B, m, D), so the small Gram systems are plain batched
    # matmuls; ``take`` therefore slices dimension 0.
    def init(self, f, z, fz):
        d, b = z.shape
        self.check_history(b, d, z.dtype)
        xs = z.new_zeros(b, self.m, d)
        fs = z.new_zeros(b, self.m, d)
        xs[:, 0] = z.T
        fs[:, 0] = fz.T
        return (xs, fs, 1)

    def take(self, state, index):
        xs, fs, n = state
        return (xs[index], fs[index], n)

    def step(self, f, z, fz, state):
        xs, fs, n = state
        k = min(n, self.m)
        if k == 1:
            z_new = torch.lerp(z, fz, self.beta)
        else:
            x, fx = xs[:, :k], fs[:, :k]  # (B, k, D)
            g = fx - x
            gram = g @ g.transpose(1, 2)  # (B, k, k)
            diag = torch.diagonal(gram, dim1=-2, dim2=-1)
            reg = self.lam * diag.amin(dim=-1, keepdim=True) + torch.finfo(z.dtype).tiny
            gram = gram + torch.diag_embed(reg.expand(-1, k))
            ones = gram.new_ones(gram.shape[0], k, 1)
            y, info = torch.linalg.solve_ex(gram, ones)
            alpha = y / y.sum(dim=1, keepdim=True)  # (B, k, 1)
            if bool(info.any()):
                # Where the small system failed, fall back to the newest iterate alone.
                newest = torch.zeros_like(alpha)
                newest[:, (n - 1) % self.m] = 1.0
                alpha = torch.where((info != 0)[:, None, None], newest, alpha)
            at = alpha.transpose(1, 2)  # (B, 1, k)
            mix_f = (at @ fx).squeeze(1).T  # (D, B)
            if self.beta == 1.0:
                z_new = mix_f
            else:
                mix_x = (at @ x).squeeze(1).T
                z_new = torch.lerp(mix_x, mix_f, self.beta)
        fz_new = f(z_new)
        if torch.is_grad_enabled() and (fz_new.requires_grad or z_new.requires_grad):
            # Under autograd (unrolled backprop) write into fresh buffers: the history read
            # above is saved for backward and must not change in place.
            xs, fs = xs.clone(), fs.clone()
        slot = n % self.m
        xs[:, slot] = z_new.T
        fs[:, slot] = fz_new.T
        return z_new, fz_new, (xs, fs, n + 1)
