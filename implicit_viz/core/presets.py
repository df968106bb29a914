"""The built-in presets: TOML spec files under ``assets/presets/``. Torch-free."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

#: Where presets live; ``IMPLICIT_VIZ_PRESETS`` adds a folder searched first.
PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "presets"


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
    """The file of preset ``key``, or None."""
    for d in _dirs():
        p = d / f"{key}.toml"
        if p.is_file():
            return p
    return None


def list_presets() -> list[PresetInfo]:
    """Title, description and dim of every preset (read from the TOML, without compiling)."""
    out = []
    for key in preset_names():
        path = preset_path(key)
        assert path is not None
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        out.append(
            PresetInfo(
                key=key,
                name=str(data.get("name", key)),
                description=str(data.get("description", "")),
                dim=int(data.get("dim", 0)),
                path=path,
            )
        )
    return out


DEFAULT_PRESET = "tanh_layer"
