#!/usr/bin/env python
"""End-to-end throughput of one GPU: samples per hour through the whole harness, and where each
sample's time goes.

Runs a real method (default ``self-forcing`` of baselines/wan, random weights: the timings do not
depend on them) through :class:`magbench.harness.Harness` exactly as ``magbench run`` does, on a
synthetic leave-and-return set at the protocol's lengths, and splits each sample's wall time into

* ``text``: ``reset``, i.e. the prompt embeddings (with ``random_weights`` the Wan methods use
  pseudo-embeddings; with real weights UMT5 embeddings come from the on-disk prompt cache, and the
  encoder only runs for an unseen prompt);
* ``vae_encode``: streaming VAE encode of the context;
* ``context_fill``: the rest of ``memorize``: the transformer's cache-update pass over the context
  blocks;
* ``context_decode``: the streaming decoder run over the context latents, which brings its causal
  cache to where generation starts (the Wan methods' design; part of ``memorize``);
* ``generate``: the transformer over the target blocks (the method's ``transformer_s``);
* ``decode``: the streaming VAE decode of the generated blocks (``decode_s``);
* ``metrics``: scoring (``--metrics``, LPIPS backbones with random weights);
* ``other``: video decode and resize, previews, the record write.

Each stage is timed with the device synchronised on both sides, through the harness's stage hook
(``Harness(config, stage_hook=...)``). The method loads once per ``Harness.run`` (``load_s``,
reported apart); the harness's own one-block warm-up and ``--warmup`` samples are not counted.
Methods other than the Wan ones get the stages the harness itself sees (``vae_encode`` and
``context_fill`` then read as one ``memorize``).

Usage (one GPU; sized for < 5 minutes on an H100, not yet timed on one)::

    python benchmarks/bench_throughput.py --out bench_throughput.json
    python benchmarks/bench_throughput.py --method mag --samples 6 --out mag.json
    python benchmarks/bench_throughput.py --tiny --out /tmp/bench_throughput_tiny.json   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

STAGES = ("text", "vae_encode", "context_fill", "context_decode", "generate", "decode", "metrics", "other")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="self-forcing", help="any registered method (default self-forcing)")
    ap.add_argument("--opt", action="append", default=[], help="method option KEY=VALUE (default random_weights=true)")
    ap.add_argument("--samples", type=int, default=4, help="timed samples")
    ap.add_argument("--warmup", type=int, default=1, help="untimed samples first (CUDA kernels, allocator)")
    ap.add_argument("--seconds", type=float, default=10.0, help="video duration (the protocol splits it 75/25)")
    ap.add_argument("--metrics", default="psnr,ssim,lpips,bestmatch", help="metrics to time (LPIPS family: random weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--tiny", action="store_true", help="tiny Wan config, 32x48, CPU: a smoke test")
    ap.add_argument("--out", default="bench_throughput.json", help="JSON output")
    return ap.parse_args()


class StageClock:
    """Accumulates synchronised wall time per stage for the current sample."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = device
        self.current: dict[str, float] = {}
        self.phase = ""

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.current[stage] = self.current.get(stage, 0.0) + time.perf_counter() - t0

        return timed


def instrument(clock: StageClock, samples: list[dict[str, Any]], loads: dict[str, float]):
    """The harness's stage hook and per-record callback that fill ``samples`` and ``loads``.

    The harness reports its own stages (``load``, ``reset``, ``memorize``, ``score``, ``sample``)
    through the hook; inside the Wan methods, the streaming VAE's pushes are wrapped after each
    ``reset`` (they are the method's internals, which the harness cannot see)."""
    harness_box: dict[str, Any] = {}

    def hook(stage: str, seconds: float) -> None:
        c = clock.current
        if stage == "load":
            loads["load_s"] = loads.get("load_s", 0.0) + seconds
        elif stage == "input":  # a sample's first stage: its frames are read
            clock.current = {}
        elif stage == "reset":
            c["text"] = c.get("text", 0.0) + seconds
            clock.phase = "memorize"  # reset has returned; memorize runs until its own report
            method = harness_box["harness"].method
            enc = getattr(method, "_enc", None)
            if enc is not None and hasattr(enc, "push"):
                enc.push = clock.wrap("vae_encode", enc.push)
            dec = getattr(method, "_dec", None)
            if dec is not None and hasattr(dec, "push"):
                push, primed = dec.push, clock.wrap("context_decode", dec.push)
                # Only the pushes made while memorising are the context's; generation's are in decode_s.
                dec.push = lambda *a, **k: primed(*a, **k) if clock.phase == "memorize" else push(*a, **k)
        elif stage == "memorize":
            c["memorize"] = c.get("memorize", 0.0) + seconds
            clock.phase = ""
        elif stage == "score":
            c["metrics"] = c.get("metrics", 0.0) + seconds
        elif stage == "sample":
            c["wall"] = seconds

    def on_sample(record) -> None:  # a magbench.record.SampleRecord
        c = clock.current
        method = harness_box["harness"].method
        extra = method.timings() if record.ok else {}
        gen = float(record.timing.generate_s if record.timing else 0.0)
        decode = float(extra.get("decode_s", 0.0))
        stages = {
            "text": c.get("text", 0.0),
            "vae_encode": c.get("vae_encode", 0.0),
            "context_fill": c.get("memorize", 0.0) - c.get("vae_encode", 0.0) - c.get("context_decode", 0.0),
            "context_decode": c.get("context_decode", 0.0),
            "generate": float(extra.get("transformer_s", gen - decode)),
            "decode": decode,
            "metrics": c.get("metrics", 0.0),
        }
        wall = c.get("wall", 0.0)
        stages["other"] = max(0.0, wall - sum(stages.values()))
        samples.append({
            "sample_id": record.sample_id, "status": record.status, "error": record.error,
            "wall_s": wall, "stages_s": stages, "frames_generated": getattr(record.part, "num_target", None),
            "context_frames": getattr(record.part, "num_context", None),
            "peak_device_bytes": record.memory.peak_device_bytes if record.memory else None,
        })

    return hook, on_sample, harness_box


