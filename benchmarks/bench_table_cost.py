#!/usr/bin/env python
"""What the paper's whole MAG-Bench table costs: every Wan method of the table through the
harness (exactly what ``magbench run`` runs) in both memory sources, on synthetic 480x832 clips
of MAG-Bench's durations, then samples per hour and the wall-time estimate of the table
(4 methods x 2 memory sources x 176 videos = 1,408 samples) on one GPU and on N.

Per method the model loads once (``magbench.harness.load_method``) and serves one harness per
memory source (``Harness(config, method=...)``); each harness warms up as ``magbench run``
does (one untimed block of its first clip), then runs the clips (``--seconds``, one clip per
duration, written as ``magbench data synth --size 480x832 --seconds S`` writes them). A
sample's wall time is the time between two finished records (the harness's pipeline overlaps
the reading of the next clip and the writing of the previous one with generation: see
``benchmarks/bench_throughput.py``); its stages come from the record's timing and the stage hook.

The estimate, per (method, memory source): start-up (process imports + model load + warm-up,
what each ``magbench run`` command pays) + 176 x the mean sample wall time at the measured
durations. MAG-Bench's clips last 10-20 s; their distribution is not known here (the dataset is
not downloadable on this machine), so the default measures one clip of 15 s, the middle of that
range: for a cost linear in the duration that is the mean over clips spread evenly across it.
``--seconds 10,20`` measures both ends (and the table estimate then uses their mean). On N GPUs
each GPU takes 1/N of every configuration's videos and pays its own start-up (an estimate from
one GPU's measurements: no shared bottleneck assumed). Few samples are timed (one per duration
and configuration): enough for an estimate to within a few percent of sample time, which is
what the budget of one short device call allows; the JSON keeps every sample.

Usage (one GPU; about 5 minutes on an H200 with the defaults; ``--budget-s`` stops starting
new runs past that many seconds, the JSON is rewritten after every run)::

    python benchmarks/bench_table_cost.py --out table_cost.json
    python benchmarks/bench_table_cost.py --methods mag --seconds 10,20 --out mag_cost.json
    # CPU smoke test (tiny random models, tiny clips, a few minutes on 2 cores):
    python benchmarks/bench_table_cost.py --opt config=tiny --opt random_weights=true --device cpu \\
        --size 32x48 --seconds 6 --methods mag,self-forcing --out /tmp/table_cost_tiny.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_throughput (the harness observer) sits beside this script
    sys.path.insert(0, str(HERE))

from bench_throughput import Observer, per_sample  # noqa: E402

IMPORTS_S = time.perf_counter() - T_START  # torch and the script's own imports (magbench's come below)
PAPER_METHODS = ("mag", "longlive", "causvid", "self-forcing")  # the rows of the paper's MAG-Bench table
SOURCES = ("generated", "ground-truth")
PAPER_VIDEOS = 176
METRIC_OPTIONS = {m: {"random_weights": True} for m in ("lpips", "bestmatch")}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(PAPER_METHODS), help="Wan methods (default: the paper's table's four)")
    ap.add_argument("--sources", default=",".join(SOURCES), help="memory sources (default both)")
    ap.add_argument("--seconds", default="15", help="clip durations, comma-separated (one clip each; MAG-Bench: 10-20)")
    ap.add_argument("--size", default="480x832", help="HxW of the clips on disk (MAG-Bench: 480x832)")
    ap.add_argument("--opt", action="append", default=[], help="method option KEY=VALUE (default random_weights=true)")
    ap.add_argument("--metrics", default="psnr,ssim,lpips,bestmatch", help="the table's metrics (LPIPS family: random weights)")
    ap.add_argument("--videos", type=int, default=PAPER_VIDEOS, help="videos per configuration in the estimate")
    ap.add_argument("--gpus", default="1,2,4,8", help="GPU counts to estimate the table's wall time for")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--no-pipeline", action="store_true", help="the serial harness (as magbench run --no-pipeline)")
    ap.add_argument("--data", default=None, help="folder for the clips (kept and reused; default a temporary one)")
    ap.add_argument("--budget-s", type=float, default=None, help="start no run after this many seconds")
    ap.add_argument("--out", required=True, help="JSON output (rewritten after every run)")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    bad = [s for s in args.sources if s not in SOURCES]
    if bad:
        ap.error(f"--sources {','.join(bad)}: choose from {', '.join(SOURCES)}")
    try:
        args.seconds = [float(s) for s in args.seconds.split(",") if s.strip()]
        args.gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
        h, w = (int(x) for x in args.size.lower().split("x"))
    except ValueError as exc:
        ap.error(f"--seconds, --gpus, --size: {exc}")
    args.hw = (h, w)
    return args


def write_clips(root: Path, seconds: list[float], hw: tuple[int, int]) -> str:
    """One synthetic leave-and-return clip per duration (as ``magbench data synth``) under
    ``root/dS/``, listed in one MAG-Bench-schema CSV at ``root``: the dataset spec ``csv:ROOT``."""
    from magbench.data.synthetic import SynthConfig, generate
    from magbench.store import atomic_write_text

    rows = ["video_path,raw_caption,duration(sec)"]
    for s in seconds:
        sub = root / f"d{s:g}"
        if not (sub / "magbench_synthetic.csv").is_file():
            generate(sub, SynthConfig(n=1, height=hw[0], width=hw[1], seconds=s, seed=0))
        rows.append(f'd{s:g}/videos/synthetic_000_pan.mp4,"A procedural textured scene; the camera pans right, then returns.",{s:g}')
    atomic_write_text(root / "table_cost.csv", "\n".join(rows) + "\n")
    return f"csv:{root}"


def write_json(path: str, obj: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, p)


def run_config(args, method: str, source: str, dataset: str, out: Path, opts: dict[str, Any]):
    from magbench.harness import RunConfig
    from magbench.protocol import ReplayProtocol

    return RunConfig(
        method=method, dataset=dataset, out=out, method_options=opts, metrics=[m for m in args.metrics.split(",") if m],
        metric_options=METRIC_OPTIONS, device=args.device, dtype=args.dtype, pipeline=not args.no_pipeline,
        protocol=ReplayProtocol(memory_source=source),
    )


def steady_state(rows: list[dict[str, Any]], device: str, pipelined: bool) -> None:
    """Each sample's ``steady_s``: its time between finished samples in a long run. A sample
    followed by another is measured as it is; the run's last one is not (nothing follows to
    overlap its writing with): with the pipeline its writer-thread stages (``save``, and scoring
    on a CPU device) would overlap the next sample, so they leave its critical path, unless one
    of the side threads' stages is the longer."""
    for i, r in enumerate(rows):
        st = r["stages_s"]
        off_main = st.get("save", 0.0) + (st.get("metrics", 0.0) if device == "cpu" else 0.0)
        if pipelined and i == len(rows) - 1:
            r["steady_s"] = max(r["wall_s"] - off_main, off_main, st.get("input", 0.0))
        else:
            r["steady_s"] = r["wall_s"]


