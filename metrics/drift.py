"""Drift over the horizon: a VBench consistency measured per time window.

A video's VBench consistency (:func:`magbench.metrics.consistency.consistency_terms`) is the mean
over frames t >= 1 of the term (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2, with f_0
the video's first frame. Windows of ``window_frames`` frames partition the video exactly
(``[0, L), [L, 2L), ...``, the last one shorter when L does not divide the length), and each
window reports the mean of the terms of its own frames: frame t's term lands in the window holding
t, so summed over the windows the terms and their counts are the whole video's, and the
pair-weighted mean of the windows is the whole-video score. Because f_0 stays the video's first
frame, a falling curve is the scene drifting away from where it started; the two halves are
reported apart (``to_first``: the cosine to frame 0; ``to_prev``: to the frame before), so drift
and flicker can be told apart. The first window has one term fewer (frame 0 has none); a window
holding only frame 0 has no terms and scores NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

DEFAULT_WINDOW_SECONDS = 5.0


def window_spans(num_frames: int, window_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame spans of consecutive windows covering ``0..num_frames`` exactly."""
    if window_frames < 1:
        raise ValueError(f"window_frames must be >= 1, got {window_frames}")
    return [(s, min(s + window_frames, num_frames)) for s in range(0, num_frames, window_frames)]


def window_frames_for(seconds: float, fps: float) -> int:
    """Frames per window of ``seconds`` at ``fps`` (at least one)."""
    return max(1, int(round(seconds * fps)))


@dataclass
class DriftCurve:
    """Per-window consistency of one video (lists indexed by window)."""

    window_seconds: float
    fps: float
    start_frame: list[int] = field(default_factory=list)
    end_frame: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)  # mean of the VBench terms of the window's frames
    to_first: list[float] = field(default_factory=list)  # mean of max(0, cos(f_t, f_0))
    to_prev: list[float] = field(default_factory=list)  # mean of max(0, cos(f_t, f_{t-1}))
    term_sum: list[float] = field(default_factory=list)  # for pair-weighted pooling over videos
    pairs: list[int] = field(default_factory=list)

    @property
    def start_seconds(self) -> list[float]:
        return [s / self.fps for s in self.start_frame]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "start_seconds": self.start_seconds}


def drift_curve(features: torch.Tensor, fps: float, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> DriftCurve:
    """The per-window VBench consistency of a video from its per-frame features (T x D)."""
    f = F.normalize(features.float(), dim=-1, p=2)
    n = f.shape[0]
    prev = F.cosine_similarity(f[:-1], f[1:], dim=-1).clamp_min(0.0).double().cpu()
    first = F.cosine_similarity(f[:1].expand_as(f[1:]), f[1:], dim=-1).clamp_min(0.0).double().cpu()
    terms = (prev + first) / 2.0  # the same expression as consistency_terms: frame t at index t-1
    curve = DriftCurve(window_seconds=float(window_seconds), fps=float(fps))
    for a, b in window_spans(n, window_frames_for(window_seconds, fps)):
        lo = max(a, 1) - 1  # frame 0 has no term
        hi = b - 1
        k = max(0, hi - lo)
        curve.start_frame.append(a)
        curve.end_frame.append(b)
        curve.pairs.append(k)
        curve.term_sum.append(float(terms[lo:hi].sum()) if k else 0.0)
        curve.score.append(float(terms[lo:hi].mean()) if k else math.nan)
        curve.to_first.append(float(first[lo:hi].mean()) if k else math.nan)
        curve.to_prev.append(float(prev[lo:hi].mean()) if k else math.nan)
    return curve
