#!/usr/bin/env python
"""Time MAG's best-match LPIPS matrix: naive (AlexNet per generated frame against the whole
ground-truth batch, as the reference) vs cached (features once per frame, then matrix products).

The AlexNet trunk is randomly initialised: timings do not depend on the weights, and nothing has
to be downloaded. The two implementations are checked to agree (max abs difference of the
matrix entries both computed). Times are medians over ``--repeats`` runs after one warm-up, with
CUDA synchronised around each run.

The naive path at 64 x 64 frames of 480 x 832 is slow: ``--naive-pairs N`` times only the first
ceil(N / M) generated frames (M ground-truth frames each) and extrapolates the time per pair to
the full matrix; the output says so.

    python benchmarks/bench_bestmatch.py --frames 64 --height 480 --width 832 --repeats 5 \\
        --device cuda --naive-pairs 512 --out bestmatch.json
    python benchmarks/bench_bestmatch.py --frames 8 --height 32 --width 32 --repeats 2 --device cpu
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, list[float], torch.Tensor]:
    out = fn()  # warm-up: cuDNN autotuning, allocator, lazy imports
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=64, help="generated and ground-truth target frames")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--chunk", type=int, default=8, help="cached implementation's chunk option")
    p.add_argument("--naive-pairs", type=int, default=None,
                   help="time only about this many naive pairs (whole generated frames) and extrapolate")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    from magbench.metrics.bestmatch import best_match, lpips_matrix_cached, lpips_matrix_naive
    from magbench.metrics.common import build_lpips

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    n = args.frames
    model = build_lpips(device, random_weights=True)
    gen = torch.rand(n, 3, args.height, args.width, device=device)
    gt = torch.rand(n, 3, args.height, args.width, device=device)
    all_pairs = n * n

    rows = n if args.naive_pairs is None else max(1, min(n, math.ceil(args.naive_pairs / n)))
    naive_rows = list(range(rows))
    naive_pairs = rows * n
    extrapolated = rows < n

    with torch.no_grad():
        t_cached, cached_times, cached = _time(
            lambda: lpips_matrix_cached(model, gen, gt, chunk=args.chunk), device, args.repeats)
        t_naive, naive_times, naive = _time(
            lambda: lpips_matrix_naive(model, gen, gt, rows=naive_rows), device, args.repeats)
    max_abs = (cached[:rows] - naive).abs().max().item()
    same_match = bool(torch.equal(best_match(cached[:rows])[1], best_match(naive)[1]))
    t_naive_full = t_naive / naive_pairs * all_pairs

    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "frames": n, "height": args.height, "width": args.width,
        "repeats": args.repeats, "chunk": args.chunk,
        "weights": "random AlexNet trunk (timings only), lpips v0.1 linear layers",
        "cached_s": t_cached, "cached_times_s": cached_times,
        "naive_s": t_naive_full,
        "naive_measured_s": t_naive, "naive_times_s": naive_times,
        "naive_measured_pairs": naive_pairs, "all_pairs": all_pairs,
        "naive_extrapolated": extrapolated,
        "speedup": t_naive_full / t_cached if t_cached > 0 else None,
        "max_abs_diff": max_abs, "same_best_match": same_match,
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    naive_note = (f"extrapolated from {naive_pairs} of {all_pairs} pairs ({rows} generated frames)"
                  if extrapolated else "all pairs measured")
    print(f"best-match LPIPS matrix, {n} x {n} frames of {args.height}x{args.width}, "
          f"{result['gpu'] or device}, torch {torch.__version__}, median of {args.repeats}")
    print(f"naive: {naive_note}; agreement max |cached - naive| = {max_abs:.2e}, "
          f"same matches: {same_match}")
    print(f"{'implementation':<16}{'seconds':>12}{'ms / pair':>12}")
    print(f"{'naive':<16}{t_naive_full:>12.4f}{1e3 * t_naive_full / all_pairs:>12.4f}")
    print(f"{'cached':<16}{t_cached:>12.4f}{1e3 * t_cached / all_pairs:>12.4f}")
    print(f"{'speedup':<16}{result['speedup']:>11.1f}x")
    return result


if __name__ == "__main__":
    main()
