"""KV-cache memory policies for the causal Wan transformer.

One interface, three strategies. Every policy owns, per transformer layer, one preallocated K
and one V buffer of shape [B, capacity_tokens, heads, head_dim] laid out as
``[what it keeps | scratch for the current block]``. For each forward pass the model calls
``begin`` (which block, whether to commit it), then per layer ``attend`` (writes the block's
post-RoPE K/V into the scratch and returns *views* ``buf[:, start:end]`` over what the block
attends to: kept frames + itself, always one contiguous range, never a concatenation) and
``after_attention`` (on a commit pass, moves what the policy keeps into place), then ``end``.

Denoising passes (``commit=False``) only read: their K/V land in the scratch and are overwritten.
The clean cache-update pass (``commit=True``) is the one whose K/V are kept. Attention is over an
unordered set of keys (no mask, keys carry their RoPE position), so a ring buffer needs no
reordering.

Keys arrive rotated at the block's position (RoPE at write) and are kept so by every policy
here; the policies of :mod:`.rope_memory` (``rotates_keys = True``) keep keys before RoPE and
rotate them when read, at positions relative to what is attended (Rolling Forcing's sink,
Infinity-RoPE's window).

:meth:`KVMemory.memory_bytes` counts the K/V entries the policy holds about the video (kept
frames x tokens x layers x 2 x heads x head_dim x element size), not the scratch of the block
being generated; :meth:`KVMemory.allocated_bytes` is the buffers' full size.

Verified against the reference code (Xilluill/MAG ``wan/modules/causal_model.py``, class
``CausalWanSelfAttention`` inference branch and ``CausalWanSelfAttention_block_cache.forward_cache``;
``pipeline/memory_generation_pipeline.py``):

* keys are cached after RoPE, with the absolute latent-frame index as RoPE frame position
  (``causal_rope_apply(start_frame=current_start // frame_seqlen)``), for the current block and
  for everything cached: a kept frame keeps the position it was generated at;
* :class:`SlidingWindow` matches the reference rolling cache (``cache_mode="original"``, buffer of
  ``local_attn_size + sink_size + num_frame_per_block`` frames): the first ``sink`` frames of the
  video stay forever, the oldest non-sink frames are evicted so that ``window`` past frames remain,
  and the block attends to sink + window + itself;
* :class:`CompressedMemory` matches ``cache_mode="block_compress"``: after the clean pass of block
  ``b`` (run by MAG's memory model, at t=0, with the empty prompt) only frame index 2 of the
  block (``roped_key[:, 2*frame_seqlen:3*frame_seqlen]``: the last frame of a 3-frame block) is
  written to ring slot ``b % 21`` (buffer of ``local_attn_size=21`` frames); block 0 also writes
  its first ``sink_size=2`` frames to the sink; a block attends to sink (only from block 1 on:
  ``sink_len = min(current_start, sink_size * frame_seqlen)``) + ``min(b, 21)`` slots + itself;
  generator and memory model share this one cache;
* :class:`FullHistory` keeps every committed frame (the reference's ``local_attn_size=-1``).

The baselines' own caches map onto these policies (checked against recordings of the reference
code, ``tests/golden/``):

* Self-Forcing (guandeh17/Self-Forcing ``wan/modules/causal_model.py``, ``CausalWanSelfAttention``
  with a cache) and LongLive v1.0 (NVlabs/LongLive ``wan/modules/causal_model.py``) hold a cache of
  ``local_attn_size`` frames *including* the block being generated and the ``sink_size`` sink
  frames; when a new block overflows it, the oldest non-sink frames are shifted out. Attention is
  over the whole filled cache. That is :class:`SlidingWindow` with
  ``window_frames = local_attn_size - sink_size - block`` (:meth:`SlidingWindow.from_reference`):
  LongLive's default (12, sink 3) keeps sink 3 + 6 past frames, Self-Forcing with its code's own
  window at the training length (21, sink 0) keeps 18 past frames;
* CausVid (tianweiy/CausVid ``causvid/models/wan/causal_model.py``) writes each block at its
  absolute position in a 21-frame cache and never evicts; its long-video script restarts the
  cache with a few carried latents at position 0 (:class:`RolloutMemory`, driven by
  :class:`magbench.baselines.wan.sampler.RolloutSampler`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from magbench.errors import MagbenchError


class CacheFullError(MagbenchError):
    """A memory with a frame limit was asked to hold more."""


class KVMemory(ABC):
    """Base class: buffers, the attend/commit protocol and byte accounting."""

    name = "memory"
    #: Whether the policy keeps keys before RoPE and rotates them itself when they are read, at
    #: positions it decides (:mod:`.rope_memory`). The model then hands :meth:`attend` the
    #: block's keys before RoPE as well (``raw_k``) and gives the policy its RoPE tables
    #: (``use_rope``); every other policy gets keys rotated at the block's position and keeps them.
    rotates_keys: ClassVar[bool] = False

    def __init__(self, num_layers: int, block_frames: int = 3) -> None:
        self.num_layers = num_layers
        self.block_frames = block_frames
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._frame_tokens = 0
        self._alloc_frames = 0
        self._pass: tuple[int, int, int, int, bool] | None = None  # start, n, read_from, cur, commit
        self.reset()

    # -- policy hooks -----------------------------------------------------------------------------
    @abstractmethod
    def reset(self) -> None:
        """Forget the video (buffers stay allocated for the next one)."""

    @abstractmethod
    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        """(first attended buffer frame, buffer frame where the current block is written)."""

    @abstractmethod
    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        """On a commit pass, after attention: move what is kept into place for ``layer``."""

    @abstractmethod
    def _advance(self, start_frame: int, n_frames: int) -> None:
        """After a commit pass: update the bookkeeping."""

    @abstractmethod
    def kept_frames(self) -> list[int]:
        """Absolute latent-frame indices whose K/V are held now (sorted)."""

    def _capacity_frames(self, needed: int) -> int:
        """Buffer frames to allocate when ``needed`` are required."""
        return needed

    # -- protocol used by the model ---------------------------------------------------------------
    def rope_frame(self, start_frame: int, n_frames: int) -> int:
        """The RoPE frame index of the block's first frame (its queries and its own keys): the
        absolute ``start_frame``, unless the policy positions frames relative to its window."""
        return start_frame

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        if self._frame_tokens and frame_tokens != self._frame_tokens:
            raise ValueError(f"{self.name}: {frame_tokens} tokens per frame, buffers hold {self._frame_tokens}")
        self._frame_tokens = frame_tokens
        read_from, cur = self._plan(start_frame, n_frames)
        self._pass = (start_frame, n_frames, read_from, cur, commit)

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._pass is not None, "begin() first"
        start, n, read_from, cur, _ = self._pass
        if layer == 0 or not self._k:
            self._ensure(k, cur + n)
        ft = self._frame_tokens
        kb, vb = self._k[layer], self._v[layer]
        kb[:, cur * ft : (cur + n) * ft] = k
        vb[:, cur * ft : (cur + n) * ft] = v
        return kb[:, read_from * ft : (cur + n) * ft], vb[:, read_from * ft : (cur + n) * ft]

    def after_attention(self, layer: int) -> None:
        assert self._pass is not None
        start, n, _, cur, commit = self._pass
        if commit:
            self._keep(layer, start, n, cur)

    def end(self) -> None:
        assert self._pass is not None
        start, n, _, _, commit = self._pass
        if commit:
            self._advance(start, n)
        self._pass = None

    # -- buffers ----------------------------------------------------------------------------------
    def _ensure(self, like: torch.Tensor, frames: int) -> None:
        b, _, h, d = like.shape
        ok = (
            self._k
            and self._alloc_frames >= frames
            and self._k[0].shape[0] == b
            and self._k[0].shape[2:] == (h, d)
            and self._k[0].dtype == like.dtype
            and self._k[0].device == like.device
        )
        if ok:
            return
        new_frames = max(self._capacity_frames(frames), frames)
        tokens = new_frames * self._frame_tokens
        old_k, old_v = self._k, self._v
        keep = 0
        if old_k and old_k[0].shape[0] == b and old_k[0].shape[2:] == (h, d):
            keep = min(old_k[0].shape[1], tokens)  # a grown buffer keeps what it held
        self._k, self._v = [], []
        for i in range(self.num_layers):
            # One layer at a time so a grown cache never holds two full copies at once.
            kb = like.new_empty(b, tokens, h, d)
            vb = like.new_empty(b, tokens, h, d)
            if keep:
                kb[:, :keep] = old_k[i][:, :keep].to(kb)
                vb[:, :keep] = old_v[i][:, :keep].to(vb)
                old_k[i] = old_v[i] = None  # type: ignore[call-overload]
            self._k.append(kb)
            self._v.append(vb)
        self._alloc_frames = new_frames

    def _copy_frames(self, layer: int, src: int, dst: int, count: int = 1) -> None:
        if src == dst or count <= 0:
            return
        ft = self._frame_tokens
        for buf in (self._k[layer], self._v[layer]):
            buf[:, dst * ft : (dst + count) * ft] = buf[:, src * ft : (src + count) * ft]

    def _entry_bytes(self) -> int:
        """Bytes of one frame's K+V over all layers."""
        if not self._k:
            return 0
        b, _, h, d = self._k[0].shape
        return 2 * self.num_layers * b * self._frame_tokens * h * d * self._k[0].element_size()

    def memory_bytes(self) -> int:
        """Exact bytes of the K/V the policy holds about the video (not the current block's scratch)."""
        return len(self.kept_frames()) * self._entry_bytes()

    def allocated_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._k + self._v)

    def release(self) -> None:
        self._k, self._v, self._alloc_frames = [], [], 0

    def layer_kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw buffers of one layer (tests and debugging)."""
        return self._k[layer], self._v[layer]

    # -- read-only views (CUDA graphs, benchmarks) ------------------------------------------------
    @property
    def allocated_frames(self) -> int:
        """Frames the buffers have room for (0 before the first pass allocates them)."""
        return self._alloc_frames

    def buffers(self) -> list[torch.Tensor]:
        """Every layer's K buffer, then every layer's V buffer (empty before the first pass)."""
        return self._k + self._v

    def plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        """Where a block of ``n_frames`` starting at ``start_frame`` would run now: (first attended
        buffer frame, buffer frame the block is written to). Changes nothing."""
        return self._plan(start_frame, n_frames)

    def attended_frames(self, start_frame: int, n_frames: int) -> int:
        """Latent frames such a block attends to: what the memory exposes, plus the block itself."""
        read_from, cur = self._plan(start_frame, n_frames)
        return cur + n_frames - read_from

    def describe(self) -> dict[str, int | str]:
        return {"policy": self.name}


class FullHistory(KVMemory):
    """Keeps every committed frame. ``max_frames`` (latent frames, optional) caps it: exceeding
    the cap raises :class:`CacheFullError`; running out of device memory while growing raises the
    allocator's error (torch.cuda.OutOfMemoryError), which the harness records for the sample.
    ``reserve_frames`` preallocates; otherwise buffers grow ``grow_frames`` at a time."""

    name = "full-history"

    def __init__(
        self, num_layers: int, block_frames: int = 3, max_frames: int | None = None,
        reserve_frames: int = 0, grow_frames: int = 21,
    ) -> None:
        self.max_frames = max_frames
        self.reserve_frames = reserve_frames
        self.grow_frames = max(grow_frames, block_frames)
        super().__init__(num_layers, block_frames)

    def reset(self) -> None:
        self._n = 0

    def reserve(self, frames: int) -> None:
        """Preallocate for a video of ``frames`` latent frames (known from the sample's length)."""
        self.reserve_frames = frames

    def _capacity_frames(self, needed: int) -> int:
        grown = -(-needed // self.grow_frames) * self.grow_frames
        cap = max(grown, self.reserve_frames + self.block_frames)
        if self.max_frames is not None:
            cap = min(cap, self.max_frames + self.block_frames)
        return cap

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        if start_frame != self._n:
            raise ValueError(f"full-history: block starts at frame {start_frame}, {self._n} are cached")
        if self.max_frames is not None and self._n + n_frames > self.max_frames:
            raise CacheFullError(
                f"full-history: {self._n + n_frames} latent frames exceed max_frames={self.max_frames}"
            )
        return 0, self._n

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        pass  # the block already sits where it belongs

    def _advance(self, start_frame: int, n_frames: int) -> None:
        self._n += n_frames

    def kept_frames(self) -> list[int]:
        return list(range(self._n))

    def describe(self) -> dict[str, int | str]:
        return {"policy": self.name, "max_frames": -1 if self.max_frames is None else self.max_frames}


class SlidingWindow(KVMemory):
    """Self-Forcing / LongLive rolling KV cache: the first ``sink_frames`` latent frames of the
    video forever, plus the ``window_frames`` most recent ones; layout
    ``[sink | ring of window_frames | scratch]``."""

    name = "sliding-window"

    def __init__(self, num_layers: int, window_frames: int, sink_frames: int = 0, block_frames: int = 3) -> None:
        if window_frames < block_frames:
            raise MagbenchError(f"sliding window: window_frames={window_frames} must be >= a block ({block_frames})")
        if sink_frames < 0:
            raise MagbenchError("sliding window: sink_frames must be >= 0")
        self.window_frames = window_frames
        self.sink_frames = sink_frames
        super().__init__(num_layers, block_frames)

    def reset(self) -> None:
        self._n = 0  # frames committed so far
        self._where: dict[int, int] = {}  # buffer frame -> absolute frame held

    def _capacity_frames(self, needed: int) -> int:
        return self.sink_frames + self.window_frames + self.block_frames

    def _filled(self) -> int:
        return min(self._n, self.sink_frames) + min(max(self._n - self.sink_frames, 0), self.window_frames)

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        if start_frame != self._n:
            raise ValueError(f"sliding window: block starts at frame {start_frame}, {self._n} were committed")
        if n_frames > self.block_frames:
            raise ValueError(f"sliding window: blocks of at most {self.block_frames} frames")
        return 0, self._filled()

    def _dest(self, frame: int) -> int:
        s = self.sink_frames
        return frame if frame < s else s + (frame - s) % self.window_frames

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        # Frames are copied in order; with window >= block no destination is a source still unread.
        for j in range(n_frames):
            self._copy_frames(layer, cur + j, self._dest(start_frame + j))

    def _advance(self, start_frame: int, n_frames: int) -> None:
        for j in range(n_frames):
            self._where[self._dest(start_frame + j)] = start_frame + j
        self._n += n_frames

    def kept_frames(self) -> list[int]:
        return sorted(self._where.values())

    @classmethod
    def from_reference(
        cls, num_layers: int, local_attn_size: int, sink_size: int = 0, block_frames: int = 3
    ) -> "SlidingWindow":
        """The Self-Forcing/LongLive cache of ``local_attn_size`` frames (sink and current block
        included) with a ``sink_size``-frame sink, as this policy."""
        return cls(num_layers, local_attn_size - sink_size - block_frames, sink_size, block_frames)

    def describe(self) -> dict[str, int | str]:
        return {"policy": self.name, "window_frames": self.window_frames, "sink_frames": self.sink_frames}


class CompressedMemory(KVMemory):
    """MAG's compressed memory: per block, one frame's K/V (``keep_index``, default the last
    frame of the block) in a ring of ``slots``, plus the first ``sink_frames`` frames of the first
    block kept whole. Layout ``[sink | slots | scratch]``. The clean pass that commits is run by
    the memory model (see :mod:`magbench.baselines.wan.sampler`)."""

    name = "compressed"

    def __init__(
        self, num_layers: int, slots: int = 21, sink_frames: int = 2, block_frames: int = 3,
        keep_index: int | None = None,
    ) -> None:
        if slots < 1:
            raise MagbenchError("compressed memory: slots must be >= 1")
        if not 0 <= sink_frames <= block_frames:
            raise MagbenchError(f"compressed memory: sink_frames must be within the first block (0..{block_frames})")
        self.slots = slots
        self.sink_frames = sink_frames
        self.keep_index = block_frames - 1 if keep_index is None else keep_index
        if not 0 <= self.keep_index < block_frames:
            raise MagbenchError(f"compressed memory: keep_index must be in 0..{block_frames - 1}")
        super().__init__(num_layers, block_frames)

    def reset(self) -> None:
        self._blocks = 0
        self._sink_valid = False
        self._slot_frame: dict[int, int] = {}

    def _capacity_frames(self, needed: int) -> int:
        return self.sink_frames + self.slots + self.block_frames

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        if n_frames != self.block_frames or start_frame != self._blocks * self.block_frames:
            raise ValueError(
                f"compressed memory: expected block {self._blocks} (frame {self._blocks * self.block_frames}, "
                f"{self.block_frames} frames), got frame {start_frame} x {n_frames}"
            )
        held = min(self._blocks, self.slots)
        read_from = 0 if self._sink_valid else self.sink_frames
        return read_from, self.sink_frames + held

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        if self._blocks == 0 and self.sink_frames:
            self._copy_frames(layer, cur, 0, self.sink_frames)
        slot = self._blocks % self.slots
        self._copy_frames(layer, cur + self.keep_index, self.sink_frames + slot)

    def _advance(self, start_frame: int, n_frames: int) -> None:
        self._slot_frame[self._blocks % self.slots] = start_frame + self.keep_index
        if self._blocks == 0 and self.sink_frames:
            self._sink_valid = True
        self._blocks += 1

    def sink_frame_ids(self) -> list[int]:
        return list(range(self.sink_frames)) if self._sink_valid else []

    def slot_frame_ids(self) -> list[int]:
        return sorted(self._slot_frame.values())

    def kept_frames(self) -> list[int]:
        return sorted(self.sink_frame_ids() + self.slot_frame_ids())

    def describe(self) -> dict[str, int | str]:
        return {"policy": self.name, "slots": self.slots, "sink_frames": self.sink_frames, "keep_index": self.keep_index}


class RolloutMemory(FullHistory):
    """CausVid's cache: every frame of the current *rollout* (at most ``rollout_frames``, 21),
    at positions counted from the rollout's start; no eviction inside a rollout.

    The memory itself only fills; :class:`magbench.baselines.wan.sampler.RolloutSampler` starts
    the next rollout when a block no longer fits: it resets this memory and commits the last
    ``carry_frames`` latents (3, CausVid's ``--num_overlap_frames``) again at positions 0.. .
    ``context_frames`` is how many context latents the first rollout starts from (3 = the
    long-video script's carry; 18 = the most its ``start_latents`` can take).
    """

    name = "rollouts"

    def __init__(
        self, num_layers: int, block_frames: int = 3, rollout_frames: int = 21, carry_frames: int = 3,
        context_frames: int = 3,
    ) -> None:
        for what, n in (("carry_frames", carry_frames), ("context_frames", context_frames)):
            if n < 1 or n % block_frames or n + block_frames > rollout_frames:
                raise MagbenchError(
                    f"rollouts: {what}={n} must be a positive multiple of the block ({block_frames}) "
                    f"that leaves room for a block in a rollout of {rollout_frames} frames"
                )
        self.rollout_frames = rollout_frames
        self.carry_frames = carry_frames
        self.context_frames = context_frames
        super().__init__(num_layers, block_frames, max_frames=rollout_frames, reserve_frames=rollout_frames)
        self.rollouts = 0

    def reset(self) -> None:
        super().reset()
        self.rollouts = 0

    def restart(self) -> None:
        """Empty the cache for a new rollout (positions start again at 0)."""
        self._n = 0
        self.rollouts += 1

    def fits(self, n_frames: int) -> bool:
        return self._n + n_frames <= self.rollout_frames

    @property
    def position(self) -> int:
        """Rollout position of the next frame (its RoPE frame index)."""
        return self._n

    def describe(self) -> dict[str, int | str]:
        return {
            "policy": self.name, "rollout_frames": self.rollout_frames, "carry_frames": self.carry_frames,
            "context_frames": self.context_frames,
        }


# -- small strategies the policies of :mod:`.evicted_memory` are built from ------------------------
class EMASink:
    """Reward Forcing's sink update (JaydenLyh/Reward-Forcing @ 4317f5a,
    ``wan/modules/causal_model.py``, ``CausalWanSelfAttention.incremental_update``): the frames a
    window evicts are folded into the sink, ``sink = alpha * sink + (1 - alpha) * evicted``, frame
    by frame, on K (before RoPE) and V alike, when the evicted frames are as many as the sink
    holds; an eviction of another length overwrites the sink's first frames with the evicted ones
    (the reference's other branch). ``alpha = 1`` is a plain sink for the default geometry.
    """

    def __init__(self, alpha: float = 0.999) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise MagbenchError(f"EMA sink: alpha={alpha} must be in [0, 1]")
        self.alpha = float(alpha)

    def absorb(self, sink: torch.Tensor, evicted: torch.Tensor, sink_frames: int, evicted_frames: int, frame_tokens: int) -> None:
        """Update ``sink`` ([B, sink_frames * tokens, H, D], K before RoPE or V) in place from the
        ``evicted`` frames ([B, evicted_frames * tokens, H, D], oldest first)."""
        if evicted_frames <= 0:
            return
        if evicted_frames == sink_frames:
            sink.copy_(self.alpha * sink + (1 - self.alpha) * evicted)
        else:
            m = min(evicted_frames, sink_frames) * frame_tokens
            sink[:, :m] = evicted[:, :m]

    def describe(self) -> dict[str, float | str]:
        return {"sink_update": "ema", "sink_ema": self.alpha}


class HostFrameStore:
    """K/V of frames evicted from a device cache, kept in host (CPU) memory, one entry per frame
    and layer, in eviction order (LongLive-RAG's ``cpu_k_frames`` / ``cpu_v_frames``).

    On CUDA the host copies are pinned and made without blocking the stream; :meth:`gather`
    copies frames back to the device. :meth:`host_bytes` counts what is held (K and V, all layers).
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.reset()

    def reset(self) -> None:
        self.frames: list[int] = []  # absolute latent frame of each entry, eviction order
        self._k: list[list[torch.Tensor]] = [[] for _ in range(self.num_layers)]
        self._v: list[list[torch.Tensor]] = [[] for _ in range(self.num_layers)]
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.frames)

    @staticmethod
    def _to_host(x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            out.copy_(x, non_blocking=True)
            return out
        return x.clone()

    def push(self, layer: int, k: torch.Tensor, v: torch.Tensor, frame_tokens: int) -> None:
        """Append the frames of ``k``/``v`` ([B, F * tokens, H, D]) for ``layer``."""
        for j in range(k.shape[1] // frame_tokens):
            sl = slice(j * frame_tokens, (j + 1) * frame_tokens)
            hk, hv = self._to_host(k[:, sl]), self._to_host(v[:, sl])
            self._k[layer].append(hk)
            self._v[layer].append(hv)
            self._bytes += hk.numel() * hk.element_size() + hv.numel() * hv.element_size()

    def record(self, frames: list[int]) -> None:
        """After every layer pushed the same frames: their absolute indices."""
        self.frames.extend(frames)

    def gather(self, layer: int, entries: list[int], out_k: torch.Tensor, out_v: torch.Tensor) -> None:
        """Copy entries (positions in eviction order) of ``layer`` into ``out_k``/``out_v``
        ([B, len(entries) * tokens, H, D], on the device)."""
        if not entries:
            return
        ft = self._k[layer][0].shape[1]
        for i, e in enumerate(entries):
            out_k[:, i * ft : (i + 1) * ft].copy_(self._k[layer][e], non_blocking=True)
            out_v[:, i * ft : (i + 1) * ft].copy_(self._v[layer][e], non_blocking=True)

    def entry_kv(self, layer: int, entry: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._k[layer][entry], self._v[layer][entry]

    def host_bytes(self) -> int:
        return self._bytes


def cosine_top_k(query: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LongLive-RAG's selection (``pipeline/causal_inference.py``): cosine similarity of ``query``
    [B, D] with each of ``keys`` [B, N, D] (each normalised with a 1e-8 guard), the ``k`` largest:
    (indices [B, k], similarities [B, k]), most similar first."""
    q = query / (query.norm(dim=-1, keepdim=True) + 1e-8)
    n = keys / (keys.norm(dim=-1, keepdim=True) + 1e-8)
    sims = torch.bmm(n, q.unsqueeze(-1)).squeeze(-1)
    top, idx = torch.topk(sims, k=k, dim=-1)
    return idx, top
