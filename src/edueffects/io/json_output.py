"""Results as strict JSON: NaN and infinities become null, numpy scalars plain numbers."""

from __future__ import annotations

import json
import math


def json_safe(value: object) -> object:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalar
        return json_safe(item())
    return value


def dumps(payload: object) -> str:
    return json.dumps(json_safe(payload), indent=2, allow_nan=False)
