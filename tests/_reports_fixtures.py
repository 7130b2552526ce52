"""Hand-built run folders for the report tests, following magbench.store's schema.

``quality`` in [0, 1] sets how close a method's frames are to the truth (1 = perfect); the
metric values follow from it plus seeded per-sample noise, so rankings are known in advance.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from magbench.store import RecordWriter, atomic_write_json

KEY_INFO = {
    "psnr": {"higher_is_better": True, "best": 100.0},
    "ssim": {"higher_is_better": True, "best": 1.0},
    "lpips": {"higher_is_better": False, "best": 0.0},
    "bestmatch_lpips": {"higher_is_better": False, "best": 0.0},
}
PROTOCOL = {"id": "magbench-replay-v1", "switch_fraction": 0.75, "fps": 16, "use_correspondences": True}
DATASET = {"id": "synthetic:test", "revision": "abc123", "num_samples": 6}


def make_run(
    root: Path,
    name: str,
    method: str | None = None,
    kind: str = "method",
    quality: float = 0.5,
    n: int = 6,
    options: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    protocol: dict[str, Any] | None = None,
    metrics: tuple[str, ...] = ("psnr", "ssim", "lpips", "bestmatch_lpips"),
    failed: int = 0,
    caption: str = "A textured room; the camera pans right and comes back.",
    sample_offset: int = 0,
    noise: float = 0.02,
    seed: int = 0,
    num_target: int = 24,
    fps: float = 100.0,
    previews: bool = True,
) -> Path:
    """Write a run folder ``root/name`` and return its path."""
    method = method or name
    run = Path(root) / name
    run.mkdir(parents=True, exist_ok=True)
    dataset = dataset or DATASET
    protocol = protocol or PROTOCOL
    manifest = {
        "run_id": name,
        "method": {"name": method, "kind": kind, "description": f"{method} (test)", "config": {"name": method, "options": options or {}}},
        "dataset": dataset,
        "protocol": protocol,
        "metrics": list(metrics),
        "key_info": {k: v for k, v in KEY_INFO.items() if k in metrics},
        "seed": seed,
        "device": "cpu",
        "dtype": "float32",
        "versions": {"magbench": "0.1.0", "torch": "2.x"},
        "git_commit": "0" * 40,
        "hardware": {"cpu": "x86_64", "cpu_count": 2},
        "created_at": "2025-01-01T00:00:00+00:00",
        "fingerprint": f"fp-{name}",
        "config": {"method": {"name": method, "options": options or {}}, "seed": seed},
    }
    atomic_write_json(run / "manifest.json", manifest)
    rng = np.random.default_rng(zlib.crc32(f"{name}/{seed}".encode()))
    writer = RecordWriter(run / "samples.jsonl")
    h, w = 12, 20
    for i in range(n):
        sid = f"s{i + sample_offset:03d}"
        rec: dict[str, Any] = {"sample_id": sid, "caption": caption, "seed": i, "num_context": 72, "num_target": num_target,
                               "switch_frame": 72, "height": h, "width": w, "fps": 16.0, "finished_at": "2025-01-01T00:00:00+00:00"}
        if i < failed:
            rec.update(status="failed", error="generate: RuntimeError: boom", error_type="RuntimeError")
            writer.append(rec)
            continue
        # Per-sample difficulty is shared by every method (same seed per sample id): paired tests see it.
        difficulty = np.random.default_rng(i + sample_offset).uniform(0, 0.2)
        q = float(np.clip(quality - difficulty + rng.normal(0, noise), 0.001, 0.999))
        t = np.arange(num_target)
        # Memory fades then recovers on return: a retention curve with a shape.
        pf_q = np.clip(q - 0.1 * np.sin(np.pi * t / max(num_target - 1, 1)), 0.001, 1.0)
        per_frame = {
            "psnr": (10 + 30 * pf_q).tolist(),
            "ssim": pf_q.tolist(),
            "lpips": (0.6 * (1 - pf_q)).tolist(),
            "bestmatch_lpips": (0.4 * (1 - pf_q)).tolist(),
        }
        if kind == "ceiling":  # a ceiling reproduces the truth: every metric at its best value
            per_frame = {k: [KEY_INFO[k]["best"]] * num_target for k in per_frame}
            q = 1.0
        per_frame = {k: v for k, v in per_frame.items() if k in metrics}
        blocks = [0.01 / (fps / 100.0)] * (num_target // 12)
        rec.update(
            status="ok", error=None, error_type=None,
            metrics={k: float(np.mean(v)) for k, v in per_frame.items()},
            per_frame=per_frame,
            extra={"seconds_since_leave": (1.5 + t / 16.0).tolist(), "bestmatch_indices": np.maximum(t - 1, 0).tolist()},
            timing={"memorize_s": 0.001, "generate_s": sum(blocks), "first_block_s": blocks[0], "block_s": blocks,
                    "block_frames": [12] * len(blocks), "fps": fps * (1 + rng.normal(0, 0.05)),
                    "block_p50_s": blocks[0], "block_p95_s": blocks[0]},
            memory={"peak_device_bytes": None, "peak_rss_bytes": 5_000_000 + i, "kv_bytes_end": 1000 * (i + 1) * len(blocks),
                    "kv_bytes_peak": 1000 * (i + 1) * len(blocks), "kv_bytes_per_block": [1000 * (i + 1) * (b + 1) for b in range(len(blocks))],
                    "frames_per_block": [12 * (b + 1) for b in range(len(blocks))]},
            preview=None,
        )
        if previews:
            rec["preview"] = _write_preview(run, sid, q, h, w, num_target, rng)
        writer.append(rec)
    return run


def _write_preview(run: Path, sid: str, q: float, h: int, w: int, num_target: int, rng: np.random.Generator) -> str:
    k = min(16, num_target)
    idx = np.unique(np.linspace(0, num_target - 1, k).round().astype(int))
    base = np.random.default_rng(int(sid[1:])).integers(0, 256, size=(len(idx), h, w, 3)).astype(np.float64)
    noise = rng.integers(0, 256, size=base.shape)
    gen = (q * base + (1 - q) * noise).astype(np.uint8)
    rel = f"previews/{sid}.npz"
    (run / "previews").mkdir(exist_ok=True)
    np.savez_compressed(run / rel, target=base.astype(np.uint8), generated=gen, frame_index=idx,
                        bestmatch_target=base.astype(np.uint8)[np.maximum(np.arange(len(idx)) - 1, 0)])
    return rel


def corrupt_line(run: Path, after_line: int = 2) -> int:
    """Insert a damaged line after ``after_line`` records; returns its 1-based line number."""
    path = run / "samples.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(after_line, '{"sample_id": "broken", "metrics": {"psnr": 3\n')
    path.write_text("".join(lines), encoding="utf-8")
    return after_line + 1


def sanity_trio(root: Path, **kw: Any) -> dict[str, Path]:
    """A contender between a floor and the ceiling, names chosen so alphabetical != rank order."""
    return {
        "oracle": make_run(root, "oracle", kind="ceiling", quality=1.0, noise=0.0, **kw),
        "zeta-mem": make_run(root, "zeta-mem", kind="method", quality=0.8, **kw),
        "repeat-last": make_run(root, "repeat-last", kind="floor", quality=0.3, **kw),
    }


def read_records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines() if l.strip()]
