"""Built-in metrics. Importing this package registers them in ``magbench.registry.METRICS``.

Registered names: ``psnr``, ``ssim``, ``lpips`` (frame-aligned target reconstruction),
``bestmatch`` (MAG's best-match LPIPS/PSNR/SSIM, with coverage and the order-preserving best
match), ``correspondence`` (vs the matching context frame), ``subject_consistency`` and
``background_consistency`` (VBench), ``vbench_long_subject_consistency`` and
``vbench_long_background_consistency`` (VBench-Long, with drift windows). Backbones (lpips, timm, open_clip) are imported only when a
metric is constructed, so this import stays cheap, and are shared between the metrics of a run
(:mod:`magbench.metrics.backbones`: one AlexNet per weights and device).
"""

from magbench.metrics import bestmatch, consistency, correspondence, reconstruction, vbench_long  # noqa: F401
from magbench.metrics.weights import ALEXNET, CLIP, DINO  # noqa: F401
