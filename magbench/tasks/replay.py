"""``magbench-replay``: MAG-Bench's leave-and-return evaluation, exactly as the reference runs it.

Per sample: the video is read and checked (16 fps, duration), split by the replay protocol
(:mod:`magbench.protocol`), resized to the method's resolution; the method gets ``reset`` ->
``memorize(context)`` -> ``generate(len(target))`` (every call timed: :mod:`magbench.instrument`);
the generated frames are quantised to 8 bits, scored against the target
(:mod:`magbench.scoring`), and kept (``RUN/frames``) with a preview.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from magbench.data.video_io import resize_frames, to_float_frames, to_uint8_frames, write_video
from magbench.errors import StorageError
from magbench.instrument import run_method
from magbench.method import SampleInfo
from magbench.protocol import BLOCK_PIXEL_FRAMES
from magbench.record import MemoryUsage, SampleRecord, TaskPart, Timing
from magbench.scoring import score
from magbench.store import safe_name, save_frames
from magbench.tasks import register_task
from magbench.tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from magbench.data import VideoSample
    from magbench.harness import Harness


@dataclass
class ReplayPart(TaskPart):
    """The replay task's fields of a record (flat in the JSON line, as before tasks existed)."""

    memory_source: str | None = None  # "generated" | "ground-truth" (the protocol's)
    num_context: int | None = None
    num_target: int | None = None
    switch_frame: int | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    # The 16 fps / duration check of the video and what was done (magbench.data.dataset.check_video).
    video_check: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # Fields not reached (a sample that failed before its split) are left out, as they were.
        return {k: v for k, v in super().to_json().items() if v is not None}


@dataclass
class ReplayInputs:
    """A sample as :meth:`ReplayTask.prepare` hands it to the method: context and target at the
    method's resolution (float, T x 3 x H x W), the switch frame, the method's info, annotations."""

    switch: int
    info: SampleInfo
    context: torch.Tensor
    target: torch.Tensor
    annotations: dict[str, Any] | None


