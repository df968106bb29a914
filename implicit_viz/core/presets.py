"""The built-in presets: TOML spec files under ``assets/presets/``. Torch-free."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

#: Where presets live; ``IMPLICIT_VIZ_PRESETS`` adds a folder searched first.
PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "presets"
#: What a preset key may look like: a file name without folders (``deq_cell``, ``my-map.v2``).
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class PresetInfo:
    """A preset's file name (without ``.toml``), title, description and dim."""

    key: str
    name: str
    description: str
    dim: int
    path: Path


def _dirs() -> list[Path]:
    extra = os.environ.get("IMPLICIT_VIZ_PRESETS")
    dirs = [Path(extra)] if extra else []
    return [*dirs, PRESET_DIR]


def preset_names() -> list[str]:
    """Sorted preset keys, e.g. ``["cosine", "deq_cell", ...]``."""
    names: set[str] = set()
    for d in _dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def preset_path(key: str) -> Path | None:
    """The file of preset ``key``, or None (also for a key that is no plain file name)."""
    if not isinstance(key, str) or not _KEY.match(key) or ".." in key:
        return None
    for d in _dirs():
        p = d / f"{key}.toml"
        try:
            if p.is_file():
                return p
        except OSError:
            continue
    return None


def list_presets() -> list[PresetInfo]:
    """Title, description and dim of every preset (read from the TOML, without compiling)."""
    from implicit_viz.core.files import read_text_limited

    out = []
    for key in preset_names():
        path = preset_path(key)
        if path is None:
            continue
        try:
            data = tomllib.loads(read_text_limited(path, what="preset"))
        except (OSError, tomllib.TOMLDecodeError, RecursionError):
            continue  # a broken file in IMPLICIT_VIZ_PRESETS: skipped, not fatal to the list
        dim = data.get("dim", 0)
        out.append(
            PresetInfo(
                key=key,
                name=str(data.get("name", key)),
                description=str(data.get("description", "")),
                dim=dim if isinstance(dim, int) and not isinstance(dim, bool) else 0,
                path=path,
            )
        )
    return out


DEFAULT_PRESET = "tanh_layer"
