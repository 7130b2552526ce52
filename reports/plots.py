"""Static charts for the HTML report, as PNG data URIs.

Figures are drawn with matplotlib's object API on an explicit Agg canvas (never pyplot), so
building a report neither needs a display nor touches the caller's pyplot state or backend.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from magbench.reports import fmt

CONTENDER_COLORS = ["#2563eb", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563"]
FLOOR_COLORS = ["#9ca3af", "#6b7280", "#4b5563", "#d1d5db"]
CEILING_COLOR = "#059669"
TEXT = "#1f2937"
GRID = "#e5e7eb"
DPI = 144


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str
    hatch: str | None
    kind: str


def styles_for(rows: Sequence[tuple[str, str]]) -> dict[str, Style]:
    """A fixed style per (label, kind): contenders in colour, floors grey and dashed, the ceiling
    green and dotted, so sanity methods read as reference lines in every chart."""
    out: dict[str, Style] = {}
    n_method = n_floor = 0
    for label, kind in rows:
        if label in out:
            continue
        if kind == "floor":
            out[label] = Style(FLOOR_COLORS[n_floor % len(FLOOR_COLORS)], "--", "//", kind)
            n_floor += 1
        elif kind == "ceiling":
            out[label] = Style(CEILING_COLOR, ":", "..", kind)
        else:
            out[label] = Style(CONTENDER_COLORS[n_method % len(CONTENDER_COLORS)], "-", None, kind)
            n_method += 1
    return out


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _style_axes(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9ca3af")
    ax.tick_params(colors=TEXT, labelsize=8)
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.xaxis.label.set_color(TEXT)
    ax.yaxis.label.set_color(TEXT)


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def direction(hib: bool | None) -> str:
    return {True: "higher is better", False: "lower is better"}.get(hib, "")


def bar_chart(
    labels: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    key: str,
    hib: bool | None,
    styles: dict[str, Style],
) -> str:
    """Horizontal bars (one per row) with 95% CI error bars."""
    n = len(labels)
    fig = _figure(4.6, 0.42 * n + 0.9)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    m = np.array([np.nan if fmt.is_missing(v) else v for v in means], dtype=float)
    lo = np.array([np.nan if fmt.is_missing(v) else v for v in lows], dtype=float)
    hi = np.array([np.nan if fmt.is_missing(v) else v for v in highs], dtype=float)
    for yi, label, mi in zip(y, labels, m):
        st = styles[label]
        ax.barh(yi, 0 if np.isnan(mi) else mi, color=st.color, alpha=0.85 if st.kind == "method" else 0.55,
                hatch=st.hatch, edgecolor="white", height=0.62)
    has_ci = ~np.isnan(lo) & ~np.isnan(hi) & ~np.isnan(m)
    if has_ci.any():
        err = np.vstack([m - lo, hi - m])[:, has_ci]
        ax.errorbar(m[has_ci], y[has_ci], xerr=np.clip(err, 0, None), fmt="none", ecolor=TEXT, elinewidth=1.1, capsize=3)
    for yi, mi, h in zip(y, m, hi):
        if not np.isnan(mi):
            end = mi if np.isnan(h) else max(mi, h)
            ax.annotate(fmt.num(mi), (end, yi), xytext=(5, 0), textcoords="offset points", va="center",
                        fontsize=7.5, color=TEXT)
    ax.margins(x=0.18)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    if np.nanmin(np.r_[m, 0.0]) >= 0:
        ax.set_xlim(left=0)
    ax.set_yticks(y, labels, fontsize=8.5)
    ax.set_title(f"{key}  ({direction(hib)})" if hib is not None else key, fontsize=10, loc="left", color=TEXT)
    _style_axes(ax)
    ax.grid(False, axis="y")
    fig.tight_layout()
    return to_data_uri(fig)


def speed_quality(
    labels: Sequence[str],
    fps: Sequence[float],
    quality: Sequence[tuple[float, float, float]],
    sizes_bytes: Sequence[float],
    size_label: str,
    key: str,
    hib: bool | None,
    styles: dict[str, Style],
    speed_label: str = "end-to-end FPS",
) -> str | None:
    """Quality (``key``, with CI) against FPS (``speed_label`` says which); marker area grows
    with ``sizes_bytes``."""
    pts = [(l, f, q, s) for l, f, q, s in zip(labels, fps, quality, sizes_bytes)
           if not (fmt.is_missing(f) or fmt.is_missing(q[0]))]
    if not pts:
        return None
    fig = _figure(6.2, 3.8)
    ax = fig.add_subplot()
    finite_sizes = [s for *_, s in pts if not fmt.is_missing(s)]
    biggest = max(finite_sizes) if finite_sizes else 0
    for label, f, (m, lo, hi), s in pts:
        st = styles[label]
        area = 90 if fmt.is_missing(s) or biggest <= 0 else 30 + 330 * math.sqrt(s / biggest)
        ax.scatter([f], [m], s=area, color=st.color, alpha=0.75, edgecolors="white", linewidths=1.2, zorder=3,
                   marker="o" if st.kind == "method" else ("s" if st.kind == "floor" else "D"))
        if not (fmt.is_missing(lo) or fmt.is_missing(hi)):
            ax.errorbar([f], [m], yerr=[[max(m - lo, 0)], [max(hi - m, 0)]], fmt="none", ecolor=st.color, elinewidth=1, capsize=2, zorder=2)
        note = label if fmt.is_missing(s) else f"{label}\n{fmt.nbytes(s)}"
        ax.annotate(note, (f, m), xytext=(9, 4), textcoords="offset points", fontsize=7.5, color=TEXT)
    fs = [p[1] for p in pts]
    if min(fs) > 0 and max(fs) / min(fs) > 30:
        ax.set_xscale("log")
    ax.set_xlabel(f"{speed_label} (→ faster)", fontsize=9)
    ax.set_ylabel(f"{key} ({direction(hib)})" if hib is not None else key, fontsize=9)
    ax.margins(x=0.25, y=0.2)
    if min(p[2][0] for p in pts) >= 0:  # the margin may reach below zero: no negative labels then
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "" if v < 0 else f"{v:g}"))
    if hib is False:
        ax.invert_yaxis()  # better is up in both directions of the chart
    ax.set_title(f"{key} vs {speed_label} (marker area: {size_label.split(' (')[0]})", fontsize=10, loc="left", color=TEXT, pad=12)
    _style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)


@dataclass
class Curve:
    label: str
    x: np.ndarray
    mean: np.ndarray
    half_width: np.ndarray  # 1.96 standard errors; NaN where fewer than two samples


def mean_curve(label: str, series: Sequence[Sequence[float | None]]) -> Curve | None:
    """Mean over samples at each index (samples may differ in length), with a normal 95% band."""
    series = [s for s in series if s]
    if not series:
        return None
    n = max(len(s) for s in series)
    mat = np.full((len(series), n), np.nan)
    for i, s in enumerate(series):
        mat[i, : len(s)] = [np.nan if fmt.is_missing(v) else v for v in s]
    return _curve_from_matrix(label, np.arange(n, dtype=float), mat)


def binned_curve(label: str, xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float | None]], bins: int = 24) -> Curve | None:
    """Values against an irregular x (seconds since the camera left), averaged within x bins."""
    px, py, owner = [], [], []
    for i, (xr, yr) in enumerate(zip(xs, ys)):
        for x, y in zip(xr, yr):
            if not (fmt.is_missing(x) or fmt.is_missing(y)):
                px.append(float(x)); py.append(float(y)); owner.append(i)
    if not px:
        return None
    px_a, py_a, own = np.array(px), np.array(py), np.array(owner)
    lo, hi = px_a.min(), px_a.max()
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)
    which = np.clip(np.searchsorted(edges, px_a, side="right") - 1, 0, bins - 1)
    # One value per (sample, bin) first, so a sample with many frames in a bin counts once.
    n_samples = own.max() + 1
    mat = np.full((n_samples, bins), np.nan)
    for b in range(bins):
        for s in range(n_samples):
            sel = (which == b) & (own == s)
            if sel.any():
                mat[s, b] = py_a[sel].mean()
    centers = (edges[:-1] + edges[1:]) / 2
    keep = ~np.all(np.isnan(mat), axis=0)
    return _curve_from_matrix(label, centers[keep], mat[:, keep])


def _curve_from_matrix(label: str, x: np.ndarray, mat: np.ndarray) -> Curve:
    count = np.sum(~np.isnan(mat), axis=0)
    safe = np.where(count > 0, 1, 0)  # all-NaN columns give NaN, without numpy's warning
    total = np.nansum(mat, axis=0)
    mean = np.where(safe, total / np.maximum(count, 1), np.nan)
    dev = np.where(np.isnan(mat), 0.0, mat - mean) ** 2
    var = dev.sum(axis=0) / np.maximum(count - 1, 1)
    half = np.where(count >= 2, 1.96 * np.sqrt(var / np.maximum(count, 1)), np.nan)
    return Curve(label, x, mean, half)


def curves_chart(curves: Sequence[Curve], key: str, hib: bool | None, xlabel: str, styles: dict[str, Style], title: str) -> str | None:
    curves = [c for c in curves if c is not None and c.x.size]
    if not curves:
        return None
    fig = _figure(6.2, 3.4)
    ax = fig.add_subplot()
    for c in curves:
        st = styles[c.label]
        ax.plot(c.x, c.mean, color=st.color, linestyle=st.linestyle, linewidth=1.8, label=c.label,
                marker="o" if c.x.size <= 30 else None, markersize=2.5)
        band = ~np.isnan(c.half_width)
        if band.any():
            ax.fill_between(c.x[band], (c.mean - c.half_width)[band], (c.mean + c.half_width)[band], color=st.color, alpha=0.12, linewidth=0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(f"{key} ({direction(hib)})" if hib is not None else key, fontsize=9)
    ax.set_title(title, fontsize=10, loc="left", color=TEXT)
    _legend_below(ax, len(curves))
    _style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)


def _legend_below(ax: Any, n: int) -> None:
    # Below the axes: a legend inside would sit on top of the curves it explains.
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(n, 4))


def _byte_ticks(ax: Any, top: float) -> None:
    """Ticks at round numbers of KiB/MiB/GiB rather than round numbers of bytes."""
    unit = 1.0
    while top / unit >= 1024 and unit < 1024**4:
        unit *= 1024
    steps = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(0, max(top / unit, 1e-9))
    ax.yaxis.set_major_locator(FixedLocator([t * unit for t in steps if t >= 0]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.nbytes(v)))


def kv_chart(series: dict[str, list[tuple[Sequence[float], Sequence[float]]]], styles: dict[str, Style]) -> str | None:
    """Memory (KV cache) bytes against frames generated so far, mean over samples per method."""
    fig = _figure(6.2, 3.4)
    ax = fig.add_subplot()
    drawn = False
    top = 0.0
    for label, per_sample in series.items():
        acc: dict[float, list[float]] = {}
        for frames, kv in per_sample:
            for f, b in zip(frames, kv):
                if not (fmt.is_missing(f) or fmt.is_missing(b)):
                    acc.setdefault(float(f), []).append(float(b))
        if not acc:
            continue
        xs = np.array(sorted(acc))
        ys = np.array([np.mean(acc[x]) for x in xs])
        top = max(top, float(ys.max()))
        st = styles[label]
        ax.plot(np.r_[0, xs], np.r_[ys[0], ys], color=st.color, linestyle=st.linestyle, linewidth=1.8,
                drawstyle="steps-post", label=label)
        ax.plot(xs, ys, "o", color=st.color, markersize=3)
        drawn = True
    if not drawn:
        return None
    _byte_ticks(ax, top)
    ax.set_xlabel("frames generated", fontsize=9)
    ax.set_ylabel("memory held (KV cache)", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.set_title("Memory footprint vs generated length", fontsize=10, loc="left", color=TEXT)
    _legend_below(ax, len(series))
    _style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)


@dataclass
class RatePoint:
    """One row of a rate-distortion chart: memory bytes per memorised frame against a score."""

    label: str
    bytes_per_frame: float
    mean: float
    low: float | None = None  # 95% interval of ``mean``, where known
    high: float | None = None


def rate_distortion(points: Sequence[RatePoint], key: str, hib: bool | None, styles: dict[str, Style], title: str) -> str | None:
    """Score (``key``, with its interval) against memory bytes per memorised frame, log x: what a
    memory gives back for what it holds."""
    pts = [p for p in points if not (fmt.is_missing(p.bytes_per_frame) or fmt.is_missing(p.mean)) and p.bytes_per_frame > 0]
    if not pts:
        return None
    fig = _figure(6.2, 3.8)
    ax = fig.add_subplot()
    for p in pts:
        st = styles[p.label]
        ax.scatter([p.bytes_per_frame], [p.mean], s=70, color=st.color, alpha=0.85, edgecolors="white", linewidths=1.2, zorder=3,
                   marker="o" if st.kind == "method" else ("s" if st.kind == "floor" else "D"))
        if not (fmt.is_missing(p.low) or fmt.is_missing(p.high)):
            ax.errorbar([p.bytes_per_frame], [p.mean], yerr=[[max(p.mean - p.low, 0)], [max(p.high - p.mean, 0)]], fmt="none",
                        ecolor=st.color, elinewidth=1, capsize=2, zorder=2)
        ax.scatter([], [], s=40, color=st.color, marker="o" if st.kind == "method" else ("s" if st.kind == "floor" else "D"), label=p.label)
        ax.annotate(f"{fmt.nbytes(p.bytes_per_frame)}/frame", (p.bytes_per_frame, p.mean), xytext=(8, 4),
                    textcoords="offset points", fontsize=7.5, color=TEXT)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.nbytes(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("memory bytes per memorised frame (log)", fontsize=9)
    ax.set_ylabel(f"{key} ({direction(hib)})" if hib is not None else key, fontsize=9)
    ax.margins(x=0.3, y=0.2)
    if hib is False:
        ax.invert_yaxis()  # better is up
    ax.set_title(title, fontsize=10, loc="left", color=TEXT, pad=12)
    _legend_below(ax, len(pts))
    _style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)
