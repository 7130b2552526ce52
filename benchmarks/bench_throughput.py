#!/usr/bin/env python
"""End-to-end throughput of one GPU: samples per hour through the whole harness, and where each
sample's time goes.

Runs a real method (default ``self-forcing`` of baselines/wan, random weights: the timings do not
depend on them) through :class:`magbench.harness.Harness` exactly as ``magbench run`` does, on a
synthetic leave-and-return set at the protocol's lengths. The script is a client of the harness
and nothing more: it reads the records (``timing``: what the harness timed of the method's calls,
plus the method's own ``timings()``), the harness's stage hook (``Harness(config,
stage_hook=...)``: ``input``, ``score``, ``save``, ``load``, ``warmup``) and the time at which
each record is finished. Per sample:

* ``text``: ``reset`` (with ``random_weights`` the Wan methods use pseudo-embeddings; with real
  weights UMT5 embeddings come from the on-disk prompt cache);
* ``memorize``: the context pass, split into ``context_encode`` / ``context_fill`` /
  ``context_decode`` where the method reports those parts in ``timings()``
  (``context_encode_s``, ``context_fill_s``, ``context_decode_s``), as one stage otherwise;
* ``generate``: the blocks' time less their decode (``decode_s``) and ground-truth memory writes;
* ``decode``: the streaming decode of the generated blocks (``decode_s``, where reported);
* ``gt_memory``: ``remember_ground_truth`` (``--memory-source ground-truth`` only);
* ``memory_bytes``: the memory accounting calls;
* ``input``: video decode, checks, split and resize; ``metrics``: scoring; ``save``: frames,
  previews, videos;
* ``other``: the rest of the wall time between two finished records (the record write, the copy
  of the blocks to the CPU, progress). Where the harness overlaps stages (a pipelined harness),
  the stages sum to more than the wall time and ``other`` reads 0 (``overlap_s`` says by how much).

The wall time of a sample is the time between two finished samples (the last phase of each,
``save``; the first timed one counts from the end of the harness's warm-up): what decides
samples per hour. The method loads once (``load_s``, apart); the harness's own one-block warm-up and the
``--warmup`` samples are not counted.

Usage (one GPU; a few minutes)::

    python benchmarks/bench_throughput.py --out bench_throughput.json
    python benchmarks/bench_throughput.py --method mag --samples 2 --seconds 20 --out mag.json
    python benchmarks/bench_throughput.py --tiny --out /tmp/bench_throughput_tiny.json   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# The method's memorize parts, where its timings() reports them (record timing keys -> stage).
MEMORIZE_PARTS = {"context_encode_s": "context_encode", "context_fill_s": "context_fill", "context_decode_s": "context_decode"}
HARNESS_STAGES = {"input": "input", "score": "metrics", "save": "save"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="self-forcing", help="any registered method (default self-forcing)")
    ap.add_argument("--opt", action="append", default=[], help="method option KEY=VALUE (default random_weights=true)")
    ap.add_argument("--samples", type=int, default=4, help="timed samples")
    ap.add_argument("--warmup", type=int, default=1, help="untimed samples first (after the harness's own warm-up)")
    ap.add_argument("--seconds", type=float, default=10.0, help="video duration (the protocol splits it 75/25)")
    ap.add_argument("--size", default="64x112", help="HxW of the synthetic videos on disk (the harness resizes them)")
    ap.add_argument("--memory-source", default="generated", choices=["generated", "ground-truth"])
    ap.add_argument("--metrics", default="psnr,ssim,lpips,bestmatch", help="metrics to time (LPIPS family: random weights)")
    ap.add_argument("--no-keep-frames", action="store_true", help="as magbench run --no-keep-frames")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--tiny", action="store_true", help="tiny Wan config, 32x48, CPU: a smoke test")
    ap.add_argument("--out", default="bench_throughput.json", help="JSON output")
    return ap.parse_args(argv)


@dataclass
class Observer:
    """What the harness tells a client: stage-hook events and finished records, with their times.

    Each event is the sample's whose phase reported it (``Harness.sample_in_progress``: the
    pipeline runs neighbouring samples' phases on other threads at the same time). A sample is
    done when its last phase reported (``save``), or, failed, when its record came."""

    clock: Any = time.perf_counter
    harness: Any = None  # set once the harness exists (the hook is called only while it runs)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # sample id -> stage -> seconds
    done_at: dict[str, float] = field(default_factory=dict)
    load_s: float = 0.0
    warmup_s: float = 0.0
    warmup_end: float | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def hook(self, stage: str, seconds: float) -> None:
        now = self.clock()
        if stage == "load":
            self.load_s += seconds
        elif stage == "warmup":
            self.warmup_s += seconds
            self.warmup_end = now
        elif stage in HARNESS_STAGES:
            sid = self.harness.sample_in_progress if self.harness is not None else None
            if sid is not None:
                mine = self.stages.setdefault(sid, {})
                mine[stage] = mine.get(stage, 0.0) + seconds
                if stage == "save":
                    self.done_at[sid] = now

    def on_sample(self, record: Any) -> None:
        """The harness's ``on_sample``: a :class:`~magbench.record.SampleRecord`, kept as its JSON."""
        self.done_at.setdefault(record.sample_id, self.clock())
        self.records.append(record.to_json())


