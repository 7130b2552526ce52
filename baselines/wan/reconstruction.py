"""MAG's memory-model test (``inference_compress.py``): reconstruct a clip from its compressed memory.

Verified against the reference (Xilluill/MAG @ 08008c6: ``inference_compress.py``,
``MemoryModelPipeline.inference_block_compress_multi_step`` in ``pipeline/causal_inference_pipeline.py``,
``CausalWanModel._forward_train`` and ``generate_all_history_block_compress_mask`` in
``wan/modules/causal_model.py``, ``configs/bc_inference.yaml``; parity:
``tests/test_wan_parity_mag_reconstruction.py``):

* the clip's clean latents (one whole-video VAE encode) and a noisy copy of the same length are
  one sequence, ``[clean | noisy]``, in one non-causal pass of the network per denoising step;
  the clean frames get timestep 0, the noisy ones the step's timestep;
* RoPE: the clean and the noisy copy each take frame positions ``0 .. F-1`` (``mf_rope_apply`` on
  each half with ``start_index=0``): noisy frame ``j`` sits exactly where clean frame ``j`` does;
* the ``history_compress`` mask (:func:`history_compress_mask`), per block of 3 latent frames: a
  clean frame attends to its own clean block and the last frame of every earlier clean block; a
  noisy frame attends to its own noisy block and the last clean frame of every block up to and
  including its own. So block ``b`` is rebuilt from noise seeing only the compressed memory (one
  frame of K/V per block, 3x compression) of blocks ``0..b``, never a noisy frame of another block;
* 4 warped steps (``denoising_step_list [1000, 750, 500, 250]``, shift 5 -> 1000, 937.5, 833.3,
  625), x0 = x_t - sigma * flow, re-noised with fresh noise between steps; the last x0 is decoded
  by one whole-video VAE decode.

The mask is applied exactly, without materialising it: query frames that share a row of the
frame mask attend, through the model's own attention kernel, to the gathered keys of that row
(:class:`FrameMaskedAttention`; equal to a dense-mask SDPA, tested). Everything else is the
model's own forward (:class:`~magbench.baselines.wan.model.CausalWan`), given the pass's RoPE
tables and a memory that hands every layer its whole K/V.

Where the reference differs from what the test means to measure (it conditions every video on
the *first* video's caption embedding, which ``MemoryModelPipeline`` keeps in
``empty_condition_dict``): the task's ``reference_caption_reuse`` option (``magbench/tasks/``)
reproduces it; by default each clip gets its own caption.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from magbench.errors import MagbenchError
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, FlowSchedule, few_step_denoise

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.attention import AttentionKernel
    from magbench.baselines.wan.model import CausalWan
    from magbench.method import RecalledBlock

BLOCK_FRAMES = 3


@dataclass(frozen=True)
class HistoryCompressMask:
    """Which latent frame of ``[clean | noisy]`` (2F frames) attends to which.

    ``keep_index``: the frame of each block whose K/V is the block's memory (the reference: the
    last, ``num_frame_per_block - 1``); ``compressed=False`` lets every frame of the visible blocks
    through instead of only that one, and ``own_block=False`` hides a noisy block's own compressed
    frame (both only as negative controls of the parity test); ``causal=True`` is a plain
    frame-causal mask over the whole sequence (another control).
    """

    num_frames: int
    block_frames: int = BLOCK_FRAMES
    keep_index: int | None = None
    compressed: bool = True
    own_block: bool = True
    causal: bool = False

    def frames(self) -> torch.Tensor:
        """[2F, 2F] bool, query frame x key frame (frame ``F + j`` is the noisy copy of ``j``)."""
        f, k = self.num_frames, self.block_frames
        if f <= 0 or f % k:
            raise MagbenchError(f"reconstruction: {f} latent frames is not a whole number of {k}-frame blocks")
        idx = torch.arange(2 * f)
        if self.causal:
            return idx[None, :] <= idx[:, None]
        clean = idx < f
        block = torch.where(clean, idx, idx - f) // k
        keep = k - 1 if self.keep_index is None else self.keep_index
        cached = clean & (idx % k == keep) if self.compressed else clean
        q_clean, kv_clean = clean[:, None], clean[None, :]
        qb, kb = block[:, None], block[None, :]
        same = qb == kb
        # The reference's mask_mod, region by region (generate_all_history_block_compress_mask):
        cc = q_clean & kv_clean & (same | ((kb < qb) & cached[None, :]))
        visible = (kb <= qb) if self.own_block else (kb < qb)
        nc = ~q_clean & kv_clean & visible & cached[None, :]
        nn_ = ~q_clean & ~kv_clean & same
        return cc | nc | nn_  # clean queries never see a noisy key


def token_mask(frame_mask: torch.Tensor, frame_tokens: int) -> torch.Tensor:
    """The frame mask expanded to tokens ([L, L] bool): what a dense-mask attention would take."""
    return frame_mask.repeat_interleave(frame_tokens, 0).repeat_interleave(frame_tokens, 1)


class FrameMaskedAttention:
    """An attention kernel (``(q, k, v)`` on [B, L, H, D]) applying a frame mask exactly.

    Consecutive query frames with the same mask row are one group; each group attends, through
    ``kernel`` (the model's own :class:`~magbench.baselines.wan.attention.AttentionKernel`), to
    the keys of the frames its row allows (a contiguous slice where they are contiguous, else a
    gather). A softmax over exactly the allowed keys is what a masked softmax computes."""

    def __init__(self, frame_mask: torch.Tensor, frame_tokens: int, kernel: "AttentionKernel") -> None:
        self.kernel = kernel
        self.frame_tokens = frame_tokens
        rows = frame_mask.bool().cpu()
        if not rows.any(dim=1).all():
            raise ValueError("every query frame must attend to at least one key frame")
        self.groups: list[tuple[int, int, torch.Tensor]] = []  # (first query frame, end, key frames)
        start = 0
        for f in range(1, rows.shape[0] + 1):
            if f == rows.shape[0] or not torch.equal(rows[f], rows[start]):
                self.groups.append((start, f, rows[start].nonzero().flatten()))
                start = f
        self._index: dict[tuple[int, torch.device], torch.Tensor | slice] = {}

    def _keys(self, group: int, device: torch.device) -> torch.Tensor | slice:
        hit = self._index.get((group, device))
        if hit is None:
            frames = self.groups[group][2]
            ft = self.frame_tokens
            if bool((frames.diff() == 1).all()):
                hit = slice(int(frames[0]) * ft, (int(frames[-1]) + 1) * ft)
            else:
                hit = (frames[:, None] * ft + torch.arange(ft)[None, :]).flatten().to(device)
            self._index[(group, device)] = hit
        return hit

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ft = self.frame_tokens
        out = []
        for i, (s, e, _) in enumerate(self.groups):
            keys = self._keys(i, q.device)
            if isinstance(keys, slice):
                ks, vs = k[:, keys], v[:, keys]
            else:
                ks, vs = k.index_select(1, keys), v.index_select(1, keys)
            out.append(self.kernel(q[:, s * ft : e * ft], ks, vs))
        return torch.cat(out, dim=1)


class _WholeSequence:
    """The KV-memory protocol of :class:`CausalWan` for a pass that keeps nothing: every layer
    attends to its own whole K/V (the mask is the attention kernel's business)."""

    rotates_keys = False  # keys reach attend() rotated at their own positions (the pass's RoPE)

    def rope_frame(self, start_frame: int, n_frames: int) -> int:
        return start_frame

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        if commit:
            raise ValueError("a reconstruction pass commits nothing")

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return k, v

    def after_attention(self, layer: int) -> None:
        pass

    def end(self) -> None:
        pass


@contextmanager
def _self_attention_kernel(model: "CausalWan", kernel) -> Iterator[None]:
    """Every layer's self-attention through ``kernel`` for the duration (restored after)."""
    saved = [blk.self_attn.attention for blk in model.blocks]
    try:
        for blk in model.blocks:
            blk.self_attn.attention = kernel
        yield
    finally:
        for blk, old in zip(model.blocks, saved):
            blk.self_attn.attention = old


@torch.no_grad()
def reconstruction_pass(
    model: "CausalWan", clean: torch.Tensor, noisy: torch.Tensor, timestep: float,
    context_kv: list[tuple[torch.Tensor, torch.Tensor]], mask: HistoryCompressMask | None = None,
    noisy_start: int = 0,
) -> torch.Tensor:
    """One pass over ``[clean | noisy]`` (each [B, F, C, h, w]) under ``mask`` (default the
    reference's ``history_compress``): the flow prediction of the noisy copy, [B, F, C, h, w].
    ``noisy_start``: the noisy copy's first RoPE frame position (the reference: 0, shared with the
    clean frames)."""
    b, f = clean.shape[:2]
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy copy {tuple(noisy.shape)} must match the clean latents {tuple(clean.shape)}")
    mask = mask or HistoryCompressMask(f)
    p = model.patch_embedding.weight
    ph, pw = model.cfg.patch_size[1:]
    gh, gw = clean.shape[-2] // ph, clean.shape[-1] // pw
    x = torch.cat([clean, noisy], dim=1).to(p.device, p.dtype)
    t = torch.cat([torch.zeros(b, f), torch.full((b, f), float(timestep))], dim=1).to(p.device)
    cos_c, sin_c = model.rope.tables(0, f, gh, gw, p.device)
    cos_n, sin_n = model.rope.tables(noisy_start, f, gh, gw, p.device)
    rope = (torch.cat([cos_c, cos_n]), torch.cat([sin_c, sin_n]))
    kernel = FrameMaskedAttention(mask.frames(), gh * gw, model.attention)
    with _self_attention_kernel(model, kernel):
        out = model(x, t, context_kv, _WholeSequence(), 0, commit=False, rope=rope)  # type: ignore[arg-type]
    return out[:, f:]


@torch.no_grad()
def reconstruct_latents(
    model: "CausalWan", clean: torch.Tensor, context_kv: list[tuple[torch.Tensor, torch.Tensor]],
    schedule: FlowSchedule = SELF_FORCING_SCHEDULE, generator: torch.Generator | None = None,
    noise: Sequence[torch.Tensor] | None = None, mask: HistoryCompressMask | None = None,
    noisy_start: int = 0, record: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The reference's few-step loop: every block of ``clean`` rebuilt from noise at once.

    ``noise``: the initial noise then one fresh draw per re-noising step (each like ``clean``;
    the parity test replays the reference's draws), else drawn from ``generator``; ``record``
    receives every step's x0. Returns the last step's x0, [B, F, C, h, w]."""
    p = model.patch_embedding.weight
    clean = clean.to(p.device, p.dtype)

    def draw(i: int) -> torch.Tensor:
        if noise is not None:
            return noise[i].to(p.device, p.dtype)
        return torch.randn(clean.shape, generator=generator, device=p.device, dtype=torch.float32).to(p.dtype)

    def flow(x: torch.Tensor, t: float) -> torch.Tensor:
        return reconstruction_pass(model, clean, x, t, context_kv, mask, noisy_start)

    return few_step_denoise(flow, draw, schedule, record)


def block_spans(num_latents: int, block_frames: int = BLOCK_FRAMES) -> list[tuple[int, int]]:
    """(first pixel frame, pixel frames) of each latent block of a clip decoded as one video: the
    first latent frame gives 1 pixel frame, every other one 4 (block 0: 9 frames, then 12)."""
    spans = []
    for b in range(num_latents // block_frames):
        first = 0 if b == 0 else 4 * (b * block_frames) - 3
        end = 4 * ((b + 1) * block_frames) - 3
        spans.append((first, end - first))
    return spans


def whole_blocks_or_fail(what: str, num_frames: int, block_frames: int = BLOCK_FRAMES) -> int:
    """Latent blocks of a clip of ``num_frames`` pixel frames, which must be ``12a - 3``."""
    per = 4 * block_frames
    if num_frames < per - 3 or (num_frames + 3) % per:
        raise MagbenchError(
            f"{what}: a clip of {num_frames} frames is not whole {block_frames}-latent blocks; "
            f"give {per}a-3 frames (9, 21, 33, ...)"
        )
    return (num_frames + 3) // per


@torch.no_grad()
def reconstruct_clip(
    network: "CausalWan", vae, frames: torch.Tensor, prompt_embeds: torch.Tensor, seed: int,
    schedule: FlowSchedule = SELF_FORCING_SCHEDULE, dtype: torch.dtype | None = None,
) -> Iterator["RecalledBlock"]:
    """``inference_compress.py`` for one clip: VAE-encode ``frames`` (T x 3 x H x W in [0, 1],
    ``T = 12a - 3``) as one video, rebuild every block with ``network`` (MAG's memory model)
    conditioned on ``prompt_embeds``, decode the result as one video; one
    :class:`~magbench.method.RecalledBlock` per block (frames, latents, the clean latents)."""
    from magbench.method import RecalledBlock

    blocks = whole_blocks_or_fail("memory-reconstruction", frames.shape[0])
    p = network.patch_embedding.weight
    clean = vae.encode(frames).to(p.device, dtype or p.dtype)
    assert clean.shape[1] == BLOCK_FRAMES * blocks
    gen = torch.Generator(device=p.device).manual_seed(int(seed))
    out = reconstruct_latents(network, clean, network.context_kv(prompt_embeds), schedule, generator=gen)
    pixels = vae.decode(out)
    for b, (start, n) in enumerate(block_spans(clean.shape[1])):
        lat = slice(BLOCK_FRAMES * b, BLOCK_FRAMES * (b + 1))
        yield RecalledBlock(index=b, start=start, frames=pixels[start : start + n], latents=out[:, lat], reference_latents=clean[:, lat])


def compressed_memory_bytes(model: "CausalWan", blocks: int, latent_h: int, latent_w: int) -> int:
    """Bytes of the memory the pass reconstructs from: one latent frame of K and V per block, in
    every layer, in the model's dtype (the clean frames' other K/V serve only their own block)."""
    ph, pw = model.cfg.patch_size[1:]
    tokens = (latent_h // ph) * (latent_w // pw)
    element = model.patch_embedding.weight.element_size()
    return blocks * tokens * model.cfg.num_layers * 2 * model.cfg.dim * element


def reconstruct_for(method, frames: torch.Tensor) -> Iterator["RecalledBlock"]:
    """``Method.reconstruct`` of a Wan method with a memory model (``mag``): the memory model
    (the generator for ``memory_model=false``) conditioned on the sample's caption (``use_prompt``),
    noise seeded by the sample. Call after ``reset``."""
    sample = method.sample
    if sample is None:
        raise MagbenchError(f"{method.name}: reconstruct() needs reset(sample) first")
    blocks = whole_blocks_or_fail(f"{method.name}: memory-reconstruction", frames.shape[0])
    network = method.memory_model if method.memory_model is not None else method.generator
    prompt = sample.prompt if method.opts.use_prompt else ""
    embeds = method.text.embed_many([prompt])[0]
    h, w = frames.shape[-2] // 8, frames.shape[-1] // 8
    method._reconstruction_bytes = compressed_memory_bytes(network, blocks, h, w)
    return reconstruct_clip(network, method.vae, frames, embeds, seed=sample.seed, schedule=method.sampler.schedule)
