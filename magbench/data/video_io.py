"""Reading and writing videos.

Decoding uses decord when it is installed (the design card's choice) and PyAV otherwise; both
give uint8 RGB frames, T x H x W x 3. The container's frame rate is read with PyAV
(:func:`video_fps`) and a video can be resampled to another rate (:func:`resample_frames`).
Frames are resized to a method's resolution by :func:`resize_frames` with one documented policy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magbench.errors import SampleError


def read_video(path: Path | str, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) of ``path`` as uint8 T x H x W x 3."""
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"{path}: video file not found")
    try:
        frames = _read_decord(path, max_frames)
    except ImportError:
        frames = _read_pyav(path, max_frames)
    except Exception:
        # decord fails on some valid files (odd strides, certain containers); PyAV decides.
        frames = _read_pyav(path, max_frames)
    if frames.shape[0] == 0:
        raise SampleError(f"{path}: video has no frames")
    return frames


def video_fps(path: Path | str) -> float | None:
    """The container's frame rate (the video stream's average rate), or None when it says none.

    Only the header is read (no decoding). A file that cannot be opened gives None: decoding
    it reports the error with its reason.
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    return float(rate) if rate else None


def resample_frames(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Frames at ``dst_fps`` from frames at ``src_fps``: output frame i shows the source frame
    nearest in time to i / dst_fps (ties to the later one), over the same duration
    (``floor(T * dst_fps / src_fps)`` frames, at least one). No blending: every output frame is a
    decoded frame."""
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {src_fps} and {dst_fps}")
    n = frames.shape[0]
    n_out = max(1, math.floor(n * dst_fps / src_fps + 1e-9))
    idx = np.minimum(np.floor(np.arange(n_out) * (src_fps / dst_fps) + 0.5).astype(np.int64), n - 1)
    return frames[idx]


def _read_decord(path: Path, max_frames: int | None) -> np.ndarray:
    import decord  # optional

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    n = len(vr) if max_frames is None else min(len(vr), max_frames)
    if n == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)
    return vr.get_batch(list(range(n))).asnumpy()


def _read_pyav(path: Path, max_frames: int | None) -> np.ndarray:
    import av

    out = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                out.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(out) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise SampleError(f"{path}: cannot decode video ({exc})") from exc
    if not out:
        return np.zeros((0, 1, 1, 3), np.uint8)
    return np.stack(out)


def write_video(path: Path | str, frames: np.ndarray, fps: float = 16.0, crf: int = 10) -> None:
    """Write uint8 T x H x W x 3 frames as H.264 mp4 (even sizes are padded by one pixel)."""
    import av

    from magbench.store import writing

    path = Path(path)
    frames = np.ascontiguousarray(frames)
    t, h, w, _ = frames.shape
    # yuv420p needs even dimensions.
    ph, pw = h + (h % 2), w + (w % 2)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with writing(path, partial=tmp):  # a failed encode (full disk, say) leaves no temporary file
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            # One encoder thread: PyAV runs libx264 with sliced threads, and the automatic thread count
            # (so the slice layout, so the bitstream) follows the CPUs the process may use. One thread
            # makes the file a function of the frames alone. (CI twice saw two encodes of the same
            # frames decode differently from the second macroblock row on; not reproduced here.)
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
            for img in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)


def to_float_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 T x H x W x 3 -> float32 T x 3 x H x W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """float T x 3 x H x W in [0, 1] -> uint8 T x H x W x 3."""
    x = frames.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def resize_frames(frames: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize T x 3 x H x W frames to ``size`` = (H, W).

    Policy: scale so the frame covers the target size (aspect ratio kept), then centre-crop;
    bilinear with antialiasing. Frames already at ``size`` (or ``size`` None) are returned as
    they are, so ground truth at the native resolution is never resampled.
    """
    if size is None:
        return frames
    th, tw = size
    _, _, h, w = frames.shape
    if (h, w) == (th, tw):
        return frames
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    out = F.interpolate(frames, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return out[:, :, top : top + th, left : left + tw].clamp_(0, 1)
