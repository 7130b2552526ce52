"""What the two memory tasks share: timing the method's calls, scoring the blocks it gives back,
and their typed part of the record.

``memory-recall`` (:mod:`.recall`) and ``memory-reconstruction`` (:mod:`.reconstruction`) ask a
method for :class:`~magbench.method.RecalledBlock` s (its rendering of each latent block of a
clip) and score every block against the clip's own frames:

* PSNR, SSIM and LPIPS per frame with the repository's functions (:mod:`magbench.metrics.common`:
  PSNR data range 1, SSIM as ``pytorch_msssim``, LPIPS AlexNet spatial, as MAG's
  ``evaluate/vae_metrics`` compute them), on the 8-bit frames (as the replay task scores), then
  averaged over each block's frames; LPIPS only where the ``lpips`` metric is loaded (its weights
  present: ``magbench download --metrics``), else null;
* latent MSE of the block's latents against the clean latents its memory was written from (null
  for a method without a latent space), as the reference's ``vae_loss``;
* age: blocks since the block was memorised (the last memorised block has age 0);
* memory: ``Method.memory_bytes()`` after the call, per memorised pixel frame.

The record's scalars (``metrics``) are means over all scored frames (the reference's per-video
number) and over blocks for the latent MSE; ``per_frame`` holds the per-frame PSNR/SSIM/LPIPS;
the task part holds every per-block array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from magbench.errors import MagbenchError
from magbench.instrument import CallTimer, DeviceMemory
from magbench.record import MemoryUsage, TaskPart, Timing

if TYPE_CHECKING:  # pragma: no cover
    from magbench.harness import Harness
    from magbench.method import RecalledBlock

# The scalars each memory-task record carries (and their direction), for leaderboards and reports.
KEY_INFO: dict[str, dict[str, Any]] = {
    "recall_psnr": {"higher_is_better": True, "best": 100.0},
    "recall_ssim": {"higher_is_better": True, "best": 1.0},
    "recall_lpips": {"higher_is_better": False, "best": 0.0},
    "recall_latent_mse": {"higher_is_better": False, "best": 0.0},
    "memory_bytes_per_frame": {"higher_is_better": False, "best": 0.0},
}


@dataclass
class MemoryPart(TaskPart):
    """A memory task's fields of a record: the clip, and one entry per block in each list."""

    num_frames: int | None = None  # pixel frames memorised (recall: the context; reconstruction: the clip)
    height: int | None = None
    width: int | None = None
    prompt: str | None = None  # the caption the method was given
    block_index: list[int] = field(default_factory=list)
    block_start: list[int] = field(default_factory=list)  # first pixel frame of the block in the clip
    block_frames: list[int] = field(default_factory=list)
    block_age: list[int] = field(default_factory=list)  # blocks since memorised (0: the last)
    block_psnr: list[float] = field(default_factory=list)
    block_ssim: list[float] = field(default_factory=list)
    block_lpips: list[float] | None = None  # null where LPIPS is not loaded
    block_latent_mse: list[float] | None = None  # null where the method has no latents
    memory_bytes: int | None = None
    memory_bytes_per_frame: float | None = None


@dataclass
class BlockScores:
    """Per-block and per-frame scores of a list of recalled blocks."""

    index: list[int]
    start: list[int]
    frames: list[int]
    age: list[int]
    psnr: list[float]
    ssim: list[float]
    lpips: list[float] | None
    latent_mse: list[float] | None
    per_frame: dict[str, list[float]]

    def means(self) -> dict[str, float]:
        out = {f"recall_{k}": float(torch.tensor(v, dtype=torch.float64).mean()) for k, v in self.per_frame.items()}
        if self.latent_mse is not None:
            out["recall_latent_mse"] = float(torch.tensor(self.latent_mse, dtype=torch.float64).mean())
        return out


def quantised(frames: torch.Tensor) -> torch.Tensor:
    """Frames as they are kept and scored: rounded to 8 bits (as the replay task's output)."""
    from magbench.data.video_io import to_float_frames, to_uint8_frames

    return to_float_frames(to_uint8_frames(frames.detach().float().cpu().clamp(0, 1)))


