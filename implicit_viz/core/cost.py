"""What a computation would cost, found without doing it: run it on ``meta`` tensors and count.

Tensors on the ``meta`` device carry shapes and dtypes but no data, so every torch operation on
them is free, while a :class:`~torch.utils._python_dispatch.TorchDispatchMode` still sees each
one. :class:`CostCounter` counts

- floating-point operations: ``2 m n k`` for a matrix product (``mm``, ``bmm``, ``addmm``,
  ``mv``, ``dot``), and for every other operation the larger of its input and output element
  counts (an elementwise op or a reduction touches each element about once); views are free;
- bytes: the size of every operation's output (an upper bound on the working memory, since
  nothing is freed in the count).

:func:`meta_eval_cost` evaluates a compiled map this way, which also surfaces its shape errors
(with their positions) at no cost; :func:`jacobian_cost` does the same for a dense Jacobian by
autograd, backward pass included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

META = torch.device("meta")

_aten = torch.ops.aten


@dataclass(frozen=True)
class Cost:
    """Floating-point operations and bytes written by a computation."""

    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def scaled(self, k: float) -> Cost:
        return Cost(self.flops * k, self.bytes * k)


def _numel(shape: Any) -> int:
    return math.prod(shape)


def _matmul_flops(func: Any, args: tuple[Any, ...]) -> float | None:
    """``2 m n k`` for the matrix products torch lowers ``@`` and ``einsum`` to, else None."""
    packet = func.overloadpacket
    if packet in (_aten.mm, _aten.bmm, _aten.addmm, _aten.baddbmm):
        a, b = (args[1], args[2]) if packet in (_aten.addmm, _aten.baddbmm) else args[:2]
        return 2.0 * _numel(a.shape) * b.shape[-1]
    if packet in (_aten.mv, _aten.dot, _aten.vdot):
        return 2.0 * _numel(args[0].shape)
    return None


class CostCounter(TorchDispatchMode):
    """Counts the flops and output bytes of every torch operation run while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0.0
        self.bytes = 0.0

    @property
    def cost(self) -> Cost:
        return Cost(self.flops, self.bytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        outs = [t for t in _tensors(out)]
        mm = _matmul_flops(func, args)
        if mm is not None:
            self.flops += mm
        else:
            sizes = [t.numel() for t in (*_tensors(args), *outs)]
            self.flops += float(max(sizes, default=0))
        self.bytes += float(sum(t.numel() * t.element_size() for t in outs))
        return out


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


def count(fn: Callable[[], Any]) -> tuple[Any, Cost]:
    """Run ``fn()`` (meant for meta tensors) under a :class:`CostCounter`: its value and cost."""
    with CostCounter() as counter:
        value = fn()
    return value, counter.cost


def meta_values(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors on the meta device (shape and dtype kept, no data)."""
    return {k: torch.empty(v.shape, dtype=v.dtype, device=META) for k, v in values.items()}


def matrix_product_cost(m: int, k: int, n: int) -> float:
    """Flops of an ``(m, k) @ (k, n)`` product: ``2 m k n``."""
    return 2.0 * m * k * n


def dense_linalg_flops(dim: int, batch: int = 1) -> float:
    """Rough flops of an eigen-decomposition or SVD of ``batch`` ``dim x dim`` matrices
    (``~25 D^3`` each for the non-symmetric eigenvalue problem)."""
    return 25.0 * batch * float(dim) ** 3


def svd_flops(m: int, n: int) -> float:
    """Rough flops of the singular values of an ``m x n`` matrix: ``4 m n min(m, n)``."""
    return 4.0 * m * n * min(m, n)
