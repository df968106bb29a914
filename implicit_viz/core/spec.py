"""TOML spec files -> frozen :class:`Spec` objects. Torch-free.

A spec names a map ``z -> f(x, z)`` for one sample, its size, its scalar parameters (with slider
ranges), its fixed tensors (literals or seeded draws) and solver defaults::

    name = "tanh equilibrium layer"
    dim = 2
    f = "tanh(a * (W @ z) + x)"
    z0 = [0.0, 0.0]
    [params]
    a = { value = 0.9, min = 0.0, max = 3.0 }
    [tensors]
    W = { shape = [2, 2], init = "normal", seed = 0, scale = 0.7 }
    x = [0.5, -0.3]
    [solver]
    tol = 1e-6
    max_iter = 200

Optional ``[define]`` holds named sub-expressions evaluated in order before ``f``
(``h = "W @ z + b"``). Every problem raises one :class:`SpecError` naming the field.
"""

from __future__ import annotations

import math
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from implicit_viz.core.errors import SpecError
from implicit_viz.core.expr import CONSTANTS, FUNCTIONS, parse_expression
from implicit_viz.core.limits import MAX_TOL

MAX_DIM = 65_536
MAX_TENSOR_SIZE = 50_000_000
MAX_ITER_LIMIT = 10_000_000
#: Longest cycle a solve looks for (the same range :class:`~implicit_viz.core.result.SolveOptions`
#: accepts).
MAX_PERIOD_LIMIT = 1024
#: Seeds of drawn tensors: what a torch generator takes, non-negative.
MAX_SEED = 2**63 - 1
#: Dimensions of a tensor (scalars, vectors and matrices).
MAX_TENSOR_DIMS = 2
#: Entries of [params], [tensors] and [define] each: every param is a slider in the app, and a
#: spec past a hundred of them is no longer one a person explores by hand.
MAX_ENTRIES = 100
TENSOR_INITS = ("normal", "uniform", "orthogonal", "eye", "zeros", "ones")
RESERVED = {"z", *CONSTANTS, *FUNCTIONS}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {
    "name",
    "description",
    "dim",
    "f",
    "z0",
    "params",
    "tensors",
    "define",
    "solver",
    "notes",
}


@dataclass(frozen=True)
class ParamSpec:
    """A scalar parameter: its value and the slider range ``[min, max]``."""

    name: str
    value: float
    min: float
    max: float
    description: str = ""

    def to_toml_value(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "min": self.min, "max": self.max}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class TensorSpec:
    """A fixed array: a literal (``data``, row-major) or a seeded draw (``init``).

    ``set`` holds element overrides ``((i, j), value)`` applied after the draw, so that one entry
    of a random matrix can be swept or pinned.
    """

    name: str
    shape: tuple[int, ...]
    data: tuple[float, ...] | None = None
    init: str | None = None
    seed: int = 0
    scale: float = 1.0
    spectral_norm: float | None = None
    set: tuple[tuple[tuple[int, ...], float], ...] = ()

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_random(self) -> bool:
        return self.init in ("normal", "uniform", "orthogonal")

    def to_toml_value(self) -> Any:
        if self.data is not None and not self.set:
            return _nest(list(self.data), self.shape)
        out: dict[str, Any] = {"shape": list(self.shape)}
        if self.data is not None:
            out["value"] = _nest(list(self.data), self.shape)
        else:
            out["init"] = self.init
            if self.is_random:
                out["seed"] = self.seed
            if self.scale != 1.0:
                out["scale"] = self.scale
            if self.spectral_norm is not None:
                out["spectral_norm"] = self.spectral_norm
        if self.set:
            out["set"] = [[*idx, val] for idx, val in self.set]
        return out


