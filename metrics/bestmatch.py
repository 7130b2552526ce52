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

Beside the paper's score, which cannot tell a faithful video from one frozen on a single good
frame (every generated frame may pick the same ground-truth frame), two scores that cannot be
flattered that way:

* ``bestmatch_coverage``: the number of distinct ground-truth frames the paper's matching uses,
  divided by the target length. 1 when every ground-truth frame is someone's best match; a frozen
  video covers 1 / M.
* ``bestmatch_ordered_{lpips,psnr,ssim}``: best match within a monotone alignment
  (:func:`ordered_match`, dynamic time warping on the same LPIPS matrix). The alignment must pair
  the first frames and the last frames, every generated and every ground-truth frame takes part,
  and both advance together or one at a time; of all such alignments the one with the least total
  LPIPS is taken. So a generated video that drifts (runs a little fast or slow) is still matched
  frame by frame, but a frozen video has to be compared with every ground-truth frame, and a
  shuffled one can only keep the pairs that are in order. Each generated frame is then paired with
  the ground-truth frame of lowest LPIPS among those the alignment gives it, and the three scores
  are computed on those pairs exactly as the paper's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from magbench.metrics.backbones import LpipsMetric
from magbench.metrics.base import MetricInputs, MetricResult
from magbench.metrics.common import PSNR_CAP, psnr_frames, ssim_frames, to_lpips_range
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


def coverage(indices: torch.Tensor, num_target: int) -> float:
    """Distinct ground-truth frames among ``indices``, divided by ``num_target``."""
    return len(set(indices.tolist())) / num_target


def ordered_match(dist: torch.Tensor) -> list[int]:
    """Best match of each generated frame within a monotone alignment (dynamic time warping).

    ``dist`` is N x M (generated x ground truth). An alignment is a path of cells
    (i_0, j_0) = (0, 0), ..., (i_K, j_K) = (N-1, M-1) whose steps are (1, 0), (0, 1) or (1, 1):
    order is kept, nothing is skipped, and each frame of either video may be held against several
    frames of the other. The path with the least sum of ``dist`` over its cells is chosen (ties:
    the diagonal step first, then advancing the generated frame, so that the choice is
    deterministic). Generated frame i then gets, among the cells of the path in row i, the column
    of lowest ``dist`` (the first on ties). The result is non-decreasing in i.

    Examples: equal lengths and a cheap diagonal give the identity; a frozen video (all rows of
    ``dist`` equal) must still cover every column once, which with N == M is the diagonal; a lag
    of one frame is followed by one (0, 1) step and one (1, 0) step.
    """
    d = dist.detach().double().cpu().numpy()
    n, m = d.shape
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = cost[i], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = d[i - 1, j - 1] + min(prev[j - 1], prev[j], row[j - 1])
    # Backtrack from (n, m); the step preference makes it deterministic.
    best = [-1] * n
    i, j = n, m
    while i > 0 and j > 0:
        if best[i - 1] < 0 or d[i - 1, j - 1] <= d[i - 1, best[i - 1]]:
            best[i - 1] = j - 1
        steps = ((cost[i - 1, j - 1], i - 1, j - 1), (cost[i - 1, j], i - 1, j), (cost[i, j - 1], i, j - 1))
        if i == 1 and j == 1:
            break
        _, i, j = min(steps, key=lambda s: s[0])  # min keeps the first of equal costs
    return best


@register_metric("bestmatch")
class BestMatch(LpipsMetric):
    """Pairs every generated target frame with its closest ground-truth target frame (LPIPS)
    and scores the pairs, exactly as MAG's evaluation; adds the coverage of that matching and the
    order-preserving best match (module docstring).

    Options: ``implementation`` ("cached", default, or "naive"), ``chunk`` (frames per AlexNet
    batch and per block of the distance matrix, default 8), ``random_weights`` (random AlexNet
    trunk, for tests), ``weights_dir`` (folder holding alexnet-owt-7be5be79.pth).
    """

    description: ClassVar[str] = "Best-match LPIPS/PSNR/SSIM of generated vs ground-truth target (MAG)"
    key_info: ClassVar[dict[str, dict[str, Any]]] = {
        "bestmatch_lpips": {"higher_is_better": False, "best": 0.0},
        "bestmatch_psnr": {"higher_is_better": True, "best": PSNR_CAP},
        "bestmatch_ssim": {"higher_is_better": True, "best": 1.0},
        # 1.0 needs distinct ground-truth frames: a target with repeated frames can score less
        # even when reproduced exactly, so no best value is claimed.
        "bestmatch_coverage": {"higher_is_better": True, "best": None},
        "bestmatch_ordered_lpips": {"higher_is_better": False, "best": 0.0},
        "bestmatch_ordered_psnr": {"higher_is_better": True, "best": PSNR_CAP},
        "bestmatch_ordered_ssim": {"higher_is_better": True, "best": 1.0},
    }
    default: ClassVar[bool] = True
    default_chunk: ClassVar[int] = 8

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        implementation: str = "cached",
        **options: Any,
    ) -> None:
        if implementation not in ("cached", "naive"):
            raise ValueError(f"bestmatch: implementation must be 'cached' or 'naive', not {implementation!r}")
        super().__init__(device, implementation=implementation, **options)

    def compute(self, inputs: MetricInputs) -> MetricResult:
        gen, gt = inputs.generated, inputs.target
        if self.options["implementation"] == "naive":
            dist = lpips_matrix_naive(self.model, gen, gt)
        else:
            dist = lpips_matrix_cached(self.model, gen, gt, chunk=self.options["chunk"])
        minima, idx = best_match(dist)
        ordered = ordered_match(dist)
        res = MetricResult(
            values={"bestmatch_coverage": coverage(idx, gt.shape[0])},
            extra={"bestmatch_indices": idx.cpu().tolist(), "bestmatch_ordered_indices": ordered},
        )
        rows = torch.arange(gen.shape[0], device=dist.device)
        ordered_t = torch.as_tensor(ordered, device=dist.device)
        for prefix, lp, match in (("bestmatch", minima, idx), ("bestmatch_ordered", dist[rows, ordered_t], ordered_t)):
            matched = gt[match.to(gt.device)]
            per = {"lpips": lp.double().cpu(), "psnr": psnr_frames(gen, matched), "ssim": ssim_frames(matched, gen)}
            for name, values in per.items():
                res.values[f"{prefix}_{name}"] = float(values.mean())
                res.per_frame[f"{prefix}_{name}"] = values.tolist()
        return res
