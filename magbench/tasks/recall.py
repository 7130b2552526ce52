"""``memory-recall``: how much of what it memorised can a method give back from its memory?

Per sample: the video is read and split by the replay protocol exactly as ``magbench-replay``
splits it (its options: ``--switch-fraction``, ``--fps-policy``), resized to the method's
resolution; the method gets ``reset`` -> ``memorize(context)`` -> ``recall()`` (every call timed;
:meth:`~magbench.method.Method.recall`: each memorised block regenerated from noise using only
the memory as it stands at the switch) -> ``memory_bytes``. Each recalled block is scored against
the context's own frames by its age (blocks since memorised): PSNR, SSIM, LPIPS, latent MSE, and
the memory's bytes per memorised frame (:mod:`.memory`). The memory is the one the replay task's
generation would start from: a window shows where it forgets, full history keeps everything at
its cost, MAG what its 3x compression keeps.

Methods need the ``recall`` capability (``Method.recall``): the Wan methods and the sanity
methods ``vae-roundtrip`` (the ceiling: what the Wan VAE alone loses) and ``mean-frame`` (the
floor: one remembered frame).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from magbench.data.video_io import resize_frames, to_float_frames
from magbench.method import SampleInfo
from magbench.record import SampleRecord
from magbench.tasks import register_task
from magbench.tasks.base import Task
from magbench.tasks.memory import KEY_INFO, MemoryPart, fill, lpips_model_of, refuse_replay_only_settings, score_blocks, timed_blocks

if TYPE_CHECKING:  # pragma: no cover
    from magbench.data import VideoSample
    from magbench.harness import Harness


@register_task("memory-recall")
class RecallTask(Task):
    description = "memorise a clip's context, give back every memorised block from memory alone; scored by age"
    requires = frozenset({"recall"})
    default_dataset = "synthetic"
    Part = MemoryPart
    primary_metric = "recall_psnr"
    key_info = KEY_INFO

    def __init__(self, config) -> None:
        super().__init__(config)
        refuse_replay_only_settings(self.name, config)

    def identity(self) -> dict[str, Any]:
        # The context is the replay protocol's: its switch fraction and fps policy decide it.
        return {"name": self.name, "context_protocol": self.config.protocol.to_dict()}

    def protocol_id(self) -> str:
        p = self.config.protocol
        frac = "" if p.switch_fraction == 0.75 else f"-f{p.switch_fraction:g}"
        policy = "" if p.fps_policy == "strict" else f"-fps{p.fps_policy}"
        return f"{self.name}-v1{frac}{policy}"

    def scores(self) -> str:
        return "per memorised block, by age: PSNR/SSIM/LPIPS against the context, latent MSE; memory bytes per memorised frame"

    def clip_inputs(self, harness: "Harness", sample: "VideoSample", holder: dict[str, Any] | None = None):
        """(info, context at the method's resolution)."""
        protocol = self.config.protocol
        frames = sample.load_frames_checked(protocol, holder)
        split = protocol.split(frames.shape[0], sample.duration_sec, name=str(sample.video_path))
        context = resize_frames(to_float_frames(frames[: split.switch]), harness.method.resolution)
        info = SampleInfo(
            sample_id=sample.sample_id, prompt=sample.caption, seed=harness.sample_seed(sample),
            height=context.shape[-2], width=context.shape[-1], fps=float(protocol.fps),
            num_context=split.num_context, num_target=0,
            annotations=sample.annotations() if harness.method.needs.annotations else None,
        )
        return info, context

    def warm_up(self, harness: "Harness", sample: "VideoSample") -> None:
        info, context = self.clip_inputs(harness, sample)
        short = context[:21]  # two blocks
        method = harness.method
        method.reset(info)
        method.memorize(short.to(harness.device))
        list(method.recall())

    def run_sample(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> None:
        part: MemoryPart = record.part  # type: ignore[assignment]
        harness.stage_name = "load"
        t0 = time.perf_counter()
        info, context = self.clip_inputs(harness, sample)
        record.seed = info.seed
        part.num_frames, part.height, part.width, part.prompt = context.shape[0], info.height, info.width, info.prompt
        harness.stage("input", time.perf_counter() - t0)
        harness.stage_name = "recall"
        torch.manual_seed(info.seed)
        method = harness.method
        blocks, record.timing, record.memory = timed_blocks(
            harness, "recall", method.recall,
            [("reset", lambda: method.reset(info)), ("memorize", lambda: method.memorize(context.to(harness.device)))],
        )
        record.method_extras = dict(method.sample_extras())
        harness.stage_name = "score"
        t0 = time.perf_counter()
        scores = score_blocks(blocks, context, lpips_model_of(harness), label=f"method {self.config.method!r}")
        fill(record, part, scores, record.memory.kv_bytes_end or 0, context.shape[0])
        harness.stage("score", time.perf_counter() - t0)