@dataclass(frozen=True)
class Spec:
    """A parsed, validated map spec. Immutable: overrides return a new spec."""

    name: str
    dim: int
    f: str
    description: str = ""
    z0: tuple[float, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    tensors: tuple[TensorSpec, ...] = ()
    define: tuple[tuple[str, str], ...] = ()
    solver: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""
    source: str | None = field(default=None, compare=False)
    path: str | None = field(default=None, compare=False)

    # lookups --------------------------------------------------------------------------------
    @property
    def param_values(self) -> dict[str, float]:
        return {p.name: p.value for p in self.params}

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise SpecError(f"no param named '{name}' (params: {_names(self.params)})")

    def tensor(self, name: str) -> TensorSpec:
        for t in self.tensors:
            if t.name == name:
                return t
        raise SpecError(f"no tensor named '{name}' (tensors: {_names(self.tensors)})")

    @property
    def start(self) -> tuple[float, ...]:
        """The start point, ``z0`` or zeros: length ``dim``."""
        return self.z0 if self.z0 else (0.0,) * self.dim

    # overrides ------------------------------------------------------------------------------
    def with_values(self, **values: float) -> Spec:
        """A copy with params set (each checked against its range)."""
        return self.with_overrides(values)

    def with_overrides(self, assignments: Mapping[str, Any]) -> Spec:
        """A copy with assignments applied. Keys are targets (see :func:`parse_target`):
        ``"a"`` (param), ``"x[0]"``/``"W[0,1]"`` (tensor element), ``"z0"``/``"z0[1]"`` (start),
        ``"W.seed"`` (seed of a drawn tensor). Values are numbers (lists for whole ``z0``/tensors).
        """
        spec = self
        for key, value in assignments.items():
            spec = spec._assign(key, value)
        return spec

    def _assign(self, key: str, value: Any) -> Spec:
        target = parse_target(key, self)
        fieldname = f"--set {key}"
        if target.kind == "param":
            p = self.param(target.name)
            v = _number(value, fieldname, text=True)
            if not p.min <= v <= p.max:
                raise SpecError(
                    f"value {v:.6g} for param '{p.name}' lies outside its range "
                    f"[{p.min:.6g}, {p.max:.6g}]",
                    field=f"params.{p.name}",
                )
            params = tuple(replace(q, value=v) if q.name == p.name else q for q in self.params)
            return replace(self, params=params)
        if target.kind == "z0":
            start = list(self.start)
            if target.index is None:
                vals = _float_list(value, fieldname, text=True)
                if len(vals) == 1:
                    vals = vals * self.dim
                if len(vals) != self.dim:
                    raise SpecError(f"z0 needs {self.dim} values, got {len(vals)}", field="z0")
                return replace(self, z0=tuple(vals))
            start[target.index[0]] = _number(value, fieldname, text=True)
            return replace(self, z0=tuple(start))
        t = self.tensor(target.name)
        if target.kind == "seed":
            if not t.is_random:
                raise SpecError(f"tensor '{t.name}' is not drawn at random: it has no seed")
            seed = _seed(value, fieldname, text=True)
            return self._replace_tensor(replace(t, seed=seed))
        if target.index is None:
            vals = _float_list(value, fieldname, text=True)
            if len(vals) == 1 and t.size != 1:
                vals = vals * t.size
            if len(vals) != t.size:
                raise SpecError(
                    f"tensor '{t.name}' has {t.size} entries, got {len(vals)} values",
                    field=f"tensors.{t.name}",
                )
            return self._replace_tensor(
                replace(t, data=tuple(vals), init=None, spectral_norm=None, set=())
            )
        v = _number(value, fieldname, text=True)
        if t.data is not None:
            data = list(t.data)
            data[_flat_index(target.index, t.shape)] = v
            return self._replace_tensor(replace(t, data=tuple(data)))
        sets = (*tuple(s for s in t.set if s[0] != target.index), (target.index, v))
        return self._replace_tensor(replace(t, set=sets))

    def _replace_tensor(self, new: TensorSpec) -> Spec:
        tensors = tuple(new if t.name == new.name else t for t in self.tensors)
        return replace(self, tensors=tensors)

    # serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict that :func:`spec_from_dict` turns back into an equal spec."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["dim"] = self.dim
        out["f"] = self.f
        if self.z0:
            out["z0"] = list(self.z0)
        if self.notes:
            out["notes"] = self.notes
        if self.define:
            out["define"] = dict(self.define)
        if self.params:
            out["params"] = {p.name: p.to_toml_value() for p in self.params}
        if self.tensors:
            out["tensors"] = {t.name: t.to_toml_value() for t in self.tensors}
        if self.solver:
            out["solver"] = _plain(self.solver)
        return out

    def to_toml(self) -> str:
        """TOML text of this spec (as :meth:`to_dict`)."""
        return dump_toml(self.to_dict())


@dataclass(frozen=True)
class Target:
    """Something a value can be assigned to: a param, a tensor element, ``z0`` or a seed."""

    kind: str  # "param" | "tensor" | "z0" | "seed"
    name: str
    index: tuple[int, ...] | None = None

    def __str__(self) -> str:
        if self.kind == "seed":
            return f"{self.name}.seed"
        if self.index is None:
            return self.name
        return f"{self.name}[{','.join(str(i) for i in self.index)}]"


_TARGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[([^\]]*)\]|\.(seed))?\s*$")


