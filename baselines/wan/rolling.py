"""Rolling Forcing's sampler: several blocks in flight, one denoising pass per window.

Verified against the reference (TencentARC/RollingForcing @ a1477d0,
``pipeline/rolling_forcing_inference.py``, ``CausalInferencePipeline.inference_rolling_forcing``,
with ``configs/rolling_forcing_dmd.yaml``):

* schedule: ``denoising_step_list [1000, 800, 600, 400, 200]`` warped as Self-Forcing's (shift 5)
  -> [1000, 952.38, 882.35, 769.23, 555.56] (:data:`ROLLING_FORCING_SCHEDULE`); the rolling window
  is as many blocks as there are steps (5);
* one model pass per window over every block in flight, oldest first, each frame with its own
  timestep: a block enters the window as pure noise at the first step and moves one step per
  window (the reference's ``shared_timestep``, cleanest first: the oldest block of a full window
  is at the last step, the newest at the first); the windows at the start and the end of the
  video hold fewer blocks;
* after the pass each block's x0 = x_t - sigma_t * flow (float64), and a block not at its last
  step is re-noised to its next step's sigma with fresh noise (``scheduler.add_noise``);
* the block at its last step leaves the window finished: its x0 is the output, and a clean pass
  at t = 0 on it (the reference's ``updating_cache=True`` pass, ``context_noise = 0``, the same
  prompt) writes it to the memory before the next window. The reference runs that pass every
  window on the window's oldest block, finished or not; the unfinished ones (only block 0, in the
  first windows) are overwritten before any pass reads them, so only finished blocks are
  committed here (checked against the reference: ``tests/test_wan_parity_rolling_forcing.py``).

:meth:`RollingSampler.next_block` returns the next block to leave the window, so the first call
runs ``window`` passes before it returns (the time to the first block counts all of them) and
each later call one. :meth:`RollingSampler.plan` says how many blocks the video has, so the last
windows shrink instead of taking in new noise, as at the reference's end of video.

Not reproduced: the reference draws a whole window of noise for each block it re-noises and keeps
the block's slice; this sampler draws each block's noise alone (the parity test hands it the
reference's slices). The reference's own context path does not run (it reads
``current_start_frame`` before assigning it); context is fed through :meth:`commit`, the same
clean pass a finished block gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from magbench.baselines.wan.memory import KVMemory
from magbench.baselines.wan.model import CausalWan
from magbench.baselines.wan.sampler import BlockSampler, FlowSchedule

#: Rolling Forcing: 5 warped steps, shift 5 -> [1000, 952.38, 882.35, 769.23, 555.56].
ROLLING_FORCING_SCHEDULE = FlowSchedule(denoising_steps=(1000, 800, 600, 400, 200))

NoiseFor = Callable[[int], torch.Tensor]  # block index -> its initial noise
StepNoiseFor = Callable[[int, int], torch.Tensor]  # (block index, step) -> the noise re-noising it after that step


@dataclass
class _InFlight:
    index: int  # blocks generated since reset(), 0-based
    x: torch.Tensor  # its current noisy latents [B, block, C, h, w]
    step: int  # the denoising step its next pass runs


class RollingSampler(BlockSampler):
    """Rolling-window few-step sampling over a KV memory (no separate memory model).

    ``reset`` / ``feed`` / ``commit`` as :class:`BlockSampler`; :meth:`plan` the number of blocks
    to generate (without it the stream never ends: every window takes in a new block);
    :meth:`next_block` the next finished block. At most :attr:`window` blocks are in flight: one
    per denoising step.
    """

    def __init__(
        self, generator: CausalWan, memory: KVMemory, schedule: FlowSchedule | None = None, block_frames: int = 3,
    ) -> None:
        # A window's pass changes shape and position from one call to the next: no CUDA graphs.
        super().__init__(generator, memory, schedule=schedule or ROLLING_FORCING_SCHEDULE, block_frames=block_frames)
        self.window = len(self._steps)
        self._flight: list[_InFlight] = []
        self._to_enter: int | None = None
        self._entered = 0
        self._awaiting_commit = False
        self.passes = 0

    def reset(self, *args, **kwargs) -> None:  # type: ignore[override]
        super().reset(*args, **kwargs)
        self._flight = []
        self._to_enter = None
        self._entered = 0
        self._awaiting_commit = False
        self.passes = 0

    def plan(self, blocks: int) -> None:
        """The video has ``blocks`` more blocks to generate (counting those in flight)."""
        self._to_enter = max(0, int(blocks) - len(self._flight))

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    @torch.no_grad()
    def commit(self, clean: torch.Tensor) -> None:
        super().commit(clean)
        self._awaiting_commit = False

    def denoise(self, *args, **kwargs) -> torch.Tensor:  # type: ignore[override]
        raise NotImplementedError("rolling sampler: blocks are denoised together, a window at a time; use next_block()")

    @torch.no_grad()
    def next_block(  # type: ignore[override]
        self, noise: NoiseFor | None = None, commit: bool = True, step_noise: StepNoiseFor | None = None,
        record: list[tuple[int, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Run windows until the oldest block in flight is finished; return its x0.

        ``commit`` (default) writes it to the memory; ``commit=False`` leaves that to the caller
        (the ground-truth memory source), who must :meth:`commit` a block for its span before
        the next call. ``noise(i)`` / ``step_noise(i, step)``: block ``i``'s initial noise and the
        noise that re-noises it after ``step`` (drawn from the sampler's generator when not
        given); ``record`` receives (index of the window's oldest block, the window's x0) per pass.
        """
        if self._gen_ctx is None or self._latent_shape is None:
            raise RuntimeError("reset() first")
        while True:
            finished = self._window(noise, step_noise, record)
            if finished is not None:
                break
        if commit:
            self.commit(finished)
        return finished

    def _window(self, noise: NoiseFor | None, step_noise: StepNoiseFor | None, record) -> torch.Tensor | None:
        # A block that left the window is in the memory before the next pass reads it; the
        # window then starts where the committed frames end.
        if self._awaiting_commit:
            raise RuntimeError("rolling sampler: commit() the finished block before the next window")
        if self._to_enter is None or self._to_enter > 0:
            shape = (self._batch, self.block_frames, *self._latent_shape)
            x = self._noise(shape) if noise is None else noise(self._entered).to(self._param())
            self._flight.append(_InFlight(self._entered, x, 0))
            self._entered += 1
            if self._to_enter is not None:
                self._to_enter -= 1
        if not self._flight:
            raise RuntimeError("rolling sampler: every planned block was generated")
        n = self.block_frames
        x = torch.cat([b.x for b in self._flight], dim=1)
        t = torch.tensor([self._steps[b.step] for b in self._flight for _ in range(n)], device=x.device)
        t = t.unsqueeze(0).expand(x.shape[0], -1)
        sig = torch.tensor([self._sigmas[b.step] for b in self._flight for _ in range(n)], dtype=torch.float64, device=x.device)
        flow = self.generator(x, t, self._gen_ctx, self.memory, self._position(), commit=False)
        self.passes += 1
        x0 = (x.double() - sig.view(1, -1, 1, 1, 1) * flow.double()).to(x.dtype)
        if record is not None:
            record.append((self._flight[0].index, x0))
        finished = None
        for j, b in enumerate(list(self._flight)):
            b0 = x0[:, j * n : (j + 1) * n]
            if b.step + 1 == len(self._steps):
                finished = b0  # only the oldest block can be at the last step
                self._flight.pop(0)
                continue
            nxt = self._sigmas[b.step + 1]
            fresh = self._noise(tuple(b0.shape)) if step_noise is None else step_noise(b.index, b.step).to(b0)
            b.x = ((1 - nxt) * b0.float() + nxt * fresh.float()).to(b0.dtype)
            b.step += 1
        self._awaiting_commit = finished is not None
        return finished
