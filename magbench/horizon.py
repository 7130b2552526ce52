"""Efficiency over a long horizon: generation FPS per time window, from the timed blocks.

A streaming method yields blocks of frames; each block's (device-synchronised) time is known, not
the time of each frame in it. A block's time is spread evenly over its frames, so the time up to
any frame is a piecewise-linear function of the frame index, and the time a window of frames took
is the difference at its ends. Windows (``[0, L), [L, 2L), ...``, the last one shorter; the same
partition as :func:`magbench.metrics.drift.window_spans`) therefore split the frames and the time
exactly: summed over windows they give the whole run, and the frame-weighted pooling of the
windows' FPS is the overall generation FPS.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from itertools import accumulate

from magbench.metrics.drift import window_frames_for, window_spans


def time_at_frame(block_frames: list[int], block_s: list[float], frame: int) -> float:
    """Seconds of generation until ``frame`` frames were produced (blocks' times spread evenly
    over their frames)."""
    ends = list(accumulate(block_frames))
    if frame <= 0:
        return 0.0
    if frame >= ends[-1]:
        return float(sum(block_s))
    i = bisect.bisect_left(ends, frame)  # the block holding frame number `frame` (1-based)
    start = ends[i - 1] if i else 0
    before = float(sum(block_s[:i]))
    return before + block_s[i] * (frame - start) / block_frames[i]


@dataclass
class WindowFps:
    """Generation speed per time window of the video (lists indexed by window)."""

    window_seconds: float
    fps: float  # the video's frame rate (what real time means)
    start_frame: list[int] = field(default_factory=list)
    end_frame: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # generation time of the window's frames
    gen_fps: list[float | None] = field(default_factory=list)

    @property
    def realtime_fraction(self) -> float | None:
        """Share of the windows generated at least as fast as they play."""
        vals = [v for v in self.gen_fps if v is not None]
        return sum(v >= self.fps for v in vals) / len(vals) if vals else None


def window_fps(block_frames: list[int], block_s: list[float], fps: float, window_seconds: float) -> WindowFps:
    """Per-window generation FPS of the frames produced (see the module docstring)."""
    out = WindowFps(window_seconds=float(window_seconds), fps=float(fps))
    total = sum(block_frames)
    if not total:
        return out
    for a, b in window_spans(total, window_frames_for(window_seconds, fps)):
        dt = time_at_frame(block_frames, block_s, b) - time_at_frame(block_frames, block_s, a)
        out.start_frame.append(a)
        out.end_frame.append(b)
        out.seconds.append(dt)
        out.gen_fps.append((b - a) / dt if dt > 0 else None)
    return out