def score_blocks(blocks: list["RecalledBlock"], clip: torch.Tensor, lpips_model: Any = None, label: str = "method") -> BlockScores:
    """Score each block against ``clip[start:start + k]`` (``clip``: T x 3 x H x W in [0, 1])."""
    from magbench.metrics.common import lpips_frames, psnr_frames, ssim_frames

    if not blocks:
        raise MagbenchError(f"{label} gave back no blocks")
    n = len(blocks)
    if [b.index for b in blocks] != list(range(n)):
        raise MagbenchError(f"{label} gave back blocks {[b.index for b in blocks]}; expected 0..{n - 1} in order")
    has_latents = all(b.latents is not None and b.reference_latents is not None for b in blocks)
    psnr, ssim, lpips, mse = [], [], [], []
    per_frame: dict[str, list[float]] = {"psnr": [], "ssim": []}
    if lpips_model is not None:
        per_frame["lpips"] = []
    for b in blocks:
        k = b.frames.shape[0]
        gt = clip[b.start : b.start + k]
        if b.frames.ndim != 4 or gt.shape != b.frames.shape:
            raise MagbenchError(
                f"{label}: block {b.index} has frames {tuple(b.frames.shape)} at {b.start}; the clip has "
                f"{tuple(gt.shape)} there ({clip.shape[0]} frames of {tuple(clip.shape[1:])})"
            )
        if not torch.isfinite(b.frames).all():
            raise MagbenchError(f"{label}: block {b.index} has NaN/Inf frames")
        rec = quantised(b.frames)
        values = {"psnr": psnr_frames(rec, gt), "ssim": ssim_frames(rec, gt)}
        if lpips_model is not None:
            values["lpips"] = lpips_frames(lpips_model, rec, gt)
        for key, v in values.items():
            per_frame[key].extend(float(x) for x in v)
        psnr.append(float(values["psnr"].mean()))
        ssim.append(float(values["ssim"].mean()))
        if lpips_model is not None:
            lpips.append(float(values["lpips"].mean()))
        if has_latents:
            if b.latents.shape != b.reference_latents.shape:
                raise MagbenchError(f"{label}: block {b.index}'s latents {tuple(b.latents.shape)} differ from its reference's")
            mse.append(float((b.latents.double() - b.reference_latents.double()).square().mean()))
    return BlockScores(
        index=list(range(n)), start=[b.start for b in blocks], frames=[b.frames.shape[0] for b in blocks],
        age=[n - 1 - i for i in range(n)], psnr=psnr, ssim=ssim,
        lpips=lpips if lpips_model is not None else None, latent_mse=mse if has_latents else None, per_frame=per_frame,
    )


def lpips_model_of(harness: "Harness") -> Any:
    """The run's LPIPS network (the ``lpips`` metric's), or None when it is not loaded."""
    for m in harness.metrics:
        if getattr(m, "name", "") == "lpips" and getattr(m, "model", None) is not None:
            return m.model
    return None


def timed_blocks(
    harness: "Harness", stage: str, call: Callable[[], Iterable["RecalledBlock"]], setup: list[tuple[str, Callable[[], Any]]],
) -> tuple[list["RecalledBlock"], Timing, MemoryUsage]:
    """Run the ``setup`` calls (``(stage, fn)``: reset, memorize) and ``call`` (every block
    consumed inside the timed region; frames copied out after it), each device-synchronised and
    timed, then ``memory_bytes``; the record's timing and memory."""
    device = torch.device(harness.device)
    timer = CallTimer(device, harness.clock, harness.stage_hook)
    mem = DeviceMemory(device, harness.device_baseline)
    for name, fn in setup:
        timer.call(name, fn)
    blocks = timer.call(stage, lambda: list(call()))
    kv = int(timer.call("memory_bytes", harness.method.memory_bytes))
    t = timer.totals
    method_s = sum(t.values())
    extras = {f"{stage}_s": t.get(stage, 0.0), **{k: float(v) for k, v in harness.method.timings().items()}}
    timing = Timing(
        reset_s=t.get("reset", 0.0), memorize_s=t.get("memorize", 0.0), memory_bytes_s=t.get("memory_bytes", 0.0),
        method_s=method_s, warmup=(harness.warmup or {}).get("kind"), extras=extras,
    )
    memory = MemoryUsage(**mem.summary(), kv_bytes_end=kv, kv_bytes_peak=kv)
    return blocks, timing, memory


def fill(record, part: MemoryPart, scores: BlockScores, memory_bytes: int, num_frames: int) -> None:
    """The record's metrics, per-frame curves and task part from ``scores``."""
    part.block_index, part.block_start, part.block_frames, part.block_age = scores.index, scores.start, scores.frames, scores.age
    part.block_psnr, part.block_ssim, part.block_lpips, part.block_latent_mse = scores.psnr, scores.ssim, scores.lpips, scores.latent_mse
    part.memory_bytes = int(memory_bytes)
    part.memory_bytes_per_frame = memory_bytes / num_frames if num_frames else None
    record.metrics = {**scores.means(), "memory_bytes_per_frame": part.memory_bytes_per_frame}
    record.per_frame = {f"recall_{k}": v for k, v in scores.per_frame.items()}


def refuse_replay_only_settings(task: str, config) -> None:
    """``--memory-source ground-truth`` writes the memory of *generated* blocks: a memory task
    generates none, so the setting would be silently ignored; refuse it in one line."""
    if config.protocol.memory_source != "generated":
        raise MagbenchError(f"--memory-source {config.protocol.memory_source} belongs to magbench-replay; task {task} generates nothing: leave it out")
