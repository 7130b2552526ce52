"""Number formatting shared by the terminal table, the HTML report and verdicts."""

from __future__ import annotations

import math
from typing import Any


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def num(v: Any) -> str:
    """A metric value with about four significant digits; an en dash when missing."""
    if is_missing(v):
        return "–"
    v = float(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    if a >= 0.001:
        return f"{v:.4f}"
    return f"{v:.2e}"


def ci(mean: Any, low: Any, high: Any) -> str:
    if is_missing(mean):
        return "–"
    if is_missing(low) or is_missing(high):
        return num(mean)
    return f"{num(mean)} [{num(low)}, {num(high)}]"


def nbytes(v: Any) -> str:
    if is_missing(v):
        return "–"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


def seconds(v: Any) -> str:
    if is_missing(v):
        return "–"
    v = float(v)
    if v >= 1:
        return f"{v:.2f} s"
    if v >= 1e-3:
        return f"{v * 1e3:.1f} ms"
    return f"{v * 1e6:.0f} µs"
