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


def ci_parts(mean: Any, low: Any, high: Any) -> tuple[str, str | None]:
    """("mean", "[low, high]") in one notation, so the three numbers line up; None: no interval."""
    if is_missing(mean):
        return "–", None
    if is_missing(low) or is_missing(high):
        return num(mean), None
    if 0 < abs(float(mean)) < 1e-3:
        return f"{float(mean):.2e}", f"[{float(low):.2e}, {float(high):.2e}]"
    return num(mean), f"[{num(low)}, {num(high)}]"


def ci(mean: Any, low: Any, high: Any) -> str:
    m, interval = ci_parts(mean, low, high)
    return m if interval is None else f"{m} {interval}"


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
