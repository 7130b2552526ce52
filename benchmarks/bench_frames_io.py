#!/usr/bin/env python
"""What writing a sample's kept frames costs (``RUN/frames/ID.npz``, uint8 T x H x W x 3), per
compression level, on the CPU: write and read seconds, MB/s, file size.

The harness writes them with ``np.savez_compressed`` (zip deflate at zlib's default level 6).
Every variant here is an ``.npz`` that ``np.load`` reads as it is (``magbench score`` needs no
change): deflate at levels 6 (= ``np.savez_compressed``), 1 and 0 (stored). Content, since it
decides what compression buys: ``synthetic`` (a clip of the synthetic leave-and-return set as the
harness reads it, H.264-decoded: a replay method's output), ``synthetic+noise`` (the same plus Gaussian noise of sigma 6,
closer to a generator's output) and ``noise`` (uniform, incompressible: the upper bound on size).

Usage::

    python benchmarks/bench_frames_io.py --frames 80 --size 480x832 --out /tmp/frames_io.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np


def write_npz(path: Path, frames: np.ndarray, level: int) -> None:
    """An .npz holding ``generated`` (as np.savez_compressed writes it) at deflate ``level``."""
    method = zipfile.ZIP_STORED if level == 0 else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=None if level == 0 else level, allowZip64=True) as zf:
        with zf.open("generated.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(frames), allow_pickle=False)


VARIANTS = {
    "savez_compressed (today, level 6)": lambda p, x: np.savez_compressed(p, generated=x),
    "deflate level 1": lambda p, x: write_npz(p, x, 1),
    "stored (level 0)": lambda p, x: write_npz(p, x, 0),
}


def contents(frames: int, h: int, w: int) -> dict[str, np.ndarray]:
    """The three contents, ``frames`` frames each: the synthetic clip as a method reads it (written
    through H.264 by ``magbench data synth``, decoded by magbench's reader), it plus noise, noise."""
    from magbench.data.synthetic import SynthConfig, generate
    from magbench.data.video_io import read_video

    seconds = max(6.0, frames / 16 / 0.25)  # a clip whose target (its last quarter) has ``frames`` frames
    with tempfile.TemporaryDirectory() as tmp:
        ds = generate(Path(tmp), SynthConfig(n=1, height=h, width=w, seconds=seconds, seed=0))
        clip = read_video(ds.samples[0].video_path)
    synth = np.ascontiguousarray(clip[-frames:])
    rng = np.random.default_rng(0)
    noisy = np.clip(synth.astype(np.float32) + rng.normal(0, 6, synth.shape), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, synth.shape, dtype=np.uint8)
    return {"synthetic": synth, "synthetic+noise": noisy, "noise": noise}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=80, help="target frames (a 20 s MAG-Bench clip: 80)")
    ap.add_argument("--size", default="480x832")
    ap.add_argument("--repeats", type=int, default=3, help="the fastest of these is kept")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    h, w = (int(x) for x in args.size.split("x"))
    data = contents(args.frames, h, w)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for content, frames in data.items():
            raw = frames.nbytes
            for name, write in VARIANTS.items():
                path = Path(tmp) / "f.npz"
                wt, rt = [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    write(path, frames)
                    wt.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    with np.load(path, allow_pickle=False) as z:
                        back = z["generated"]
                    rt.append(time.perf_counter() - t0)
                assert np.array_equal(back, frames)  # lossless, and np.load reads it as it is
                size = path.stat().st_size
                rows.append({"content": content, "variant": name, "write_s": min(wt), "read_s": min(rt),
                             "mb": size / 1e6, "vs_raw": size / raw, "write_mb_per_s": raw / 1e6 / min(wt)})
    cpu = platform.processor() or platform.machine()
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"command": " ".join(["bench_frames_io.py", *(argv if argv is not None else sys.argv[1:])]),
           "cpu": model or cpu, "cpu_count": os.cpu_count(), "numpy": np.__version__, "frames": args.frames,
           "size": [h, w], "raw_mb": next(iter(data.values())).nbytes / 1e6, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{args.frames} frames {h}x{w} uint8 ({out['raw_mb']:.1f} MB raw) on {out['cpu']} ({os.cpu_count()} cores); JSON: {args.out}")
    print(f"{'content':<17}{'variant':<36}{'write s':>8}{'MB/s':>7}{'read s':>8}{'MB':>7}{'of raw':>8}")
    for r in rows:
        print(f"{r['content']:<17}{r['variant']:<36}{r['write_s']:>8.2f}{r['write_mb_per_s']:>7.0f}{r['read_s']:>8.2f}"
              f"{r['mb']:>7.1f}{100 * r['vs_raw']:>7.0f}%")
    return out


if __name__ == "__main__":
    main()
