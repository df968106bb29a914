"""Anderson acceleration (type II): mix the last ``m`` iterates to minimise the residual."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.limits import check_memory, itemsize
from implicit_viz.core.solvers import register_solver
from implicit_viz.core.solvers.base import Solver
from implicit_viz.core.solvers.options import option


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

    m: int = option(
        5,
        low=1,
        label="memory m",
        symbol="m",
        panel_max=50,
        help="how many past iterates are mixed (5 to 20 is typical)",
    )
    lam: float = option(
        1e-4,
        low=0,
        label="regularisation λ",
        panel_max=1.0,
        help="relative Tikhonov term on the Gram matrix's diagonal",
    )
    beta: float = option(
        1.0,
        low=0,
        high=2,
        low_open=True,
        label="mixing β",
        help="weight of the mixed images f(z) against the mixed iterates",
    )
    label = "Anderson acceleration"
    summary = "Anderson acceleration over the last m iterates"
    color = "#009E73"  # Okabe-Ito bluish green
    # under autograd a step copies its history instead of writing it in place (see ``step``),
    # so unrolled backprop works, at m D saved values per step

    def state_bytes(self, batch: int, dim: int, dtype: Any) -> int:
        """The history and a step's Gram systems (:meth:`history_bytes`)."""
        return self.history_bytes(batch, dim, dtype)

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

    def state_summary(self, state) -> dict[str, Any]:
        """``{"history": iterates in use}`` (at most ``m``)."""
        return {"history": min(state[2], self.m)}

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
