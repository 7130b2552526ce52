"""Sanity methods: the floor and ceiling of every table. No weights; they run anywhere."""

from __future__ import annotations

from typing import Iterator

import torch

from magbench.method import Method, MethodNeeds, SampleInfo
from magbench.registry import register_method

BLOCK = 12  # frames per yielded block, like the Wan-based methods (3 latent frames)


class _ContextMethod(Method):
    """Keeps the context frames it was shown (on its device)."""

    needs = MethodNeeds(gpu=False)
    defaults = {"block": BLOCK}  # frames per yielded block

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._frames: list[torch.Tensor] = []

    def memorize(self, frames: torch.Tensor) -> None:
        self._frames.append(frames.to(self.device, self.dtype))

    def memory_bytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self._frames)

    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Both memory sources are the same here: the memory is the context, never the output."""

    def _context(self) -> torch.Tensor:
        if not self._frames:
            raise RuntimeError(f"{self.name}: generate() called before memorize()")
        return torch.cat(self._frames) if len(self._frames) > 1 else self._frames[0]


def _blocks(frames_at: "callable", num_frames: int, block: int) -> Iterator[torch.Tensor]:
    for start in range(0, num_frames, block):
        yield frames_at(start, min(block, num_frames - start))


@register_method("repeat-last")
class RepeatLast(_ContextMethod):
    """Holds the last context frame: the floor of a method that forgets nothing but sees nothing."""

    description = "Holds the last context frame (floor)."
    kind = "floor"

    def memorize(self, frames: torch.Tensor) -> None:
        # Only the last frame is ever used: hold just that, so memory_bytes is honest.
        self._frames = [frames[-1:].to(self.device, self.dtype)]

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        last = self._context()[-1:]
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: last.expand(n, -1, -1, -1).clone(), num_frames, block)


@register_method("replay-context")
class ReplayContext(_ContextMethod):
    """Plays the context backwards from its last frame: the path a leave-and-return camera retraces."""

    description = "Plays the context backwards (floor with perfect memory of the path)."
    kind = "floor"

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        ctx = self._context()
        n_ctx = ctx.shape[0]
        # Frame k of the target is context frame n_ctx-1-k, held at frame 0 once it is reached.
        idx = torch.clamp(n_ctx - 1 - torch.arange(num_frames), min=0).to(ctx.device)
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: ctx.index_select(0, idx[s : s + n]), num_frames, block)


@register_method("oracle")
class Oracle(Method):
    """Returns the ground truth: every metric must report its best value."""

    description = "Returns the ground truth (ceiling; checks the metrics)."
    needs = MethodNeeds(gpu=False, ground_truth=True)
    kind = "ceiling"

    defaults = {"block": BLOCK}

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._target: torch.Tensor | None = None

    def memorize(self, frames: torch.Tensor) -> None:
        pass

    def reveal(self, target: torch.Tensor) -> None:
        self._target = target.to(self.device, self.dtype)

    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Nothing to remember: the oracle already holds the whole target."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        if self._target is None or self._target.shape[0] < num_frames:
            raise RuntimeError("oracle: the harness did not reveal the target frames")
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: self._target[s : s + n], num_frames, block)

    def memory_bytes(self) -> int:
        return 0 if self._target is None else self._target.numel() * self._target.element_size()
