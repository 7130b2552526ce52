"""``long-video``: minutes of text-to-video from a prompt list, scored as the MAG paper scores its
5 s and 30 s videos (VBench, VBench-Long), with drift and real-time curves over the horizon.

Per sample (one prompt, one seed): ``reset`` with no context, then ``generate(N)`` from the prompt
alone (the method's ``text-to-video`` capability), every block timed device-synchronised; after
each block the method's memory bytes and (on CUDA) the allocated and peak device memory are read,
so memory can be drawn against generated length. The frames are kept as 8 bits.

Length: ``--frames N`` or ``--seconds S`` (frames = round(S x 16)); the default is 477 frames,
the MAG repository's 30 s setting (``inference_memory_generation.py --num_output_frames 120``
latent frames, decoded 1 + 4 x 119 pixel frames). Its first ``short_frames`` (81: the 5 s setting,
``--num_output_frames 21``) are also scored with VBench: a causal generator's first blocks do not
depend on how many follow, so the prefix is the 5 s video of the same prompt and seed.

Scores (the task's default metric set): VBench subject / background consistency of the whole
video and of the 5 s prefix (``*_5s``), VBench-Long's versions (:mod:`magbench.metrics.vbench_long`)
and each consistency per ``window_seconds`` window (drift curves, in ``extra``). A run whose
method has ``random_weights`` scores with random-weight DINO / CLIP too (unless ``--metric-opt``
says otherwise): its scores are meaningless either way, and the backbones' weights are then not
needed (what lets the tiny offline run record every score; labelled ``random_weights`` in the
metrics' configuration).

Efficiency over the horizon (:mod:`magbench.horizon`): generation FPS per window, time to the first
block, memory against length. A run may stop early: ``time_budget_s`` (generation seconds) or the
device running out of memory ends the sample where it is; the record then fails, naming the
length reached, and keeps every curve up to there (never a crash of the run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np
import torch

from magbench.data.prompts import PromptDataset, PromptSample
from magbench.data.video_io import to_float_frames, to_uint8_frames, write_video
from magbench.errors import DatasetError, MagbenchError, SampleError
from magbench.horizon import window_fps
from magbench.instrument import CallTimer, DeviceMemory, _quantile
from magbench.method import SampleInfo
from magbench.options import MethodOptions, option
from magbench.record import MemoryUsage, SampleRecord, TaskPart, Timing
from magbench.store import safe_name, save_frames
from magbench.tasks import register_task
from magbench.tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from magbench.harness import Harness, RunConfig
    from magbench.method import Method

FPS = 16.0
DEFAULT_FRAMES = 477  # MAG's 30 s: 120 latent frames -> 1 + 4 * 119 pixel frames
SHORT_FRAMES = 81  # MAG's 5 s: 21 latent frames -> 1 + 4 * 20 pixel frames
CONSISTENCY = ("subject_consistency", "background_consistency")
LONG_CONSISTENCY = ("vbench_long_subject_consistency", "vbench_long_background_consistency")


@dataclass(frozen=True)
class LongVideoOptions(MethodOptions):
    owner: ClassVar[str] = "task"
    frames: Optional[int] = option(None, ge=1, help="frames to generate (default 477, MAG's 30 s)")
    seconds: Optional[float] = option(None, gt=0, help="seconds to generate at 16 fps (instead of frames)")
    samples_per_prompt: int = option(1, ge=1, help="samples (seeds) per prompt; ids pNNNN-K")
    short_frames: int = option(SHORT_FRAMES, ge=2, help="prefix also scored with VBench (MAG's 5 s: 81)")
    window_seconds: float = option(5.0, gt=0, help="drift and FPS windows")
    time_budget_s: Optional[float] = option(None, gt=0, help="stop a sample after this much generation time")
    score: bool = option(True, help="score the video (false: efficiency only)")


@dataclass
class LongVideoPart(TaskPart):
    """The long-video task's fields of a record."""

    prompt_index: int | None = None
    seed_index: int | None = None
    short_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    num_frames: int | None = None  # asked for
    frames_generated: int | None = None  # reached (less than num_frames when stopped)
    stop_reason: str | None = None  # None | "time budget" | "out of memory"
    window_seconds: float | None = None
    window_start_frame: list[int] = field(default_factory=list)
    window_gen_fps: list[float | None] = field(default_factory=list)
    window_gen_seconds: list[float] = field(default_factory=list)
    realtime_fraction: float | None = None  # windows generated at >= 16 fps
    device_allocated_per_block: list[int] | None = None  # CUDA: allocated after each block
    device_peak_per_block: list[int] | None = None  # CUDA: peak allocated up to each block


