"""Few-step causal sampling, block by block, as Self-Forcing and MAG do it.

Verified against the reference (Xilluill/MAG ``utils/scheduler.py``,
``pipeline/memory_generation_pipeline.py``, ``model/memory_generation_model.py``,
``configs/magbench_inference.yaml``; guandeh17/Self-Forcing ``pipeline/causal_inference.py``):

* schedule: ``FlowMatchScheduler(shift=5.0, sigma_min=0.0, extra_one_step=True)`` with
  ``set_timesteps(1000)``: sigmas = linspace(1, 0, 1001)[:-1], warped ``s' = 5s / (1 + 4s)``,
  timesteps = 1000 s'. ``denoising_step_list [1000, 750, 500, 250]`` with
  ``warp_denoising_step: true`` becomes ``timesteps[1000 - step]`` = [1000, 937.5, 833.3, 625.0]
  (float timesteps fed to the time embedding);
* x0 = x_t - sigma_t * flow_pred (in float64, cast back); the next step's input is
  ``(1 - sigma_next) * x0 + sigma_next * noise`` with fresh Gaussian noise; the last step's x0
  is the block's output;
* after each block a clean pass at t = 0 on the block's x0 commits it to the KV memory:
  MAG runs its memory model there with the *empty* prompt's embedding
  (``memory_wrapper(..., self.empty_conditional_dict, ...)``); Self-Forcing and the
  generator-only path run the generator with the prompt (``context_noise = 0``);
* context: the reference VAE-encodes the context video and feeds its latents block by block
  (3 latent frames each) through the same clean pass before the first generated block
  (``inference_w_initial_video`` / ``..._only_generator``), so generation starts at latent frame
  ``num_context_latents`` (RoPE position).

CausVid (tianweiy/CausVid ``causvid/models/wan/causal_inference.py``, ``wan_wrapper.py``,
``configs/wan_causal_dmd.yaml``, ``minimal_inference/longvideo_autoregressive_inference.py``):

* ``denoising_step_list [1000, 757, 522, 0]`` without warping: 3 steps at the raw timesteps
  1000, 757, 522 (the trailing 0 is dropped); its wrapper hard-codes
  ``FlowMatchScheduler(shift=8.0, sigma_min=0.0, extra_one_step=True)``, so sigma is the shift-8
  grid's value at the nearest grid timestep (:data:`CAUSVID_SCHEDULE`);
* long videos are rollouts of 21 latent frames; each new rollout ingests ``start_latents`` (the
  last 3 latents of the previous one, the first replaced by the VAE encoding of its last decoded
  pixel frame alone) at positions 0.. through the clean pass, then generates (:class:`RolloutSampler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from magbench.baselines.wan.memory import KVMemory, RolloutMemory
from magbench.baselines.wan.model import CausalWan


@dataclass(frozen=True)
class FlowSchedule:
    """Shifted flow-matching schedule, with the few-step list warped as the references do."""

    shift: float = 5.0
    num_train_timesteps: int = 1000
    denoising_steps: tuple[int, ...] = (1000, 750, 500, 250)
    warp: bool = True

    def _table(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.num_train_timesteps
        sigmas = torch.linspace(1.0, 0.0, n + 1)[:-1]  # float32, as the reference
        sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        return sigmas, sigmas * n

    def timesteps(self) -> list[float]:
        steps = torch.tensor(self.denoising_steps, dtype=torch.long)
        if not self.warp:
            return [float(s) for s in steps]
        _, ts = self._table()
        ts = torch.cat([ts, torch.zeros(1)])
        return [float(x) for x in ts[self.num_train_timesteps - steps]]

    def sigma(self, timestep: float) -> float:
        """sigma of the nearest training timestep (the reference's argmin lookup)."""
        sigmas, ts = self._table()
        return float(sigmas.double()[torch.argmin((ts.double() - float(timestep)).abs())])


#: Self-Forcing, LongLive and MAG: 4 warped steps, shift 5 -> [1000, 937.5, 833.33, 625].
SELF_FORCING_SCHEDULE = FlowSchedule()
#: CausVid (``configs/wan_causal_dmd.yaml`` + its wrapper's shift-8 scheduler): 3 raw steps.
CAUSVID_SCHEDULE = FlowSchedule(shift=8.0, denoising_steps=(1000, 757, 522), warp=False)


class BlockSampler:
    """Runs a generator (and optionally a separate memory model) over a KV memory.

    ``reset`` with the prompt's embedding; ``feed`` clean latent blocks (the context);
    ``next_block`` generates one block of ``block_frames`` latent frames and commits it.
    Latents are [B, F, C, h, w], normalised as the VAE's ``latents_mean/std`` dictate.
    """

    def __init__(
        self,
        generator: CausalWan,
        memory: KVMemory,
        memory_model: CausalWan | None = None,
        schedule: FlowSchedule | None = None,
        block_frames: int = 3,
        cuda_graphs: bool = False,
    ) -> None:
        """``cuda_graphs``: replay the denoising passes from CUDA graphs (see :mod:`.graphs`);
        ignored off the GPU."""
        self.generator = generator
        self.memory_model = memory_model
        self.memory = memory
        self.schedule = schedule or FlowSchedule()
        self.block_frames = block_frames
        self._steps = self.schedule.timesteps()
        self._sigmas = [self.schedule.sigma(t) for t in self._steps]
        self.frame = 0
        self._gen_ctx: list | None = None
        self._mem_ctx: list | None = None
        self._noise_gen: torch.Generator | None = None
        self._graphed = None
        if cuda_graphs and generator.patch_embedding.weight.is_cuda:
            from magbench.baselines.wan.graphs import GraphedDenoiser

            self._graphed = GraphedDenoiser(generator, memory)

    @property
    def timesteps(self) -> list[float]:
        return list(self._steps)

    @property
    def graph_counts(self) -> dict[str, int] | None:
        """With ``cuda_graphs`` on the GPU: how many denoising passes ran eagerly, were captured
        into a CUDA graph and were replayed from one (a copy); None when no graphs are used."""
        return None if self._graphed is None else dict(self._graphed.counts)

    def reset(
        self,
        prompt_embeds: torch.Tensor,
        empty_embeds: torch.Tensor | None = None,
        seed: int = 0,
        latent_shape: tuple[int, int, int] | None = None,
    ) -> None:
        """``prompt_embeds`` [B, L, text_dim]; ``empty_embeds`` the empty prompt's (MAG's memory
        model is conditioned on it); ``latent_shape`` (C, h, w) of a latent frame."""
        self.memory.reset()
        self.frame = 0
        self._gen_ctx = self.generator.context_kv(prompt_embeds)
        if self.memory_model is not None:
            if empty_embeds is None:
                raise ValueError("the memory model is conditioned on the empty prompt: pass empty_embeds")
            self._mem_ctx = self.memory_model.context_kv(empty_embeds)
        else:
            self._mem_ctx = None
        device = self.generator.patch_embedding.weight.device
        self._noise_gen = torch.Generator(device=device).manual_seed(int(seed))
        self._latent_shape = latent_shape
        self._batch = prompt_embeds.shape[0]

    def _param(self) -> torch.Tensor:
        return self.generator.patch_embedding.weight

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        p = self._param()
        return torch.randn(shape, generator=self._noise_gen, device=p.device, dtype=torch.float32).to(p.dtype)

    @torch.no_grad()
    def commit(self, clean: torch.Tensor) -> None:
        """The clean pass at t=0 that writes ``clean`` (a block of latents) into the memory."""
        if clean.shape[1] != self.block_frames:
            raise ValueError(f"blocks have {self.block_frames} latent frames, got {clean.shape[1]}")
        self._write(clean)
        self.frame += clean.shape[1]

    def _position(self) -> int:
        """RoPE frame index of the next block (the absolute latent index, except in rollouts)."""
        return self.frame

    @property
    def position(self) -> int:
        """The ``start_frame`` the next pass hands the model and the memory (``frame``, except
        for CausVid's rollouts, whose positions restart at 0)."""
        return self._position()

    def _write(self, clean: torch.Tensor) -> None:
        t = torch.zeros(clean.shape[:2], device=clean.device)
        pos = self._position()
        if self.memory_model is not None:
            self.memory_model(clean, t, self._mem_ctx, self.memory, pos, commit=True)
        else:
            self.generator(clean, t, self._gen_ctx, self.memory, pos, commit=True)

    @torch.no_grad()
    def feed(self, latents: torch.Tensor) -> None:
        """Feed clean context latents (a whole number of blocks) through the commit pass."""
        if latents.shape[1] % self.block_frames:
            raise ValueError(f"context latents must be whole blocks of {self.block_frames} frames, got {latents.shape[1]}")
        p = self._param()
        for i in range(0, latents.shape[1], self.block_frames):
            self.commit(latents[:, i : i + self.block_frames].to(p.device, p.dtype))

    @torch.no_grad()
    def denoise(
        self, noise: torch.Tensor | None = None, step_noise: Sequence[torch.Tensor] | None = None,
        record: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Few-step denoising of the next block (reads the memory, commits nothing).

        ``noise``: the block's initial noise; ``step_noise``: the fresh noise of each re-noising
        step (both drawn from the sampler's generator when not given: the parity tests replay
        the references' draws); ``record``: a list that receives each step's x0."""
        if self._gen_ctx is None or self._latent_shape is None:
            raise RuntimeError("reset() first")
        shape = (self._batch, self.block_frames, *self._latent_shape)
        x = self._noise(shape) if noise is None else noise.to(self._param())
        ones = torch.ones(shape[:2], device=x.device)
        pos = self._position()
        x0 = x
        for i, (t, sigma) in enumerate(zip(self._steps, self._sigmas)):
            if self._graphed is not None:
                flow = self._graphed(x, ones * t, self._gen_ctx, pos)
            else:
                flow = self.generator(x, ones * t, self._gen_ctx, self.memory, pos, commit=False)
            x0 = (x.double() - sigma * flow.double()).to(x.dtype)
            if record is not None:
                record.append(x0)
            if i + 1 < len(self._steps):
                nxt = self._sigmas[i + 1]
                fresh = self._noise(shape) if step_noise is None else step_noise[i].to(x0)
                x = ((1 - nxt) * x0.float() + nxt * fresh.float()).to(x.dtype)
        return x0

    @torch.no_grad()
    def next_block(self, noise: torch.Tensor | None = None, commit: bool = True) -> torch.Tensor:
        """Denoise the next block; with ``commit`` (the default) write it to the memory too.

        ``commit=False`` leaves the memory to the caller, who must :meth:`commit` a block of clean
        latents for the same span before the next block (the ground-truth memory source: the
        reference's ``gt_latent`` branch runs the cache-update pass on the ground truth's latents).
        """
        x0 = self.denoise(noise)
        if commit:
            self.commit(x0)
        return x0


class RolloutSampler(BlockSampler):
    """CausVid's long-video loop over a :class:`RolloutMemory`.

    Every cache write is the clean pass of :meth:`BlockSampler.commit`. Context latents are only
    remembered (their clean passes run when a rollout starts from them); the first generated
    block starts a rollout from the last ``memory.context_frames`` latents; a block that no
    longer fits the rollout starts the next one from the last ``memory.carry_frames`` latents
    (generated, or whatever was committed in their place). A rollout's first carried latent is
    replaced by ``anchor(latent_index)`` when given: the VAE encoding of that latent's last pixel
    frame alone, as CausVid's script re-encodes ``video[-(4 * (overlap - 1) + 1)]`` (the video's
    first latent is already such an encoding and is kept). Positions restart at 0 every rollout.
    """

    memory: RolloutMemory

    def __init__(
        self, generator: CausalWan, memory: RolloutMemory, schedule: FlowSchedule | None = None,
        block_frames: int = 3, anchor: Callable[[int], torch.Tensor] | None = None, cuda_graphs: bool = False,
    ) -> None:
        if not isinstance(memory, RolloutMemory):
            raise TypeError("RolloutSampler needs a RolloutMemory")
        super().__init__(
            generator, memory, schedule=schedule or CAUSVID_SCHEDULE, block_frames=block_frames,
            cuda_graphs=cuda_graphs,
        )
        self.anchor = anchor
        self._history: list[tuple[int, torch.Tensor]] = []  # (absolute latent index, [B,1,C,h,w])
        self._started = False

    def reset(self, *args, **kwargs) -> None:  # type: ignore[override]
        super().reset(*args, **kwargs)
        self._history = []
        self._started = False

    def _position(self) -> int:
        return self.memory.position

    def _remember(self, clean: torch.Tensor) -> None:
        keep = max(self.memory.carry_frames, self.memory.context_frames)
        for j in range(clean.shape[1]):
            self._history.append((self.frame + j, clean[:, j : j + 1]))
        del self._history[:-keep]

    def _start_rollout(self, carry: int) -> None:
        self.memory.restart()
        frames = self._history[-carry:]
        if not frames:
            return
        latents = [lat for _, lat in frames]
        first = frames[0][0]
        if self.anchor is not None and first > 0:
            latents[0] = self.anchor(first).to(latents[0])
        start = torch.cat(latents, dim=1)
        for i in range(0, start.shape[1], self.block_frames):
            self._write(start[:, i : i + self.block_frames])

    @torch.no_grad()
    def commit(self, clean: torch.Tensor) -> None:
        if clean.shape[1] != self.block_frames:
            raise ValueError(f"blocks have {self.block_frames} latent frames, got {clean.shape[1]}")
        if self._started:
            if not self.memory.fits(clean.shape[1]):
                self._start_rollout(self.memory.carry_frames)
            self._write(clean)
        self._remember(clean)
        self.frame += clean.shape[1]

    @torch.no_grad()
    def denoise(self, noise=None, step_noise=None, record=None) -> torch.Tensor:  # type: ignore[override]
        if not self._started:
            self._started = True
            self._start_rollout(self.memory.context_frames)
        elif not self.memory.fits(self.block_frames):
            self._start_rollout(self.memory.carry_frames)
        return super().denoise(noise, step_noise, record)


@torch.no_grad()
def few_step_denoise(
    flow: Callable[[torch.Tensor, float], torch.Tensor], noise: Callable[[int], torch.Tensor],
    schedule: FlowSchedule, record: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The steps of :meth:`BlockSampler.denoise` around any flow predictor (the memory tasks'
    passes: :mod:`.reconstruction`, :mod:`.recall`): ``x = noise(0)``; per timestep
    ``x0 = x - sigma * flow(x, t)`` (float64, cast back) and, before the next step,
    ``x = (1 - sigma') x0 + sigma' noise(i + 1)``. Returns the last x0; ``record`` receives each."""
    steps = schedule.timesteps()
    sigmas = [schedule.sigma(t) for t in steps]
    x = noise(0)
    x0 = x
    for i, (t, sigma) in enumerate(zip(steps, sigmas)):
        x0 = (x.double() - sigma * flow(x, t).double()).to(x.dtype)
        if record is not None:
            record.append(x0)
        if i + 1 < len(steps):
            nxt = sigmas[i + 1]
            x = ((1 - nxt) * x0.float() + nxt * noise(i + 1).float()).to(x.dtype)
    return x0


class RetrievalSampler(BlockSampler):
    """:class:`BlockSampler` whose memory retrieves by content (LongLive-RAG over a
    :class:`~magbench.baselines.wan.evicted_memory.HostRetrievalWindow`): every block committed
    (context, generated or its ground truth) is embedded frame by frame by ``encoder``, and the
    embeddings are handed to the memory, which retrieves by them before the next block (as the
    reference's ``latent_descriptors``, computed from each block's clean latents). The encoder runs
    inside :meth:`commit`, so its time is part of the block that commits."""

    def __init__(self, generator: CausalWan, memory: KVMemory, encoder: "torch.nn.Module", **kwargs) -> None:
        if not hasattr(memory, "add_descriptors"):
            raise TypeError("RetrievalSampler needs a memory that retrieves by descriptors (add_descriptors)")
        super().__init__(generator, memory, **kwargs)
        self.encoder = encoder

    @torch.no_grad()
    def commit(self, clean: torch.Tensor) -> None:
        b, f = clean.shape[:2]
        desc = self.encoder.encode(clean.flatten(0, 1)).unflatten(0, (b, f))
        self.memory.add_descriptors(self.frame, desc)  # type: ignore[attr-defined]
        super().commit(clean)
