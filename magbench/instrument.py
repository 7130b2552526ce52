"""Timing and memory of one sample's method calls: what a record's ``timing`` and ``memory`` say.

Every call into the method is timed, device-synchronised on both sides: ``reset``, ``memorize``
(and ``reveal`` for the oracle), each block of ``generate`` (including ``remember_ground_truth``
with ``--memory-source ground-truth``) and every ``memory_bytes``. Two throughputs follow:

* generation FPS = target frames / the blocks' time (``fps``);
* end-to-end FPS = target frames / all of the method's time for the sample, reset + memorize +
  generate + memory accounting (``e2e_fps``). Work moved out of ``generate`` into ``memorize``
  or ``memory_bytes`` improves the first and never the second.

Benchmarks observe the same calls through a stage hook (``hook(stage, seconds)``) instead of
patching the harness; tests inject a fake ``clock``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from magbench.errors import MagbenchError
from magbench.method import Method, SampleInfo

Clock = Callable[[], float]
StageHook = Callable[[str, float], None]

# Stages reported to a hook, per sample: the method's calls, then the harness's own work.
METHOD_STAGES = ("reset", "memorize", "block", "remember_ground_truth", "memory_bytes")


class CallTimer:
    """Synchronised wall time of calls, summed per stage; each call is also told to ``hook``."""

    def __init__(self, device: torch.device, clock: Clock = time.perf_counter, hook: StageHook | None = None) -> None:
        self.device = torch.device(device)
        self.clock = clock
        self.hook = hook
        self.totals: dict[str, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] = self.totals.get(stage, 0.0) + seconds
        if self.hook is not None:
            self.hook(stage, seconds)

    def call(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.sync()
        t0 = self.clock()
        try:
            return fn(*args, **kwargs)
        finally:
            self.sync()
            self.add(stage, self.clock() - t0)


class DeviceMemory:
    """Peak allocated and reserved device memory over a sample (CUDA's allocator statistics),
    and how much more is allocated at its end than after the method loaded: the measured
    counterpart of the method's self-reported ``memory_bytes``."""

    def __init__(self, device: torch.device, baseline: int | None) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.baseline = baseline
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

    def summary(self) -> dict[str, int | None]:
        if not self.cuda:
            return {"peak_device_bytes": None, "peak_device_reserved_bytes": None, "device_growth_bytes": None}
        torch.cuda.synchronize(self.device)
        now = int(torch.cuda.memory_allocated(self.device))
        return {
            "peak_device_bytes": int(torch.cuda.max_memory_allocated(self.device)),
            "peak_device_reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
            "device_growth_bytes": None if self.baseline is None else now - self.baseline,
        }


def allocated_bytes(device: torch.device | str) -> int | None:
    device = torch.device(device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.memory_allocated(device))


class _Rss:
    """Peak resident memory, sampled at block boundaries (a whole-process peak would be
    meaningless per sample)."""

    def __init__(self) -> None:
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:  # pragma: no cover
            self._proc = None
        self.peak = 0
        self.sample()

    def sample(self) -> None:
        if self._proc is not None:
            self.peak = max(self.peak, self._proc.memory_info().rss)


def run_method(
    method: Method,
    info: SampleInfo,
    context: torch.Tensor,
    target: torch.Tensor,
    *,
    device: torch.device | str,
    clock: Clock = time.perf_counter,
    hook: StageHook | None = None,
    device_baseline: int | None = None,
    label: str = "",
) -> tuple[torch.Tensor, dict[str, Any], dict[str, Any]]:
    """One sample through ``method``: (generated frames on the CPU, timing, memory).

    ``target`` is handed over only where the protocol allows (``reveal`` for a ground-truth
    method, ``remember_ground_truth`` span by span with that memory source); its length is the
    number of frames asked for.
    """
    device = torch.device(device)
    label = label or method.name
    timer = CallTimer(device, clock, hook)
    mem = DeviceMemory(device, device_baseline)
    rss = _Rss()
    timer.call("reset", method.reset, info)

    def memorize() -> None:
        method.memorize(context.to(device))
        if method.needs.ground_truth:
            method.reveal(target.to(device))

    timer.call("memorize", memorize)
    from_ground_truth = info.memory_source == "ground-truth"
    kv_per_block, frames_per_block, block_s, blocks = [], [], [], []
    produced = 0
    stream: Iterator[torch.Tensor] = iter(method.generate(info.num_target))
    while True:
        timer.sync()
        t0 = clock()
        try:
            block = next(stream)
        except StopIteration:
            # Work after the last block (the generator's epilogue) is generation time too.
            timer.sync()
            if block_s:
                block_s[-1] += clock() - t0
            break
        if block.ndim != 4 or block.shape[1:] != target.shape[1:]:
            raise MagbenchError(
                f"method {label!r} yielded a block of shape {tuple(block.shape)}; "
                f"expected k x {' x '.join(map(str, target.shape[1:]))}"
            )
        if not block.is_floating_point():
            raise MagbenchError(
                f"method {label!r} yielded block {len(blocks)} as {block.dtype}; the contract is floating point "
                "in [0, 1] (for 8-bit frames yield frames.float() / 255)"
            )
        if from_ground_truth:
            # Part of the block's time (and reported apart): writing the memory is the method's
            # work whichever source it writes from.
            span = target[produced : produced + block.shape[0]]
            timer.call("remember_ground_truth", method.remember_ground_truth, span.to(device))
        timer.sync()
        seconds = clock() - t0
        block_s.append(seconds)
        if hook is not None:
            hook("block", seconds)
        produced += block.shape[0]
        blocks.append(block.detach().float().cpu())  # copying out is not the method's time
        frames_per_block.append(produced)
        kv_per_block.append(int(timer.call("memory_bytes", method.memory_bytes)))
        rss.sample()
    if produced != info.num_target:
        raise MagbenchError(f"method {label!r} produced {produced} frames; {info.num_target} were asked for")
    if not kv_per_block:
        kv_per_block.append(int(timer.call("memory_bytes", method.memory_bytes)))
    host_end = int(timer.call("memory_bytes", method.host_memory_bytes))
    generated = torch.cat(blocks)
    if not torch.isfinite(generated).all():
        bad = (~torch.isfinite(generated)).flatten(1).any(1).nonzero().flatten().tolist()
        raise MagbenchError(f"method output has NaN/Inf in frames {bad[:8]}")
    check_range(generated, label)

    t = timer.totals
    generate_s = float(sum(block_s))
    method_s = t.get("reset", 0.0) + t.get("memorize", 0.0) + generate_s + t.get("memory_bytes", 0.0)
    extra = {k: float(v) for k, v in method.timings().items()}
    timing: dict[str, Any] = {
        "reset_s": t.get("reset", 0.0),
        "memorize_s": t.get("memorize", 0.0),
        "generate_s": generate_s,
        "remember_ground_truth_s": t.get("remember_ground_truth", 0.0) if from_ground_truth else None,
        "memory_bytes_s": t.get("memory_bytes", 0.0),
        "method_s": method_s,
        "first_block_s": block_s[0] if block_s else None,
        "block_s": block_s,
        "block_frames": [b.shape[0] for b in blocks],
        "fps": produced / generate_s if generate_s > 0 else None,
        "e2e_fps": produced / method_s if method_s > 0 else None,
        "block_p50_s": _quantile(block_s, 0.5),
        "block_p95_s": _quantile(block_s, 0.95),
        **extra,
    }
    if "decode_s" in extra and generate_s > extra["decode_s"]:
        timing["fps_without_decode"] = produced / (generate_s - extra["decode_s"])
    if not type(method).measures_time:
        # Its calls are not a generator's work (videos read from files): no speed, no memory.
        return generated, {"measured": False, "block_frames": timing["block_frames"]}, {}
    memory = {
        **mem.summary(),
        "peak_rss_bytes": rss.peak,
        "kv_bytes_end": kv_per_block[-1],
        "host_bytes_end": host_end,
        "kv_bytes_peak": max(kv_per_block),
        "kv_bytes_per_block": kv_per_block if frames_per_block else [],
        "frames_per_block": frames_per_block,
    }
    return generated, timing, memory


def check_range(frames: torch.Tensor, label: str) -> None:
    """Generated frames must lie in [0, 1]: out-of-range output is the method's bug (a [-1, 1]
    or 0..255 convention, say), reported with what was found rather than clamped into a score."""
    lo, hi = (float(v) for v in frames.aminmax())
    if lo < 0.0 or hi > 1.0:
        per_frame = frames.flatten(1)
        bad = ((per_frame < 0) | (per_frame > 1)).any(1).nonzero().flatten().tolist()
        raise MagbenchError(
            f"method {label!r} output values in [{lo:.4g}, {hi:.4g}] ({frames.dtype}), outside [0, 1], in "
            f"{len(bad)} of {frames.shape[0]} frames (first {bad[:8]}); the contract is floating point in [0, 1], "
            "never clamped by the harness"
        )


def _quantile(xs: list[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(xs), q)) if xs else None
