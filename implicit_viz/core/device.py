"""Device and dtype names -> torch objects, with clear errors for what is not there."""

from __future__ import annotations

from typing import Literal

import torch

DTypeName = Literal["float32", "float64"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``/``"float64"`` (or a torch dtype) -> torch dtype; default float64."""
    if dtype is None:
        return torch.float64
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype} is not supported; use float32 or float64")
        return dtype
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"unknown dtype '{dtype}'; use float32 or float64") from None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` -> a device that exists here."""
    if device is None or device == "cpu":
        return torch.device("cpu")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{device}'; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' is not available: this torch sees no CUDA GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device '{device}' is not available: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device '{device}'; use cpu, cuda, cuda:N, mps or auto")
    return dev


def available_devices() -> list[str]:
    """Devices usable here, for the GUI's combo box and the CLI's help: ``["cpu", "cuda", ...]``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
        out.extend(f"cuda:{i}" for i in range(1, torch.cuda.device_count()))
    if _mps_available():
        out.append("mps")
    return out


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
