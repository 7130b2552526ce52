"""``memory-reconstruction``: MAG's own memory-model test (``inference_compress.py``), exactly.

Per sample: the video's first ``12a - 3`` frames (the reference dataset's rule, the same as the
replay protocol's first rule: whole 3-latent blocks), resized to the method's resolution; the
method gets ``reset`` -> ``reconstruct(clip)`` (timed; :meth:`~magbench.method.Method.reconstruct`:
for ``mag``, the clip VAE-encoded, every block rebuilt from noise by the memory model in 4 warped
steps attending only to the compressed last-frame K/V of the blocks up to its own, one non-causal
pass per step, decoded: :mod:`magbench.baselines.wan.reconstruction`, parity with the reference
code in ``tests/test_wan_parity_mag_reconstruction.py``) -> ``memory_bytes``. Each block is
scored against the clip (:mod:`.memory`): PSNR, SSIM, LPIPS as the reference's
``evaluate/vae_metrics``, latent MSE (its ``vae_loss``), by block index (the paper reports the
memory model's PSNR by block index).

Where the reference differs from what the test means to measure: ``MemoryModelPipeline`` keeps
the first video's caption embedding and conditions every later video on it. By default each
clip gets its own caption; option ``reference_caption_reuse=true`` (``--task-opt``) reproduces
the reference: every sample is given the caption of the run's first selected sample (the
reference's first video on one GPU; under its DistributedSampler each rank reuses its own first
video's, which no fixed rule reproduces).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from magbench.data.video_io import resize_frames, to_float_frames
from magbench.errors import SampleError
from magbench.method import SampleInfo
from magbench.options import MethodOptions, option
from magbench.protocol import ReplayProtocol
from magbench.record import SampleRecord
from magbench.tasks import register_task
from magbench.tasks.base import Task
from magbench.tasks.memory import KEY_INFO, MemoryPart, fill, lpips_model_of, refuse_replay_only_settings, score_blocks, timed_blocks

if TYPE_CHECKING:  # pragma: no cover
    from magbench.data import VideoSample
    from magbench.harness import Harness


@dataclass(frozen=True)
class ReconstructionOptions(MethodOptions):
    owner = "task memory-reconstruction"
    reference_caption_reuse: bool = option(
        False, help="condition every clip on the first selected sample's caption, as MAG's inference_compress.py does",
    )


@register_task("memory-reconstruction")
class ReconstructionTask(Task):
    description = "MAG's memory-model test: rebuild each block of a clip from its compressed memory; scored by block"
    requires = frozenset({"reconstruct"})
    default_dataset = "synthetic"
    Part = MemoryPart
    Options = ReconstructionOptions
    primary_metric = "recall_psnr"
    key_info = KEY_INFO

    def __init__(self, config) -> None:
        super().__init__(config)
        refuse_replay_only_settings(self.name, config)
        self._first_caption: str | None = None

    def protocol_id(self) -> str:
        return f"{self.name}-v1" + ("-caption-reuse" if self.opts.reference_caption_reuse else "")

    def scores(self) -> str:
        return "per block of the clip: PSNR/SSIM/LPIPS against it, latent MSE; memory bytes per frame"

    def _caption(self, harness: "Harness", sample: "VideoSample") -> str:
        if not self.opts.reference_caption_reuse:
            return sample.caption
        if self._first_caption is None:  # fixed by the selection, not by what this process ran first
            self._first_caption = harness.selected_samples()[0].caption
        return self._first_caption

    def clip_inputs(self, harness: "Harness", sample: "VideoSample", holder: dict[str, Any] | None = None):
        """(info, clip at the method's resolution)."""
        frames = sample.load_frames_checked(self.config.protocol, holder)
        kept = ReplayProtocol.kept_frames(frames.shape[0])
        if kept < 9:
            raise SampleError(f"{sample.video_path}: {frames.shape[0]} frames hold no whole block (9 frames are needed)")
        clip = resize_frames(to_float_frames(frames[:kept]), harness.method.resolution)
        info = SampleInfo(
            sample_id=sample.sample_id, prompt=self._caption(harness, sample), seed=harness.sample_seed(sample),
            height=clip.shape[-2], width=clip.shape[-1], fps=float(self.config.protocol.fps),
            num_context=kept, num_target=0,
            annotations=sample.annotations() if harness.method.needs.annotations else None,
        )
        return info, clip

    def warm_up(self, harness: "Harness", sample: "VideoSample") -> None:
        info, clip = self.clip_inputs(harness, sample)
        harness.method.reset(replace(info, num_context=21))
        list(harness.method.reconstruct(clip[:21].to(harness.device)))  # two blocks

    def run_sample(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> None:
        part: MemoryPart = record.part  # type: ignore[assignment]
        harness.stage_name = "load"
        t0 = time.perf_counter()
        info, clip = self.clip_inputs(harness, sample)
        record.seed = info.seed
        part.num_frames, part.height, part.width, part.prompt = clip.shape[0], info.height, info.width, info.prompt
        harness.stage("input", time.perf_counter() - t0)
        harness.stage_name = "reconstruct"
        torch.manual_seed(info.seed)
        method = harness.method
        blocks, record.timing, record.memory = timed_blocks(
            harness, "reconstruct", lambda: method.reconstruct(clip.to(harness.device)), [("reset", lambda: method.reset(info))],
        )
        record.method_extras = dict(method.sample_extras())
        harness.stage_name = "score"
        t0 = time.perf_counter()
        scores = score_blocks(blocks, clip, lpips_model_of(harness), label=f"method {self.config.method!r}")
        fill(record, part, scores, record.memory.kv_bytes_end or 0, clip.shape[0])
        harness.stage("score", time.perf_counter() - t0)
