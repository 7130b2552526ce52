"""Scores against the context frame that shows the same view.

Where a dataset provides ``correspondences`` (target frame i shows the view of context frame
``correspondences[i]``), generated target frame i is compared with that context frame: did the
method remember what it saw? MAG-Bench itself ships none; the metric then returns an empty result.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from magbench.metrics.backbones import LpipsMetric
from magbench.metrics.base import MetricInputError, MetricInputs, MetricResult
from magbench.metrics.common import lpips_frames, psnr_frames, ssim_frames
from magbench.registry import register_metric


@register_metric("correspondence")
class Correspondence(LpipsMetric):
    """corr_psnr / corr_ssim / corr_lpips of generated target frame i vs context frame
    ``correspondences[i]``, with per-frame lists; empty when the sample has no correspondences.

    Options: ``chunk``, ``random_weights``, ``weights_dir`` as for ``lpips``.
    """

    description: ClassVar[str] = "PSNR/SSIM/LPIPS of generated target vs the matching context frame"
    # The best value is the score of the ground truth against the context, which depends on the
    # sample: undefined here.
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "corr_psnr": {"higher_is_better": True, "best": None},
        "corr_ssim": {"higher_is_better": True, "best": None},
        "corr_lpips": {"higher_is_better": False, "best": None},
    }
    default: ClassVar[bool] = True
    # PSNR and SSIM need no weights: without AlexNet the default set still reports them.
    without_weights: ClassVar[dict[str, Any] | None] = {"lpips": False}

    def compute(self, inputs: MetricInputs) -> MetricResult:
        corr = inputs.correspondences
        if corr is None:
            return MetricResult()
        gen, ctx = inputs.generated, inputs.context
        if ctx is None or ctx.shape[0] == 0:
            raise MetricInputError("correspondences are given but the sample has no context frames")
        if len(corr) != gen.shape[0]:
            raise MetricInputError(
                f"{len(corr)} correspondences for {gen.shape[0]} target frames"
            )
        bad = [c for c in corr if not 0 <= int(c) < ctx.shape[0]]
        if bad:
            raise MetricInputError(
                f"correspondences {bad[:8]} are outside the {ctx.shape[0]} context frames"
            )
        if ctx.shape[1:] != gen.shape[1:]:
            raise MetricInputError(
                f"context frames {tuple(ctx.shape[1:])} do not match generated {tuple(gen.shape[1:])}"
            )
        ref = ctx[torch.as_tensor([int(c) for c in corr], device=ctx.device)]
        per = {
            "corr_psnr": psnr_frames(gen, ref),
            "corr_ssim": ssim_frames(gen, ref),
        }
        if self.model is not None:
            per["corr_lpips"] = lpips_frames(self.model, gen, ref, self.options["chunk"])
        return MetricResult(
            values={k: float(v.mean()) for k, v in per.items()},
            per_frame={k: v.tolist() for k, v in per.items()},
        )
