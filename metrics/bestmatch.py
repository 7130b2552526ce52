"""Best-match scores, as MAG's evaluation computes them (``calculate_lpips_find_match`` in
``evaluate/vae_metrics/lpips.py`` and its use in ``inference_magbench.py``).

Who is matched to whom: the reference loops over the *generated* frames
(``loss_fn.forward(inputs[i:i+1], gt_video)`` with ``inputs`` the generated video) and takes the
minimum over the ground-truth axis, so each generated target frame i is paired with the
ground-truth target frame ``indices[i]`` of lowest LPIPS (several generated frames may share one
ground-truth frame). Then, on the pairs (generated[i], gt[indices[i]]):

* ``bestmatch_lpips``: mean of the per-frame minima (LPIPS AlexNet, inputs in [-1, 1],
  ``spatial=True`` map averaged, the reference's settings);
* ``bestmatch_psnr``: PSNR per frame, data range 1, then averaged. The reference returns 100 for
  the whole video when the *mean* is infinite (any exact frame); we cap each frame at 100 dB
  (MSE floored at 1e-10), which gives the same 100 on a perfect video and a finite, comparable
  value otherwise;
* ``bestmatch_ssim``: ``pytorch_msssim.ssim(matched_gt, generated, data_range=1)``, whose batch
  average equals the mean of our per-frame values.

The reference runs in bfloat16 on the GPU; we compute in float32.

Two implementations give the LPIPS matrix D[i, j] = LPIPS(generated[i], gt[j]):

* :func:`lpips_matrix_naive`: AlexNet on every pair, like the reference (N forward passes of
  1 + M frames). Kept for tests and the benchmark.
* :func:`lpips_matrix_cached` (default): AlexNet once per frame. LPIPS is, per layer l,
  ``sum_p W_l[p] sum_c w_l[c] (f[c,p] - g[c,p])^2`` where f, g are the unit-normalised features,
  w_l the linear layer and W_l the weights that bilinear upsampling to H x W followed by the mean
  puts on each feature pixel (the adjoint of the upsampling applied to a constant map). Expanding
  the square turns all pairs into one matrix product per layer:
  ``a_i + b_j - 2 <w W f_i, g_j>``, computed in chunks of ``chunk`` generated frames so memory
  stays bounded by the feature cache plus one chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
import torch.nn.functional as F

from magbench.hub import HubArtifact
from magbench.metrics.base import Metric, MetricInputs, MetricResult
from magbench.metrics.common import (
    PSNR_CAP,
    build_lpips,
    psnr_frames,
    ssim_frames,
    to_lpips_range,
)
from magbench.metrics.weights import ALEXNET
from magbench.registry import register_metric

if TYPE_CHECKING:
    import lpips as _lpips


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def lpips_matrix_naive(
    model: "_lpips.LPIPS",
    generated: torch.Tensor,
    gt: torch.Tensor,
    rows: Sequence[int] | None = None,
) -> torch.Tensor:
    """D[i, j] = LPIPS(generated[i], gt[j]) with one AlexNet pass per generated frame against
    the whole ground-truth batch, as the reference loop does. ``rows`` limits it to some i."""
    device = _device_of(model)
    gt_in = to_lpips_range(gt.to(device, torch.float32))
    out = []
    for i in range(generated.shape[0]) if rows is None else rows:
        x = to_lpips_range(generated[i : i + 1].to(device, torch.float32))
        out.append(model(x, gt_in).mean(dim=(1, 2, 3)))
    return torch.stack(out)


def _interp_mean_1d(n_in: int, n_out: int) -> torch.Tensor:
    """How much each of n_in samples weighs in the mean of its linear resampling to n_out
    (align_corners=False), read off by resampling each unit vector."""
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1)
    cols = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)
    return cols.reshape(n_in, n_out).mean(dim=1)


def _upsample_mean_weights(h: int, w: int, out_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """W such that mean(upsample_bilinear(d, out_hw)) == sum(W * d) for any h x w map d.

    Bilinear upsampling is separable, so W is the outer product of the two 1-d weightings."""
    wh, ww = _interp_mean_1d(h, out_hw[0]), _interp_mean_1d(w, out_hw[1])
    return torch.outer(wh, ww).to(device)


@torch.no_grad()
def lpips_features(model: "_lpips.LPIPS", frames: torch.Tensor, chunk: int = 8) -> list[torch.Tensor]:
    """Unit-normalised AlexNet features of each frame, one N x C_l x h_l x w_l tensor per layer."""
    import lpips

    device = _device_of(model)
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(model.L)]
    for s in range(0, frames.shape[0], chunk):
        x = to_lpips_range(frames[s : s + chunk].to(device, torch.float32))
        outs = model.net(model.scaling_layer(x))
        for k in range(model.L):
            per_layer[k].append(lpips.normalize_tensor(outs[k]))
    return [torch.cat(p) for p in per_layer]


@torch.no_grad()
def lpips_matrix_cached(
    model: "_lpips.LPIPS",
    generated: torch.Tensor,
    gt: torch.Tensor,
    chunk: int = 8,
) -> torch.Tensor:
    """Same matrix as :func:`lpips_matrix_naive` from features extracted once per frame."""
    device = _device_of(model)
    out_hw = (generated.shape[-2], generated.shape[-1])
    feats_g = lpips_features(model, generated, chunk)
    feats_t = lpips_features(model, gt, chunk)
    n, m = generated.shape[0], gt.shape[0]
    dist = torch.zeros(n, m, device=device, dtype=torch.float32)
    for k in range(model.L):
        fg, ft = feats_g[k], feats_t[k]
        lin = model.lins[k].model[-1].weight.reshape(-1)  # 1x1 conv, no bias
        pix = _upsample_mean_weights(fg.shape[-2], fg.shape[-1], out_hw, device)
        weight = (lin.double()[:, None, None] * pix[None]).to(torch.float32).flatten()
        ft_flat = ft.flatten(1)
        b = (ft_flat.square() * weight).sum(1)
        for s in range(0, n, chunk):
            fg_flat = fg[s : s + chunk].flatten(1)
            weighted = fg_flat * weight
            a = (weighted * fg_flat).sum(1)
            dist[s : s + chunk] += a[:, None] + b[None, :] - 2.0 * weighted @ ft_flat.T
    # The expansion can round a zero distance to -1e-8; LPIPS itself is never negative.
    return dist.clamp_min_(0.0)


def best_match(
    dist: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(minimum over ground truth, index of that ground-truth frame) for each generated frame."""
    values, indices = torch.min(dist, dim=1)
    return values, indices


