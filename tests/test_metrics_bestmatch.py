"""MAG best-match: cached == naive, matching direction, parity with pytorch_msssim.

The AlexNet trunk is randomly initialised (no weights can be downloaded here); the lpips linear
layers are the real ones from the lpips package.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as ms_ssim

from magbench.metrics.base import MetricInputs
from magbench.metrics.bestmatch import BestMatch, coverage, lpips_matrix_cached, lpips_matrix_naive, ordered_match
from magbench.metrics.common import PSNR_CAP


def _frames(n: int, h: int = 48, w: int = 72, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth-ish random frames: distinct enough that LPIPS between two of them is far from 0.
    low = torch.rand(n, 3, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.15 * torch.rand(n, 3, h, w, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def metric() -> BestMatch:
    torch.manual_seed(7)
    return BestMatch(random_weights=True, chunk=3)


@pytest.mark.parametrize("shape", [(5, 7, 48, 72), (4, 4, 37, 53)])
def test_cached_lpips_matrix_equals_naive_float32(metric: BestMatch, shape):
    n, m, h, w = shape
    gen, gt = _frames(n, h, w, seed=1), _frames(m, h, w, seed=2)
    gt[1] = gen[0]  # one exact pair: the expansion must still give ~0 there
    naive = lpips_matrix_naive(metric.model, gen, gt)
    for chunk in (1, 3, 8):
        cached = lpips_matrix_cached(metric.model, gen, gt, chunk=chunk)
        assert cached.shape == (n, m)
        assert (cached - naive).abs().max().item() < 1e-5
        assert torch.equal(cached.argmin(1), naive.argmin(1))
    assert naive[0, 1].item() < 1e-6 and naive.max().item() > 1e-2


def test_naive_rows_subset_matches_full_matrix_rows(metric: BestMatch):
    gen, gt = _frames(4, seed=3), _frames(4, seed=4)
    full = lpips_matrix_naive(metric.model, gen, gt)
    part = lpips_matrix_naive(metric.model, gen, gt, rows=[2, 0])
    torch.testing.assert_close(part, full[[2, 0]])


def test_shuffled_ground_truth_is_recovered_exactly(metric: BestMatch):
    gt = _frames(6, seed=5)
    perm = [3, 0, 5, 1, 4, 2]
    gen = gt[perm].clone()
    res = metric(MetricInputs(generated=gen, target=gt))
    assert res.extra["bestmatch_indices"] == perm
    assert res.values["bestmatch_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert res.values["bestmatch_psnr"] == PSNR_CAP
    assert res.values["bestmatch_ssim"] == pytest.approx(1.0, abs=1e-6)
    for key in ("bestmatch_lpips", "bestmatch_psnr", "bestmatch_ssim"):
        assert res.values[key] == pytest.approx(BestMatch.key_info[key]["best"], abs=1e-6)
        assert len(res.per_frame[key]) == 6
    assert res.values["bestmatch_coverage"] == 1.0
    # order kept: only pairs in order can match exactly; the shuffle shows
    assert res.values["bestmatch_ordered_lpips"] > 0.01
    assert res.values["bestmatch_ordered_psnr"] < 60


def test_each_generated_frame_is_matched_not_each_ground_truth_frame(metric: BestMatch):
    # The reference indexes the generated frames: a video repeating one ground-truth frame is
    # matched perfectly everywhere (the other ground-truth frames go unused).
    gt = _frames(4, seed=6)
    gen = gt[[2, 2, 2, 0]].clone()
    res = metric(MetricInputs(generated=gen, target=gt))
    assert res.extra["bestmatch_indices"] == [2, 2, 2, 0]
    assert res.values["bestmatch_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert res.values["bestmatch_psnr"] == PSNR_CAP
    assert res.values["bestmatch_coverage"] == 0.5  # ground-truth frames 2 and 0 of 4


def test_frozen_video_flatters_the_paper_score_but_not_the_ordered_one(metric: BestMatch):
    gt = _frames(6, seed=14)
    gen = gt[[3] * 6].clone()
    res = metric(MetricInputs(generated=gen, target=gt))
    assert res.values["bestmatch_lpips"] == pytest.approx(0.0, abs=1e-6)
    assert res.values["bestmatch_coverage"] == pytest.approx(1 / 6)
    # every ground-truth frame has to be aligned once: the frozen frame meets each of them
    assert res.extra["bestmatch_ordered_indices"] == list(range(6))
    aligned = lpips_matrix_naive(metric.model, gen, gt).diagonal()
    assert res.values["bestmatch_ordered_lpips"] == pytest.approx(float(aligned.mean()), abs=1e-5)
    assert res.values["bestmatch_ordered_psnr"] < 40


# -- the monotone alignment, by hand on tiny cost matrices ------------------------------------------
def _dist(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_ordered_match_is_the_identity_on_a_cheap_diagonal():
    d = _dist([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert ordered_match(d) == [0, 1, 2]


def test_ordered_match_of_a_frozen_video_covers_every_ground_truth_frame():
    # every row the same (one generated frame repeated), cheapest at column 1
    d = _dist([[0.5, 0.0, 0.7, 0.9]] * 4)
    assert ordered_match(d) == [0, 1, 2, 3]


def test_ordered_match_follows_a_lag_of_one_frame():
    # generated frame i shows ground-truth frame i-1 (the video runs one frame late)
    d = _dist([[0, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, 0, 1, 1], [1, 1, 1, 0, 1]])
    # path (0,0) (1,0) (2,1) (3,2) (4,3) (4,4): frame 4 also meets column 4 but column 3 is cheaper
    assert ordered_match(d) == [0, 0, 1, 2, 3]


def test_ordered_match_keeps_only_the_pairs_that_are_in_order():
    # generated = ground truth reversed: the paper's best match is perfect, order allows one pair
    d = _dist([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    assert torch.min(d, dim=1).values.sum() == 0
    idx = ordered_match(d)
    assert idx == sorted(idx)
    assert float(d[torch.arange(3), torch.tensor(idx)].sum()) >= 2


def test_ordered_match_lets_one_generated_frame_span_several_ground_truth_frames():
    # 2 generated frames for 4 ground-truth frames: each takes its cheaper aligned column
    d = _dist([[0.2, 0.1, 0.9, 0.9], [0.9, 0.9, 0.3, 0.0]])
    assert ordered_match(d) == [1, 3]
    assert ordered_match(_dist([[0.4]])) == [0]


def test_coverage_counts_distinct_ground_truth_frames():
    assert coverage(torch.tensor([2, 2, 2, 0]), 4) == 0.5
    assert coverage(torch.tensor([0, 1, 2]), 3) == 1.0


def test_scores_on_matched_pairs_follow_the_reference_formulas(metric: BestMatch):
    gt = _frames(5, seed=8)
    noise = torch.Generator().manual_seed(9)
    gen = (gt[[4, 0, 1, 1, 3]] + 0.05 * torch.randn(5, *gt.shape[1:], generator=noise)).clamp(0, 1)
    res = metric(MetricInputs(generated=gen, target=gt))
    idx = res.extra["bestmatch_indices"]
    assert idx == [4, 0, 1, 1, 3]
    dist = lpips_matrix_naive(metric.model, gen, gt)
    assert res.per_frame["bestmatch_lpips"] == pytest.approx(dist.min(1).values.tolist(), abs=1e-5)
    assert res.values["bestmatch_lpips"] == pytest.approx(float(dist.min(1).values.mean()), abs=1e-5)
    matched = gt[idx]
    # MAG: ssim(matched_gt, generated, data_range=1, size_average=True) over the batch
    assert res.values["bestmatch_ssim"] == pytest.approx(
        ms_ssim(matched, gen, data_range=1, size_average=True).item(), abs=1e-6
    )
    # MAG: 20 * log10(1 / sqrt(mse)) per frame, then the mean
    mse = ((matched.double() - gen.double()) ** 2).mean(dim=(1, 2, 3))
    assert res.values["bestmatch_psnr"] == pytest.approx(
        float((20 * torch.log10(1 / mse.sqrt())).mean()), abs=1e-9
    )
    assert all(math.isfinite(v) for v in res.per_frame["bestmatch_psnr"])


def test_naive_implementation_option_gives_the_same_result(metric: BestMatch):
    gt = _frames(4, seed=10)
    gen = _frames(4, seed=11)
    naive = BestMatch(random_weights=True, implementation="naive")
    naive.model.load_state_dict(metric.model.state_dict())
    a = metric(MetricInputs(generated=gen, target=gt))
    b = naive(MetricInputs(generated=gen, target=gt))
    assert a.extra == b.extra
    for key in a.values:
        assert a.values[key] == pytest.approx(b.values[key], abs=1e-5)
    np.testing.assert_allclose(a.per_frame["bestmatch_lpips"], b.per_frame["bestmatch_lpips"], atol=1e-5)


def test_bestmatch_lpips_never_exceeds_frame_aligned_lpips(metric: BestMatch):
    from magbench.metrics.common import lpips_frames

    gt, gen = _frames(5, seed=12), _frames(5, seed=13)
    res = metric(MetricInputs(generated=gen, target=gt))
    aligned = lpips_frames(metric.model, gen, gt)
    assert all(b <= a + 1e-5 for b, a in zip(res.per_frame["bestmatch_lpips"], aligned.tolist()))


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match="implementation"):
        BestMatch(random_weights=True, implementation="fast-ish")


def test_benchmark_script_smoke_run_on_cpu(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bestmatch.py"
    spec = importlib.util.spec_from_file_location("bench_bestmatch", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    out = tmp_path / "bm.json"
    bench.main(["--frames", "4", "--height", "32", "--width", "32", "--repeats", "1",
                "--device", "cpu", "--naive-pairs", "8", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["naive_extrapolated"] and data["naive_measured_pairs"] == 8 and data["all_pairs"] == 16
    assert data["max_abs_diff"] < 1e-5 and data["same_best_match"]
    assert data["torch"] == torch.__version__ and data["cached_s"] > 0


def test_bestmatch_runs_under_inference_mode(metric: BestMatch):
    gt = _frames(3, seed=14)
    with torch.inference_mode():
        res = metric(MetricInputs(generated=gt[[1, 0, 2]].clone(), target=gt))
    assert res.extra["bestmatch_indices"] == [1, 0, 2]