def parse_target(text: str, spec: Spec) -> Target:
    """Parse ``"a"``, ``"x[0]"``, ``"W[0, 1]"``, ``"z0[1]"``, ``"z0"`` or ``"W.seed"`` against a spec."""
    m = _TARGET.match(text)
    if not m:
        raise SpecError(
            f"cannot read '{_clip(text)}' as a target such as a, x[0], W[0,1], z0[1], W.seed"
        )
    name, idx_text, seed = m.group(1), m.group(2), m.group(3)
    index: tuple[int, ...] | None = None
    if idx_text is not None:
        try:
            index = tuple(int(s) for s in idx_text.split(","))
        except ValueError:
            raise SpecError(
                f"index in '{_clip(text)}' must be integers such as [0] or [0,1]"
            ) from None
    if name == "z0":
        if seed:
            raise SpecError("z0 has no seed")
        if index is not None:
            if len(index) != 1 or not -spec.dim <= index[0] < spec.dim:
                raise SpecError(f"z0 index {_clip(idx_text)} out of range for dim {spec.dim}")
            index = (index[0] % spec.dim,)
        return Target("z0", "z0", index)
    pnames = {p.name for p in spec.params}
    if name in pnames:
        if index is not None or seed:
            raise SpecError(f"param '{name}' is a scalar: write {name}=VALUE")
        return Target("param", name)
    tnames = {t.name: t for t in spec.tensors}
    if name in tnames:
        t = tnames[name]
        if seed:
            return Target("seed", name)
        if index is not None:
            if len(index) != len(t.shape) or not all(-s <= i < s for i, s in zip(index, t.shape)):
                raise SpecError(
                    f"index [{_clip(idx_text)}] does not fit tensor '{name}' of shape {t.shape}"
                )
            index = tuple(i % s for i, s in zip(index, t.shape))
        return Target("tensor", name, index)
    known = sorted(pnames | set(tnames) | {"z0"})
    raise SpecError(f"unknown target '{name}' (known: {', '.join(known)})")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_spec(text: str, *, path: str | None = None) -> Spec:
    """Parse TOML text into a validated :class:`Spec`. Raises :class:`SpecError`."""
    if not isinstance(text, str):
        raise SpecError("spec text must be a string", field="toml")
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise SpecError(
            "invalid TOML: arrays or tables are nested too deeply", field="toml"
        ) from None
    except ValueError as exc:  # tomllib's int() of a number with thousands of digits
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise _toml_error(exc, text) from None
        raise SpecError(f"invalid TOML: {_clip(str(exc), 120)}", field="toml") from None
    spec = spec_from_dict(data)
    return replace(spec, source=text, path=path)


def _toml_error(exc: tomllib.TOMLDecodeError, text: str) -> SpecError:
    """A TOML syntax error as a :class:`SpecError` with its line and column."""
    msg = str(exc)
    m = _TOML_POS.search(msg)
    line = int(m.group(1)) if m else None
    col = int(m.group(2)) if m else None
    if m is None and "end of document" in msg:
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
    msg = _TOML_POS.sub("", msg).replace("(at end of document)", "at the end").strip()
    return SpecError(f"invalid TOML: {msg}", field="toml", line=line, column=col, source=text)