def sample_stages(record: dict[str, Any], harness_s: dict[str, float]) -> dict[str, float]:
    """Seconds per stage of one record (see the module docstring)."""
    t = record.get("timing") or {}
    f = lambda k: float(t.get(k) or 0.0)  # noqa: E731
    stages: dict[str, float] = {"text": f("reset_s")}
    parts = {name: f(key) for key, name in MEMORIZE_PARTS.items() if key in t}
    if parts:
        stages.update(parts)
        rest = f("memorize_s") - sum(parts.values())
        if rest > 0:
            stages["memorize_other"] = rest
    else:
        stages["memorize"] = f("memorize_s")
    stages["generate"] = f("generate_s") - f("decode_s") - f("remember_ground_truth_s")
    if "decode_s" in t:
        stages["decode"] = f("decode_s")
    if t.get("remember_ground_truth_s") is not None:
        stages["gt_memory"] = f("remember_ground_truth_s")
    stages["memory_bytes"] = f("memory_bytes_s")
    for stage, name in HARNESS_STAGES.items():
        stages[name] = harness_s.get(stage, 0.0)
    return stages


def per_sample(obs: Observer, skip: int) -> list[dict[str, Any]]:
    """One row per record after the first ``skip``: wall time since the sample before it was
    done (the first: since the warm-up ended), and its stages."""
    rows = []
    previous = obs.warmup_end
    for i, rec in enumerate(obs.records):
        sid = rec["sample_id"]
        done = obs.done_at[sid]
        start, previous = previous, done
        if i < skip or start is None:
            continue
        stages = sample_stages(rec, obs.stages.get(sid, {}))
        wall = done - start
        busy = sum(stages.values())
        stages["other"] = max(0.0, wall - busy)
        t = rec.get("timing") or {}
        rows.append({
            "sample_id": sid, "status": rec.get("status"), "error": rec.get("error"),
            "wall_s": wall, "method_s": t.get("method_s"), "stages_s": stages, "overlap_s": max(0.0, busy - wall),
            "context_frames": rec.get("num_context"), "target_frames": rec.get("num_target"),
            "fps": t.get("fps"), "e2e_fps": t.get("e2e_fps"),
            "peak_device_bytes": (rec.get("memory") or {}).get("peak_device_bytes"),
        })
    return rows


