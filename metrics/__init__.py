"""Built-in metrics. Importing this package registers them in ``magbench.registry.METRICS``.

Registered names: ``psnr``, ``ssim``, ``lpips`` (frame-aligned target reconstruction),
``bestmatch`` (MAG's best-match LPIPS/PSNR/SSIM), ``correspondence`` (vs the matching context
frame), ``subject_consistency`` and ``background_consistency`` (VBench). Backbones (lpips, timm,
open_clip) are imported only when a metric is constructed, so this import stays cheap.
"""

from magbench.metrics import bestmatch, consistency, correspondence, reconstruction  # noqa: F401
from magbench.metrics.weights import ALEXNET, CLIP, DINO  # noqa: F401