@dataclass
class _Generated:
    """What one streamed generation produced, also when it stopped early."""

    frames_u8: list[np.ndarray] = field(default_factory=list)
    block_s: list[float] = field(default_factory=list)
    block_frames: list[int] = field(default_factory=list)
    frames_per_block: list[int] = field(default_factory=list)
    kv: list[int] = field(default_factory=list)
    host: list[int] = field(default_factory=list)  # Method.host_memory_bytes per block
    dev_alloc: list[int] = field(default_factory=list)
    dev_peak: list[int] = field(default_factory=list)
    stop_reason: str | None = None
    stop_detail: str = ""

    @property
    def produced(self) -> int:
        return self.frames_per_block[-1] if self.frames_per_block else 0


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError))


@register_task("long-video")
class LongVideoTask(Task):
    description = "Text-to-video over minutes: VBench / VBench-Long consistency, drift, FPS and memory against length"
    requires = frozenset({"text-to-video"})
    default_dataset = "prompts"
    Part = LongVideoPart
    Options = LongVideoOptions
    primary_metric = "vbench_long_subject_consistency"
    default_metrics = CONSISTENCY + LONG_CONSISTENCY

    def manifest_key_info(self, metrics_info: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Text to video has no target segment (no ``*_target`` keys); the 5 s prefix writes ``*_5s``.
        out = {k: v for k, v in metrics_info.items() if not k.endswith("_target")}
        out.update({f"{k}_5s": dict(out[k]) for k in CONSISTENCY if k in out})
        return super().manifest_key_info(out)

    def __init__(self, config: "RunConfig") -> None:
        super().__init__(config)
        if self.opts.frames is not None and self.opts.seconds is not None:
            raise MagbenchError("task long-video: give --frames or --seconds, not both")
        if not self.opts.score:
            self.default_metrics = ()  # efficiency only: no backbone is built

    @property
    def num_frames(self) -> int:
        if self.opts.frames is not None:
            return int(self.opts.frames)
        if self.opts.seconds is not None:
            return max(1, int(round(self.opts.seconds * FPS)))
        return DEFAULT_FRAMES

    # -- the run --------------------------------------------------------------------------------
    @classmethod
    def prepare_dataset(cls, config: "RunConfig", dataset: Any) -> Any:
        opts = cls.Options.build(dict(config.task_options), owner="task 'long-video'")  # type: ignore[union-attr]
        if isinstance(dataset, PromptDataset) and opts.samples_per_prompt != dataset.samples_per_prompt:
            return dataset.with_samples_per_prompt(opts.samples_per_prompt)
        return dataset

    def check_dataset(self, dataset: Any) -> None:
        if not isinstance(dataset, PromptDataset):
            raise DatasetError(
                f"task long-video generates from text: dataset {getattr(dataset, 'id', dataset)!r} is not a prompt list; "
                "use --dataset prompts (built in), prompts:PATH (one prompt per line) or moviegen"
            )

    def check_method(self, method: "Method") -> None:
        super().check_method(method)
        if method.resolution is None:
            raise MagbenchError(f"method {method.name!r} has no fixed resolution; task long-video needs one to generate at")

    def metric_options(self, given: dict[str, dict[str, Any]], method: "Method") -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in given.items()}
        for name in LONG_CONSISTENCY:
            out.setdefault(name, {}).setdefault("window_seconds", float(self.opts.window_seconds))
        if method.options.get("random_weights"):
            for name in CONSISTENCY + LONG_CONSISTENCY:
                out.setdefault(name, {}).setdefault("random_weights", True)
        return out

    def identity(self) -> dict[str, Any]:
        opts = self.opts.to_dict()
        opts.pop("frames"), opts.pop("seconds")
        return {"name": self.name, "num_frames": self.num_frames, "fps": FPS, "options": opts}

    def protocol_id(self) -> str:
        return f"long-video-{self.num_frames}f"

    def scores(self) -> str:
        return ("VBench subject/background consistency (whole, 5 s prefix), VBench-Long's, per-window drift; "
                "generation FPS per window, time to first block, memory and device memory against length")

    # -- one sample -------------------------------------------------------------------------------
    def _info(self, harness: "Harness", sample: PromptSample, num_frames: int) -> SampleInfo:
        h, w = harness.method.resolution  # type: ignore[misc]
        return SampleInfo(sample_id=sample.sample_id, prompt=sample.prompt, seed=harness.sample_seed(sample),  # type: ignore[arg-type]
                          height=h, width=w, fps=FPS, num_context=0, num_target=num_frames)

    def warm_up(self, harness: "Harness", sample: PromptSample) -> None:  # type: ignore[override]
        info = self._info(harness, sample, 12)
        torch.manual_seed(info.seed)
        self._generate(harness, info, budget=None, timed=False)

    def _generate(self, harness: "Harness", info: SampleInfo, budget: float | None, timed: bool = True) -> tuple[_Generated, dict[str, float]]:
        """Stream ``info.num_target`` frames; an out-of-memory or the time budget stops it early."""
        method, device = harness.method, torch.device(harness.device)
        clock = harness.clock if timed else time.perf_counter
        timer = CallTimer(device, clock, harness.stage_hook if timed else None)
        out = _Generated()
        cuda = device.type == "cuda"
        timer.call("reset", method.reset, info)
        DeviceMemory(device, None)  # resets the peak statistics: peaks below are this sample's
        stream = iter(method.generate(info.num_target))
        try:
            while True:
                timer.sync()
                t0 = clock()
                try:
                    block = next(stream)
                except StopIteration:
                    timer.sync()
                    if out.block_s:
                        out.block_s[-1] += clock() - t0  # the generator's epilogue is generation time
                    break
                timer.sync()
                seconds = clock() - t0
                if timed and harness.stage_hook is not None:
                    harness.stage_hook("block", seconds)
                if block.ndim != 4 or block.shape[1:] != (3, info.height, info.width):
                    raise MagbenchError(f"method {method.name!r} yielded a block of shape {tuple(block.shape)}; "
                                        f"expected k x 3 x {info.height} x {info.width}")
                if not torch.isfinite(block).all():
                    raise MagbenchError(f"method output has NaN/Inf in frames {out.produced}..{out.produced + block.shape[0] - 1}")
                out.block_s.append(seconds)
                out.block_frames.append(int(block.shape[0]))
                out.frames_per_block.append(out.produced + int(block.shape[0]))
                out.frames_u8.append(to_uint8_frames(block))  # 8 bits on the host: minutes of video fit
                del block
                out.kv.append(int(timer.call("memory_bytes", method.memory_bytes)))
                out.host.append(int(timer.call("memory_bytes", method.host_memory_bytes)))
                if cuda:
                    out.dev_alloc.append(int(torch.cuda.memory_allocated(device)))
                    out.dev_peak.append(int(torch.cuda.max_memory_allocated(device)))
                if budget is not None and sum(out.block_s) > budget and out.produced < info.num_target:
                    out.stop_reason = "time budget"
                    out.stop_detail = f"generation took {sum(out.block_s):.1f} s, over the budget of {budget:g} s"
                    break
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            out.stop_reason = "out of memory"
            out.stop_detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finally:
            stream.close() if hasattr(stream, "close") else None  # type: ignore[func-returns-value]
            if out.stop_reason == "out of memory" and cuda:
                torch.cuda.empty_cache()
        if out.stop_reason is None and out.produced != info.num_target:
            raise MagbenchError(f"method {method.name!r} produced {out.produced} frames; {info.num_target} were asked for")
        return out, dict(timer.totals)

    def run_sample(self, harness: "Harness", sample: PromptSample, record: SampleRecord) -> None:  # type: ignore[override]
        part: LongVideoPart = record.part  # type: ignore[assignment]
        n = self.num_frames
        info = self._info(harness, sample, n)
        record.seed = info.seed
        part.prompt_index, part.seed_index, part.short_prompt = sample.prompt_index, sample.seed_index, sample.short_prompt
        part.height, part.width, part.fps, part.num_frames = info.height, info.width, FPS, n
        part.window_seconds = float(self.opts.window_seconds)
        harness.stage_name = "generate"
        torch.manual_seed(info.seed)
        np.random.seed(info.seed % (2**32))
        gen, totals = self._generate(harness, info, self.opts.time_budget_s)
        self._record_efficiency(harness, record, part, gen, totals)
        if gen.stop_reason is not None:
            secs = gen.produced / FPS
            raise SampleError(f"{gen.stop_reason} after {gen.produced} of {n} frames ({secs:.1f} s of video): {gen.stop_detail}")
        if not (self.opts.score and harness.metrics) and not self.config.keep_frames and not self.config.save_videos:
            return  # efficiency only: the frames are not needed (minutes of them need not be copied)
        frames_u8 = np.concatenate(gen.frames_u8)
        del gen.frames_u8[:]
        if self.opts.score and harness.metrics:
            harness.stage_name = "score"
            t0 = time.perf_counter()
            self._score(harness, record, to_float_frames(frames_u8))
            harness.stage("score", time.perf_counter() - t0)
        harness.stage_name = "save"
        t0 = time.perf_counter()
        self._save(harness, record, sample, frames_u8)
        harness.stage("save", time.perf_counter() - t0)

    def _record_efficiency(self, harness: "Harness", record: SampleRecord, part: LongVideoPart, gen: _Generated,
                           totals: dict[str, float]) -> None:
        generate_s = float(sum(gen.block_s))
        method_s = totals.get("reset", 0.0) + generate_s + totals.get("memory_bytes", 0.0)
        extra = {k: float(v) for k, v in harness.method.timings().items()}
        record.timing = Timing(
            reset_s=totals.get("reset", 0.0), generate_s=generate_s, memory_bytes_s=totals.get("memory_bytes", 0.0),
            method_s=method_s, first_block_s=gen.block_s[0] if gen.block_s else None, block_s=list(gen.block_s),
            block_frames=list(gen.block_frames), fps=gen.produced / generate_s if generate_s > 0 else None,
            e2e_fps=gen.produced / method_s if method_s > 0 else None,
            block_p50_s=_quantile(gen.block_s, 0.5), block_p95_s=_quantile(gen.block_s, 0.95),
            warmup=(harness.warmup or {}).get("kind"), extras=extra,
        )
        if "decode_s" in extra and generate_s > extra["decode_s"]:
            record.timing.fps_without_decode = gen.produced / (generate_s - extra["decode_s"])
        cuda = bool(gen.dev_alloc)
        record.memory = MemoryUsage(
            peak_device_bytes=max(gen.dev_peak) if cuda else None,
            device_growth_bytes=(gen.dev_alloc[-1] - harness.device_baseline) if cuda and harness.device_baseline is not None else None,
            kv_bytes_end=gen.kv[-1] if gen.kv else None, kv_bytes_peak=max(gen.kv) if gen.kv else None,
            kv_bytes_per_block=list(gen.kv), frames_per_block=list(gen.frames_per_block),
            host_bytes_end=gen.host[-1] if gen.host else None, host_bytes_per_block=list(gen.host),
        )
        if cuda:
            record.memory.peak_device_reserved_bytes = int(torch.cuda.max_memory_reserved(harness.device))
        record.method_extras = dict(harness.method.sample_extras())
        w = window_fps(gen.block_frames, gen.block_s, FPS, self.opts.window_seconds)
        part.frames_generated, part.stop_reason = gen.produced, gen.stop_reason
        part.window_start_frame, part.window_gen_fps, part.window_gen_seconds = w.start_frame, w.gen_fps, w.seconds
        part.realtime_fraction = w.realtime_fraction
        part.device_allocated_per_block = list(gen.dev_alloc) if cuda else None
        part.device_peak_per_block = list(gen.dev_peak) if cuda else None

    def _score(self, harness: "Harness", record: SampleRecord, video: torch.Tensor) -> None:
        """Every metric on the whole video; VBench's consistencies also on the 5 s prefix (a view
        of the same frames: the backbones' features are reused, :mod:`magbench.metrics.consistency`)."""
        from magbench.metrics.base import MetricInputs, MetricResult

        total = MetricResult()
        short = video[: self.opts.short_frames]
        with torch.no_grad():
            for m in harness.metrics:
                res = m(MetricInputs(generated=video, target=video, fps=FPS))
                # Without context the "_target" values repeat the whole video's: left out.
                for part_name in ("values", "extra", "per_frame"):
                    d = getattr(res, part_name)
                    for k in [k for k in d if k.endswith("_target") or k.endswith("_target_sum") or k.endswith("_target_pairs")]:
                        del d[k]
                total.merge(res)
                if m.name in CONSISTENCY and video.shape[0] > short.shape[0]:
                    res5 = m(MetricInputs(generated=short, target=short, fps=FPS))
                    total.values[f"{m.key}_5s"] = res5.values[m.key]
                    total.extra[f"{m.key}_5s_sum"] = res5.extra[f"{m.key}_sum"]
                    total.extra[f"{m.key}_5s_pairs"] = res5.extra[f"{m.key}_pairs"]
        record.metrics, record.per_frame, record.extra = total.values, total.per_frame, total.extra

    def _save(self, harness: "Harness", record: SampleRecord, sample: PromptSample, frames_u8: np.ndarray) -> None:
        path = harness.run_dir.path
        record.frames = save_frames(path, sample.sample_id, frames_u8) if self.config.keep_frames else None
        if self.config.save_videos:
            rel = Path("videos") / f"{safe_name(sample.sample_id)}.mp4"
            write_video(path / rel, frames_u8, fps=FPS)
            record.video = rel.as_posix()
