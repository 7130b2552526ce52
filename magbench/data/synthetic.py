"""A synthetic leave-and-return set, generated locally and deterministically by seed.

Each video looks at a procedural textured scene (colour blobs, gratings, shapes and fine noise:
enough structure that PSNR and LPIPS separate methods). The camera holds its starting view for a
few frames, leaves it (a pan, a tilt, or a dolly out), turns around at the ``turnaround`` fraction
of the kept video (default 0.53: near the middle, like MAG-Bench's clip-plus-reverse videos, and
well before the replay protocol's switch), and retraces its path at the same speed, arriving home
on the last kept frame. So the target segment shows only views already seen in the context, and
the exact correspondence of every frame is known. ``turnaround=None`` turns at the switch instead
(the earlier layout, whose context is mostly the static home view).

Written as mp4 + CSV in the MAG-Bench schema (plus ``annotations/*.json`` with per-frame poses
and correspondences), so the synthetic set goes through the same loader as the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magbench.data.dataset import Dataset, load_csv_dataset
from magbench.data.video_io import write_video
from magbench.errors import DatasetError, SampleError
from magbench.protocol import ReplayProtocol
from magbench.store import atomic_write_json, atomic_write_text

TRAJECTORIES = ("pan", "tilt", "dolly")
# Part of the cache key and the dataset id: bump it whenever the same config renders different pixels.
# 2: zoomed views blur their own scene (1 could sample a blur cached for an earlier scene); the
#    H.264 encode runs on one thread (its slice layout no longer follows the machine's CPU count).
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class SynthConfig:
    n: int = 6
    height: int = 64
    width: int = 112
    seconds: float = 10.0
    seed: int = 0
    fps: int = 16
    # Fraction of the kept video at which the camera turns around; None: at the switch.
    turnaround: float | None = 0.53

    @property
    def key(self) -> str:
        blob = json.dumps({**asdict(self), "generator_version": GENERATOR_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def default_cache_dir() -> Path:
    root = os.environ.get("MAGBENCH_CACHE") or Path.home() / ".cache" / "magbench"
    return Path(root) / "synthetic"


def make_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float32 H x W x 3 texture in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    img += base
    # Low-frequency colour blobs give each region a distinct hue.
    for _ in range(int(rng.integers(10, 18))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        sy, sx = rng.uniform(0.05, 0.25) * height, rng.uniform(0.03, 0.15) * width
        amp = rng.uniform(-0.5, 0.5, size=3).astype(np.float32)
        img += np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))[..., None] * amp
    # Gratings: oriented mid-frequency structure.
    for _ in range(3):
        theta, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        img += 0.08 * wave[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    # Hard-edged shapes: edges are what LPIPS and SSIM are sensitive to.
    for _ in range(int(rng.integers(25, 45))):
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.02, 0.08) * min(height, width) * 2
        if rng.random() < 0.5:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        else:
            mask = (np.abs(yy - cy) < r * rng.uniform(0.3, 1)) & (np.abs(xx - cx) < r * rng.uniform(0.3, 1.5))
        img[mask] = 0.3 * img[mask] + 0.7 * colour
    # Fine noise, fixed in the scene (it moves with the camera, unlike sensor noise).
    img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def trajectory(kind: str, num_frames: int, leave: int, turnaround: int, kept: int) -> np.ndarray:
    """Per-frame poses (dx, dy, zoom) in units of the view size.

    Frames [0, leave) hold the home view; [leave, turnaround] leave it in ``L = turnaround - leave
    + 1`` equal steps; (turnaround, kept) retrace the same poses in reverse, so frame
    ``turnaround + k`` shows the view of frame ``turnaround - k`` and the last kept frame is home
    again when ``leave = 2 * turnaround - kept + 2``. Frames from ``kept`` on stay home.
    """
    span = turnaround - leave + 1
    steps = np.zeros(num_frames, np.int64)
    steps[leave : turnaround + 1] = np.arange(1, span + 1)
    back = np.arange(span - 1, span - 1 - (kept - turnaround - 1), -1)
    steps[turnaround + 1 : kept] = np.maximum(back, 0)
    frac = steps / span
    poses = np.zeros((num_frames, 3), np.float64)
    poses[:, 2] = 1.0
    if kind == "pan":
        poses[:, 0] = 1.2 * frac
    elif kind == "tilt":
        poses[:, 1] = 0.8 * frac
    elif kind == "dolly":
        poses[:, 2] = 1.0 + 1.0 * frac  # zoom out: the view covers twice the area
        poses[:, 0] = 0.25 * frac
    else:
        raise ValueError(kind)
    return poses


def render(scene: torch.Tensor, poses: np.ndarray, height: int, width: int) -> np.ndarray:
    """Views of ``scene`` (1 x 3 x SH x SW) for each pose, uint8 T x H x W x 3."""
    _, _, sh, sw = scene.shape
    frames = []
    # Blurred copies are cached per call, keyed by zoom: a process-wide cache keyed by id(scene)
    # handed a later scene the blur of a freed one that happened to share its id.
    blurred: dict[float, torch.Tensor] = {}
    for dx, dy, zoom in poses:
        # View centre starts left/top so the camera has room to move right/down or zoom out.
        cx = (width * 1.1 + dx * width) / sw * 2 - 1
        cy = (height * 1.1 + dy * height) / sh * 2 - 1
        ys = torch.linspace(-1, 1, height, dtype=torch.float64) * (height * zoom / sh)
        xs = torch.linspace(-1, 1, width, dtype=torch.float64) * (width * zoom / sw)
        gy, gx = torch.meshgrid(ys + cy, xs + cx, indexing="ij")
        grid = torch.stack([gx, gy], -1)[None].float()
        # Zooming out needs antialiasing: sample a blurred copy in proportion to the zoom.
        src = scene
        if zoom > 1.01:
            key = round(float(zoom), 6)
            if key not in blurred:
                blurred[key] = _blurred(scene, zoom)
            src = blurred[key]
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        frames.append(out[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy())
    return np.stack(frames)


def _blurred(scene: torch.Tensor, zoom: float) -> torch.Tensor:
    """``scene`` with a separable Gaussian blur whose width grows with ``zoom`` (antialiasing)."""
    sigma = 0.5 * (zoom - 1.0) + 1e-6
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = scene.shape[1]
    s = F.conv2d(F.pad(scene, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    s = F.conv2d(F.pad(s, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return s


def correspondences(poses: np.ndarray) -> list[int]:
    """For each frame, the earliest frame with exactly the same pose (same view)."""
    first: dict[tuple[float, ...], int] = {}
    out = []
    for t, p in enumerate(map(tuple, poses)):
        out.append(first.setdefault(p, t))
    return out


def timeline(config: SynthConfig, protocol: ReplayProtocol | None = None) -> tuple[int, int, int, int]:
    """``(num_frames, leave, turnaround, kept)`` of every video of ``config`` (see :func:`trajectory`)."""
    protocol = protocol or ReplayProtocol(fps=config.fps)
    num_frames = int(round(config.seconds * config.fps))
    try:
        split = protocol.split(num_frames, config.seconds, name="synthetic video")
    except SampleError as exc:
        raise DatasetError(f"{exc}; choose --seconds of 6 or more (e.g. 10)") from exc
    kept, switch = split.kept, split.switch
    turn = switch - 1 if config.turnaround is None else int(round(config.turnaround * (kept - 1)))
    leave = 2 * turn - kept + 2  # leave at the speed of the return: home on the last kept frame
    if config.turnaround is not None and not turn < switch:
        raise DatasetError(
            f"turnaround {config.turnaround:g} is at frame {turn}, not before the switch ({switch}): "
            "the target would show views the context never saw; choose a smaller turnaround"
        )
    if leave < 1:
        raise DatasetError(
            f"--seconds {config.seconds:g}, turnaround {config.turnaround}: the return ({kept - 1 - turn} "
            "frames) is longer than the way out; use a longer video or a turnaround above 0.5"
        )
    return num_frames, leave, turn, kept


def render_videos(
    config: SynthConfig, protocol: ReplayProtocol | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(trajectory, poses, uint8 frames)`` for each video: a function of ``config`` alone,
    bit for bit. :func:`generate` writes these frames through H.264 (crf 10), which reproduces them
    to within the codec's error, not necessarily bit for bit across machines."""
    num_frames, leave, turn, kept = timeline(config, protocol)
    rng_master = np.random.default_rng(config.seed)
    for i in range(config.n):
        rng = np.random.default_rng(rng_master.integers(0, 2**63))
        kind = TRAJECTORIES[i % len(TRAJECTORIES)]
        scene_np = make_scene(rng, int(config.height * 3.4), int(config.width * 3.0))
        scene = torch.from_numpy(scene_np).permute(2, 0, 1)[None].contiguous()
        poses = trajectory(kind, num_frames, leave, turn, kept)
        yield kind, poses, render(scene, poses, config.height, config.width)


