"""KV memories that keep using the frames their window evicts.

* :class:`EMASinkWindow` (Reward Forcing): evicted frames are folded into the sink by an
  exponential moving average (:class:`~magbench.baselines.wan.memory.EMASink`);
* :class:`HostRetrievalWindow` (LongLive-RAG): evicted frames go to host memory
  (:class:`~magbench.baselines.wan.memory.HostFrameStore`); before each block the ``K`` most
  similar ones, by a small encoder's embeddings of the latents, are copied back and attended.

Both store keys before RoPE and rotate them when read, at positions relative to the window (the
protocol of :mod:`.rope_memory`: ``rotates_keys``, :meth:`use_rope`, :meth:`rope_frame`), as their
references do. Both evict when a block is committed (after its cache-update pass attended), where
the references evict at the next block's first pass: nothing reads the cache in between, so what
every pass attends is the same (the parity tests compare it, cache contents included).

Layout per layer: K before RoPE and V as ``[sink | past frames, oldest first | scratch (the
block)]``, shifted by a commit past the window as the references shift theirs, and read buffers
that each pass fills with the rotated keys (and values, where they come from elsewhere) of
exactly what it attends, one contiguous range.
"""

from __future__ import annotations

import torch

from magbench.errors import MagbenchError

from magbench.baselines.wan.memory import EMASink, HostFrameStore, cosine_top_k
from magbench.baselines.wan.rope_memory import _RotatesOnRead


