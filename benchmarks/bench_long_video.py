#!/usr/bin/env python
"""Long-video efficiency on one GPU: mag, self-forcing and full-history generating up to 5 minutes
at 480x832 (random weights) through ``magbench run --task long-video``; FPS and memory against
generated length for each.

Each method is one ``magbench run`` process (its own model load and warm-up)::

    magbench run --task long-video --method M --opt random_weights=true --seconds 300 --limit 1 \\
        --task-opt score=false --task-opt window_seconds=10 --task-opt time_budget_s=B \\
        --no-keep-frames --device cuda -q --out OUT/M

``--task-opt time_budget_s=B`` caps the generation time of each method: when it is spent, the
sample stops where it is and its record (a per-sample failure naming the length reached) keeps
every curve up to there; the same goes for running out of device memory (full history: its KV
grows by one latent frame's keys and values every 4 pixel frames and attention slows with it).
B is ``(--total-s - n_methods * --overhead-s) / n_methods``: the defaults (510 s total, 75 s of
model load, warm-up and start-up per process, as a rough allowance) keep three methods under
9 minutes; a bounded method at about 20 FPS then reaches about 2 minutes of video. For the full
5 minutes of one method, run it alone: ``--methods mag --total-s 510`` (about 435 s of
generation). Each process is also killed at B + 2 x overhead if it overruns.

Prints, per method, a row every ``--every`` seconds of video (window generation FPS, the method's
memory bytes, allocated and peak device memory after the block reaching that length) and where
the sample stopped; writes OUT/summary.json and OUT/report/ (long_video.md + charts, from
``python -m magbench.reports.long_video``).

    python benchmarks/bench_long_video.py --out runs/long_video          # the three, < 9 min on an H200
    python benchmarks/bench_long_video.py --methods full-history --total-s 300
    python benchmarks/bench_long_video.py --tiny --device cpu --seconds 2 --out /tmp/lv   # smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from magbench.reports.long_video import at_length, load_run, write_report

GIB = 2**30


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="mag,self-forcing,full-history")
    ap.add_argument("--seconds", type=float, default=300.0, help="video to generate per method (16 fps)")
    ap.add_argument("--total-s", type=float, default=510.0, help="wall-clock allowance for all methods")
    ap.add_argument("--overhead-s", type=float, default=75.0, help="allowance per process for load, warm-up, start-up")
    ap.add_argument("--budget-s", type=float, default=None, help="generation budget per method (overrides the split)")
    ap.add_argument("--every", type=float, default=30.0, help="print a row every this many seconds of video")
    ap.add_argument("--window-seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny config (CPU smoke test)")
    ap.add_argument("--opt", action="append", default=[], help="extra method option KEY=VALUE for every method")
    ap.add_argument("--out", type=Path, default=Path("runs/long_video"))
    return ap.parse_args(argv)


def budget_for(args: argparse.Namespace, n: int) -> float:
    if args.budget_s is not None:
        return float(args.budget_s)
    return max(10.0, (args.total_s - n * args.overhead_s) / n)


def command(args: argparse.Namespace, method: str, budget: float) -> list[str]:
    cmd = [sys.executable, "-m", "magbench", "run", "--task", "long-video", "--method", method,
           "--opt", "random_weights=true", "--seconds", f"{args.seconds:g}", "--limit", "1",
           "--task-opt", "score=false", "--task-opt", f"window_seconds={args.window_seconds:g}",
           "--task-opt", f"time_budget_s={budget:g}", "--no-keep-frames", "--device", args.device, "-q",
           "--out", str(args.out / method)]
    if args.tiny:
        cmd += ["--opt", "config=tiny"]
    for o in args.opt:
        cmd += ["--opt", o]
    return cmd


def _gib(v: int | None) -> str:
    return "-" if v is None else f"{v / GIB:.2f}"


def summarise(path: Path, every: float) -> dict[str, Any]:
    run = load_run(path)
    (rec,) = run.records
    part, t = rec.part, rec.timing
    rows = at_length(rec, every)
    return {
        "method": run.label, "status": rec.status, "error": rec.error,
        "frames_generated": getattr(part, "frames_generated", None), "frames_asked": getattr(part, "num_frames", None),
        "stop_reason": getattr(part, "stop_reason", None),
        "fps": None if t is None else t.fps, "first_block_s": None if t is None else t.first_block_s,
        "realtime_fraction": getattr(part, "realtime_fraction", None),
        "peak_device_bytes": None if rec.memory is None else rec.memory.peak_device_bytes,
        "rows": rows, "device": run.manifest.get("hardware"),
    }


def print_summary(s: dict[str, Any]) -> None:
    got, asked = s["frames_generated"] or 0, s["frames_asked"] or 0
    where = "complete" if s["status"] == "ok" else f"STOPPED ({s['stop_reason'] or 'failed'}): {s['error']}"
    fps = "-" if s["fps"] is None else f"{s['fps']:.2f}"
    first = "-" if s["first_block_s"] is None else f"{s['first_block_s']:.2f}"
    print(f"\n== {s['method']}: {got}/{asked} frames ({got / 16:.1f} s of video), {where}")
    print(f"   generation FPS {fps}, first block {first} s, peak device {_gib(s['peak_device_bytes'])} GiB")
    print(f"   {'video s':>8} {'frames':>7} {'gen FPS':>8} {'mem GiB':>8} {'alloc GiB':>9} {'peak GiB':>8}")
    for r in s["rows"]:
        f = "-" if r["gen_fps"] is None else f"{r['gen_fps']:.2f}"
        print(f"   {r['video_s']:>8.1f} {r['frames']:>7} {f:>8} {_gib(r['kv_bytes']):>8} "
              f"{_gib(r['device_allocated_bytes']):>9} {_gib(r['device_peak_bytes']):>8}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    budget = budget_for(args, len(methods))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(methods)} methods, {args.seconds:g} s of video each, generation budget {budget:.0f} s each", flush=True)
    summaries, t_all = [], time.perf_counter()
    for m in methods:
        cmd = command(args, m, budget)
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, timeout=budget + 2 * args.overhead_s, capture_output=True, text=True)
            rc = proc.returncode
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        except subprocess.TimeoutExpired:
            rc, tail = None, ["killed: over budget + 2 x overhead"]
        wall = time.perf_counter() - t0
        print(f"   exit {rc} after {wall:.0f} s wall ({'; '.join(tail)})", flush=True)
        if (args.out / m / "samples.jsonl").is_file():
            s = summarise(args.out / m, args.every) | {"wall_s": wall, "exit": rc, "command": " ".join(cmd)}
            summaries.append(s)
            print_summary(s)
    total = time.perf_counter() - t_all
    print(f"\ntotal wall {total:.0f} s", flush=True)
    (args.out / "summary.json").write_text(json.dumps({"total_wall_s": total, "budget_s": budget, "methods": summaries}, indent=1))
    runs = [args.out / m for m in methods if (args.out / m / "samples.jsonl").is_file()]
    if runs:
        print(write_report(runs, args.out / "report", args.every))
    return 0 if len(summaries) == len(methods) else 1


if __name__ == "__main__":
    sys.exit(main())