@register_task("magbench-replay")
class ReplayTask(Task):
    description = "MAG-Bench leave-and-return: memorise 75 % of a clip, generate the rest, score the returning frames"
    requires = frozenset({"replay"})
    default_dataset = "synthetic"
    Part = ReplayPart
    primary_metric = "bestmatch_lpips"

    def needs(self, config) -> frozenset[str]:
        if config.protocol.memory_source == "ground-truth":
            return self.requires | {"ground-truth-memory"}
        return self.requires

    def check_method(self, method) -> None:
        source = self.config.protocol.memory_source
        if not type(method).supports_memory_source(source):
            from magbench.errors import MagbenchError

            raise MagbenchError(
                f"method {method.name!r} does not support --memory-source {source} "
                "(it does not implement Method.remember_ground_truth); use --memory-source generated"
            )
        super().check_method(method)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.config.protocol.to_dict()}

    def protocol_id(self) -> str:
        return self.config.protocol.id

    def scores(self) -> str:
        return "PSNR/SSIM/LPIPS frame-aligned and best-match, order-preserving best match, correspondence, VBench consistency; FPS, latency, VRAM, KV bytes"

    # -- inputs ---------------------------------------------------------------------------------
    def inputs(self, harness: "Harness", sample: "VideoSample", holder: dict[str, Any] | None = None):
        """A sample's frames split by the protocol, at the method's resolution, and its info.
        ``holder`` receives the video check (``holder["video_check"]``)."""
        frames = sample.load_frames_checked(self.config.protocol, holder)  # 16 fps check, --fps-policy
        return self.split(harness, sample, frames)

    def split(self, harness: "Harness", sample: "VideoSample", frames: np.ndarray):
        protocol = self.config.protocol
        split = protocol.split(frames.shape[0], sample.duration_sec, name=str(sample.video_path))
        video = resize_frames(to_float_frames(frames[: split.kept]), harness.method.resolution)
        info = SampleInfo(
            sample_id=sample.sample_id, prompt=sample.caption, seed=harness.sample_seed(sample),
            height=video.shape[-2], width=video.shape[-1], fps=float(protocol.fps),
            num_context=split.num_context, num_target=split.num_target,
            memory_source=protocol.memory_source,
            annotations=sample.annotations() if harness.method.needs.annotations else None,
        )
        return split, info, video[: split.switch], video[split.switch :]

    # -- one sample -----------------------------------------------------------------------------
    def warm_up(self, harness: "Harness", sample: "VideoSample", prepared: "ReplayInputs | None" = None) -> None:
        if prepared is None:
            _, info, context, target = self.inputs(harness, sample)
        else:  # the sample as prepare() left it; copies, as the timed run must get it untouched
            info, context, target = prepared.info, prepared.context.clone(), prepared.target.clone()
        torch.manual_seed(info.seed)
        short = min(info.num_target, BLOCK_PIXEL_FRAMES)
        run_method(
            harness.method, replace(info, num_target=short), context, target[:short],
            device=harness.device, label=self.config.method,
        )

    def run_sample(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> None:
        finish = self.execute(harness, sample, record, self.prepare(harness, sample, record))
        if finish is not None:
            finish()

    def prepare(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> "ReplayInputs":
        """Read and check the video, split it, resize it (CPU only; the pipeline's reader thread)."""
        part: ReplayPart = record.part  # type: ignore[assignment]
        harness.stage_name = "load"
        t0 = time.perf_counter()
        holder: dict[str, Any] = {}
        try:
            frames = sample.load_frames_checked(self.config.protocol, holder)
        finally:
            part.video_check = holder.get("video_check")
        harness.stage_name = "split"
        split, info, context, target = self.split(harness, sample, frames)
        record.seed = info.seed
        part.memory_source, part.num_context, part.num_target = info.memory_source, split.num_context, split.num_target
        part.switch_frame, part.height, part.width, part.fps = split.switch, info.height, info.width, info.fps
        inputs = ReplayInputs(split.switch, info, context, target, sample.annotations())
        harness.stage("input", time.perf_counter() - t0)
        return inputs

    def execute(self, harness: "Harness", sample: "VideoSample", record: SampleRecord, inputs: "ReplayInputs"):
        """The method's calls, timed; scoring too where the metrics run on a GPU (it must not
        overlap the next sample's timed calls there). Returns the CPU-only rest: scoring on the
        CPU, the kept frames, the preview."""
        harness.stage_name = "generate"
        info = inputs.info
        torch.manual_seed(info.seed)
        np.random.seed(info.seed % (2**32))
        generated, timing, memory = run_method(
            harness.method, info, inputs.context, inputs.target, device=harness.device, clock=harness.clock,
            hook=harness.stage_hook, device_baseline=harness.device_baseline, label=self.config.method,
        )
        # Whether (kind, "failed" when no sample warmed up) and on what the process's warm-up ran.
        timing["warmup"] = (harness.warmup or {}).get("kind")
        timing["warmup_sample"] = (harness.warmup or {}).get("sample_id")
        record.timing = _typed(Timing, timing)
        record.memory = _typed(MemoryUsage, memory)
        record.method_extras = dict(harness.method.sample_extras())
        on_device = torch.device(harness.device).type != "cpu"
        scored = self.score(harness, record, inputs, generated) if on_device else None

        def finish() -> None:
            frames_u8, quantised = scored if scored is not None else self.score(harness, record, inputs, generated)
            harness.stage_name = "save"
            t0 = time.perf_counter()
            self.save(harness, record, sample, inputs.target, quantised, frames_u8, info.fps)
            harness.stage("save", time.perf_counter() - t0)

        return finish

    def score(self, harness: "Harness", record: SampleRecord, inputs: "ReplayInputs", generated: torch.Tensor):
        """Quantise the generated frames to 8 bits and score them; returns (uint8, float) frames."""
        # Scored as kept: 8-bit frames, so `magbench score` reproduces these values exactly.
        frames_u8 = to_uint8_frames(generated)
        quantised = to_float_frames(frames_u8)
        harness.stage_name = "score"
        t0 = time.perf_counter()
        scores = score(
            harness.metrics, inputs.context, inputs.target, quantised, switch=inputs.switch,
            fps=float(self.config.protocol.fps), annotations=inputs.annotations,
            use_correspondences=self.config.protocol.use_correspondences, device=harness.device,
        )
        record.metrics, record.per_frame, record.extra = scores["metrics"], scores["per_frame"], scores["extra"]
        harness.stage("score", time.perf_counter() - t0)
        return frames_u8, quantised

    def save(self, harness: "Harness", record: SampleRecord, sample: "VideoSample", target, generated, frames_u8, fps: float) -> None:
        from magbench.reports.previews import write_preview

        path = harness.run_dir.path
        try:
            record.preview = write_preview(path, sample.sample_id, target, generated, record.extra.get("bestmatch_indices"))
            record.frames = save_frames(path, sample.sample_id, frames_u8) if self.config.keep_frames else None
            if self.config.save_videos:
                rel = Path("videos") / f"{safe_name(sample.sample_id)}.mp4"
                write_video(path / rel, frames_u8, fps=fps)
                record.video = rel.as_posix()
        except StorageError:
            # A full or read-only disk stops the run; this sample has no record yet and will be
            # redone, so none of its files may stay behind.
            for rel in (record.preview, record.frames, record.video):
                if rel:
                    (path / rel).unlink(missing_ok=True)
            record.preview = record.frames = record.video = None
            raise


def _typed(cls, values: dict[str, Any]):
    """A Timing/MemoryUsage from instrument's dict (method-specific keys go to its extras)."""
    from magbench.record import _from_dict

    return _from_dict(cls, values)
