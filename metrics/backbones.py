"""Backbone networks shared between metrics, and the base class of the LPIPS-backed metrics.

The default metric set has three LPIPS-backed metrics (``lpips``, ``bestmatch``,
``correspondence``); each used to build its own AlexNet. :func:`shared_backbone` keeps one
network per (weights, device): the key names the weights by the file they were read from (path,
size and modification time, so a replaced file is read again) or, for random weights, by the seed
they were drawn with. Entries are held weakly: a network lives as long as some metric uses it.

Random weights (tests, benchmarks) are drawn from a fixed seed (:data:`RANDOM_WEIGHTS_SEED`) in a
forked RNG, so a random backbone is the same whatever ran before it and whichever metric built it
first. Backbones are in eval mode with ``requires_grad`` off, and metrics never change them.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable

import torch

from magbench.hub import HubArtifact
from magbench.metrics.base import Metric
from magbench.metrics.weights import ALEXNET, ALEXNET_FILE, resolve_weights

if TYPE_CHECKING:
    import lpips as _lpips

RANDOM_WEIGHTS_SEED = 0

_CACHE: "weakref.WeakValueDictionary[Hashable, torch.nn.Module]" = weakref.WeakValueDictionary()


def device_key(device: torch.device | str) -> str:
    """``cuda`` and ``cuda:<current>`` are one device; keys must agree."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


def weights_key(path: Path | None) -> Hashable:
    """What identifies a backbone's weights: the file (path, size, mtime) or the random seed."""
    if path is None:
        return ("random", RANDOM_WEIGHTS_SEED)
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def shared_backbone(
    kind: str, weights: Path | None, device: torch.device | str, build: Callable[[], torch.nn.Module]
) -> torch.nn.Module:
    """The ``kind`` network with ``weights`` on ``device``, built by ``build()`` (on the CPU, in
    eval mode) only when no live metric holds one already."""
    key = (kind, weights_key(weights), device_key(device))
    model = _CACHE.get(key)
    if model is None:
        if weights is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = build()
        else:
            model = build()
        model = model.eval().requires_grad_(False).to(device)
        _CACHE[key] = model
    return model


def lpips_backbone(
    device: torch.device | str = "cpu",
    random_weights: bool = False,
    weights_dir: str | os.PathLike[str] | None = None,
) -> "_lpips.LPIPS":
    """The shared LPIPS AlexNet (see :func:`magbench.metrics.common.build_lpips`)."""
    from magbench.metrics.common import build_lpips

    # Resolved first: a missing file fails at once, before anything is imported or built.
    path = None if random_weights else resolve_weights(ALEXNET, weights_dir) / ALEXNET_FILE
    return shared_backbone(  # type: ignore[return-value]
        "lpips-alex-v0.1", path, device,
        lambda: build_lpips("cpu", random_weights=random_weights, weights_dir=weights_dir),
    )


class LpipsMetric(Metric):
    """A metric built on LPIPS AlexNet (``self.model``, shared through the backbone cache).

    Options: ``chunk`` (frames per AlexNet batch; default :attr:`default_chunk`),
    ``random_weights`` (random AlexNet trunk, for tests), ``weights_dir`` (folder holding
    alexnet-owt-7be5be79.pth).
    """

    weights: ClassVar[tuple[HubArtifact, ...]] = (ALEXNET,)
    default_chunk: ClassVar[int] = 16

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        chunk: int | None = None,
        random_weights: bool = False,
        weights_dir: str | None = None,
        lpips: bool = True,
        **options: Any,
    ) -> None:
        chunk = self.default_chunk if chunk is None else int(chunk)
        if chunk < 1:
            raise ValueError(f"{self.name or type(self).__name__}: chunk must be >= 1")
        extra = {} if lpips else {"lpips": False}  # recorded only where it changes the values
        super().__init__(device, chunk=chunk, random_weights=random_weights, weights_dir=weights_dir, **extra, **options)
        # lpips=False (a metric's ``without_weights``): its LPIPS values are left out, no AlexNet.
        self.model = lpips_backbone(self.device, random_weights=random_weights, weights_dir=weights_dir) if lpips else None