def main() -> None:
    args = parse()
    from magbench.data.synthetic import SynthConfig, generate
    from magbench.cli import parse_options
    from magbench.harness import Harness, RunConfig
    from magbench.store import RunDir

    opts = parse_options(args.opt) if args.opt else {}
    opts.setdefault("random_weights", True)
    device = args.device
    if args.tiny:
        opts.setdefault("config", "tiny")
        device = "cpu" if device == "auto" else device
        args.samples, args.warmup, args.seconds = min(args.samples, 2), min(args.warmup, 1), min(args.seconds, 7.0)
    metric_options = {m: {"random_weights": True} for m in ("lpips", "bestmatch", "correspondence")}
    n = args.samples + args.warmup
    phases: dict[str, float] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_throughput_") as tmp:
        tmp_path = Path(tmp)
        # Small frames on disk: the harness resizes them to the method's resolution, and the
        # content does not change a random-weight method's time.
        generate(tmp_path / "data", SynthConfig(n=n, height=64, width=112, seconds=args.seconds, seed=0))
        phases["dataset_s"] = time.perf_counter() - t_start
        config = RunConfig(
            method=args.method, dataset=f"synthetic:{tmp_path / 'data'}", out=tmp_path / "warmup",
            method_options=opts, metrics=[m for m in args.metrics.split(",") if m],
            metric_options=metric_options, device=device, dtype=args.dtype,
        )
        t_build = time.perf_counter()
        clock = StageClock(config.resolved_device())
        per_sample: list[dict[str, Any]] = []
        loads: dict[str, float] = {}
        hook, on_sample, box = instrument(clock, per_sample, loads)
        harness = box["harness"] = Harness(config, stage_hook=hook)  # metric models load here, once
        build_s = phases["harness_build_s"] = time.perf_counter() - t_build
        samples = harness.dataset.samples
        t_warm = time.perf_counter()
        if args.warmup:
            harness.run(samples=samples[: args.warmup], progress=False, on_sample=on_sample)
        phases["warmup_s"] = time.perf_counter() - t_warm
        warm_load = loads.pop("load_s", 0.0)
        del per_sample[:]
        # A fresh run folder: the timed samples must not be skipped as finished.
        harness.run_dir = RunDir(tmp_path / "timed")
        t0 = time.perf_counter()
        harness.run(samples=samples[args.warmup :], progress=False, on_sample=on_sample)
        run_s = phases["timed_run_s"] = time.perf_counter() - t0
    phases["total_s"] = time.perf_counter() - t_start
    ok = [s for s in per_sample if s["status"] == "ok"]
    if not ok:
        sys.exit(f"no sample finished: {per_sample[0]['error'] if per_sample else 'nothing ran'}")
    mean = {k: statistics.mean(s["stages_s"][k] for s in ok) for k in STAGES}
    wall = statistics.mean(s["wall_s"] for s in ok)
    result = {
        "gpu": torch.cuda.get_device_name(harness.device) if harness.device.startswith("cuda") else None,
        "device": harness.device, "dtype": harness.dtype_name, "cpu": platform.processor() or platform.machine(),
        "command": " ".join(sys.argv), "method": args.method, "method_options": opts, "metrics": harness.metric_names,
        "torch": torch.__version__, "video_seconds": args.seconds,
        "context_frames": ok[0]["context_frames"], "target_frames": ok[0]["frames_generated"],
        "resolution": list(harness.method.resolution) if harness.method.resolution else None,
        "samples_timed": len(ok), "failed": len(per_sample) - len(ok),
        "samples_per_hour": 3600.0 / wall,
        "samples_per_hour_with_load": 3600.0 * len(ok) / run_s,
        "mean_sample_s": wall, "mean_stage_s": mean,
        "harness_build_s": build_s, "method_load_s": loads.get("load_s", 0.0), "warmup_load_s": warm_load,
        "phases_s": phases, "per_sample": per_sample,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.method} on {result['gpu'] or harness.device} ({harness.dtype_name}), "
          f"{result['context_frames']} context + {result['target_frames']} target frames at {result['resolution']}, "
          f"{len(ok)} samples; JSON: {args.out}")
    print(f"{'stage':<14}{'s/sample':>10}{'share':>8}")
    for k in STAGES:
        print(f"{k:<14}{mean[k]:>10.3f}{100 * mean[k] / wall:>7.1f}%")
    print(f"{'total':<14}{wall:>10.3f}{'':>8}")
    print(f"script: {phases['total_s']:.0f} s (dataset {phases['dataset_s']:.0f}, harness build {phases['harness_build_s']:.0f}, "
          f"warm-up {phases['warmup_s']:.0f}, timed run {phases['timed_run_s']:.0f})")
    print(f"samples/hour: {result['samples_per_hour']:.0f} steady, {result['samples_per_hour_with_load']:.0f} "
          f"with the model load ({result['method_load_s']:.1f} s) of one run")


if __name__ == "__main__":
    main()
