"""VBench-Long subject and background consistency (``vbench2_beta_long``), with drift windows.

VBench-Long scores a long video from short clips of it (``vbench2_beta_long/__init__.py``,
``utils.py``, ``subject_consistency.py``, ``background_consistency.py`` of vbench 0.1.5, read for
this implementation; the pip package ships these modules, the configs come from the repository):

1. **Clips** (``split_video_into_clips``): with ``fps`` the video's integer frame rate and ``d``
   the dimension's clip length in whole seconds (``int`` of the value in its
   ``clip_length_*.yaml``; ``mix``, the default, gives 2 s to both consistencies), clips of
   ``L = fps * d`` frames: ``[0, L), [L, 2L), ...``; a remainder becomes one more clip of the
   *last* ``L`` frames (it overlaps the clip before); a video shorter than ``L`` is one clip.
2. **In-clip score**: VBench's consistency (:mod:`magbench.metrics.consistency`) of each clip as
   its own video, on the same backbone (DINO for subject, CLIP for background).
3. **Clip-to-clip score** (``create_video_from_first_frames`` + the dimension's function): the
   first frames of the clips, in order, scored as one video with the chosen feature extractor
   (``dino`` for subject and ``clip`` for background: the backbones above; VBench-Long's
   ``--dev_flag`` defaults, DINOv2 and DreamSim, are not implemented here). A video of one clip
   has no clip-to-clip score.
4. **Fusion** (``fuse_inclip_clip2clip``): the clip-to-clip score is mapped through the
   dimension's mapping table (``*_mapping_table.yaml``: linear interpolation between the
   bracketing keys, found by ``bisect_left``); each *clip* then scores
   ``w_inclip * inclip + w_clip2clip * mapped`` (just ``inclip`` when the mapped value is 0, as
   for a one-clip video). Weights: ``slow_fast`` (default) reads them from
   ``slow_fast_params.yaml`` (0.5 / 0.5), which is what ``evaluate_long.sh`` (``--dev_flag``)
   does; ``inclip`` is ``eval_long.py`` without ``--dev_flag`` (1.0 / 0.0).
5. **Aggregation**: VBench-Long's dimension score is the mean over *clips* of all videos (its
   ``reorganize_clips_results`` keys each clip apart), so each result carries the sum of its
   clips' fused scores and their count (:func:`clip_weighted_score` pools them); the per-video
   value is the mean over its clips.

Differences, by design: VBench-Long writes every clip and the first-frame video to mp4 and reads
them back (a lossy H.264 round trip); here the frames are scored as they are (8-bit quantised,
as the consistency metrics do), and the features of each frame are computed once for the whole
video, clips and first frames being slices of them. ``clip_length_0.5.yaml`` cannot be used:
``int(0.5)`` is 0 s, on which VBench-Long's own split divides by zero; it is refused.

Beside the VBench-Long score each result carries the video's drift windows
(:mod:`magbench.metrics.drift`, default 5 s) from the same features.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from magbench.errors import MagbenchError
from magbench.metrics.base import MetricInputs, MetricResult
from magbench.metrics.consistency import BackgroundConsistency, SubjectConsistency, consistency_score
from magbench.metrics.drift import DEFAULT_WINDOW_SECONDS, drift_curve
from magbench.metrics.vbench_long_tables import FILES, parse_flat_yaml
from magbench.registry import register_metric

CLIP_LENGTH_CONFIGS = {"mix": "clip_length_mix.yaml", "short": "clip_length_short.yaml",
                       "1.0": "clip_length_1.0.yaml", "0.5": "clip_length_0.5.yaml"}
FUSIONS = ("slow_fast", "inclip")
_POSTFIX = {"subject_consistency": "sb", "background_consistency": "bg"}
_MAPPING_FILE = {"subject_consistency": "subject_mapping_table.yaml",
                 "background_consistency": "background_mapping_table.yaml"}


@dataclass(frozen=True)
class LongSettings:
    """What VBench-Long's configs fix for one dimension."""

    dimension: str  # "subject_consistency" or "background_consistency"
    clip_seconds: int  # whole seconds, as VBench-Long's split takes them
    w_inclip: float
    w_clip2clip: float
    mapping: tuple[tuple[float, float], ...]  # (clip-to-clip score, mapped score), keys ascending


