"""Plain data to strict JSON: non-finite floats become null. Torch-free."""

from __future__ import annotations

import math
from typing import Any


def json_safe(v: Any) -> Any:
    """``v`` with non-finite floats replaced by None, through dicts, lists and tuples."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v
