"""The MAG-Bench replay protocol: which frames a method sees and which it must reproduce.

Official rule (MAG's evaluation), for a video of T frames at 16 fps and a caption duration D s:

* keep the first ``((T + 3) // 12) * 12 - 3`` frames (a whole number of 3-latent-frame blocks of
  the Wan VAE: 1 + 4k pixel frames with k + 1 a multiple of 3);
* switch frame ``s = floor(D * 0.75 * 16)``, snapped up to the next ``12k - 3``:
  ``s = ceil((s + 3) / 12) * 12 - 3``;
* context = frames ``[0, s)``, target = frames ``[s, kept)``.

A video with 9 frames or fewer, or whose switch is not before its end, is rejected.

The rule assumes 16 fps. A video whose container frame rate is not ``fps``, or whose frame count
disagrees with its CSV duration by more than one block (12 frames), is flagged in its record;
``fps_policy`` says what happens to it in a ``csv:`` dataset: "strict" (default) fails that sample
naming both numbers, "resample" resamples it to ``fps`` (nearest frame in time) first, "accept"
uses the frames as they are. The official MAG-Bench is always split as the reference splits it
(flagged, never failed or resampled). See ``magbench.data.dataset.check_video``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from magbench.errors import MagbenchError, SampleError

FPS = 16
BLOCK_PIXEL_FRAMES = 12  # 3 latent frames x 4 (Wan VAE temporal stride)
BLOCK_OFFSET = 3  # the VAE's first latent frame covers 1 pixel frame, not 4
MEMORY_SOURCES = ("generated", "ground-truth")
FPS_POLICIES = ("strict", "resample", "accept")


@dataclass(frozen=True)
class Split:
    kept: int  # frames used from the start of the video
    switch: int  # first target frame

    @property
    def num_context(self) -> int:
        return self.switch

    @property
    def num_target(self) -> int:
        return self.kept - self.switch


@dataclass(frozen=True)
class ReplayProtocol:
    """``switch_fraction`` 0.75 and ``fps`` 16 are the official values; others are options."""

    switch_fraction: float = 0.75
    fps: int = FPS
    use_correspondences: bool = True
    # Where the method's memory of generated spans comes from: "generated" (its own output, the
    # paper's "history context") or "ground-truth" (the reference's --use_gt, "GT context").
    memory_source: str = "generated"
    # What a csv: dataset's video whose frame rate (or frame count) disagrees with the protocol gets:
    # "strict" fails the sample, "resample" resamples it to ``fps``, "accept" uses it as it is.
    fps_policy: str = "strict"

    def __post_init__(self) -> None:
        frac = self.switch_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:  # NaN fails too
            raise MagbenchError(
                f"--switch-fraction {frac!r} is not allowed; give a number strictly between 0 and 1 "
                "(the share of the duration the method sees as context; official 0.75)"
            )
        if self.memory_source not in MEMORY_SOURCES:
            raise MagbenchError(f"--memory-source {self.memory_source}: choose one of {', '.join(MEMORY_SOURCES)}")
        if self.fps_policy not in FPS_POLICIES:
            raise MagbenchError(f"--fps-policy {self.fps_policy}: choose one of {', '.join(FPS_POLICIES)}")

    @property
    def id(self) -> str:
        """A short identifier: runs with different ids are never averaged together."""
        frac = "" if self.switch_fraction == 0.75 else f"-f{self.switch_fraction:g}"
        fps = "" if self.fps == FPS else f"-{self.fps}fps"
        gt = "" if self.memory_source == "generated" else "-gtmem"
        policy = "" if self.fps_policy == "strict" else f"-fps{self.fps_policy}"
        return f"magbench-replay-v1{frac}{fps}{gt}{policy}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}

    @staticmethod
    def kept_frames(num_frames: int) -> int:
        return (num_frames + BLOCK_OFFSET) // BLOCK_PIXEL_FRAMES * BLOCK_PIXEL_FRAMES - BLOCK_OFFSET

    def switch_frame(self, duration_sec: float) -> int:
        # Same expression order as the reference so that float rounding agrees.
        s = math.floor(duration_sec * self.switch_fraction * float(self.fps))
        return math.ceil((s + BLOCK_OFFSET) / BLOCK_PIXEL_FRAMES) * BLOCK_PIXEL_FRAMES - BLOCK_OFFSET

    def split(self, num_frames: int, duration_sec: float, name: str = "video") -> Split:
        kept = self.kept_frames(num_frames)
        if kept <= 9:
            raise SampleError(
                f"{name}: {num_frames} frames keep {max(kept, 0)} under the replay protocol; "
                "more than 9 are needed"
            )
        switch = self.switch_frame(duration_sec)
        if switch >= kept:
            raise SampleError(
                f"{name}: switch frame {switch} (duration {duration_sec:g} s) is not before the "
                f"end ({kept} frames kept of {num_frames}); the video is too short for its duration"
            )
        return Split(kept=kept, switch=switch)
