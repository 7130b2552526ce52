"""Per-frame image measures shared by the reconstruction, best-match and correspondence metrics.

All take two N x 3 x H x W tensors in [0, 1] (frame i of one against frame i of the other) and
return one value per frame as a float64 tensor on the CPU.

* PSNR: data range 1, ``10 * log10(1 / MSE)`` per frame with the MSE floored at ``1e-10``, so a
  perfect match scores :data:`PSNR_CAP` = 100 dB instead of infinity. The MSE is taken in float64.
* SSIM: ``pytorch_msssim.ssim`` (Gaussian window 11, sigma 1.5, K = (0.01, 0.03), valid
  convolution, mean over channels), the function MAG's evaluation calls. It agrees with
  ``skimage.metrics.structural_similarity(a, b, data_range=1, channel_axis=0,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: same window (scipy truncates
  the Gaussian at 3.5 sigma = 5 taps each side), same constants, and skimage crops the padded
  border so that its mean is over the same valid region.
* LPIPS: AlexNet v0.1 (``lpips`` package), inputs mapped to [-1, 1], built with ``spatial=True``
  and averaged over the map, as MAG's evaluation does. This differs from lpips' default spatial
  average by how the per-layer maps are weighted (bilinear upsampling to H x W before the mean);
  using MAG's form for every LPIPS here makes the best-match LPIPS a true minimum over a set that
  contains the frame-aligned pair.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import torch

from magbench.metrics.base import MetricInputError
from magbench.metrics.weights import ALEXNET, ALEXNET_FILE, resolve_weights

if TYPE_CHECKING:  # lpips is imported lazily: importing magbench.metrics must stay cheap
    import lpips as _lpips

PSNR_CAP = 100.0
MSE_FLOOR = 10.0 ** (-PSNR_CAP / 10.0)
SSIM_WINDOW = 11


def psnr_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR per frame (data range 1), capped at :data:`PSNR_CAP` dB."""
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))).cpu()


def ssim_frames(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per frame, ``pytorch_msssim.ssim(a, b, data_range=1)`` without the batch average."""
    from pytorch_msssim import ssim

    if min(a.shape[-2:]) < SSIM_WINDOW:
        # pytorch_msssim would silently skip the blur on a too-small axis; skimage refuses.
        raise MetricInputError(
            f"frames of {a.shape[-2]}x{a.shape[-1]} are smaller than the {SSIM_WINDOW}x"
            f"{SSIM_WINDOW} SSIM window"
        )
    dtype = a.dtype if a.dtype == torch.float64 else torch.float32
    return ssim(a.to(dtype), b.to(dtype), data_range=1.0, size_average=False).double().cpu()


def build_lpips(
    device: torch.device | str = "cpu",
    random_weights: bool = False,
    weights_dir: str | os.PathLike[str] | None = None,
) -> "_lpips.LPIPS":
    """LPIPS AlexNet v0.1 with ``spatial=True``, in eval mode on ``device``.

    The linear calibration layers ship inside the lpips package and are always loaded.
    ``random_weights=True`` keeps a randomly initialised AlexNet trunk (for tests: no download);
    otherwise the torchvision ImageNet AlexNet is read from ``weights_dir`` or torch.hub's
    checkpoints folder, after checking it is there.
    """
    # Checked before importing anything heavy: a missing file must fail at once.
    path = None if random_weights else resolve_weights(ALEXNET, weights_dir) / ALEXNET_FILE
    import lpips

    # pretrained=False / pnet_rand=True: lpips must neither download AlexNet itself nor unpickle
    # its linear layers without weights_only; both are loaded below.
    with warnings.catch_warnings():  # torchvision's deprecation notice for `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", spatial=True, pretrained=False,
                            pnet_rand=True, verbose=False)
    lin_path = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth")
    lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
    if set(lin_state) != {f"lin{k}.model.1.weight" for k in range(model.L)}:
        raise RuntimeError(f"unexpected lpips linear-layer file {lin_path}: {sorted(lin_state)}")
    model.load_state_dict(lin_state, strict=False)
    if path is not None:
        _load_alexnet_trunk(model.net, torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False).to(device)


def _load_alexnet_trunk(net: torch.nn.Module, tv_state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision's ``features.<i>.*`` into lpips' ``slice<k>.<i>.*`` (same layer index)."""
    state = {}
    for slice_name, block in net.named_children():
        for idx, _ in block.named_children():
            for key in ("weight", "bias"):
                src = f"features.{idx}.{key}"
                if src in tv_state:
                    state[f"{slice_name}.{idx}.{key}"] = tv_state[src]
    net.load_state_dict(state, strict=True)


def to_lpips_range(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


@torch.no_grad()
def lpips_frames(
    model: "_lpips.LPIPS", a: torch.Tensor, b: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """LPIPS of a[i] vs b[i] per frame: the spatial map averaged, as MAG's ``calculate_lpips``."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, a.shape[0], chunk):
        x = to_lpips_range(a[s : s + chunk].to(device, torch.float32))
        y = to_lpips_range(b[s : s + chunk].to(device, torch.float32))
        out.append(model(x, y).mean(dim=(1, 2, 3)))
    return torch.cat(out).double().cpu()