class _ShiftWindow(_RotatesOnRead):
    """``[sink | past | block]`` before RoPE, positions = buffer slots (the references' caches)."""

    def __init__(self, num_layers: int, window_frames: int, sink_frames: int, block_frames: int = 3) -> None:
        if window_frames < 0 or sink_frames < 1:
            raise MagbenchError(
                f"{self.name}: window_frames={window_frames} must be >= 0 and sink_frames={sink_frames} >= 1"
            )
        self.window_frames = window_frames
        self.sink_frames = sink_frames
        super().__init__(num_layers, block_frames)

    def reset(self) -> None:
        self._n = 0  # frames committed
        self._sink_held = 0  # sink frames filled (the video's first frames)
        self._past: list[int] = []  # absolute frames held after the sink, oldest first

    def _capacity_frames(self, needed: int) -> int:
        return self.sink_frames + self.window_frames + self.block_frames

    def _filled(self) -> int:
        return self._sink_held + len(self._past)

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        if start_frame != self._n:
            raise ValueError(f"{self.name}: block starts at frame {start_frame}, {self._n} were committed")
        if n_frames > self.block_frames:
            raise ValueError(f"{self.name}: blocks of at most {self.block_frames} frames")
        return 0, self._filled()

    def rope_frame(self, start_frame: int, n_frames: int) -> int:
        return self._filled()  # the block sits right after what is held: slot = position

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        self._check_tokens(frame_tokens)
        read_from, cur = self._plan(start_frame, n_frames)
        self._pass = (start_frame, n_frames, read_from, cur, commit)

    def _ensure(self, like: torch.Tensor, frames: int) -> None:
        super()._ensure(like, frames)
        self._ensure_read_k(like)

    def _evict(self, layer: int, first: int, count: int) -> None:
        """``count`` frames at buffer slots ``first ..`` leave the window (before the shift)."""

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        ft, s = self._frame_tokens, self.sink_frames
        total = cur + n_frames  # [sink | past | block] lies in order in slots 0 .. total - 1
        evicted = max(0, total - s - self.window_frames)
        if evicted:
            self._evict(layer, s, evicted)
            keep = (total - s - evicted) * ft
            for buf in (self._k[layer], self._v[layer]):
                buf[:, s * ft : s * ft + keep] = buf[:, (s + evicted) * ft : (s + evicted) * ft + keep].clone()

    def _advance(self, start_frame: int, n_frames: int) -> None:
        frames = list(range(start_frame, start_frame + n_frames))
        into_sink = min(self.sink_frames - self._sink_held, n_frames)
        self._sink_held += into_sink
        self._past.extend(frames[into_sink:])
        self._evicted_now = self._past[: max(0, len(self._past) - self.window_frames)]
        del self._past[: len(self._evicted_now)]
        self._n += n_frames

    def sink_frame_ids(self) -> list[int]:
        return list(range(self._sink_held))

    def past_frame_ids(self) -> list[int]:
        return list(self._past)

    def kept_frames(self) -> list[int]:
        return self.sink_frame_ids() + self.past_frame_ids()

    def frame_kv(self, layer: int, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K (before RoPE) and V of buffer slot ``slot`` (0 .. held - 1: sink, then past) (tests)."""
        if not 0 <= slot < self._filled():
            raise KeyError(f"{self.name}: slot {slot} is not held ({self._filled()} are)")
        ft = self._frame_tokens
        return self._k[layer][:, slot * ft : (slot + 1) * ft], self._v[layer][:, slot * ft : (slot + 1) * ft]


class EMASinkWindow(_ShiftWindow):
    """Reward Forcing's KV cache: a sink of the video's first ``sink_frames`` (3) frames that
    absorbs every evicted frame by an EMA, and the ``window_frames`` (3) most recent frames.

    As the reference (JaydenLyh/Reward-Forcing @ 4317f5a, ``wan/modules/causal_model.py``,
    ``CausalWanSelfAttention.forward`` with a cache; ``configs/reward_forcing.yaml``:
    ``local_attn_size: 9``, ``sink_size: 3``):

    * a cache of ``local_attn_size`` frames holds, in order, the sink, the past frames and the
      block (``window_frames = local_attn_size - sink - block``); keys are stored before RoPE;
    * every pass rotates what it attends to the cache's slots: the sink at 0 .. 2, the past
      frames next, the block last, its queries at its own keys' positions; positions never grow;
    * when a block overflows the cache, the oldest past frames leave it and the sink takes them in
      (:class:`~magbench.baselines.wan.memory.EMASink`, ``alpha = 0.999``, the reference's
      ``compression_alpha``); the sink's slots keep positions 0 .. 2.
    """

    name = "ema-sink"

    def __init__(
        self, num_layers: int, window_frames: int = 3, sink_frames: int = 3, block_frames: int = 3,
        sink_update: EMASink | None = None,
    ) -> None:
        self.sink_update = sink_update or EMASink()
        super().__init__(num_layers, window_frames, sink_frames, block_frames)

    def attend(  # type: ignore[override]
        self, layer: int, k: torch.Tensor, v: torch.Tensor, raw_k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._pass is not None, "begin() first"
        _, n, _, cur, _ = self._pass
        if layer == 0 or not self._k:
            self._ensure(k, self._capacity_frames(0))
        ft = self._frame_tokens
        kb, vb, rb = self._k[layer], self._v[layer], self._read_k[layer]
        kb[:, cur * ft : (cur + n) * ft] = raw_k
        vb[:, cur * ft : (cur + n) * ft] = v
        if cur:
            rb[:, : cur * ft] = self._rotated(kb[:, : cur * ft], range(cur))
        rb[:, cur * ft : (cur + n) * ft] = k  # rotated by the model at rope_frame() = cur
        return rb[:, : (cur + n) * ft], vb[:, : (cur + n) * ft]

    def _evict(self, layer: int, first: int, count: int) -> None:
        ft, s = self._frame_tokens, self.sink_frames
        for buf in (self._k[layer], self._v[layer]):
            evicted = buf[:, first * ft : (first + count) * ft].clone()
            self.sink_update.absorb(buf[:, : s * ft], evicted, s, count, ft)

    @classmethod
    def from_reference(cls, num_layers: int, local_attn_size: int = 9, sink_size: int = 3, block_frames: int = 3,
                       alpha: float = 0.999) -> "EMASinkWindow":
        return cls(num_layers, local_attn_size - sink_size - block_frames, sink_size, block_frames, EMASink(alpha))

    def describe(self) -> dict[str, int | float | str]:
        return {
            "policy": self.name, "window_frames": self.window_frames, "sink_frames": self.sink_frames,
            **self.sink_update.describe(), "rope": "relative to the window (every key rotated when read)",
        }


class HostRetrievalWindow(_ShiftWindow):
    """LongLive-RAG's KV cache: a sink, a short local window, and up to ``memory_frames`` (K)
    frames retrieved back from the evicted ones, which are kept in host memory.

    As the reference (qixinhu11/LongLive-RAG @ 973884a, ``wan/modules/causal_model_latentmem.py``
    ``CausalWanSelfAttention.forward`` and ``pipeline/causal_inference.py``, with
    ``configs/causal_forcing_latentmem.yaml``: ``local_attn_size: 12``, ``sink_size: 1``,
    ``memory_size: 6``, ``recent_exclude: 5``):

    * the device cache holds ``local_attn_size`` frames in order (sink, past, block; keys before
      RoPE): ``window_frames = local_attn_size - sink - block`` (8) past frames; frames it
      evicts go to host memory, oldest first (:class:`~magbench.baselines.wan.memory.HostFrameStore`);
    * a block attends the sink, the retrieved frames and the last ``local_attn_size - sink -
      memory_frames`` (5) frames of the cache, the block included (the reference's
      ``local_budget``; the other held frames are kept only until they are evicted);
    * positions: every cached frame at its slot in the cache (sink 0, the block last, its queries
      at its own keys' positions), every retrieved frame at position 0;
    * retrieval, once per block before its first pass: each committed frame's latent is embedded
      by the retrieval encoder (:meth:`add_descriptors`, from the sampler); the last committed
      frame's embedding is the query; the candidates are the frames evicted before the previous
      block was committed (the reference's pool before this block's own eviction) except the
      ``recent_exclude`` (R) most recently evicted; the ``min(K, candidates)`` most similar by
      cosine similarity are copied from host memory into the attended set.

    :meth:`memory_bytes` counts the device cache's frames; :meth:`host_bytes` the host store.
    """

    name = "host-retrieval"

    def __init__(
        self, num_layers: int, window_frames: int = 8, sink_frames: int = 1, memory_frames: int = 6,
        recent_exclude: int = 5, local_frames: int = 5, block_frames: int = 3,
    ) -> None:
        if memory_frames < 0 or recent_exclude < 0:
            raise MagbenchError(f"host retrieval: memory_frames={memory_frames} and recent_exclude={recent_exclude} must be >= 0")
        if not block_frames <= local_frames <= window_frames + block_frames:
            raise MagbenchError(
                f"host retrieval: local_frames={local_frames} must hold the block ({block_frames}) and at most the "
                f"window and the block ({window_frames + block_frames})"
            )
        self.memory_frames = memory_frames
        self.recent_exclude = recent_exclude
        self.local_frames = local_frames
        self.host = HostFrameStore(num_layers)
        self._read_v: list[torch.Tensor] = []
        super().__init__(num_layers, window_frames, sink_frames, block_frames)

    @classmethod
    def from_reference(
        cls, num_layers: int, local_attn_size: int = 12, sink_size: int = 1, memory_size: int = 6,
        recent_exclude: int = 5, block_frames: int = 3,
    ) -> "HostRetrievalWindow":
        """The reference's ``model_kwargs`` as this policy (``local_budget = local_attn_size -
        sink_size - memory_size`` frames of the cache are attended)."""
        return cls(
            num_layers, window_frames=local_attn_size - sink_size - block_frames, sink_frames=sink_size,
            memory_frames=memory_size, recent_exclude=recent_exclude,
            local_frames=local_attn_size - sink_size - memory_size, block_frames=block_frames,
        )

    def reset(self) -> None:
        super().reset()
        self.host.reset()
        self._descriptors: dict[int, torch.Tensor] = {}  # absolute frame -> [B, D] embedding
        self._last_evicted = 0  # frames the latest commit evicted (not yet candidates)
        self._selected: list[int] = []  # host entries attended by the current block
        self._selected_for: int | None = None  # start frame of the block they were chosen for
        self._prepared: set[int] = set()  # layers whose read buffers hold this block's set
        self.selections: list[dict] = []  # what was retrieved for each block (tests, debugging)
        self._evicted_now: list[int] = []

    # -- retrieval ---------------------------------------------------------------------------------
    def add_descriptors(self, start_frame: int, descriptors: torch.Tensor) -> None:
        """The retrieval encoder's embeddings ([B, F, D]) of frames ``start_frame ..`` (committed
        or about to be), as the sampler computes them from the clean latents."""
        for j in range(descriptors.shape[1]):
            self._descriptors[start_frame + j] = descriptors[:, j]

    def candidates(self) -> int:
        """Host entries a block may retrieve now (oldest first): all but the latest commit's and
        the ``recent_exclude`` evicted before them."""
        return max(len(self.host) - self._last_evicted - self.recent_exclude, 0)

    def _select(self, start_frame: int) -> None:
        self._selected, self._selected_for = [], start_frame
        self._prepared = set()
        eligible = self.candidates()
        if not (self.memory_frames and eligible and self._n - 1 in self._descriptors):
            return
        query = self._descriptors[self._n - 1]
        keys = torch.stack([self._descriptors[f] for f in self.host.frames[:eligible]], dim=1)
        idx, sims = cosine_top_k(query, keys, min(self.memory_frames, eligible))
        if idx.shape[0] != 1:
            raise NotImplementedError("host retrieval: one video at a time (batch 1)")
        self._selected = [int(i) for i in idx[0]]
        self.selections.append({
            "block_start": start_frame, "entries": list(self._selected),
            "frames": [self.host.frames[i] for i in self._selected], "similarities": sims[0].tolist(),
        })

    # -- the passes --------------------------------------------------------------------------------
    def _attended_layout(self, cur: int, n: int) -> tuple[int, int, int]:
        """(retrieved frames, first cache slot of the local window, its length incl. the block)."""
        s = self._sink_held
        local_from = max(s, cur + n - self.local_frames)
        return len(self._selected), local_from, cur + n - local_from

    def attended_frames(self, start_frame: int, n_frames: int) -> int:
        _, cur = self._plan(start_frame, n_frames)
        if self._selected_for != start_frame:
            return self._sink_held + min(self.memory_frames, self.candidates()) + min(self.local_frames, cur + n_frames - self._sink_held)
        m, _, local = self._attended_layout(cur, n_frames)
        return self._sink_held + m + local

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        super().begin(start_frame, n_frames, frame_tokens, commit)
        if self._selected_for != start_frame:
            self._select(start_frame)

    def _capacity_read(self) -> int:
        return self.sink_frames + self.memory_frames + self.local_frames

    def _ensure(self, like: torch.Tensor, frames: int) -> None:
        _RotatesOnRead._ensure(self, like, frames)
        b, _, h, d = like.shape
        shape = (b, self._capacity_read() * self._frame_tokens, h, d)
        if self._ensure_read_k(like, shape):
            self._read_v = [like.new_empty(shape) for _ in range(self.num_layers)]
            self._prepared = set()

    def attend(  # type: ignore[override]
        self, layer: int, k: torch.Tensor, v: torch.Tensor, raw_k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._pass is not None, "begin() first"
        _, n, _, cur, _ = self._pass
        if layer == 0 or not self._k:
            self._ensure(k, self._capacity_frames(0))
        ft, s = self._frame_tokens, self._sink_held
        kb, vb, rk, rv = self._k[layer], self._v[layer], self._read_k[layer], self._read_v[layer]
        kb[:, cur * ft : (cur + n) * ft] = raw_k
        vb[:, cur * ft : (cur + n) * ft] = v
        m, local_from, local = self._attended_layout(cur, n)
        past = local - n  # cached frames of the local window before the block
        if layer not in self._prepared:
            # Once per block and layer: what stays the same over its passes (the sink, the
            # retrieved frames from host memory, the local window's past frames), rotated.
            if s:
                rk[:, : s * ft] = self._rotated(kb[:, : s * ft], range(s))
                rv[:, : s * ft] = vb[:, : s * ft]
            if m:
                self.host.gather(layer, self._selected, rk[:, s * ft : (s + m) * ft], rv[:, s * ft : (s + m) * ft])
                rk[:, s * ft : (s + m) * ft] = self._rotated(rk[:, s * ft : (s + m) * ft], [0] * m)
            if past:
                at = (s + m) * ft
                rk[:, at : at + past * ft] = self._rotated(kb[:, local_from * ft : cur * ft], range(local_from, cur))
                rv[:, at : at + past * ft] = vb[:, local_from * ft : cur * ft]
            self._prepared.add(layer)
        at = (s + m + past) * ft
        rk[:, at : at + n * ft] = k  # rotated by the model at rope_frame() = cur
        rv[:, at : at + n * ft] = v
        end = at + n * ft
        return rk[:, :end], rv[:, :end]

    def _evict(self, layer: int, first: int, count: int) -> None:
        ft = self._frame_tokens
        self.host.push(layer, self._k[layer][:, first * ft : (first + count) * ft], self._v[layer][:, first * ft : (first + count) * ft], ft)

    def _advance(self, start_frame: int, n_frames: int) -> None:
        super()._advance(start_frame, n_frames)
        self.host.record(self._evicted_now)
        self._last_evicted = len(self._evicted_now)

    # -- accounting ----------------------------------------------------------------------------------
    def host_bytes(self) -> int:
        """Bytes of the evicted frames' K/V held in host memory."""
        return self.host.host_bytes()

    def allocated_bytes(self) -> int:
        return super().allocated_bytes() + sum(t.numel() * t.element_size() for t in self._read_v)

    def release(self) -> None:
        super().release()
        self._read_v = []

    def buffers(self) -> list[torch.Tensor]:
        return super().buffers() + self._read_v

    def describe(self) -> dict[str, int | str]:
        return {
            "policy": self.name, "window_frames": self.window_frames, "sink_frames": self.sink_frames,
            "memory_frames": self.memory_frames, "recent_exclude": self.recent_exclude, "local_frames": self.local_frames,
            "evicted_to": "host", "rope": "relative to the window; retrieved frames at position 0",
        }
