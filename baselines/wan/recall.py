"""Recall (task ``memory-recall``): a Wan method gives back each block it memorised, from memory alone.

After ``memorize(context)`` the method's KV memory holds whatever its policy kept of the context
(full history: every frame; a window: the most recent ones, plus a sink; MAG: the last frame of
each block in a ring of 21, plus a 2-frame sink; CausVid: the latents its next rollout starts
from). :func:`recall_memorised` regenerates every memorised block from noise with the method's
own few-step sampler, attending to that memory exactly as it stands plus the block itself, the
block at its original position (RoPE frame index ``3b``, as when it was memorised), then decodes
the regenerated blocks as one video. Nothing is read from the context frames.

* Which network: the generator, with the caption's cross-attention (the prompt the method
  generates with, ``use_prompt``); for ``mag`` its memory model, as MAG's own reconstruction test
  runs it (``inference_compress.py``: the memory model conditioned on the caption; the generator
  when the memory model is off, the paper's ablation).
* The memory is only read: each pass runs as a non-committing pass of the block that would come
  next (:class:`RecallView`), so its K/V land in the policy's scratch and nothing kept changes;
  the next ``generate`` continues as if recall had not run. Noise is drawn from a generator of
  its own (seeded by the sample), not from the sampler's stream.
* CausVid: its memory is empty until a rollout starts; recall starts it as its first generated
  block would (the last ``context_frames`` latents at positions 0.., the first re-encoded), so
  positions count from the rollout's first latent: block ``b`` sits at ``3b - first`` (negative
  for the blocks before it: their distance from the carried latents, as in the clip).
* The regenerated blocks are decoded in order as one video (a fresh streaming decoder, equal to
  one whole-video decode, as MAG's test decodes its output): block 0 gives 9 pixel frames, every
  later block 12, at the clip's own frame indices. The causal decoder carries a block's latents
  into the next block's first frames, so a forgotten block also costs its successor a little in
  pixels; the latent MSE is per block alone.
* The clean latents each block was memorised from are kept by ``memorize`` (``_memorised``) only
  to score the latent MSE (``RecalledBlock.reference_latents``); they are released when
  ``generate`` starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from magbench.errors import MagbenchError
from magbench.method import RecalledBlock
from magbench.baselines.wan.reconstruction import BLOCK_FRAMES, block_spans
from magbench.baselines.wan.sampler import RolloutSampler, few_step_denoise

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.memory import KVMemory
    from magbench.baselines.wan.methods import _WanMethod


class RecallView:
    """A KV memory seen by a pass that regenerates an old block: every pass is planned as the
    non-committing pass of the block that would come next (frame ``next_start``), whatever
    position the model gives the block's own queries and keys. So the block attends to exactly
    what the memory holds, plus itself, and nothing held changes.

    The block's RoPE position is the one the next block would get moved back by the block's
    distance in the clip (:meth:`rope_frame`): its absolute position for the policies that keep
    keys rotated at their own positions; for the policies that rotate held keys relative to their
    window (:mod:`.rope_memory`, ``rotates_keys``) the same distance from the held frames as the
    next block's, less the block's age."""

    def __init__(self, memory: "KVMemory", next_start: int) -> None:
        self.memory = memory
        self.next_start = next_start
        self.rotates_keys = memory.rotates_keys

    def rope_frame(self, start_frame: int, n_frames: int) -> int:
        return self.memory.rope_frame(self.next_start, n_frames) - (self.next_start - start_frame)

    def use_rope(self, rope, grid: tuple[int, int]) -> None:
        self.memory.use_rope(rope, grid)  # type: ignore[attr-defined]

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        if commit:
            raise ValueError("recall only reads the memory")
        self.memory.begin(self.next_start, n_frames, frame_tokens, False)

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor, *raw_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.memory.attend(layer, k, v, *raw_k)

    def after_attention(self, layer: int) -> None:
        self.memory.after_attention(layer)

    def end(self) -> None:
        self.memory.end()


def _network_and_context(method: "_WanMethod"):
    """(network, its cross-attention K/V of the caption)."""
    sampler = method.sampler
    if method.memory_model is not None:
        sample = method.sample
        prompt = sample.prompt if (sample is not None and method.opts.use_prompt) else ""
        embeds = method.text.embed_many([prompt])[0]
        return method.memory_model, method.memory_model.context_kv(embeds)
    return method.generator, sampler._gen_ctx


@torch.no_grad()
def recall_memorised(method: "_WanMethod") -> Iterator[RecalledBlock]:
    """Every block ``method`` memorised, regenerated from its memory (see the module docstring)."""
    memorised: list[torch.Tensor] = getattr(method, "_memorised", [])
    if not memorised:
        raise MagbenchError(f"{method.name}: recall() needs a memorize() of whole blocks (12a-3 frames, at least 9) first")
    pending = 0 if method._pending is None else method._pending.shape[1]
    if pending or method._enc.pending_frames:
        raise MagbenchError(f"{method.name}: the memorised clip must be 12a-3 pixel frames (whole 3-latent blocks)")
    sampler = method.sampler
    if sampler.frame != BLOCK_FRAMES * len(memorised):
        raise MagbenchError(f"{method.name}: recall() gives back the memorised clip; call it after memorize(), before generate()")
    offset = 0  # rollout position of absolute latent frame 0 (CausVid); 0 elsewhere
    if isinstance(sampler, RolloutSampler):
        if not sampler._started:  # the rollout the first generated block would start, as it would
            sampler._started = True
            sampler._start_rollout(sampler.memory.context_frames)
        offset = -max(0, sampler.frame - sampler.memory.context_frames)
    network, context_kv = _network_and_context(method)
    view = RecallView(sampler.memory, sampler.position)
    p = network.patch_embedding.weight
    seed = method.sample.seed if method.sample is not None else 0
    gen = torch.Generator(device=p.device).manual_seed(int(seed) + 1)  # not the generation stream
    shape = tuple(memorised[0].shape)
    decoder = method.vae.decoder_stream()
    spans = block_spans(BLOCK_FRAMES * len(memorised))
    for b, clean in enumerate(memorised):
        start = BLOCK_FRAMES * b + offset

        def flow(x: torch.Tensor, t: float, start: int = start) -> torch.Tensor:
            ts = torch.full(shape[:2], float(t), device=p.device)
            return network(x, ts, context_kv, view, start, commit=False)  # type: ignore[arg-type]

        def noise(i: int) -> torch.Tensor:
            return torch.randn(shape, generator=gen, device=p.device, dtype=torch.float32).to(p.dtype)

        latents = few_step_denoise(flow, noise, sampler.schedule)
        pixels = decoder.push(latents)
        first, n = spans[b]
        assert pixels.shape[0] == n, (pixels.shape, n)
        yield RecalledBlock(index=b, start=first, frames=pixels.float(), latents=latents, reference_latents=clean)