def spec_from_dict(data: Mapping[str, Any]) -> Spec:
    """Validate a dict (as read from TOML) into a :class:`Spec`."""
    if not isinstance(data, Mapping):
        raise SpecError("a spec must be a table of keys")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SpecError(
            f"unknown key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(sorted(_TOP_KEYS))}"
        )
    for key in ("dim", "f"):
        if key not in data:
            raise SpecError(f"missing required key '{key}'", field=key)
    name = _string(data.get("name", "untitled"), "name")
    description = _string(data.get("description", ""), "description")
    notes = _string(data.get("notes", ""), "notes")
    dim = _int(data["dim"], "dim")
    if not 1 <= dim <= MAX_DIM:
        raise SpecError(f"dim must lie in 1..{MAX_DIM}, got {_show(dim)}", field="dim")
    f = data["f"]
    if not isinstance(f, str):
        raise SpecError("f must be a string holding an expression", field="f")

    z0: tuple[float, ...] = ()
    if "z0" in data:
        vals = _float_list(data["z0"], "z0")
        if len(vals) == 1 and dim != 1:
            vals = vals * dim
        if len(vals) != dim:
            raise SpecError(f"z0 has {len(vals)} values but dim = {dim}", field="z0")
        z0 = tuple(vals)

    tables = {key: _table(data.get(key, {}), key) for key in ("params", "tensors", "define")}
    for key, table in tables.items():
        if len(table) > MAX_ENTRIES:
            raise SpecError(
                f"[{key}] has {len(table):,} entries; the limit is {MAX_ENTRIES}", field=key
            )
    params = tuple(_param(name, value) for name, value in tables["params"].items())
    tensors = tuple(_tensor(name, value) for name, value in tables["tensors"].items())
    defines = []
    for dname, dexpr in tables["define"].items():
        if not isinstance(dexpr, str):
            raise SpecError(
                "a definition must be a string holding an expression", field=f"define.{dname}"
            )
        defines.append((dname, dexpr))
    solver = _table(data.get("solver", {}), "solver")
    _check_solver_section(solver)

    # names: unique, not reserved
    seen: dict[str, str] = {}
    for kind, names in (
        ("params", [p.name for p in params]),
        ("tensors", [t.name for t in tensors]),
        ("define", [d for d, _ in defines]),
    ):
        for n in names:
            if not _IDENT.match(n):
                raise SpecError(f"'{n}' is not a valid name", field=f"{kind}.{n}")
            if n in RESERVED:
                raise SpecError(
                    f"'{n}' is a reserved name (z, pi, e and function names)", field=f"{kind}.{n}"
                )
            if n in seen:
                raise SpecError(
                    f"'{n}' is defined in both [{seen[n]}] and [{kind}]", field=f"{kind}.{n}"
                )
            seen[n] = kind

    # expressions: syntax and names (shapes are checked when the spec is compiled)
    known = {"z"} | {p.name for p in params} | {t.name for t in tensors}
    for dname, dexpr in defines:
        parse_expression(dexpr, known, field=f"define.{dname}")
        known.add(dname)
    parse_expression(f, known, field="f")

    return Spec(
        name=name,
        description=description,
        dim=dim,
        f=f,
        z0=z0,
        params=params,
        tensors=tensors,
        define=tuple(defines),
        solver=solver,
        notes=notes,
    )


def load_spec(source: str | Path) -> Spec:
    """Load a spec from a file path or a built-in preset name.

    Files are read through :func:`~implicit_viz.core.files.read_text_limited` (at most
    :data:`~implicit_viz.core.limits.MAX_INPUT_FILE_BYTES`, the GUI's cap too): a device, a FIFO or
    a folder is refused at once rather than read without end. Raises :class:`SpecError` for a
    missing, unreadable or oversized file, an unknown preset or a bad spec.
    """
    from implicit_viz.core.presets import preset_names, preset_path

    p = Path(source)
    if p.suffix == ".toml" or _exists(p):
        return parse_spec(_read_spec_file(p), path=str(p))
    name = str(source)
    path = preset_path(name)
    if path is None:
        raise SpecError(
            f"'{_clip(name)}' is neither a spec file nor a preset; "
            f"presets: {', '.join(preset_names())}"
        )
    return parse_spec(_read_spec_file(path), path=str(path))


def _exists(p: Path) -> bool:
    """Whether anything is at ``p`` (a name too long or otherwise unusable is nothing)."""
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def _read_spec_file(p: Path) -> str:
    from implicit_viz.core.files import FileReadError, read_text_limited
    from implicit_viz.core.limits import MAX_INPUT_FILE_BYTES

    try:
        return read_text_limited(p, MAX_INPUT_FILE_BYTES, "spec file")
    except FileReadError as exc:
        name = str(p.expanduser())
        short = name if len(name) <= 120 else f"{name[:60]}...{name[-57:]}"
        raise SpecError(str(exc).replace(name, short)) from None


# --------------------------------------------------------------------------------------------
# Field validators
# --------------------------------------------------------------------------------------------


def _names(items: Sequence[Any]) -> str:
    return ", ".join(i.name for i in items) or "none"