def long_settings(dimension: str, clip_length_config: str = "mix", fusion: str = "slow_fast") -> LongSettings:
    """The clip length, fusion weights and mapping table VBench-Long uses for ``dimension``."""
    if dimension not in _POSTFIX:
        raise MagbenchError(f"VBench-Long dimension {dimension!r}: choose subject_consistency or background_consistency")
    if clip_length_config not in CLIP_LENGTH_CONFIGS:
        raise MagbenchError(f"clip_length_config {clip_length_config!r}: choose one of {', '.join(CLIP_LENGTH_CONFIGS)}")
    if fusion not in FUSIONS:
        raise MagbenchError(f"fusion {fusion!r}: choose slow_fast (evaluate_long.sh) or inclip (eval_long.py without --dev_flag)")
    seconds = parse_flat_yaml(FILES[CLIP_LENGTH_CONFIGS[clip_length_config]])[dimension]
    if int(seconds) < 1:
        raise MagbenchError(
            f"clip_length_config {clip_length_config!r} gives {dimension} clips of {seconds:g} s, which VBench-Long "
            f"truncates to int({seconds:g}) = 0 frames per clip (its split divides by zero); choose mix, short or 1.0"
        )
    if fusion == "slow_fast":
        params = parse_flat_yaml(FILES["slow_fast_params.yaml"])
        post = _POSTFIX[dimension]
        w_in, w_c2c = params[f"w_inclip_{post}"], params[f"w_clip2clip_{post}"]
    else:
        w_in, w_c2c = 1.0, 0.0
    table = parse_flat_yaml(FILES[_MAPPING_FILE[dimension]])
    mapping = tuple(sorted((float(k), float(v)) for k, v in table.items()))
    return LongSettings(dimension, int(seconds), float(w_in), float(w_c2c), mapping)


