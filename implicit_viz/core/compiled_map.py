"""A spec bound to values on one device and dtype: the batched map ``z -> f(x, z)``.

:func:`compile_spec` checks every expression, materialises the tensors (seeded draws are made in
float64 on the CPU, so every device sees the same numbers), evaluates the map once to catch shape
errors, and returns a :class:`FixedPointMap`.

Any param or tensor may carry its own value per batch row (:meth:`FixedPointMap.with_values`);
that is how parameter-grid sweeps evaluate a whole grid in one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from implicit_viz.core.batchops import take_cols
from implicit_viz.core.cost import META, Cost, count, meta_values, svd_flops
from implicit_viz.core.device import resolve_device, resolve_dtype
from implicit_viz.core.errors import SpecError
from implicit_viz.core.expr import CONSTANTS, CompiledExpression, compile_expression, constant_key
from implicit_viz.core.limits import (
    MAX_SPECTRAL_NORM_FLOPS,
    check_cost,
    check_flops,
    check_memory,
    itemsize,
)
from implicit_viz.core.spec import Spec, TensorSpec


def materialize_tensor(t: TensorSpec) -> torch.Tensor:
    """The values of a tensor spec: float64, CPU, shape ``t.shape``. Deterministic in the seed."""
    if t.data is not None:
        out = torch.tensor(t.data, dtype=torch.float64).reshape(t.shape)
    else:
        gen = torch.Generator().manual_seed(t.seed)
        if t.init == "normal":
            out = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        elif t.init == "uniform":
            out = torch.rand(t.shape, generator=gen, dtype=torch.float64) * 2 - 1
        elif t.init == "orthogonal":
            a = torch.randn(t.shape, generator=gen, dtype=torch.float64)
            tall = a if a.shape[0] >= a.shape[1] else a.T
            q, r = torch.linalg.qr(tall)
            q = q * torch.sign(torch.diagonal(r))
            out = q if a.shape[0] >= a.shape[1] else q.T
        elif t.init == "eye":
            out = torch.eye(*t.shape, dtype=torch.float64)
        elif t.init == "zeros":
            out = torch.zeros(t.shape, dtype=torch.float64)
        elif t.init == "ones":
            out = torch.ones(t.shape, dtype=torch.float64)
        else:  # pragma: no cover - spec validation rejects it
            raise SpecError(f"unknown init '{t.init}'", field=f"tensors.{t.name}")
        out = out * t.scale
        if t.spectral_norm is not None:
            norm = torch.linalg.matrix_norm(out, ord=2)
            if norm > 0:
                out = out * (t.spectral_norm / norm)
    for idx, val in t.set:
        out[idx] = val
    return out


@dataclass(frozen=True)
class FixedPointMap:
    """The map ``z -> f(x, z)`` of a spec, bound to values on one device and dtype.

    Call it batch-first, ``fmap(z)`` with ``z: (B, D)`` -> ``(B, D)``, or batch-last,
    ``fmap.batch_last(z)`` with ``z: (D, B)`` -> ``(D, B)`` (the solvers' internal layout).

    ``values`` maps every param and tensor name to a batch-last tensor ``(*shape, 1)`` (shared)
    or ``(*shape, B)`` (one value per row; then ``batch`` is ``B``).
    """

    spec: Spec
    device: torch.device
    dtype: torch.dtype
    values: Mapping[str, torch.Tensor]
    batch: int | None = None
    _exprs: tuple[tuple[str, CompiledExpression], ...] = field(default=(), repr=False)
    _f: CompiledExpression | None = field(default=None, repr=False)
    _constants: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: Cost of one evaluation of ``f`` for one sample (None: unknown).
    cost: Cost | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def batch_last(self, z: torch.Tensor) -> torch.Tensor:
        """Evaluate ``f`` on ``z: (D, B)``; returns ``(D, B)``."""
        env: dict[str, Any] = {**self._constants, **self.values, "z": z}
        for name, expr in self._exprs:
            env[name] = expr(env)
        out = self._f(env)  # type: ignore[misc]
        return self._fit(out, z.shape[-1])

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Evaluate ``f`` on ``z: (B, D)``; returns ``(B, D)``."""
        return self.batch_last(z.T).T

    def to_meta(self) -> FixedPointMap:
        """The same map on meta tensors (shapes only), for counting costs with
        :mod:`implicit_viz.core.cost`."""
        return replace(
            self,
            device=META,
            values=meta_values(dict(self.values)),
            _constants=meta_values(dict(self._constants)),
        )

    def as_batch_last(self) -> BatchLastView:
        """This map as the solvers see it: called on ``(D, B)``, sliced by ``take``."""
        return BatchLastView(self)

    def _fit(self, out: Any, batch: int) -> torch.Tensor:
        shape = tuple(out.shape[:-1])
        if shape == () and self.dim == 1:
            out = out.unsqueeze(0)
        elif shape != (self.dim,):
            raise SpecError(
                f"f returns a value of shape {shape or 'scalar'} but dim = {self.dim}; "
                f"it must return a vector of {self.dim} entries",
                field="f",
            )
        if out.shape[-1] != batch:
            out = out.expand(self.dim, batch)
        return out

    # per-row values -------------------------------------------------------------------------
    def with_values(self, **values: Any) -> FixedPointMap:
        """A copy with params/tensors replaced. A param takes a number or a ``(B,)`` tensor; a
        tensor of shape ``s`` takes an array of shape ``s`` or a ``(B, *s)`` batch (batch-first).
        """
        new = dict(self.values)
        batch = self.batch
        for name, value in values.items():
            if name not in new:
                raise SpecError(f"unknown param or tensor '{name}'")
            shape = tuple(new[name].shape[:-1])
            v = torch.as_tensor(value, dtype=self.dtype, device=self.device)
            if tuple(v.shape) == shape:
                v = v.unsqueeze(-1)
            elif v.ndim == len(shape) + 1 and tuple(v.shape[1:]) == shape:
                v = v.movedim(0, -1).contiguous()
                if batch is not None and v.shape[-1] != batch:
                    raise SpecError(f"'{name}' has {v.shape[-1]} rows, others have {batch}")
                batch = v.shape[-1]
            else:
                raise SpecError(
                    f"'{name}' needs shape {shape} or (B, *{shape}), got {tuple(v.shape)}"
                )
            new[name] = v
        return replace(self, values=new, batch=batch)

    def with_element(self, name: str, index: tuple[int, ...], rows: torch.Tensor) -> FixedPointMap:
        """A copy where element ``index`` of tensor ``name`` takes one value per row: ``rows (B,)``."""
        base = self.values[name]
        rows = torch.as_tensor(rows, dtype=self.dtype, device=self.device)
        b = rows.shape[0]
        if self.batch is not None and b != self.batch:
            raise SpecError(f"'{name}' gets {b} rows, others have {self.batch}")
        v = base.expand(*base.shape[:-1], b).clone()
        v[index] = rows
        new = dict(self.values)
        new[name] = v
        return replace(self, values=new, batch=b)

    def row_bytes(self) -> int:
        """Bytes one batch row brings to a computation that copies rows, such as the autograd
        Jacobian (which repeats every row ``D`` times): its own per-row values (a swept tensor
        is a whole copy per row) and the outputs of one evaluation of ``f`` (:attr:`cost`)."""
        per_row = 0
        if self.batch is not None and self.batch != 1:
            per_row = sum(
                v[..., 0].numel() for v in self.values.values() if v.shape[-1] == self.batch
            )
        own = int(self.cost.bytes) if self.cost is not None else 0
        return per_row * self.dtype.itemsize + own

    def take(self, index: torch.Tensor) -> FixedPointMap:
        """The rows ``index`` of every per-row value (shared values are kept)."""
        if self.batch is None:
            return self
        new = {
            k: (take_cols(v, index) if v.shape[-1] == self.batch and self.batch != 1 else v)
            for k, v in self.values.items()
        }
        return replace(self, values=new, batch=int(index.shape[0]))

    def start(self, batch: int = 1) -> torch.Tensor:
        """The spec's ``z0`` repeated: ``(batch, D)``."""
        z0 = torch.tensor(self.spec.start, dtype=self.dtype, device=self.device)
        return z0.expand(batch, self.dim).clone()


class BatchLastView:
    """A :class:`FixedPointMap` seen batch-last: ``view(z)`` with ``z: (D, B)``; ``take(index)``
    slices its per-row values. This is the map type solvers and Jacobians work with."""

    __slots__ = ("fmap",)

    def __init__(self, fmap: FixedPointMap) -> None:
        self.fmap = fmap

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fmap.batch_last(z)

    def take(self, index: torch.Tensor) -> BatchLastView:
        return BatchLastView(self.fmap.take(index))

    def row_bytes(self) -> int:
        return self.fmap.row_bytes()


def compile_spec(
    spec: Spec,
    *,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = "float64",
) -> FixedPointMap:
    """Compile a spec's expressions and bind its values on ``device`` in ``dtype``.

    Before anything is drawn or evaluated, :func:`check_spec` evaluates ``f`` on meta tensors
    (shapes only, no compute): shape errors surface there, and a map whose one evaluation per
    sample would cost over :data:`~implicit_viz.core.limits.MAX_EVAL_FLOPS`, or tensors over the
    memory budget, raise :class:`~implicit_viz.core.errors.LimitError`. Then the tensors are
    drawn and one trial evaluation at ``z0`` runs (NaN or inf values there are not an error).
    Raises :class:`SpecError` for any problem in the spec.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    exprs, f = _compile_expressions(spec)
    cost = _meta_check(spec, exprs, f, dt)
    check_tensor_memory(spec, dt)

    constants = _constants(exprs, f, dt, dev)
    values: dict[str, torch.Tensor] = {}
    for p in spec.params:
        values[p.name] = torch.tensor([p.value], dtype=dt, device=dev)
    for t in spec.tensors:
        values[t.name] = materialize_tensor(t).to(device=dev, dtype=dt).unsqueeze(-1)

    fmap = FixedPointMap(
        spec=spec,
        device=dev,
        dtype=dt,
        values=values,
        _exprs=tuple(exprs),
        _f=f,
        _constants=constants,
        cost=cost,
    )
    # One trial evaluation, batch of 2, to surface shape errors with their positions.
    z = fmap.start(2)
    try:
        with torch.no_grad():
            out = fmap(z)
    except SpecError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise SpecError(f"evaluating f failed: {exc}", field="f") from None
    if out.shape != z.shape:  # pragma: no cover - _fit guarantees it
        raise SpecError(f"f returned shape {tuple(out.shape)} for input {tuple(z.shape)}")
    return fmap


def check_spec(spec: Spec, *, dtype: str | torch.dtype | None = "float64") -> Cost | None:
    """Check a spec without drawing its tensors or computing anything: compile its expressions,
    evaluate ``f`` on meta tensors (shape errors raise :class:`SpecError` with their place), and
    check the cost of one evaluation and the tensors' memory (:class:`LimitError`).

    Returns the cost of one evaluation of ``f`` for one sample (None where an operation has no
    meta kernel, so the cost is unknown). Takes milliseconds whatever the sizes.
    """
    dt = resolve_dtype(dtype)
    exprs, f = _compile_expressions(spec)
    cost = _meta_check(spec, exprs, f, dt)
    check_tensor_memory(spec, dt)
    return cost


def _compile_expressions(
    spec: Spec,
) -> tuple[list[tuple[str, CompiledExpression]], CompiledExpression]:
    names = {"z"} | {p.name for p in spec.params} | {t.name for t in spec.tensors}
    exprs = []
    for dname, dtext in spec.define:
        exprs.append((dname, compile_expression(dtext, names, field=f"define.{dname}")))
        names.add(dname)
    return exprs, compile_expression(spec.f, names, field="f")


def _constants(
    exprs: list[tuple[str, CompiledExpression]],
    f: CompiledExpression,
    dt: torch.dtype,
    dev: torch.device,
) -> dict[str, torch.Tensor]:
    constants: dict[str, torch.Tensor] = {
        name: torch.tensor([value], dtype=dt, device=dev) for name, value in CONSTANTS.items()
    }
    for expr in [f, *(e for _, e in exprs)]:
        for c in expr.constants:
            constants[constant_key(c)] = torch.tensor([c], dtype=dt, device=dev)
    return constants


def _meta_check(
    spec: Spec,
    exprs: list[tuple[str, CompiledExpression]],
    f: CompiledExpression,
    dt: torch.dtype,
) -> Cost | None:
    """Evaluate ``f`` for one sample on meta tensors; check its cost; return it."""
    values = {p.name: torch.empty(1, dtype=dt, device=META) for p in spec.params}
    for t in spec.tensors:
        values[t.name] = torch.empty(*t.shape, 1, dtype=dt, device=META)
    consts = {k: torch.empty(1, dtype=dt, device=META) for k in _constants(exprs, f, dt, META)}
    fmap = FixedPointMap(
        spec=spec,
        device=META,
        dtype=dt,
        values=values,
        _exprs=tuple(exprs),
        _f=f,
        _constants=consts,
    )
    z = torch.empty(spec.dim, 1, dtype=dt, device=META)
    try:
        with torch.no_grad():
            _, cost = count(lambda: fmap.batch_last(z))
    except SpecError as exc:
        if _no_meta_kernel(exc):
            return None
        raise
    except NotImplementedError:
        return None  # an operation without a meta kernel: the trial evaluation will tell
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise SpecError(f"evaluating f failed: {exc}", field="f") from None
    check_flops(
        "one evaluation of f",
        cost.flops,
        field="f",
        hint="multiply matrices into vectors, right to left (W @ (W @ z), not (W @ W) @ z), "
        "or use smaller tensors",
    )
    check_memory(
        "one evaluation of f (2 samples)",
        2 * cost.bytes,
        field="f",
        hint="use smaller tensors or a smaller dim",
    )
    return cost


def _no_meta_kernel(exc: SpecError) -> bool:
    return "meta" in exc.message.lower() and "not implemented" in exc.message.lower()


def tensor_bytes(t: TensorSpec, dtype: torch.dtype) -> int:
    """Peak bytes of drawing tensor ``t``: float64 work arrays (three for an orthogonal draw or
    a spectral normalisation, two otherwise) plus its copy in ``dtype``."""
    work = 3 if (t.init == "orthogonal" or t.spectral_norm is not None) else 2
    return t.size * (8 * work + itemsize(dtype))


def check_tensor_memory(spec: Spec, dtype: torch.dtype) -> None:
    """:class:`LimitError` (field ``tensors.NAME``, the largest) when the spec's tensors would
    take more than the memory budget, or a spectral normalisation more than the compute limit."""
    if not spec.tensors:
        return
    total = sum(tensor_bytes(t, dtype) for t in spec.tensors)
    big = max(spec.tensors, key=lambda t: t.size)
    shape = " x ".join(str(n) for n in big.shape) or "scalar"
    check_memory(
        f"the spec's tensors (the largest, {big.name}, is {shape})",
        total,
        field=f"tensors.{big.name}",
        hint="use smaller tensors",
    )
    for t in spec.tensors:
        if t.spectral_norm is not None and len(t.shape) == 2:
            m, n = t.shape
            check_cost(
                f"the spectral norm of {t.name} ({m} x {n}, an SVD)",
                svd_flops(m, n),
                MAX_SPECTRAL_NORM_FLOPS,
                field=f"tensors.{t.name}",
                hint='for a large matrix use init = "orthogonal" with scale = the norm you '
                "want (an orthogonal matrix has spectral norm 1)",
            )
