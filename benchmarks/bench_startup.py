#!/usr/bin/env python
"""Start-up of ``magbench run``: from the command to the first timed sample, by stage.

Each repeat is a fresh Python process doing what ``magbench run`` does (``python -m magbench
run ... --limit 1``), with timestamps: interpreter start (the process's creation time) ->
``import magbench.cli`` -> ``import magbench.harness`` (torch) -> the harness built (method and
task resolved, metrics built, dataset listed) -> the run folder prepared (manifest, lock) ->
the method loaded (``load``: weights, kernels' just-in-time compilation) -> the warm-up (one
untimed block) -> the first timed sample's record. "To the first timed sample" is the time to
the warm-up's end: the first timed sample starts there.

Cold and warm: the first repeat runs with an empty compilation cache (``TORCHINDUCTOR_CACHE_DIR``
and ``TRITON_CACHE_DIR`` in a fresh folder, unless ``--cache-dir`` names one), the later repeats
reuse it, as a second ``magbench run`` on the same machine would. The operating system's page
cache is not dropped (not possible without root on every machine): "cold" is a first run of a
process whose files were read before.

Usage::

    python benchmarks/bench_startup.py --method mag --repeats 2 --out startup.json            # one GPU
    python benchmarks/bench_startup.py --method mag --opt config=tiny --opt random_weights=true \\
        --device cpu --repeats 2 --out /tmp/startup_tiny.json                                 # CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("interpreter", "import_cli", "import_harness", "harness_build", "prepare", "load", "warmup", "first_sample")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One start-up, timed in this (fresh) process; returns the seconds of each stage."""
    t: dict[str, float] = {"main": time.time()}
    try:
        import psutil

        t["created"] = psutil.Process().create_time()
    except Exception:  # pragma: no cover - psutil is a dependency
        t["created"] = t["main"]
    import magbench.cli  # noqa: F401

    t["import_cli"] = time.time()
    from magbench.cli import parse_metric_options, parse_options
    from magbench.harness import Harness, RunConfig

    t["import_harness"] = time.time()
    marks: dict[str, float] = {}

    def hook(stage: str, seconds: float) -> None:
        marks.setdefault(stage, time.time())

    config = RunConfig(
        method=spec["method"], dataset=spec["dataset"], out=Path(spec["out"]), method_options=parse_options(spec["opt"]),
        metrics=spec["metrics"], metric_options=parse_metric_options(spec["metric_opt"]), limit=1, device=spec["device"],
    )
    harness = Harness(config, stage_hook=hook)
    t["harness_build"] = time.time()
    harness.prepare()
    t["prepare"] = time.time()
    summary = harness.run(progress=False)
    t["first_sample"] = time.time()
    if summary.ok != 1:
        raise SystemExit(f"the sample failed: {summary.records[0].error if summary.records else 'nothing ran'}")
    t["load"], t["warmup"] = marks["load"], marks["warmup"]
    order = ["created", "main", "import_cli", "import_harness", "harness_build", "prepare", "load", "warmup", "first_sample"]
    stages = {"interpreter": t["main"] - t["created"]}
    stages.update({b: t[b] - t[a] for a, b in zip(order[1:], order[2:])})
    return {"stages_s": stages, "to_first_timed_sample_s": t["warmup"] - t["created"],
            "to_first_record_s": t["first_sample"] - t["created"], "device": harness.device}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="mag")
    ap.add_argument("--opt", action="append", default=[], help="method option KEY=VALUE (default random_weights=true)")
    ap.add_argument("--dataset", default="synthetic", help="default: the embedded synthetic set (64x112, cached)")
    ap.add_argument("--metrics", default="psnr,ssim,lpips,bestmatch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="fresh processes; the first with an empty compilation cache")
    ap.add_argument("--cache-dir", default=None, help="compilation cache to use (default: a fresh one, so repeat 1 is cold)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one timed start-up, in a fresh process
        print(json.dumps(child(json.loads(args.child))))
        return {}
    opt = list(args.opt) if any(o.startswith("random_weights=") for o in args.opt) else [*args.opt, "random_weights=true"]
    metric_opt = [f"{m}.random_weights=true" for m in ("lpips", "bestmatch") if m in args.metrics.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else Path(tmp) / "compile-cache"
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "TRITON_CACHE_DIR": str(cache / "triton")}
        for i in range(args.repeats):
            spec = {"method": args.method, "dataset": args.dataset, "out": str(Path(tmp) / f"run{i}"), "opt": opt,
                    "metrics": args.metrics.split(","), "metric_opt": metric_opt, "device": args.device}
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "--out", "-", "--child", json.dumps(spec)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"repeat {i + 1} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(repeat=i + 1, cache="cold (empty compilation cache)" if i == 0 and not args.cache_dir else "warm",
                       command_s=time.time() - t0)
            rows.append(row)
            print(f"repeat {i + 1} ({row['cache']}): first timed sample at {row['to_first_timed_sample_s']:.1f} s", flush=True)
    gpu = None
    if rows and rows[0]["device"].startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(0)
    out = {"command": " ".join(["bench_startup.py", *(argv if argv is not None else sys.argv[1:])]),
           "method": args.method, "method_options": opt, "metrics": args.metrics, "dataset": args.dataset,
           "device": rows[0]["device"] if rows else None, "gpu": gpu, "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "python": platform.python_version(), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\nstart-up of `magbench run --method {args.method}` on {gpu or out['device']} (seconds); JSON: {args.out}")
    print(f"{'stage':<16}" + "".join(f"{'#' + str(r['repeat']) + ' ' + r['cache'].split()[0]:>12}" for r in rows))
    for st in STAGES:
        print(f"{st:<16}" + "".join(f"{r['stages_s'][st]:>12.2f}" for r in rows))
    print(f"{'to 1st timed':<16}" + "".join(f"{r['to_first_timed_sample_s']:>12.2f}" for r in rows))
    print(f"{'to 1st record':<16}" + "".join(f"{r['to_first_record_s']:>12.2f}" for r in rows))
    return out


if __name__ == "__main__":
    main()
