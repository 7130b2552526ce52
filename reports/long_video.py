"""The long-video report: per method, consistency and FPS over time, memory against generated
length, and the VBench / VBench-Long table beside the MAG paper's figures (reported, not measured).

``python -m magbench.reports.long_video RUN [RUN ...] --out DIR`` writes ``DIR/long_video.md``
(the tables) and three charts: ``consistency_over_time.png`` (each consistency per drift window),
``fps_over_time.png`` (generation FPS per window, the 16 fps real-time line drawn),
``memory_vs_length.png`` (the method's memory bytes and, on CUDA, allocated device memory, per
block against generated frames). Pooling over a run's samples is VBench's: subject/background
consistency sum all terms over all frame pairs, VBench-Long's its clips' fused scores over all
clips. A sample that stopped early (out of memory, time budget) contributes its curves up to
where it stopped, and its stop is named in the efficiency table.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from magbench.metrics.consistency import pair_weighted_score
from magbench.metrics.vbench_long import clip_weighted_score
from magbench.record import SampleRecord
from magbench.store import RunDir, atomic_write_text

FPS = 16.0
GIB = 2**30
# The MAG paper (arXiv 2512.18741), as ../shared/reference/mag-paper.md transcribes it: percentages.
PAPER_SOURCE = "MAG paper, arXiv 2512.18741 (reported, not measured)"
PAPER_VBENCH_5S = {  # method: (total, background, subject)
    "MAG": (83.52, 97.44, 97.02),
    "Self Forcing": (83.98, 96.21, 96.80),
    "LongLive": (83.32, 96.41, 96.54),
}
PAPER_VBENCH_LONG_30S = {"MAG": (82.85, 97.99, 99.18)}
DIMENSIONS = ("subject_consistency", "background_consistency")


@dataclass
class MethodRun:
    """One long-video run folder, read."""

    label: str
    path: Path
    manifest: dict[str, Any]
    records: list[SampleRecord] = field(default_factory=list)

    @property
    def ok(self) -> list[SampleRecord]:
        return [r for r in self.records if r.ok]


def load_run(path: Path | str) -> MethodRun:
    rd = RunDir(Path(path))
    manifest = rd.manifest()
    changed = manifest.get("method", {}).get("options_changed", {})
    shown = {k: v for k, v in changed.items() if k not in ("random_weights",)}
    label = manifest.get("method", {}).get("name", Path(path).name)
    if shown:
        label += " (" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")"
    return MethodRun(label=label, path=Path(path), manifest=manifest, records=rd.records())


# -- pooled scores ------------------------------------------------------------------------------------
def pooled_scores(run: MethodRun) -> dict[str, float]:
    """VBench (whole video, 5 s prefix) and VBench-Long, pooled over the run's finished samples."""
    out: dict[str, float] = {}
    recs = run.ok
    for dim in DIMENSIONS:
        for key in (dim, f"{dim}_5s"):
            sums = [r.extra.get(f"{key}_sum") for r in recs]
            pairs = [r.extra.get(f"{key}_pairs") for r in recs]
            if recs and all(s is not None for s in sums):
                out[key] = pair_weighted_score(sums, pairs)  # type: ignore[arg-type]
        lk = f"vbench_long_{dim}"
        sums = [r.extra.get(f"{lk}_sum") for r in recs]
        clips = [r.extra.get(f"{lk}_clips") for r in recs]
        if recs and all(s is not None for s in sums):
            out[lk] = clip_weighted_score(sums, clips)  # type: ignore[arg-type]
    return out