@register_metric("bestmatch")
class BestMatch(Metric):
    """Pairs every generated target frame with its closest ground-truth target frame (LPIPS)
    and scores the pairs, exactly as MAG's evaluation.

    Options: ``implementation`` ("cached", default, or "naive"), ``chunk`` (frames per AlexNet
    batch and per block of the distance matrix, default 8), ``random_weights`` (random AlexNet
    trunk, for tests), ``weights_dir`` (folder holding alexnet-owt-7be5be79.pth).
    """

    description: ClassVar[str] = "Best-match LPIPS/PSNR/SSIM of generated vs ground-truth target (MAG)"
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "bestmatch_lpips": {"higher_is_better": False, "best": 0.0},
        "bestmatch_psnr": {"higher_is_better": True, "best": PSNR_CAP},
        "bestmatch_ssim": {"higher_is_better": True, "best": 1.0},
    }
    weights: ClassVar[tuple[HubArtifact, ...]] = (ALEXNET,)
    default: ClassVar[bool] = True

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        implementation: str = "cached",
        chunk: int = 8,
        random_weights: bool = False,
        weights_dir: str | None = None,
        **options: Any,
    ) -> None:
        if implementation not in ("cached", "naive"):
            raise ValueError(f"bestmatch: implementation must be 'cached' or 'naive', not {implementation!r}")
        if chunk < 1:
            raise ValueError("bestmatch: chunk must be >= 1")
        super().__init__(device, implementation=implementation, chunk=chunk,
                         random_weights=random_weights, weights_dir=weights_dir, **options)
        self.model = build_lpips(self.device, random_weights=random_weights, weights_dir=weights_dir)

    def to(self, device: torch.device | str) -> "BestMatch":
        super().to(device)
        self.model.to(self.device)
        return self

    def compute(self, inputs: MetricInputs) -> MetricResult:
        gen, gt = inputs.generated, inputs.target
        if self.options["implementation"] == "naive":
            dist = lpips_matrix_naive(self.model, gen, gt)
        else:
            dist = lpips_matrix_cached(self.model, gen, gt, chunk=self.options["chunk"])
        minima, idx = best_match(dist)
        matched = gt[idx.to(gt.device)]
        psnr = psnr_frames(gen, matched)
        ssim = ssim_frames(matched, gen)
        minima = minima.double().cpu()
        return MetricResult(
            values={
                "bestmatch_lpips": float(minima.mean()),
                "bestmatch_psnr": float(psnr.mean()),
                "bestmatch_ssim": float(ssim.mean()),
            },
            per_frame={
                "bestmatch_lpips": minima.tolist(),
                "bestmatch_psnr": psnr.tolist(),
                "bestmatch_ssim": ssim.tolist(),
            },
            extra={"bestmatch_indices": idx.cpu().tolist()},
        )