def _table(value: Any, fieldname: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"[{fieldname}] must be a table", field=fieldname)
    return dict(value)


def _string(value: Any, fieldname: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{fieldname} must be a string", field=fieldname)
    return value


def _show(n: float) -> str:
    """A number for a message: ``12``, ``0.5``, and huge ones compactly (``1e+300``, not 301
    digits); a boolean as TOML writes it."""
    if isinstance(n, bool):
        return "true" if n else "false"
    if isinstance(n, int):
        return str(n) if abs(n) < 10**15 else f"{float(n):.3g}" if abs(n) < 10**308 else "huge"
    if isinstance(n, float):
        return f"{n:.6g}"
    return _clip(repr(n))


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters for a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any, fieldname: str, *, text: bool = False) -> float:
    """A finite float. ``text=True`` (``--set``) also reads a number from a string; in a spec
    file a string is refused (``tol = "1e-6"`` is a string, not a number)."""
    if isinstance(value, str) and text:
        try:
            value = float(value)
        except ValueError:
            raise SpecError(f"'{_clip(value)}' is not a number", field=fieldname) from None
    if isinstance(value, str):
        raise SpecError(
            f"'{_clip(value)}' is text, not a number (write numbers without quotes)",
            field=fieldname,
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"expected a number, got {_show(value)}", field=fieldname)
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        raise SpecError(f"expected a finite number, got {_show(value)}", field=fieldname)
    return v


def _int(value: Any, fieldname: str, *, text: bool = False) -> int:
    """An integer (a float with no fraction counts). ``text`` as for :func:`_number`."""
    if isinstance(value, str) and text:
        try:
            value = int(value.strip())
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise SpecError(f"'{_clip(value)}' is not an integer", field=fieldname) from None
    if isinstance(value, str):
        raise SpecError(
            f"'{_clip(value)}' is text, not an integer (write numbers without quotes)",
            field=fieldname,
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer, got {_show(value)}", field=fieldname)
    return value


def _seed(value: Any, fieldname: str, *, text: bool = False) -> int:
    """A seed for a torch generator: an integer in ``0..MAX_SEED``."""
    seed = _labelled(_int, value, fieldname, "seed", text=text)
    if not 0 <= seed <= MAX_SEED:
        raise SpecError(f"seed must be an integer in 0..2^63-1, got {_show(seed)}", field=fieldname)
    return seed


def _labelled(read: Any, value: Any, fieldname: str, label: str, **kw: Any) -> Any:
    """``read(value, fieldname)`` with ``label`` (a key of the field) put before its message."""
    try:
        return read(value, fieldname, **kw)
    except SpecError as exc:
        raise SpecError(f"{label}: {exc.message}", field=exc.field) from None


def _float_list(value: Any, fieldname: str, *, text: bool = False) -> list[float]:
    if isinstance(value, str) and text:
        body = value.strip().strip("[]")
        parts = [s for s in re.split(r"[,\s]+", body) if s]
        return [_number(s, fieldname, text=True) for s in parts]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [_number(value, fieldname)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_number(v, fieldname, text=text) for v in value]
    raise SpecError(
        f"expected a number or a list of numbers, got {_clip(repr(value))}", field=fieldname
    )


def _param(name: str, value: Any) -> ParamSpec:
    fieldname = f"params.{name}"
    description = ""
    if isinstance(value, Mapping):
        unknown = set(value) - {"value", "min", "max", "description"}
        if unknown:
            raise SpecError(f"unknown key(s) {', '.join(sorted(unknown))}", field=fieldname)
        if "value" not in value:
            raise SpecError("a param needs a value", field=fieldname)
        v = _number(value["value"], fieldname)
        lo = _number(value["min"], fieldname) if "min" in value else None
        hi = _number(value["max"], fieldname) if "max" in value else None
        description = _string(value.get("description", ""), fieldname)
    else:
        v = _number(value, fieldname)
        lo = hi = None
    # the automatic range [min(0, 2v), max(0, 2v)] stays finite for |v| near the float limit
    big = sys.float_info.max
    if lo is None:
        lo = max(min(0.0, 2 * v), -big) if v != 0 else -1.0
    if hi is None:
        hi = min(max(0.0, 2 * v), big) if v != 0 else 1.0
    if not lo < hi:
        raise SpecError(
            f"range [{lo:.6g}, {hi:.6g}] is empty: min must be below max", field=fieldname
        )
    if not lo <= v <= hi:
        raise SpecError(
            f"value {v:.6g} lies outside its range [{lo:.6g}, {hi:.6g}]", field=fieldname
        )
    return ParamSpec(name=name, value=v, min=lo, max=hi, description=description)


def _shape_of_nested(
    value: Any, fieldname: str, depth: int = 0
) -> tuple[tuple[int, ...], list[float]]:
    """The shape and row-major entries of a nested list of numbers (at most
    :data:`MAX_TENSOR_DIMS` deep)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (), [_number(value, fieldname)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        if depth >= MAX_TENSOR_DIMS:
            raise SpecError(
                f"arrays nest at most {MAX_TENSOR_DIMS} deep (a scalar, a vector or a matrix)",
                field=fieldname,
            )
        if not value:
            raise SpecError("empty array", field=fieldname)
        parts = [_shape_of_nested(v, fieldname, depth + 1) for v in value]
        shapes = {s for s, _ in parts}
        if len(shapes) != 1:
            raise SpecError("ragged array: rows of different lengths", field=fieldname)
        flat = [x for _, vals in parts for x in vals]
        return (len(value), *parts[0][0]), flat
    raise SpecError(f"expected numbers, got {_clip(repr(value))}", field=fieldname)


def _shape(raw: Any, fieldname: str) -> tuple[int, ...]:
    """``shape = [2, 3]`` (or ``shape = 2``): 1 or 2 positive sizes."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise SpecError(
            f"shape must be a list of integers (1 or 2 sizes), got {_clip(repr(raw))}",
            field=fieldname,
        )
    shape = tuple(_int(s, fieldname) for s in raw)
    if not 1 <= len(shape) <= MAX_TENSOR_DIMS or any(s < 1 for s in shape):
        shown = ", ".join(_show(s) for s in shape)
        raise SpecError(f"shape must be 1 or 2 positive sizes, got [{shown}]", field=fieldname)
    return shape


