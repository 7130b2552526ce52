"""Frame-aligned reconstruction of the target segment: generated frame i vs ground-truth frame i.

Each metric reports one scalar (the mean over target frames) and a per-frame list under the same
key; the list index is the number of frames since the switch. Definitions (cap, windows,
LPIPS form) are in :mod:`magbench.metrics.common`.

``psnr`` also carries the time axis for curves: where the sample has ``seconds_since_leave`` it
is copied once into ``extra["seconds_since_leave"]`` (one metric only, so merged results never
clash on the key).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from magbench.metrics.backbones import LpipsMetric
from magbench.metrics.base import Metric, MetricInputs, MetricResult
from magbench.metrics.common import PSNR_CAP, lpips_frames, psnr_frames, ssim_frames
from magbench.registry import register_metric


def _result(key: str, per_frame: torch.Tensor) -> MetricResult:
    return MetricResult(values={key: float(per_frame.mean())}, per_frame={key: per_frame.tolist()})


@register_metric("psnr")
class PSNR(Metric):
    """PSNR per target frame (data range 1; a perfect frame is capped at 100 dB), averaged."""

    description: ClassVar[str] = "PSNR of generated vs ground-truth target, frame by frame"
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "psnr": {"higher_is_better": True, "best": PSNR_CAP},
    }
    default: ClassVar[bool] = True

    def compute(self, inputs: MetricInputs) -> MetricResult:
        res = _result("psnr", psnr_frames(inputs.generated, inputs.target))
        if inputs.seconds_since_leave is not None:
            res.extra["seconds_since_leave"] = [float(s) for s in inputs.seconds_since_leave]
        return res


@register_metric("ssim")
class SSIM(Metric):
    """SSIM per target frame (Gaussian 11x11, sigma 1.5, data range 1), averaged."""

    description: ClassVar[str] = "SSIM of generated vs ground-truth target, frame by frame"
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "ssim": {"higher_is_better": True, "best": 1.0},
    }
    default: ClassVar[bool] = True

    def compute(self, inputs: MetricInputs) -> MetricResult:
        return _result("ssim", ssim_frames(inputs.generated, inputs.target))


@register_metric("lpips")
class LPIPS(LpipsMetric):
    """LPIPS AlexNet per target frame (inputs in [-1, 1]), averaged.

    Options: ``chunk`` (frames per AlexNet batch, default 16), ``random_weights`` (random AlexNet
    trunk, for tests), ``weights_dir`` (folder holding alexnet-owt-7be5be79.pth).
    """

    description: ClassVar[str] = "LPIPS (AlexNet) of generated vs ground-truth target, frame by frame"
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "lpips": {"higher_is_better": False, "best": 0.0},
    }
    default: ClassVar[bool] = True

    def compute(self, inputs: MetricInputs) -> MetricResult:
        per = lpips_frames(self.model, inputs.generated, inputs.target, self.options["chunk"])
        return _result("lpips", per)
