"""VBench subject/background consistency: the formula against a hand computation with a tiny
deterministic extractor, VBench's preprocessing, and the real backbones wired with random
weights (no weights can be downloaded here). A parity test against vbench's own functions runs
only where vbench is installed."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from magbench.metrics.base import MetricInputs
from magbench.metrics.consistency import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackgroundConsistency,
    SubjectConsistency,
    clip_preprocess,
    consistency_score,
    dino_pos_embed,
    dino_preprocess,
    pair_weighted_score,
)


def mean_colour_minus_half(frames: torch.Tensor) -> torch.Tensor:
    """A 3-d feature that can point anywhere, so some cosines are negative (clamped to 0)."""
    return frames.mean(dim=(2, 3)) - 0.5


def _hand_terms(feats: list[list[float]]) -> list[float]:
    def unit(v: list[float]) -> list[float]:
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    f = [unit(v) for v in feats]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    return [(max(0.0, dot(f[t], f[t - 1])) + max(0.0, dot(f[t], f[0]))) / 2 for t in range(1, len(f))]


def _colour_video(colours: list[tuple[float, float, float]], h: int = 12, w: int = 16) -> torch.Tensor:
    return torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, -1, h, w).clone()


COLOURS = [(1.0, 1.0, 1.0), (0.9, 0.8, 0.7), (0.0, 0.1, 0.0), (0.6, 0.9, 0.2),
           (0.2, 0.3, 0.9), (0.95, 0.9, 0.8), (0.1, 0.0, 0.05)]


@pytest.mark.parametrize("cls", [SubjectConsistency, BackgroundConsistency])
def test_consistency_matches_hand_computation_with_tiny_extractor(cls):
    video = _colour_video(COLOURS)
    ctx, gen = video[:3], video[3:]
    metric = cls(extractor=mean_colour_minus_half)
    res = metric(MetricInputs(generated=gen, target=gen.clone(), context=ctx))
    feats = [[c - 0.5 for c in col] for col in COLOURS]
    whole, target = _hand_terms(feats), _hand_terms(feats[3:])
    assert any(v < 0.5 for v in whole)  # some cosines were negative and got clamped
    key = cls.key
    assert res.values[key] == pytest.approx(sum(whole) / len(whole), abs=1e-6)
    assert res.values[f"{key}_target"] == pytest.approx(sum(target) / len(target), abs=1e-6)
    # per frame: the whole-video term of each target frame (index = frames since the switch)
    assert res.per_frame[key] == pytest.approx(whole[2:], abs=1e-6)
    assert len(res.per_frame[key]) == gen.shape[0]
    assert metric.options["extractor"] == "mean_colour_minus_half"


def test_static_video_scores_one_and_single_frame_target_scores_one():
    video = _colour_video([(0.3, 0.6, 0.9)] * 5)
    metric = SubjectConsistency(extractor=mean_colour_minus_half)
    res = metric(MetricInputs(generated=video[4:], target=video[4:], context=video[:4]))
    assert res.values == {"subject_consistency": pytest.approx(1.0),
                          "subject_consistency_target": 1.0}
    assert consistency_score(torch.ones(1, 8)) == 1.0


def test_without_context_whole_video_is_the_target_and_no_curve_is_given():
    video = _colour_video(COLOURS[:4])
    res = BackgroundConsistency(extractor=mean_colour_minus_half)(
        MetricInputs(generated=video, target=video.clone())
    )
    assert res.values["background_consistency"] == res.values["background_consistency_target"]
    assert res.per_frame == {}


def test_dino_preprocess_resizes_shorter_side_without_crop_and_normalises_8bit_values():
    frames = torch.full((2, 3, 32, 48), 0.5)
    x = dino_preprocess(frames)
    assert x.shape == (2, 3, 224, 336)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]  # 0.5 -> 128
    assert x.mean(dim=(0, 2, 3)).tolist() == pytest.approx(expected, abs=1e-5)
    assert dino_preprocess(frames, quantize=False).mean(dim=(0, 2, 3)).tolist() != pytest.approx(
        expected, abs=1e-5
    )


def test_antialias_option_reaches_the_resize():
    frames = torch.rand(1, 3, 448, 672, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(dino_preprocess(frames, antialias=True), dino_preprocess(frames, antialias=False))
    assert not torch.allclose(clip_preprocess(frames, antialias=True), clip_preprocess(frames, antialias=False))


def test_clip_preprocess_keeps_the_centre_square():
    frames = torch.zeros(1, 3, 32, 96)
    frames[..., 32:64] = 1.0  # white middle third, black sides
    x = clip_preprocess(frames)
    assert x.shape == (1, 3, 224, 224)
    white = torch.tensor([(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)])
    inner = x[0, :, :, 8:-8].mean(dim=(1, 2))  # bicubic rings a few pixels at the crop edges
    torch.testing.assert_close(inner, white, atol=2e-2, rtol=0)


def test_dino_pos_embed_is_identity_at_224_and_resamples_otherwise():
    pos = torch.randn(1, 197, 8)
    assert dino_pos_embed(pos, 224, 224, 16) is pos
    const = torch.ones(1, 197, 8)
    const[:, 0] = 5.0
    out = dino_pos_embed(const, 224, 388, 16)
    assert out.shape == (1, 1 + 14 * 24, 8)
    assert out[0, 0].tolist() == [5.0] * 8  # class token untouched and first
    torch.testing.assert_close(out[:, 1:], torch.ones(1, 14 * 24, 8))  # bicubic keeps constants


@pytest.fixture(scope="module")
def dino_metric() -> SubjectConsistency:
    torch.manual_seed(0)
    return SubjectConsistency(random_weights=True, chunk=2)


@pytest.fixture(scope="module")
def clip_metric() -> BackgroundConsistency:
    torch.manual_seed(0)
    return BackgroundConsistency(random_weights=True, chunk=2)


def test_dino_extractor_equals_timm_forward_on_square_input_random_weights(dino_metric):
    ext = dino_metric.extractor
    frames = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        timm_cls = ext.model(dino_preprocess(frames))  # timm: norm(blocks(...))[:, 0], no head
    torch.testing.assert_close(ext(frames), timm_cls, atol=1e-5, rtol=1e-5)


def test_subject_consistency_runs_on_non_square_video_random_weights(dino_metric):
    g = torch.Generator().manual_seed(2)
    ctx, gen = torch.rand(1, 3, 24, 40, generator=g), torch.rand(2, 3, 24, 40, generator=g)
    feats = dino_metric.extractor(torch.cat([ctx, gen]))
    assert feats.shape == (3, 768)
    res = dino_metric(MetricInputs(generated=gen, target=gen.clone(), context=ctx))
    assert res.values["subject_consistency"] == pytest.approx(consistency_score(feats), abs=1e-6)
    assert res.values["subject_consistency_target"] == pytest.approx(consistency_score(feats[1:]), abs=1e-6)


def test_background_consistency_is_chunk_invariant_random_weights(clip_metric):
    frames = torch.rand(5, 3, 30, 50, generator=torch.Generator().manual_seed(3))
    ext = clip_metric.extractor
    with torch.no_grad():
        whole = ext.model(clip_preprocess(frames))
    assert whole.shape == (5, 512)
    torch.testing.assert_close(ext(frames), whole, atol=1e-5, rtol=1e-5)
    res = clip_metric(MetricInputs(generated=frames[2:], target=frames[2:], context=frames[:2]))
    assert 0.0 <= res.values["background_consistency_target"] <= 1.0
    assert len(res.per_frame["background_consistency"]) == 3


# -- parity with vbench 0.1.5's own functions ---------------------------------------------------------
def _videos() -> list[torch.Tensor]:
    """Two videos of different lengths whose shorter side (232) is above 224: the resizes shrink,
    so antialiasing would change them, and the pair weighting differs from a mean of videos."""
    g = torch.Generator().manual_seed(4)
    low = [torch.rand(n, 3, 15, 16, generator=g) for n in (2, 4)]
    return [torch.nn.functional.interpolate(x, size=(232, 248), mode="bilinear") for x in low]


def test_default_preprocessing_is_vbench_015_without_antialias():
    frames = _videos()[0]
    assert not torch.equal(dino_preprocess(frames, antialias=True), dino_preprocess(frames))
    for fn in (dino_preprocess, clip_preprocess):
        assert inspect.signature(fn).parameters["antialias"].default is False
    for cls in (SubjectConsistency, BackgroundConsistency):
        assert cls(extractor=mean_colour_minus_half).options["antialias"] is False


def test_results_carry_the_term_sum_and_pair_count_for_vbench_aggregation():
    video = _colour_video(COLOURS)
    res = SubjectConsistency(extractor=mean_colour_minus_half)(
        MetricInputs(generated=video[3:], target=video[3:], context=video[:3]))
    whole = _hand_terms([[c - 0.5 for c in col] for col in COLOURS])
    assert res.extra["subject_consistency_pairs"] == 6
    assert res.extra["subject_consistency_sum"] == pytest.approx(sum(whole), abs=1e-6)
    assert res.extra["subject_consistency_target_pairs"] == 3
    assert pair_weighted_score([1.0, 3.0], [2, 6]) == 0.5  # (1 + 3) / 8, not mean(0.5, 0.5)
    assert pair_weighted_score([0.9], [0]) != pair_weighted_score([0.9], [0])  # NaN: no pairs


def test_parity_with_vbench_015_functions_per_video_and_pair_weighted(request, monkeypatch):
    pytest.importorskip("vbench", reason="install with: pip install --no-deps 'vbench==0.1.5'")
    import vbench.background_consistency as vb_bg
    import vbench.subject_consistency as vb_subj

    dino_metric = request.getfixturevalue("dino_metric")
    clip_metric = request.getfixturevalue("clip_metric")
    videos = _videos()
    paths = [f"video{i}.mp4" for i in range(len(videos))]
    # vbench's load_video: uint8 frames as a float tensor T x C x H x W of values in [0, 255]
    pixels = {p: (v * 255).round() for p, v in zip(paths, videos)}

    class DinoModule(torch.nn.Module):  # what torch.hub's dino_vitb16 returns: the CLS feature
        def forward(self, x):
            return dino_metric.extractor.embed(x)

    class ClipModel:
        def encode_image(self, x):
            return clip_metric.extractor.model(x)

    for metric, module, call in (
        (dino_metric, vb_subj, lambda: vb_subj.subject_consistency(DinoModule(), paths, "cpu", False)),
        (clip_metric, vb_bg, lambda: vb_bg.background_consistency(ClipModel(), None, paths, "cpu", False)),
    ):
        monkeypatch.setattr(module, "load_video", lambda path, *a, **k: pixels[path].clone())
        with torch.no_grad():
            theirs_all, theirs_videos = call()
            ours = [metric(MetricInputs(generated=v, target=v)) for v in videos]
        key = metric.key
        for o, t in zip(ours, theirs_videos):
            assert abs(o.values[key] - t["video_results"]) < 1e-6
        ours_all = pair_weighted_score([o.extra[f"{key}_sum"] for o in ours], [o.extra[f"{key}_pairs"] for o in ours])
        assert abs(ours_all - theirs_all) < 1e-6
        # the lengths differ, so the mean of per-video scores is not VBench's number
        assert abs(sum(o.values[key] for o in ours) / len(ours) - theirs_all) > 1e-7