def _tensor(name: str, value: Any) -> TensorSpec:
    fieldname = f"tensors.{name}"
    if not isinstance(value, Mapping):
        shape, data = _shape_of_nested(value, fieldname)
        return _check_size(TensorSpec(name=name, shape=shape, data=tuple(data)))
    unknown = set(value) - {"shape", "value", "init", "seed", "scale", "spectral_norm", "set"}
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(sorted(unknown))}", field=fieldname)
    if "value" in value:
        shape, data = _shape_of_nested(value["value"], fieldname)
        if "shape" in value:
            declared = _shape(value["shape"], fieldname)
            if declared != shape:
                raise SpecError(
                    f"value has shape {list(shape)}, not the declared {list(declared)}",
                    field=fieldname,
                )
        t = TensorSpec(name=name, shape=shape, data=tuple(data))
    else:
        t = _drawn_tensor(name, value, fieldname)
    _check_size(t)
    return replace(t, set=_element_sets(value.get("set", []), t, fieldname))


def _drawn_tensor(name: str, value: Mapping[str, Any], fieldname: str) -> TensorSpec:
    if "shape" not in value:
        raise SpecError("a drawn tensor needs a shape", field=fieldname)
    shape = _shape(value["shape"], fieldname)
    init = _string(value.get("init", "normal"), fieldname)
    if init not in TENSOR_INITS:
        raise SpecError(
            f"unknown init '{_clip(init)}'; choose one of {', '.join(TENSOR_INITS)}",
            field=fieldname,
        )
    if init in ("orthogonal", "eye") and len(shape) != 2:
        raise SpecError(f"init '{init}' needs a 2-D shape", field=fieldname)
    seed = _seed(value.get("seed", 0), fieldname)
    scale = _number(value.get("scale", 1.0), fieldname)
    sn = value.get("spectral_norm")
    spectral_norm = None if sn is None else _labelled(_number, sn, fieldname, "spectral_norm")
    if spectral_norm is not None:
        if len(shape) != 2:
            raise SpecError("spectral_norm needs a 2-D shape", field=fieldname)
        if not spectral_norm > 0:
            raise SpecError(
                f"spectral_norm must be positive, got {_show(spectral_norm)}",
                field=fieldname,
            )
        if init == "zeros" or scale == 0:
            raise SpecError(
                "spectral_norm cannot rescale a matrix of zeros (init 'zeros' or scale 0)",
                field=fieldname,
            )
    return TensorSpec(
        name=name, shape=shape, init=init, seed=seed, scale=scale, spectral_norm=spectral_norm
    )


