"""Frame-aligned psnr / ssim / lpips, input validation, registration.

LPIPS tests use a randomly initialised AlexNet trunk (no weights can be downloaded here); the
linear calibration layers are the real ones shipped inside the lpips package.
"""

from __future__ import annotations

import math
import warnings

import lpips
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from magbench.metrics.backbones import RANDOM_WEIGHTS_SEED
from magbench.metrics.base import MetricInputError, MetricInputs, MetricResult
from magbench.metrics.common import PSNR_CAP
from magbench.metrics.reconstruction import LPIPS, PSNR, SSIM
from magbench.registry import METRICS


def _frames(n: int, h: int = 48, w: int = 64, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g, dtype=dtype)


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


@pytest.fixture(scope="module")
def lpips_pair() -> tuple[LPIPS, lpips.LPIPS]:
    """Our metric and lpips.LPIPS built from the same random seed: same random trunk (random
    backbones are drawn from RANDOM_WEIGHTS_SEED whatever the global RNG state)."""
    torch.manual_seed(123)
    ours = LPIPS(random_weights=True)
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    with warnings.catch_warnings():  # torchvision's notice about lpips' `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="alex", spatial=True, pretrained=True, pnet_rand=True, verbose=False)
    ref.eval()
    return ours, ref


def test_psnr_matches_float64_formula_and_skimage():
    gt = _frames(4, dtype=torch.float64)
    gen = _noisy(gt, 0.05)
    res = PSNR()(MetricInputs(generated=gen, target=gt))
    a, b = gen.numpy(), gt.numpy()
    hand = [10 * math.log10(1.0 / np.mean((a[i] - b[i]) ** 2)) for i in range(4)]
    sk = [peak_signal_noise_ratio(b[i], a[i], data_range=1.0) for i in range(4)]
    np.testing.assert_allclose(res.per_frame["psnr"], hand, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.per_frame["psnr"], sk, rtol=0, atol=1e-9)
    assert res.values["psnr"] == pytest.approx(np.mean(hand), abs=1e-9)


def test_psnr_of_an_exact_frame_is_capped_at_key_info_best():
    gt = _frames(3)
    gen = gt.clone()
    gen[1] = _noisy(gt[1:2], 0.1)[0]
    res = PSNR()(MetricInputs(generated=gen, target=gt))
    assert PSNR.key_info["psnr"]["best"] == PSNR_CAP == 100.0
    assert res.per_frame["psnr"][0] == PSNR_CAP and res.per_frame["psnr"][2] == PSNR_CAP
    assert res.per_frame["psnr"][1] < 40
    assert all(math.isfinite(v) for v in res.per_frame["psnr"])


def test_ssim_matches_skimage_gaussian_settings():
    gt = _frames(3, 40, 56, dtype=torch.float64)
    gen = _noisy(gt, 0.1)
    res = SSIM()(MetricInputs(generated=gen, target=gt))
    sk = [
        structural_similarity(gt[i].numpy(), gen[i].numpy(), data_range=1.0, channel_axis=0,
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for i in range(3)
    ]
    np.testing.assert_allclose(res.per_frame["ssim"], sk, rtol=0, atol=1e-6)
    assert res.values["ssim"] == pytest.approx(float(np.mean(sk)), abs=1e-6)


def test_ssim_refuses_frames_smaller_than_its_window():
    x = _frames(2, 8, 32)
    with pytest.raises(MetricInputError, match="SSIM window"):
        SSIM()(MetricInputs(generated=x, target=x))


def test_lpips_metric_matches_lpips_package_called_directly(lpips_pair):
    ours, ref = lpips_pair
    for (k, v), (k2, v2) in zip(ours.model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k  # same trunk; linear layers loaded alike
    gt = _frames(5)
    gen = _noisy(gt, 0.2)
    res = ours(MetricInputs(generated=gen, target=gt))
    with torch.no_grad():
        direct = ref(gen * 2 - 1, gt * 2 - 1).mean(dim=(1, 2, 3))
    np.testing.assert_allclose(res.per_frame["lpips"], direct.numpy(), rtol=0, atol=1e-6)
    assert res.values["lpips"] == pytest.approx(float(direct.mean()), abs=1e-6)
    assert min(res.per_frame["lpips"]) > 0


def test_lpips_chunking_does_not_change_values(lpips_pair):
    ours, _ = lpips_pair
    gt = _frames(5)
    gen = _noisy(gt, 0.2)
    whole = ours(MetricInputs(generated=gen, target=gt)).per_frame["lpips"]
    ours.options["chunk"] = 2
    try:
        chunked = ours(MetricInputs(generated=gen, target=gt)).per_frame["lpips"]
    finally:
        ours.options["chunk"] = 16
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_oracle_inputs_score_each_metrics_best_value(lpips_pair):
    gt = _frames(3)
    for metric in (PSNR(), SSIM(), lpips_pair[0]):
        res = metric(MetricInputs(generated=gt.clone(), target=gt))
        for key, info in metric.key_info.items():
            assert res.values[key] == pytest.approx(info["best"], abs=1e-6), key
            assert len(res.per_frame[key]) == 3


def test_psnr_carries_seconds_since_leave_once_and_results_merge():
    gt = _frames(3)
    inputs = MetricInputs(generated=_noisy(gt, 0.1), target=gt, seconds_since_leave=[0.5, 1.0, 1.5])
    merged = MetricResult()
    for metric in (PSNR(), SSIM()):
        merged.merge(metric(inputs))  # raises if two metrics wrote the same key
    assert merged.extra["seconds_since_leave"] == [0.5, 1.0, 1.5]
    assert set(merged.values) == {"psnr", "ssim"}


@pytest.mark.parametrize(
    "case, reason",
    [
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
        ("size", "do not match"),
        ("count", "do not match"),
        ("empty", "empty target"),
    ],
)
def test_bad_inputs_raise_metric_input_error_with_reason(case: str, reason: str):
    gt = _frames(3)
    gen = gt.clone()
    if case == "nan":
        gen[1, 0, 2, 2] = float("nan")
    elif case == "inf":
        gen[2, 1, 0, 0] = float("inf")
    elif case == "size":
        gen = _frames(3, 48, 60)
    elif case == "count":
        gen = gen[:2]
    elif case == "empty":
        gt, gen = gt[:0], gen[:0]
    for metric in (PSNR(), SSIM()):
        with pytest.raises(MetricInputError, match=reason):
            metric(MetricInputs(generated=gen, target=gt))


def test_nan_error_names_the_bad_frames():
    gt = _frames(4)
    gen = gt.clone()
    gen[2] = float("nan")
    with pytest.raises(MetricInputError, match=r"\[2\]"):
        PSNR()(MetricInputs(generated=gen, target=gt))


def test_builtin_metrics_are_registered_with_defaults_and_key_info():
    expected_default = {"psnr", "ssim", "lpips", "bestmatch", "correspondence"}
    names = set(METRICS.names())
    assert expected_default | {"subject_consistency", "background_consistency"} <= names
    for name in names & (expected_default | {"subject_consistency", "background_consistency"}):
        cls = METRICS.get(name)
        assert cls.default == (name in expected_default), name
        assert cls.key_info and cls.description
        for info in cls.key_info.values():
            assert set(info) == {"higher_is_better", "best"}