def synth(folder: Path, n: int, seconds: float, size: str) -> None:
    from magbench.data.synthetic import SynthConfig, generate

    h, w = (int(x) for x in size.lower().split("x"))
    generate(folder, SynthConfig(n=n, height=h, width=w, seconds=seconds, seed=0))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    from magbench.cli import parse_options
    from magbench.harness import Harness, RunConfig
    from magbench.protocol import ReplayProtocol

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
        synth(tmp_path / "data", n, args.seconds, args.size)
        phases["dataset_s"] = time.perf_counter() - t_start
        config = RunConfig(
            method=args.method, dataset=f"synthetic:{tmp_path / 'data'}", out=tmp_path / "run",
            method_options=opts, metrics=[m for m in args.metrics.split(",") if m], metric_options=metric_options,
            device=device, dtype=args.dtype, keep_frames=not args.no_keep_frames,
            protocol=ReplayProtocol(memory_source=args.memory_source),
        )
        obs = Observer()
        t_build = time.perf_counter()
        harness = obs.harness = Harness(config, stage_hook=obs.hook)  # metric models load here, once
        phases["harness_build_s"] = time.perf_counter() - t_build
        t_run = time.perf_counter()
        harness.run(progress=False, on_sample=obs.on_sample)
        phases["run_s"] = time.perf_counter() - t_run
        frames_dir = tmp_path / "run" / "frames"
        kept = sum(p.stat().st_size for p in frames_dir.glob("*")) if frames_dir.is_dir() else 0
    phases["total_s"] = time.perf_counter() - t_start
    rows = per_sample(obs, args.warmup)
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        failed = [r.get("error") for r in obs.records if r.get("status") != "ok"]
        sys.exit(f"no timed sample finished: {failed[0] if failed else 'nothing ran'}")
    names = list(dict.fromkeys(k for r in ok for k in r["stages_s"]))
    mean = {k: statistics.mean(r["stages_s"].get(k, 0.0) for r in ok) for k in names}
    wall = statistics.mean(r["wall_s"] for r in ok)
    method_s = statistics.mean(float(r["method_s"] or 0.0) for r in ok)
    done = [obs.done_at[r["sample_id"]] for r in obs.records]
    timed_run_s = (done[-1] - done[args.warmup - 1]) if args.warmup else None
    result = {
        "gpu": torch.cuda.get_device_name(harness.device) if harness.device.startswith("cuda") else None,
        "device": harness.device, "dtype": harness.dtype_name, "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "method": args.method, "method_options": opts, "metrics": harness.metric_names, "torch": torch.__version__,
        "video_seconds": args.seconds, "video_size_on_disk": args.size, "memory_source": args.memory_source,
        "keep_frames": not args.no_keep_frames, "kept_frames_bytes_per_sample": kept / max(len(obs.records), 1),
        "context_frames": ok[0]["context_frames"], "target_frames": ok[0]["target_frames"],
        "resolution": list(harness.method.resolution) if harness.method.resolution else None,
        "samples_timed": len(ok), "failed": len(rows) - len(ok),
        "samples_per_hour": 3600.0 / wall, "mean_sample_wall_s": wall, "mean_method_s": method_s,
        "wall_over_method": wall / method_s if method_s else None, "mean_stage_s": mean,
        "method_load_s": obs.load_s, "harness_warmup_s": obs.warmup_s,
        "timed_run_s": timed_run_s, "phases_s": phases, "per_sample": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.method} on {result['gpu'] or harness.device} ({harness.dtype_name}), memory source {args.memory_source}, "
          f"{result['context_frames']} context + {result['target_frames']} target frames at {result['resolution']}, "
          f"{len(ok)} timed samples; JSON: {args.out}")
    print(f"script {phases['total_s']:.0f} s (dataset {phases['dataset_s']:.0f}, harness build {phases['harness_build_s']:.0f}, "
          f"method load {obs.load_s:.0f}, harness warm-up {obs.warmup_s:.0f}, run {phases['run_s']:.0f})")
    print(f"{'stage':<16}{'s/sample':>10}{'share':>8}")
    for k in names:
        print(f"{k:<16}{mean[k]:>10.3f}{100 * mean[k] / wall:>7.1f}%")
    print(f"{'wall':<16}{wall:>10.3f}  (method {method_s:.3f} s: wall/method {result['wall_over_method'] or 0:.2f}x)")
    print(f"samples/hour: {result['samples_per_hour']:.0f} steady")
    return result


if __name__ == "__main__":
    main()
