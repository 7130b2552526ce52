"""Drift windows: they partition the video exactly, and pooled they give the whole-video VBench score."""

from __future__ import annotations

import math

import pytest
import torch

from magbench.metrics.consistency import consistency_terms, pair_weighted_score
from magbench.metrics.drift import drift_curve, window_frames_for, window_spans


@pytest.mark.parametrize("n,length", [(23, 8), (24, 8), (1, 5), (7, 10), (80, 80), (161, 80)])
def test_windows_partition_the_frames_exactly(n, length):
    spans = window_spans(n, length)
    covered = [t for a, b in spans for t in range(a, b)]
    assert covered == list(range(n))  # every frame once, in order
    assert all(b - a == length for a, b in spans[:-1]) and 0 < spans[-1][1] - spans[-1][0] <= length


def test_window_terms_sum_to_the_whole_video_and_pool_to_its_score():
    feats = torch.randn(37, 9, generator=torch.Generator().manual_seed(0))
    curve = drift_curve(feats, fps=4.0, window_seconds=2.0)  # 8-frame windows: 8, 8, 8, 8, 5
    terms = consistency_terms(feats)
    assert curve.start_frame == [0, 8, 16, 24, 32] and curve.end_frame[-1] == 37
    assert curve.pairs == [7, 8, 8, 8, 5] and sum(curve.pairs) == terms.numel()
    assert sum(curve.term_sum) == pytest.approx(float(terms.sum()), abs=1e-12)
    assert pair_weighted_score(curve.term_sum, curve.pairs) == pytest.approx(float(terms.mean()), abs=1e-12)
    assert curve.score[1] == pytest.approx(float(terms[7:15].mean()), abs=1e-12)  # frames 8..15
    for s, a, b in zip(curve.score, curve.to_first, curve.to_prev):
        assert s == pytest.approx((a + b) / 2, abs=1e-12)
    assert curve.to_dict()["start_seconds"] == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_a_scene_that_drifts_away_falls_in_to_first_but_not_in_to_prev():
    # a feature rotating steadily away from frame 0: neighbours stay close, the start recedes
    angles = torch.linspace(0, math.pi / 2, 40)
    feats = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    curve = drift_curve(feats, fps=10.0, window_seconds=1.0)
    assert curve.to_first == sorted(curve.to_first, reverse=True) and curve.to_first[-1] < 0.4
    assert min(curve.to_prev) > 0.99


def test_a_window_holding_only_the_first_frame_has_no_terms():
    curve = drift_curve(torch.ones(1, 3), fps=16.0)
    assert curve.pairs == [0] and math.isnan(curve.score[0])
    assert window_frames_for(5.0, 16.0) == 80 and window_frames_for(0.01, 16.0) == 1
