"""correspondence: generated target frame i vs context frame correspondences[i] (random AlexNet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magbench.metrics.base import MetricInputError, MetricInputs
from magbench.metrics.common import PSNR_CAP, lpips_frames, psnr_frames, ssim_frames
from magbench.metrics.correspondence import Correspondence


def _frames(n: int, seed: int, h: int = 40, w: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def metric() -> Correspondence:
    torch.manual_seed(3)
    return Correspondence(random_weights=True)


def test_no_correspondences_gives_an_empty_result(metric: Correspondence):
    gt = _frames(3, 0)
    res = metric(MetricInputs(generated=gt.clone(), target=gt, context=_frames(4, 1)))
    assert res.values == {} and res.per_frame == {} and res.extra == {}


def test_generated_equal_to_the_corresponding_context_frames_scores_perfectly(metric: Correspondence):
    ctx = _frames(5, 2)
    corr = [4, 0, 0, 2]
    gen = ctx[corr].clone()
    res = metric(MetricInputs(generated=gen, target=_frames(4, 3), context=ctx, correspondences=corr))
    assert res.values["corr_psnr"] == PSNR_CAP
    assert res.values["corr_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert res.values["corr_lpips"] == pytest.approx(0.0, abs=1e-7)
    assert all(len(v) == 4 for v in res.per_frame.values())


def test_scores_compare_each_target_frame_with_its_own_context_frame(metric: Correspondence):
    ctx, gen = _frames(3, 4), _frames(4, 5)
    corr = [2, 1, 2, 0]
    res = metric(MetricInputs(generated=gen, target=_frames(4, 6), context=ctx, correspondences=corr))
    ref = ctx[corr]
    np.testing.assert_allclose(res.per_frame["corr_psnr"], psnr_frames(gen, ref).numpy())
    np.testing.assert_allclose(res.per_frame["corr_ssim"], ssim_frames(gen, ref).numpy())
    np.testing.assert_allclose(res.per_frame["corr_lpips"], lpips_frames(metric.model, gen, ref).numpy())
    # and not against the ground-truth target
    assert res.per_frame["corr_psnr"] != psnr_frames(gen, _frames(4, 6)).tolist()


@pytest.mark.parametrize(
    "corr, context, reason",
    [
        ([0, 1], "ok", "2 correspondences for 4 target frames"),
        ([0, 1, 9, 2], "ok", r"\[9\] are outside the 3 context frames"),
        ([0, 1, -1, 2], "ok", "outside"),
        ([0, 0, 0, 0], None, "no context frames"),
        ([0, 0, 0, 0], "small", "do not match"),
    ],
)
def test_inconsistent_correspondences_raise_metric_input_error(metric, corr, context, reason):
    ctx = {"ok": _frames(3, 7), "small": _frames(3, 7, 32, 48), None: None}[context]
    gen = _frames(4, 8)
    with pytest.raises(MetricInputError, match=reason):
        metric(MetricInputs(generated=gen, target=gen.clone(), context=ctx, correspondences=corr))
