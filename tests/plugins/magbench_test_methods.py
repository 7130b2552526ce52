"""Methods used by the tests to exercise the harness's failure, resume, locking and timing paths.

No test here synchronises on sleeps: :class:`GatedReplay` waits at a block for a file the test
creates, after announcing that it got there with a file of its own; the timing plugins do their
"work" on a fake clock the test injects into the harness."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from magbench.baselines.sanity import HoldFirst, ReplayContext
from magbench.method import Method, SampleInfo


class GatedReplay(ReplayContext):
    """replay-context that stops at a block until told to go on.

    With ``MAGBENCH_TEST_GATE=DIR``: on reaching block ``MAGBENCH_TEST_GATE_BLOCK`` (default 1,
    which the harness's one-block warm-up never reaches) of sample ``MAGBENCH_TEST_GATE_SAMPLE``
    (default any), it writes
    ``DIR/reached-<sample_id>`` and waits until ``DIR/release`` exists (polling the file system:
    the test decides when, not a timer). It stops once per sample and gate folder: a process
    that redoes the sample (a requeued task) passes. Without the variable it is replay-context.
    """

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        gate = os.environ.get("MAGBENCH_TEST_GATE")
        at = int(os.environ.get("MAGBENCH_TEST_GATE_BLOCK", "1"))
        only = os.environ.get("MAGBENCH_TEST_GATE_SAMPLE")
        sid = self.sample.sample_id
        reached = Path(gate or ".", f"reached-{sid}")
        stop = gate and only in (None, sid) and not reached.exists()
        for i, block in enumerate(super().generate(num_frames)):
            if stop and i == at:
                reached.touch()
                while not Path(gate, "release").exists():
                    time.sleep(0.01)
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


# -- timing: honest and dishonest methods on a fake clock -----------------------------------------
class FakeClock:
    """A clock that moves only when a method "works": deterministic timings for tests."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float) -> None:
        self.now += seconds


CLOCK = FakeClock()
SECONDS_PER_FRAME = 0.01  # what producing one frame costs every method below


class HonestWorker(ReplayContext):
    """Does each block's work in generate, as the contract asks."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for block in super().generate(num_frames):
            CLOCK.work(SECONDS_PER_FRAME * block.shape[0])
            yield block


class MemorizeCheat(ReplayContext):
    """Produces the whole target in memorize(), then yields it for free."""

    def memorize(self, frames: torch.Tensor) -> None:
        super().memorize(frames)
        CLOCK.work(SECONDS_PER_FRAME * self.sample.num_target)


class ResetCheat(ReplayContext):
    """Produces the whole target in reset()."""

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        CLOCK.work(SECONDS_PER_FRAME * sample.num_target)


class MemoryBytesCheat(ReplayContext):
    """Builds each next block inside memory_bytes(), which the harness calls between blocks."""

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._made = 0

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for i, block in enumerate(super().generate(num_frames)):
            if i == 0:
                CLOCK.work(SECONDS_PER_FRAME * block.shape[0])
                self._made = block.shape[0]
            yield block

    def memory_bytes(self) -> int:
        if self.sample is not None and self._made < self.sample.num_target:
            n = min(int(self.options["block"]), self.sample.num_target - self._made)
            CLOCK.work(SECONDS_PER_FRAME * n)
            self._made += n
        return super().memory_bytes()


class CallLog(ReplayContext):
    """Logs every reset/generate with the frames asked for (class-level, for one test at a time)."""

    calls: list[tuple[str, str, int]] = []

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        CallLog.calls.append(("reset", sample.sample_id, sample.num_target))

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        CallLog.calls.append(("generate", self.sample.sample_id, num_frames))
        yield from super().generate(num_frames)


class WarmsItself(CallLog):
    """Has its own warm-up hook: the harness calls it instead of a short sample."""

    def warmup(self, sample: SampleInfo) -> None:
        CallLog.calls.append(("warmup", sample.sample_id, sample.num_target))


class NeedsMissingPackage(ReplayContext):
    """Fails to load the way a Wan method does without the ``wan`` extra."""

    def load(self, device="cpu", dtype=torch.float32) -> None:
        raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")


class Interrupted(ReplayContext):
    """The user presses Ctrl-C during the first block."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        raise KeyboardInterrupt
        yield  # pragma: no cover


def not_a_method() -> None:
    """A function where a Method class is expected."""


# -- output outside the contract (floating point in [0, 1]) ---------------------------------------
class Uint8Frames(ReplayContext):
    """Yields 8-bit frames (0..255) instead of floats in [0, 1]."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for block in super().generate(num_frames):
            yield block.mul(255).round().to(torch.uint8)


class SignedFrames(ReplayContext):
    """Yields floats in [-5, 5]: a wrong value convention."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for block in super().generate(num_frames):
            yield block * 10 - 5


class FrozenContender(HoldFirst):
    """Declares itself a method but holds the first context frame (hold-first's output)."""

    description = "A frozen first frame that claims to be a method."
    kind = "method"
    bounds = {}


# -- tasks -------------------------------------------------------------------------------------------
from magbench.tasks.base import Task  # noqa: E402


class NeedsRecall(Task):
    """A task a sanity method cannot run: it needs the recall capability."""

    description = "test task needing Method.recall"
    requires = frozenset({"recall"})

    def run_sample(self, harness, sample, record):  # pragma: no cover - refused before any work
        raise AssertionError("never reached")


# -- text to video (task long-video) -----------------------------------------------------------------
class TextToVideoStub(Method):
    """Generates from the prompt alone: 8x8 frames whose colour drifts slowly, in blocks of 9 then
    12 (as the Wan methods), each block costing ``SECONDS_PER_FRAME`` per frame on :data:`CLOCK`.
    ``memory``: "bounded" (memory_bytes flat after 2 blocks) or "growing" (grows per frame);
    ``oom_at``: raise torch.cuda.OutOfMemoryError on the block that would pass that many frames."""

    text_to_video = True
    resolution = (8, 8)
    defaults = {"memory": "bounded", "oom_at": 0}

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._made = 0

    def memorize(self, frames: torch.Tensor) -> None:  # pragma: no cover - text to video only
        raise AssertionError("long-video never calls memorize")

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(self.sample.seed)
        base = torch.rand(3, 1, 1, generator=g)
        while self._made < num_frames:
            k = min(9 if self._made == 0 else 12, num_frames - self._made)
            oom = int(self.options["oom_at"])
            if oom and self._made + k > oom:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB at frame {self._made}")
            t = torch.arange(self._made, self._made + k, dtype=torch.float32)[:, None, None, None]
            CLOCK.work(SECONDS_PER_FRAME * k)
            self._made += k
            yield ((base + 0.01 * t) % 1.0).expand(k, 3, 8, 8).clone()

    def memory_bytes(self) -> int:
        if self.options["memory"] == "growing":
            return 1000 * self._made
        return 1000 * min(self._made, 21)


class FailsShortTargets(ReplayContext):
    """Works on whole samples, fails on the one-block warm-up: every sample is timed cold."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        if num_frames < 24:
            raise RuntimeError("cannot generate fewer than 24 frames")
        yield from super().generate(num_frames)


# -- the pipelined harness: proof that neighbouring samples' phases overlap ------------------------
class Neighbours:
    """Stage counts the test's stage hook keeps (``hook``), read by :class:`WaitsForNeighbours`."""

    cond = threading.Condition()
    counts: dict[str, int] = {}

    @classmethod
    def clear(cls) -> None:
        with cls.cond:
            cls.counts = {}

    @classmethod
    def hook(cls, stage: str, seconds: float) -> None:
        with cls.cond:
            cls.counts[stage] = cls.counts.get(stage, 0) + 1
            cls.cond.notify_all()

    @classmethod
    def wait_for(cls, stage: str, n: int, timeout: float = 120.0) -> bool:
        with cls.cond:
            return cls.cond.wait_for(lambda: cls.counts.get(stage, 0) >= n, timeout)


class WaitsForNeighbours(ReplayContext):
    """replay-context whose ``memorize`` of the i-th timed sample (of ``n`` = ``limit``) returns
    only once the harness has read sample i+1 and saved sample i-1: it finishes only if those
    phases run while it does (a serial harness would wait for ever; the wait gives up after a
    timeout and the sample then fails naming what did not happen)."""

    n = 3
    seen = 0  # timed samples begun (the warm-up is told apart by its one-block target)

    def memorize(self, frames: torch.Tensor) -> None:
        super().memorize(frames)
        if self.sample.num_target <= 12:
            return  # the harness's one-block warm-up
        i, cls = type(self).seen, type(self)
        cls.seen += 1
        if not Neighbours.wait_for("input", min(i + 2, cls.n)):
            raise RuntimeError(f"sample {i}: the next sample was not read while this one ran")
        if not Neighbours.wait_for("save", i):
            raise RuntimeError(f"sample {i}: the previous sample was not saved while this one ran")


class CountsLoads(ReplayContext):
    """replay-context that counts its loads and closes (class-level, one test at a time)."""

    loads = 0
    closes = 0

    def load(self, device="cpu", dtype=torch.float32) -> None:
        super().load(device, dtype)
        type(self).loads += 1

    def close(self) -> None:
        type(self).closes += 1
