"""Binding a spec for differentiation: the ``wrt`` values become autograd leaves, the loss is
compiled and checked, and :func:`_linearize` takes ``f`` and ``L`` at a fixed ``z*``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.errors import SpecError
from implicit_viz.core.expr import CompiledExpression, compile_expression, constant_key
from implicit_viz.core.gradients.meter import SavedTensorMeter
from implicit_viz.core.gradients.report import WrtInfo
from implicit_viz.core.spec import Spec

#: Built-in losses; anything else is an expression in the spec's language.
LOSSES = {
    "sum": "sum(z)",
    "l2": "0.5 * sum(square(z - target))",
}


def loss_expression(loss: str, spec: Spec) -> str:
    """The expression text of a loss: ``"sum"`` -> ``sum(z)``; ``"l2"`` ->
    ``0.5 * sum(square(z - target))`` (``0.5 * sum(square(z))`` when the spec has no tensor
    named ``target``); anything else is taken as an expression."""
    text = loss.strip()
    if text == "l2" and "target" not in {t.name for t in spec.tensors}:
        return "0.5 * sum(square(z))"
    return LOSSES.get(text, text)


@dataclass(frozen=True)
class _Bound:
    """A compiled map whose ``wrt`` values are leaves that require grad, and its loss."""

    fmap: FixedPointMap
    leaves: tuple[torch.Tensor, ...]
    wrt: tuple[WrtInfo, ...]
    loss_expr: CompiledExpression
    loss_consts: Mapping[str, torch.Tensor]

    @property
    def f(self):
        return self.fmap.as_batch_last()

    @property
    def size(self) -> int:
        return sum(w.size for w in self.wrt)

    def loss(self, z: torch.Tensor, fmap: FixedPointMap | None = None) -> torch.Tensor:
        """The loss at ``z: (D, B)`` batch-last -> ``(B,)``."""
        fm = fmap or self.fmap
        env: dict[str, Any] = {**fm._constants, **self.loss_consts, **fm.values, "z": z}
        for name, expr in fm._exprs:
            env[name] = expr(env)
        out = self.loss_expr(env)
        return out.expand(z.shape[-1]) if out.shape[-1] != z.shape[-1] else out

    def flat(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Per-leaf gradients (``(*shape, 1)`` or None) -> ``(N,)``."""
        parts = []
        for g, leaf in zip(grads, self.leaves, strict=True):
            g = torch.zeros_like(leaf) if g is None else g
            parts.append(g[..., 0].reshape(-1))
        return torch.cat(parts)

    def grad(
        self,
        out: torch.Tensor,
        *,
        grad_outputs: torch.Tensor | None = None,
        retain: bool = False,
    ) -> torch.Tensor:
        """``d out / d theta`` (with ``grad_outputs`` for a non-scalar ``out``) -> ``(N,)``."""
        if not out.requires_grad:
            return self.leaves[0].new_zeros(self.size)
        grads = torch.autograd.grad(
            out, self.leaves, grad_outputs=grad_outputs, retain_graph=retain, allow_unused=True
        )
        return self.flat(grads)

    def values_flat(self) -> torch.Tensor:
        """The current values of the ``wrt`` quantities, flat ``(N,)``."""
        return self.flat([v.detach() for v in self.leaves])


def _bind(spec: Spec, wrt: Sequence[str], loss_text: str, device: Any, dtype: Any) -> _Bound:
    """Compile ``spec`` and make each ``wrt`` value a leaf; check and compile the loss."""
    params = [p.name for p in spec.params]
    tensors = [t.name for t in spec.tensors]
    infos: list[WrtInfo] = []
    offset = 0
    for name in wrt:
        if name in params:
            shape: tuple[int, ...] = ()
            kind = "param"
        elif name in tensors:
            shape = spec.tensor(name).shape
            kind = "tensor"
        elif name.partition("[")[0].strip() in tensors:
            whole = name.partition("[")[0].strip()
            raise SpecError(
                f"'{name}' is one element of tensor {whole}: the lab differentiates with respect "
                f"to whole params and tensors, so name {whole} (its gradient holds every element)",
                field="wrt",
            )
        else:
            raise SpecError(
                f"no param or tensor named '{name}' to differentiate "
                f"(params: {', '.join(params) or 'none'}; tensors: {', '.join(tensors) or 'none'})",
                field="wrt",
            )
        infos.append(WrtInfo(name, kind, shape, offset))
        offset += math.prod(shape)

    fmap = compile_spec(spec, device=device, dtype=dtype)
    leaves = tuple(fmap.values[n].detach().clone().requires_grad_(True) for n in wrt)
    fm = replace(fmap, values={**fmap.values, **dict(zip(wrt, leaves, strict=True))})

    names = {"z", *params, *tensors, *(n for n, _ in spec.define)}
    expr = compile_expression(loss_text, names, field="loss")
    consts = {
        constant_key(c): torch.tensor([c], dtype=fm.dtype, device=fm.device) for c in expr.constants
    }
    bound = _Bound(fm, leaves, tuple(infos), expr, consts)
    z = fm.start(1).T.contiguous()
    try:
        with torch.no_grad():
            value = bound.loss(z)
    except SpecError as exc:
        raise exc.with_field("loss") from None
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise SpecError(f"evaluating the loss failed: {exc}", field="loss") from None
    if not isinstance(value, torch.Tensor) or value.ndim != 1:
        shape = tuple(value.shape[:-1]) if isinstance(value, torch.Tensor) else ()
        raise SpecError(
            f"the loss must be one number, but '{loss_text}' has shape {shape}; "
            "reduce it with sum(...), mean(...), norm(...) or dot(...)",
            field="loss",
        )
    return bound


@dataclass
class _Linearized:
    """``f`` and ``L`` at a fixed ``z*``: ``g = dL/dz*`` (D, 1), the direct ``dL/dtheta`` (N,),
    and the graph of ``f(z*)`` kept for vector-Jacobian products."""

    bound: _Bound
    zs: torch.Tensor
    fz: torch.Tensor
    g: torch.Tensor
    direct: torch.Tensor

    def vjp_z(self, u: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for ``u: (D, 1)``."""
        if not self.fz.requires_grad:
            return torch.zeros_like(u)
        (out,) = torch.autograd.grad(
            self.fz, self.zs, grad_outputs=u, retain_graph=True, allow_unused=True
        )
        return torch.zeros_like(u) if out is None else out

    def theta_grad(self, u: torch.Tensor) -> torch.Tensor:
        """``u^T df/dtheta + dL/dtheta|_direct`` -> ``(N,)``."""
        return self.bound.grad(self.fz, grad_outputs=u, retain=True) + self.direct


def _linearize(b: _Bound, z_star: torch.Tensor, meter: SavedTensorMeter) -> _Linearized:
    zs = z_star.detach().clone().requires_grad_(True)
    with meter.active():
        fz = b.f(zs)
    loss = b.loss(zs).sum()
    n = b.size
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, [zs, *b.leaves], allow_unused=True)
        g = torch.zeros_like(zs) if grads[0] is None else grads[0]
        direct = b.flat(grads[1:])
    else:
        g, direct = torch.zeros_like(zs), zs.new_zeros(n)
    return _Linearized(b, zs, fz, g.detach(), direct)