def generate(out: Path | str, config: SynthConfig = SynthConfig(), protocol: ReplayProtocol | None = None) -> Dataset:
    """Write the synthetic set to ``out`` and return it loaded (frames: :func:`render_videos`)."""
    out = Path(out)
    _, leave, turn, _ = timeline(config, protocol)  # bad durations fail before anything is written
    rows = ["video_path,raw_caption,duration(sec)"]
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for i, (kind, poses, frames) in enumerate(render_videos(config, protocol)):
        name = f"synthetic_{i:03d}_{kind}"
        write_video(out / "videos" / f"{name}.mp4", frames, fps=config.fps)
        verb = {"pan": "pans right", "tilt": "tilts down", "dolly": "pulls back"}[kind]
        caption = f"A procedural textured scene (#{i}); the camera {verb}, then returns to where it started."
        rows.append(f'{name}.mp4,"{caption}",{config.seconds:g}')
        atomic_write_json(
            out / "annotations" / f"{name}.json",
            {
                "trajectory": kind,
                "fps": config.fps,
                "leave_frame": leave,
                # frame t >= turnaround_frame shows the view of frame 2 * turnaround_frame - t
                "turnaround_frame": turn,
                "poses": poses.round(9).tolist(),
                "pose_format": ["dx (view widths)", "dy (view heights)", "zoom"],
                "correspondences": correspondences(poses),
            },
        )
    atomic_write_json(out / "synth_config.json", asdict(config))
    atomic_write_text(out / "magbench_synthetic.csv", "\n".join(rows) + "\n")
    return load_csv_dataset(out, dataset_id=f"synthetic:{config.key}", revision=config.key)


def load_synthetic(config: SynthConfig = SynthConfig(), cache_dir: Path | None = None) -> Dataset:
    """The synthetic set for ``config``, generated into the cache on first use."""
    folder = (cache_dir or default_cache_dir()) / config.key
    if (folder / "magbench_synthetic.csv").is_file():
        ds = load_csv_dataset(folder, dataset_id=f"synthetic:{config.key}", revision=config.key)
        if len(ds) == config.n and all(s.video_path.is_file() for s in ds.samples):
            ds.info["synth_config"] = asdict(config)
            return ds
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    generate(tmp, config)
    if folder.exists():  # a concurrent process won the race, or a broken copy: replace it
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    ds = load_csv_dataset(folder, dataset_id=f"synthetic:{config.key}", revision=config.key)
    ds.info["synth_config"] = asdict(config)
    return ds
