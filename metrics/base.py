"""The metric interface: objects in the spirit of torchmetrics (batched, device-aware, pure).

A metric is constructed once per run on its device (it may load a backbone, shared with other
metrics through :mod:`magbench.metrics.backbones`) and called once per sample with a :class:`MetricInputs`. It returns a :class:`MetricResult` whose
scalar ``values`` go to the leaderboard and whose ``per_frame`` series let reports draw curves.
No state is kept between calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from magbench.errors import MagbenchError
from magbench.hub import HubArtifact


class MetricInputError(MagbenchError):
    """The inputs cannot be scored (NaN frames, size mismatch, empty target): a sample failure."""


@dataclass
class MetricInputs:
    """Everything a metric may look at for one sample. Frames are N x 3 x H x W float in [0, 1]
    on the metric's device.

    ``correspondences[i]`` is the context frame showing the same view as target frame i (where
    the dataset provides it). ``seconds_since_leave[i]`` is the time since the camera left the
    starting view, for target frame i (where poses exist).
    """

    generated: torch.Tensor
    target: torch.Tensor
    context: torch.Tensor | None = None
    correspondences: list[int] | None = None
    seconds_since_leave: list[float] | None = None
    fps: float = 16.0

    def check(self) -> None:
        g, t = self.generated, self.target
        if t.shape[0] == 0:
            raise MetricInputError("empty target segment")
        if g.shape != t.shape:
            raise MetricInputError(
                f"generated frames {tuple(g.shape)} do not match ground truth {tuple(t.shape)}"
            )
        if not torch.isfinite(g).all():
            bad = (~torch.isfinite(g)).flatten(1).any(1).nonzero().flatten().tolist()
            raise MetricInputError(f"generated frames {bad[:8]} contain NaN or Inf")


@dataclass
class MetricResult:
    values: dict[str, float] = field(default_factory=dict)
    per_frame: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: "MetricResult") -> None:
        for part in ("values", "per_frame", "extra"):
            mine, theirs = getattr(self, part), getattr(other, part)
            clash = set(mine) & set(theirs)
            if clash:
                raise MagbenchError(f"two metrics report the same key(s) {sorted(clash)}")
            mine.update(theirs)


class Metric(ABC):
    """Base class of every metric.

    ``keys``: the value names it reports, each with ``higher_is_better`` and ``best`` (the value a
    perfect reproduction scores, None if undefined) in ``key_info``. ``weights``: hub artefacts it
    needs (checked before loading, so an offline user gets an immediate error).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    key_info: ClassVar[dict[str, dict[str, Any]]] = {}
    weights: ClassVar[tuple[HubArtifact, ...]] = ()
    default: ClassVar[bool] = False  # part of the default metric set of `magbench run`
    # Options under which the metric runs without its weights (only the values that need none);
    # the default set uses them, rather than dropping the metric, when the weights are missing.
    without_weights: ClassVar[dict[str, Any] | None] = None

    def __init__(self, device: torch.device | str = "cpu", **options: Any) -> None:
        self.device = torch.device(device)
        self.options = dict(options)

    @abstractmethod
    def compute(self, inputs: MetricInputs) -> MetricResult:
        """Score one sample."""

    def __call__(self, inputs: MetricInputs) -> MetricResult:
        inputs.check()
        return self.compute(inputs)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(sorted(self.options.items()))}