def estimate(rows: list[dict[str, Any]], videos: int, gpus: list[int], imports_s: float) -> dict[str, Any]:
    """The table's wall time per GPU count: per configuration (one ``magbench run`` command
    each), start-up (imports + load + warm-up, paid by every process) + its share of the videos
    x the mean steady-state sample time."""
    out: dict[str, Any] = {}
    for n in gpus:
        per = []
        for r in rows:
            start_up = imports_s + r["load_s"] + r["warmup_s"]
            per.append(start_up + math.ceil(videos / n) * r["mean_steady_s"])
        out[str(n)] = {"hours": sum(per) / 3600.0, "configurations": len(per), "videos_per_gpu": math.ceil(videos / n)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    from magbench.cli import parse_options
    from magbench.harness import Harness, load_method

    imports_s = time.perf_counter() - T_START
    opts = parse_options(args.opt) if args.opt else {}
    opts.setdefault("random_weights", True)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]), "out": args.out,
        "methods": args.methods, "sources": args.sources, "seconds": args.seconds, "size": list(args.hw),
        "method_options": opts, "metrics": args.metrics, "pipeline": not args.no_pipeline, "videos": args.videos,
        "torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "imports_s": imports_s, "runs": [], "skipped": [], "errors": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_table_cost_") as tmp:
        data_root = Path(args.data) if args.data else Path(tmp) / "data"
        t0 = time.perf_counter()
        dataset = write_clips(data_root, args.seconds, args.hw)
        result["dataset_s"] = time.perf_counter() - t0
        print(f"clips {args.seconds} s at {args.hw[0]}x{args.hw[1]} in {result['dataset_s']:.0f} s; imports {imports_s:.1f} s", flush=True)
        for method in args.methods:
            elapsed = time.perf_counter() - T_START
            if args.budget_s is not None and elapsed > args.budget_s:
                result["skipped"].append({"method": method, "why": f"{elapsed:.0f} s elapsed > --budget-s {args.budget_s:.0f}"})
                print(f"[{method}] skipped: budget", flush=True)
                write_json(args.out, result)
                continue
            try:
                base = run_config(args, method, args.sources[0], dataset, Path(tmp) / "runs" / method, opts)
                t_load = time.perf_counter()
                loaded = load_method(base)
                load_s = time.perf_counter() - t_load
            except Exception as exc:  # one method failing must not stop the others
                result["errors"].append({"method": method, "error": f"{type(exc).__name__}: {exc}"})
                print(f"[{method}] FAILED to load: {type(exc).__name__}: {exc}", flush=True)
                write_json(args.out, result)
                continue
            try:
                for source in args.sources:
                    cfg = replace(base, out=Path(tmp) / "runs" / f"{method}__{source}",
                                  protocol=replace(base.protocol, memory_source=source))
                    obs = Observer()
                    t_run = time.perf_counter()
                    harness = obs.harness = Harness(cfg, stage_hook=obs.hook, method=loaded)
                    result.setdefault("device", harness.device)
                    result.setdefault("dtype", harness.dtype_name)
                    if harness.device.startswith("cuda"):
                        result.setdefault("gpu", torch.cuda.get_device_name(harness.device))
                    harness.run(progress=False, on_sample=obs.on_sample)
                    run_s = time.perf_counter() - t_run
                    rows = per_sample(obs, 0)
                    steady_state(rows, harness.device, not args.no_pipeline)
                    ok = [r for r in rows if r["status"] == "ok"]
                    run = {
                        "method": method, "source": source, "load_s": load_s, "warmup_s": obs.warmup_s, "run_s": run_s,
                        "samples": rows, "failed": len(rows) - len(ok),
                        "mean_sample_wall_s": statistics.mean(r["wall_s"] for r in ok) if ok else None,
                        "mean_method_s": statistics.mean(float(r["method_s"] or 0) for r in ok) if ok else None,
                        "mean_steady_s": statistics.mean(r["steady_s"] for r in ok) if ok else None,
                    }
                    if ok:
                        run["samples_per_hour"] = 3600.0 / run["mean_steady_s"]
                        run["steady_over_method"] = run["mean_steady_s"] / run["mean_method_s"] if run["mean_method_s"] else None
                    else:
                        run["error"] = next((r["error"] for r in rows if r.get("error")), "no sample ran")
                    result["runs"].append(run)
                    print(f"[{method}/{source}] load {load_s:.1f} s (shared), warm-up {obs.warmup_s:.1f} s, "
                          + (f"{len(ok)} samples, {run['mean_sample_wall_s']:.2f} s each (method {run['mean_method_s']:.2f} s)"
                             if ok else f"FAILED: {run['error']}"), flush=True)
                    write_json(args.out, result)
            except Exception as exc:
                result["errors"].append({"method": method, "error": f"{type(exc).__name__}: {exc}"})
                print(f"[{method}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            finally:
                loaded.close()
    good = [r for r in result["runs"] if r.get("mean_sample_wall_s")]
    result["estimate"] = estimate(good, args.videos, args.gpus, imports_s)
    result["estimate_covers"] = f"{len(good)} of {len(args.methods) * len(args.sources)} configurations measured"
    profile = next((r for r in good if r["method"] == good[0]["method"]), None) if good else None
    if profile:
        longest = max((s for s in profile["samples"] if s["status"] == "ok"), key=lambda s: s["target_frames"] or 0)
        result["profile"] = {"method": profile["method"], "source": profile["source"], "sample_id": longest["sample_id"],
                             "load_s": profile["load_s"], "warmup_s": profile["warmup_s"], "wall_s": longest["wall_s"],
                             "stages_s": longest["stages_s"], "overlap_s": longest["overlap_s"]}
    result["total_s"] = time.perf_counter() - T_START
    write_json(args.out, result)
    print_tables(result)
    return result


def print_tables(result: dict[str, Any]) -> None:
    where = result.get("gpu") or result.get("device", "?")
    print(f"\nthe table's cost on {where} ({result.get('dtype')}), clips of {result['seconds']} s at "
          f"{result['size'][0]}x{result['size'][1]}, pipeline {'on' if result['pipeline'] else 'off'}; JSON: "
          f"{result['out']}")
    p = result.get("profile")
    if p:
        print(f"one sample's wall time by stage ({p['method']}, {p['source']}, {p['sample_id']}; "
              f"run start-up: load {p['load_s']:.1f} s, warm-up {p['warmup_s']:.1f} s):")
        for k, v in p["stages_s"].items():
            print(f"  {k:<16}{v:>9.3f} s {100 * v / p['wall_s']:>6.1f}%")
        print(f"  {'wall':<16}{p['wall_s']:>9.3f} s  (stages overlapped by {p['overlap_s']:.3f} s)")
    print("per configuration: model load (shared by its two memory sources here, paid by each `magbench run`), warm-up, "
          "one sample's wall time as measured, its steady-state time in a long run (see steady_state), the method's "
          "own time, and samples per hour at the steady-state time")
    print(f"{'method':<14}{'source':<14}{'load s':>8}{'warm s':>8}{'wall s':>8}{'steady s':>10}{'method s':>10}"
          f"{'steady/meth':>12}{'samples/h':>11}")
    for r in result["runs"]:
        if r.get("mean_sample_wall_s"):
            print(f"{r['method']:<14}{r['source']:<14}{r['load_s']:>8.1f}{r['warmup_s']:>8.1f}{r['mean_sample_wall_s']:>8.2f}"
                  f"{r['mean_steady_s']:>10.2f}{r['mean_method_s']:>10.2f}{r['steady_over_method'] or 0:>12.2f}"
                  f"{r['samples_per_hour']:>11.0f}")
        else:
            print(f"{r['method']:<14}{r['source']:<14} failed: {r.get('error')}")
    for s in result["skipped"] + result["errors"]:
        print(f"{s['method']:<14}not measured: {s.get('why') or s.get('error')}")
    est = result.get("estimate") or {}
    print(f"estimated wall time of the table ({result['estimate_covers']}, {result['videos']} videos each, "
          "start-up per configuration included):")
    print("  " + "   ".join(f"{n} GPU{'s' if n != '1' else ''}: {e['hours']:.2f} h" for n, e in est.items()))
    print(f"total {result['total_s']:.0f} s")


if __name__ == "__main__":
    main()