def split_clips(num_frames: int, fps: float, clip_seconds: int) -> list[tuple[int, int]]:
    """VBench-Long's clips of a video, as ``[start, end)`` frame spans (see the module docstring)."""
    length = int(fps) * int(clip_seconds)
    if length < 1:
        raise MagbenchError(f"VBench-Long clips of {clip_seconds} s at {fps:g} fps hold no frame")
    if num_frames < length:
        return [(0, num_frames)]
    spans = [(i * length, (i + 1) * length) for i in range(num_frames // length)]
    if num_frames % length:
        spans.append((num_frames - length, num_frames))
    return spans


def map_clip2clip(score: float, mapping: tuple[tuple[float, float], ...]) -> float:
    """The clip-to-clip score on the in-clip scale: VBench-Long's table lookup with linear
    interpolation between the bracketing keys (the end values outside them)."""
    keys = [k for k, _ in mapping]
    i = bisect.bisect_left(keys, score)
    if i == 0:
        return mapping[0][1]
    if i == len(keys):
        return mapping[-1][1]
    (k0, v0), (k1, v1) = mapping[i - 1], mapping[i]
    return v0 + (v1 - v0) * (score - k0) / (k1 - k0)


@dataclass
class LongScore:
    """One video's VBench-Long consistency."""

    clips: list[tuple[int, int]]
    inclip: list[float]  # per clip
    clip2clip: float | None  # None: one clip only
    mapped: float  # 0.0 when there is no clip-to-clip score (then each clip scores its in-clip value)
    fused: list[float]  # per clip

    @property
    def score(self) -> float:
        return sum(self.fused) / len(self.fused)

    @property
    def inclip_mean(self) -> float:
        return sum(self.inclip) / len(self.inclip)


def long_consistency(features: torch.Tensor, fps: float, settings: LongSettings) -> LongScore:
    """VBench-Long's consistency of one video from its per-frame features (T x D); the
    clip-to-clip score uses the same features (the ``dino`` / ``clip`` extractor)."""
    clips = split_clips(features.shape[0], fps, settings.clip_seconds)
    inclip = [consistency_score(features[a:b]) for a, b in clips]
    clip2clip = consistency_score(features[[a for a, _ in clips]]) if len(clips) > 1 else None
    mapped = map_clip2clip(clip2clip, settings.mapping) if clip2clip is not None else 0.0
    if mapped != 0.0:
        fused = [s * settings.w_inclip + mapped * settings.w_clip2clip for s in inclip]
    else:
        fused = list(inclip)
    return LongScore(clips, inclip, clip2clip, mapped, fused)


def clip_weighted_score(sums: list[float], clips: list[int]) -> float:
    """VBench-Long's dimension score over several videos: all clips' fused scores over all clips."""
    total = sum(int(c) for c in clips)
    return float(sum(float(s) for s in sums) / total) if total else math.nan


# -- the metrics -----------------------------------------------------------------------------------
def _long_key_info(key: str) -> dict[str, dict[str, Any]]:
    return {k: {"higher_is_better": True, "best": None} for k in (key, f"{key}_inclip", f"{key}_clip2clip")}


class _LongMixin:
    """VBench-Long on top of a VBench consistency metric's backbone (its ``extractor``)."""

    dimension: ClassVar[str] = ""
    key: ClassVar[str]
    extractor: Any
    options: dict[str, Any]

    def _init_long(self, clip_length_config: str, fusion: str, window_seconds: float) -> None:
        self.settings = long_settings(self.dimension, clip_length_config, fusion)
        if not window_seconds > 0:
            raise MagbenchError(f"{self.key}: window_seconds must be > 0, got {window_seconds}")
        self.window_seconds = float(window_seconds)

    def compute(self, inputs: MetricInputs) -> MetricResult:
        gen, ctx = inputs.generated, inputs.context
        whole = gen if ctx is None or ctx.shape[0] == 0 else torch.cat([ctx.to(gen.device, gen.dtype), gen])
        feats = self.extractor(whole)
        long = long_consistency(feats, inputs.fps, self.settings)
        key = self.key
        res = MetricResult()
        res.values[key] = long.score
        res.values[f"{key}_inclip"] = long.inclip_mean
        if long.clip2clip is not None:  # a one-clip video has none
            res.values[f"{key}_clip2clip"] = long.clip2clip
        res.extra[f"{key}_sum"] = float(sum(long.fused))  # VBench-Long pools clips over videos
        res.extra[f"{key}_clips"] = len(long.clips)
        res.extra[f"{key}_detail"] = {
            "clips": [list(c) for c in long.clips], "inclip": long.inclip, "clip2clip": long.clip2clip,
            "mapped_clip2clip": long.mapped, "fused": long.fused,
            "clip_seconds": self.settings.clip_seconds, "w_inclip": self.settings.w_inclip,
            "w_clip2clip": self.settings.w_clip2clip,
        }
        res.extra[f"{self.dimension}_drift"] = drift_curve(feats, inputs.fps, self.window_seconds).to_dict()
        return res


@register_metric("vbench_long_subject_consistency")
class VBenchLongSubjectConsistency(_LongMixin, SubjectConsistency):
    """VBench-Long subject consistency (DINO in-clip and clip-to-clip) and subject drift windows.

    Options: ``clip_length_config`` (mix, short, 1.0; default mix: 2 s clips), ``fusion``
    (slow_fast: 0.5/0.5 as evaluate_long.sh; inclip: 1.0/0.0), ``window_seconds`` (drift windows,
    5), and the options of ``subject_consistency``.
    """

    description: ClassVar[str] = "VBench-Long subject consistency (DINO) and per-window subject drift"
    dimension: ClassVar[str] = "subject_consistency"
    key: ClassVar[str] = "vbench_long_subject_consistency"
    key_info: ClassVar[dict[str, dict[str, Any]]] = _long_key_info("vbench_long_subject_consistency")

    def __init__(self, device: torch.device | str = "cpu", *, clip_length_config: str = "mix",
                 fusion: str = "slow_fast", window_seconds: float = DEFAULT_WINDOW_SECONDS, **options: Any) -> None:
        self._init_long(clip_length_config, fusion, window_seconds)  # bad options fail before any loading
        super().__init__(device, clip_length_config=clip_length_config, fusion=fusion,
                         window_seconds=float(window_seconds), **options)


@register_metric("vbench_long_background_consistency")
class VBenchLongBackgroundConsistency(_LongMixin, BackgroundConsistency):
    """VBench-Long background consistency (CLIP in-clip and clip-to-clip) and background drift
    windows. Options as ``vbench_long_subject_consistency``."""

    description: ClassVar[str] = "VBench-Long background consistency (CLIP) and per-window background drift"
    dimension: ClassVar[str] = "background_consistency"
    key: ClassVar[str] = "vbench_long_background_consistency"
    key_info: ClassVar[dict[str, dict[str, Any]]] = _long_key_info("vbench_long_background_consistency")

    def __init__(self, device: torch.device | str = "cpu", *, clip_length_config: str = "mix",
                 fusion: str = "slow_fast", window_seconds: float = DEFAULT_WINDOW_SECONDS, **options: Any) -> None:
        self._init_long(clip_length_config, fusion, window_seconds)  # bad options fail before any loading
        super().__init__(device, clip_length_config=clip_length_config, fusion=fusion,
                         window_seconds=float(window_seconds), **options)