def _check_size(t: TensorSpec) -> TensorSpec:
    if t.size > MAX_TENSOR_SIZE:
        raise SpecError(
            f"tensor has {_show(t.size)} entries; the limit is {MAX_TENSOR_SIZE:,}",
            field=f"tensors.{t.name}",
        )
    return t


def _element_sets(
    raw: Any, t: TensorSpec, fieldname: str
) -> tuple[tuple[tuple[int, ...], float], ...]:
    """``set = [[i, (j,) value], ...]``: element overrides applied after the draw."""
    form = f"'set' is a list of [index..., value] entries with {len(t.shape)} indices"
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise SpecError(f"{form}, got {_clip(repr(raw))}", field=fieldname)
    sets = []
    for item in raw:
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != len(t.shape) + 1:
            raise SpecError(f"{form}, got {_clip(repr(item))}", field=fieldname)
        idx = tuple(_int(i, fieldname) for i in item[:-1])
        if not all(0 <= i < s for i, s in zip(idx, t.shape)):
            shown = ", ".join(_show(i) for i in idx)
            raise SpecError(
                f"set index [{shown}] out of range for shape {list(t.shape)}", field=fieldname
            )
        sets.append((idx, _number(item[-1], fieldname)))
    return tuple(sets)


_SOLVER_NUMBERS = ("tol", "rtol", "div_bound", "period_tol")
#: Integer settings and their ranges (those :class:`~implicit_viz.core.result.SolveOptions` takes).
_SOLVER_INTS = {"max_iter": (1, MAX_ITER_LIMIT), "max_period": (2, MAX_PERIOD_LIMIT)}


def _check_solver_section(solver: Mapping[str, Any]) -> None:
    for key, val in solver.items():
        fieldname = f"solver.{key}"
        if key in _SOLVER_NUMBERS:
            v = _number(val, fieldname)
            if key == "rtol" and v < 0:
                raise SpecError(f"rtol must be non-negative, got {_show(v)}", field=fieldname)
            if key != "rtol" and not v > 0:
                raise SpecError(f"{key} must be positive, got {_show(v)}", field=fieldname)
            if key != "div_bound" and v > MAX_TOL:
                raise SpecError(
                    f"{key} must be at most {MAX_TOL:g}, got {_show(v)}", field=fieldname
                )
        elif key in _SOLVER_INTS:
            lo, hi = _SOLVER_INTS[key]
            n = _int(val, fieldname)
            if not lo <= n <= hi:
                raise SpecError(f"{key} must lie in {lo}..{hi:,}, got {_show(n)}", field=fieldname)
        elif key == "solvers":
            if (
                not isinstance(val, Sequence)
                or isinstance(val, str)
                or not all(isinstance(s, str) for s in val)
            ):
                raise SpecError("solvers must be a list of solver names", field=fieldname)
        elif isinstance(val, Mapping):
            pass  # per-solver options, checked by the solver registry
        else:
            raise SpecError(
                f"unknown solver setting '{_clip(key)}' (tol, rtol, max_iter, div_bound, "
                "period_tol, max_period, solvers, or a [solver.NAME] table)",
                field=fieldname,
            )


def _flat_index(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    flat = 0
    for i, s in zip(index, shape):
        flat = flat * s + i
    return flat


def _nest(flat: list[float], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# A small TOML writer (tomllib only reads): enough for specs and sessions.
# --------------------------------------------------------------------------------------------


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if "\n" in value:
            return '"""\n' + value.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_scalar(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if _IDENT.match(key) else _toml_scalar(key)


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write a dict of scalars, lists and (one level of) tables as TOML text."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_scalar(value)}")
    for key, table in tables:
        lines.append("")
        lines.append(f"[{_toml_key(key)}]")
        subtables = []
        for k, v in table.items():
            if isinstance(v, Mapping) and key == "solver":
                subtables.append((k, v))
            else:
                lines.append(f"{_toml_key(k)} = {_toml_scalar(v)}")
        for k, v in subtables:
            lines.append("")
            lines.append(f"[{_toml_key(key)}.{_toml_key(k)}]")
            for kk, vv in v.items():
                lines.append(f"{_toml_key(kk)} = {_toml_scalar(vv)}")
    return "\n".join(lines) + "\n"