def _pct(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def vbench_table(runs: Sequence[MethodRun]) -> str:
    """Markdown: measured rows (x100, as the paper prints them), then the paper's reported rows."""
    lines = [
        "| method | source | VBench 5 s background | VBench 5 s subject | VBench whole background | VBench whole subject | "
        "VBench-Long background | VBench-Long subject | frames | samples |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        p = pooled_scores(run)
        frames = run.manifest.get("task", {}).get("num_frames", "")
        lines.append(
            f"| {run.label} | measured | {_pct(p.get('background_consistency_5s'))} | {_pct(p.get('subject_consistency_5s'))} | "
            f"{_pct(p.get('background_consistency'))} | {_pct(p.get('subject_consistency'))} | "
            f"{_pct(p.get('vbench_long_background_consistency'))} | {_pct(p.get('vbench_long_subject_consistency'))} | "
            f"{frames} | {len(run.ok)} of {len(run.records)} |"
        )
    for name, (_, bg, subj) in PAPER_VBENCH_5S.items():
        long = PAPER_VBENCH_LONG_30S.get(name)
        lb, ls = (f"{long[1]:.2f}", f"{long[2]:.2f}") if long else ("", "")
        lines.append(f"| {name} | {PAPER_SOURCE} | {bg:.2f} | {subj:.2f} |  |  | {lb} | {ls} | 5 s / 30 s videos |  |")
    lines.append("")
    lines.append("Paper totals (all VBench dimensions, not measured here): "
                 + ", ".join(f"{n} {t[0]:.2f} (5 s)" for n, t in PAPER_VBENCH_5S.items())
                 + f"; MAG {PAPER_VBENCH_LONG_30S['MAG'][0]:.2f} (VBench-Long, 30 s).")
    return "\n".join(lines)


# -- efficiency against length --------------------------------------------------------------------------
def at_length(record: SampleRecord, every_seconds: float) -> list[dict[str, Any]]:
    """Rows at each ``every_seconds`` of generated video: the window FPS of the span ending there,
    memory bytes and device memory after the block that reached it."""
    part = record.part
    mem = record.memory
    if part is None or mem is None or not mem.frames_per_block or record.timing is None:
        return []
    from magbench.horizon import time_at_frame

    t = record.timing
    step = max(1, int(round(every_seconds * FPS)))
    ends = list(range(step, mem.frames_per_block[-1] + 1, step))
    if not ends or ends[-1] != mem.frames_per_block[-1]:
        ends.append(mem.frames_per_block[-1])
    rows, prev = [], 0
    for end in ends:
        block = next(i for i, f in enumerate(mem.frames_per_block) if f >= end)
        dt = time_at_frame(t.block_frames, t.block_s, end) - time_at_frame(t.block_frames, t.block_s, prev)
        alloc = getattr(part, "device_allocated_per_block", None)
        peak = getattr(part, "device_peak_per_block", None)
        rows.append({
            "video_s": end / FPS, "frames": end, "gen_fps": (end - prev) / dt if dt > 0 else None,
            "kv_bytes": mem.kv_bytes_per_block[block] if mem.kv_bytes_per_block else None,
            "host_bytes": mem.host_bytes_per_block[block] if mem.host_bytes_per_block else None,
            "device_allocated_bytes": alloc[block] if alloc else None,
            "device_peak_bytes": peak[block] if peak else None,
        })
        prev = end
    return rows


def _gib(v: int | None) -> str:
    """GiB with two decimals; small values (tiny test configs) in MiB or KiB so they do not read 0."""
    if v is None:
        return ""
    if v >= GIB / 100:
        return f"{v / GIB:.2f}"
    return f"{v / 2**20:.3f} MiB" if v >= 2**20 / 100 else f"{v / 1024:.1f} KiB"


def efficiency_table(runs: Sequence[MethodRun], every_seconds: float = 30.0) -> str:
    out = []
    for run in runs:
        for rec in run.records:
            part = rec.part
            if part is None or rec.timing is None:
                out.append(f"{run.label} {rec.sample_id}: failed before generating ({rec.error})")
                continue
            stop = (f"stopped: {rec.error}" if not rec.ok else "complete")
            first = rec.timing.first_block_s
            out.append(f"**{run.label}**, {rec.sample_id}: {part.frames_generated} of {part.num_frames} frames "
                       f"({(part.frames_generated or 0) / FPS:.1f} s), {stop}; generation FPS "
                       f"{rec.timing.fps or float('nan'):.2f}, time to first block {first if first is not None else float('nan'):.2f} s, "
                       f"windows at >= 16 fps: {'' if part.realtime_fraction is None else f'{100 * part.realtime_fraction:.0f} %'}")
            out.append("")
            rows = at_length(rec, every_seconds)
            host = any(row["host_bytes"] for row in rows)  # a column only for memories in host RAM
            out.append("| video s | frames | gen FPS (span) | memory GiB (method) |" + (" host RAM GiB |" if host else "")
                       + " device allocated GiB | device peak GiB |")
            out.append("| --- " * (6 + host) + "|")
            for row in rows:
                fps = "" if row["gen_fps"] is None else f"{row['gen_fps']:.2f}"
                out.append(f"| {row['video_s']:.1f} | {row['frames']} | {fps} | {_gib(row['kv_bytes'])} | "
                           + (f"{_gib(row['host_bytes'])} | " if host else "")
                           + f"{_gib(row['device_allocated_bytes'])} | {_gib(row['device_peak_bytes'])} |")
            out.append("")
    return "\n".join(out)


# -- charts ------------------------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)


def consistency_chart(runs: Sequence[MethodRun], path: Path) -> None:
    fig = Figure(figsize=(9, 3.5))
    for i, dim in enumerate(DIMENSIONS):
        ax = fig.add_subplot(1, 2, i + 1)
        for run in runs:
            for rec in run.ok:
                d = rec.extra.get(f"{dim}_drift")
                if d:
                    ax.plot(d["start_seconds"], d["score"], marker=".", label=f"{run.label} {rec.sample_id}")
        ax.set_title(f"{dim.replace('_', ' ')} per window")
        ax.set_xlabel("video time (s, window start)")
        ax.grid(alpha=0.3)
    if fig.axes[0].lines:
        fig.axes[0].legend(fontsize=7)
    else:
        fig.axes[0].text(0.5, 0.5, "no scored sample", ha="center", va="center", transform=fig.axes[0].transAxes)
    _save(fig, path)


def fps_chart(runs: Sequence[MethodRun], path: Path) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for run in runs:
        for rec in run.records:
            p = rec.part
            if p is not None and getattr(p, "window_gen_fps", None):
                xs = [s / FPS for s in p.window_start_frame]
                ax.plot(xs, [v if v is not None else math.nan for v in p.window_gen_fps], marker=".",
                        label=f"{run.label} {rec.sample_id}")
    ax.axhline(FPS, color="grey", linestyle="--", linewidth=1, label="16 fps (real time)")
    ax.set_xlabel("video time (s, window start)")
    ax.set_ylabel("generation FPS")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)  # the real-time line is always there
    _save(fig, path)


def memory_chart(runs: Sequence[MethodRun], path: Path) -> None:
    fig = Figure(figsize=(9, 3.5))
    ax_kv, ax_dev = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for run in runs:
        for rec in run.records:
            m, p = rec.memory, rec.part
            if m is None or not m.frames_per_block:
                continue
            secs = [f / FPS for f in m.frames_per_block]
            line, = ax_kv.plot(secs, [b / GIB for b in m.kv_bytes_per_block], label=f"{run.label} {rec.sample_id}")
            if any(m.host_bytes_per_block):  # a memory offloaded to host RAM (LongLive-RAG's store)
                ax_kv.plot(secs, [b / GIB for b in m.host_bytes_per_block], linestyle="--", color=line.get_color(),
                           label=f"{run.label} {rec.sample_id} (host RAM)")
            alloc = getattr(p, "device_allocated_per_block", None)
            if alloc:
                ax_dev.plot(secs, [b / GIB for b in alloc], label=f"{run.label} {rec.sample_id}")
    if not ax_dev.lines:
        ax_dev.text(0.5, 0.5, "not measured (no CUDA device)", ha="center", va="center", transform=ax_dev.transAxes)
    ax_kv.set_title("method memory (memory_bytes; dashed: host RAM)")
    ax_dev.set_title("device memory allocated (CUDA)")
    for ax in (ax_kv, ax_dev):
        ax.set_xlabel("generated video (s)")
        ax.set_ylabel("GiB")
        ax.grid(alpha=0.3)
    if ax_kv.lines:
        ax_kv.legend(fontsize=7)
    _save(fig, path)


def write_report(run_paths: Sequence[Path | str], out: Path | str, every_seconds: float = 30.0) -> Path:
    """Tables and charts of long-video runs into ``out``; returns the markdown file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in run_paths]
    consistency_chart(runs, out / "consistency_over_time.png")
    fps_chart(runs, out / "fps_over_time.png")
    memory_chart(runs, out / "memory_vs_length.png")
    text = "\n".join([
        "# Long video", "", "## VBench and VBench-Long (x100)", "", vbench_table(runs), "",
        "## Efficiency against generated length", "", efficiency_table(runs, every_seconds), "",
        "Charts: consistency_over_time.png, fps_over_time.png, memory_vs_length.png.", "",
    ])
    md = out / "long_video.md"
    atomic_write_text(md, text)
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Tables and charts of long-video runs")
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--every", type=float, default=30.0, help="rows of the efficiency table every this many video seconds")
    args = ap.parse_args(argv)
    print(write_report(args.runs, args.out, args.every))


if __name__ == "__main__":
    main()
