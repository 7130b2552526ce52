"""Methods used by the tests to exercise the harness's failure and resume paths."""

from __future__ import annotations

import os
import time
from typing import Iterator

import torch

from magbench.baselines.sanity import ReplayContext
from magbench.method import Method


class SlowReplay(ReplayContext):
    """replay-context, slowed down so a test can kill the process mid-run."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for block in super().generate(num_frames):
            time.sleep(float(os.environ.get("SLOW_REPLAY_SLEEP", "0.3")))
            yield block


class Troublemaker(ReplayContext):
    """Fails differently on each sample: raises, emits NaN, or yields the wrong shape."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        sid = self.sample.sample_id
        if sid.endswith("000_pan"):
            raise RuntimeError("boom in generate")
        if sid.endswith("001_tilt"):
            for block in super().generate(num_frames):
                yield block * float("nan")
            return
        yield from super().generate(num_frames)


class WrongShape(Method):
    def memorize(self, frames: torch.Tensor) -> None:
        self._shape = frames.shape[1:]

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        yield torch.zeros(num_frames, 3, 8, 8)
