"""KV memories that keep keys before RoPE and rotate them when they are read.

Every policy of :mod:`.memory` stores keys already rotated at their frame's position (RoPE at
write): a kept frame keeps the position it was generated at. The policies here store keys (some
or all) *before* RoPE and rotate them, on each read, to positions they decide relative to what is
attended:

* :class:`RelativeSinkCache` (Rolling Forcing): the sink, the first block, is rotated to sit just
  before the oldest attended frame; the other frames keep absolute positions;
* :class:`BlockRelativeWindow` (Infinity-RoPE): every attended frame is rotated to its rank in the
  window, so positions never grow with the video.

They follow :class:`~magbench.baselines.wan.memory.KVMemory`'s protocol with
``rotates_keys = True``: the model hands :meth:`attend` the block's keys rotated at
:meth:`~KVMemory.rope_frame` and before RoPE, and gives the policy its RoPE tables first
(``use_rope``). Parity with the references: ``tests/test_wan_parity_rolling_forcing.py`` and
``tests/test_wan_parity_infinity_rope.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from magbench.errors import MagbenchError

from magbench.baselines.wan.memory import KVMemory

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.model import Rope3D


class _RotatesOnRead(KVMemory):
    """Base of the policies that keep (some) keys before RoPE and rotate them when they are read.

    The model hands :meth:`attend` the block's keys rotated at :meth:`rope_frame` *and* before
    RoPE, and before each pass gives the policy its :class:`~magbench.baselines.wan.model.Rope3D`
    and the latent grid (:meth:`use_rope`), so a held frame can be rotated to any position with
    the very rotation the model applies to queries."""

    rotates_keys = True

    def __init__(self, num_layers: int, block_frames: int = 3) -> None:
        self._rope: "Rope3D | None" = None
        self._grid: tuple[int, int] | None = None
        # Per layer, the keys a pass attends, rotated: scratch beside K/V, counted as memory.
        self._read_k: list[torch.Tensor] = []
        super().__init__(num_layers, block_frames)

    def _ensure_read_k(self, like: torch.Tensor, shape: Sequence[int] | None = None) -> bool:
        """The rotated-key buffers, one per layer, shaped as the K buffers (or ``shape``), in
        ``like``'s dtype and device; True when they were (re)allocated."""
        shape = tuple(self._k[0].shape) if shape is None else tuple(shape)
        r = self._read_k
        if len(r) == self.num_layers and tuple(r[0].shape) == shape and r[0].dtype == like.dtype and r[0].device == like.device:
            return False
        self._read_k = [like.new_empty(shape) for _ in range(self.num_layers)]
        return True

    def allocated_bytes(self) -> int:
        return super().allocated_bytes() + sum(t.numel() * t.element_size() for t in self._read_k)

    def release(self) -> None:
        super().release()
        self._read_k = []

    def buffers(self) -> list[torch.Tensor]:
        return super().buffers() + self._read_k

    def use_rope(self, rope: "Rope3D", grid: tuple[int, int]) -> None:
        self._rope, self._grid = rope, (int(grid[0]), int(grid[1]))

    def _rotated(self, raw: torch.Tensor, frames: Sequence[int]) -> torch.Tensor:
        """``raw`` [B, len(frames) * tokens, H, D] rotated with one frame position per frame."""
        from magbench.baselines.wan.model import rotate

        if self._rope is None or self._grid is None:
            raise RuntimeError(f"{self.name}: the model gives the policy its RoPE tables (use_rope) before a pass")
        return rotate(raw, self._rope.frame_tables(list(frames), *self._grid, raw.device))

    def _check_tokens(self, frame_tokens: int) -> None:
        if self._frame_tokens and frame_tokens != self._frame_tokens:
            raise ValueError(f"{self.name}: {frame_tokens} tokens per frame, buffers hold {self._frame_tokens}")
        self._frame_tokens = frame_tokens


class RelativeSinkCache(_RotatesOnRead):
    """Rolling Forcing's KV cache: an attention sink rotated on read to sit just before the
    attended frames, plus the most recent frames at their absolute positions.

    As the reference (TencentARC/RollingForcing @ a1477d0, ``wan/modules/causal_model.py``,
    ``CausalWanSelfAttention.forward`` with a cache; ``pipeline/rolling_forcing_inference.py``):

    * kept: the first committed block as the sink, its keys stored *before* RoPE (the reference's
      "first block is not roped in the cache"); after it the ``past_frames`` (18) most recent
      committed frames, keys stored after RoPE at their absolute positions. The reference's
      24-frame buffer (``1560 * 24`` tokens) holds one block more: the slot the next block is
      written to, whose previous occupant is never read again;
    * a denoising pass over ``n`` frames starting at frame ``s`` (Rolling Forcing's window: up to
      ``max_pass_frames`` = 15 frames, several blocks at different noise levels) attends, within
      ``attention_frames`` (21, the reference's ``max_attention_size``): the sink rotated to
      positions ``s - W - 3 ...`` (``rope_start_frame = current_start_frame -
      working_cache_frame_length - 3``), the ``W = min(held, attention_frames - n - 3)`` most
      recent past frames (the "working cache") and the pass itself, so the sink sits right before
      the oldest attended frame however far the video has gone; with nothing committed yet the
      pass attends itself only;
    * the cache-update pass of a finished block (t = 0, ``commit=True``; the reference's
      ``updating_cache=True``) attends the last ``attention_frames`` frames of [sink | past |
      block]: the sink at its own absolute positions (the reference rotates it at 0) while the
      whole cache fits, otherwise the past frames and the block without the sink;
    * a pass that starts where the committed frames end (the block leaving the window is committed
      before the next window runs; a window's other blocks are never written to the memory: in the
      reference their writes are overwritten before anything reads them, see
      ``tests/test_wan_parity_rolling_forcing.py``).

    Layout per layer: ``[sink, unrotated | past, oldest first | scratch (the pass) | sink read
    slot]``. A pass attends one contiguous range: the most recent past frames, the scratch and,
    right after it, the sink rotated for this pass (its K rotated and its V copied there: one
    block). Committing past a full cache shifts the past frames by one block, as the reference.
    """

    name = "relative-sink"

    def __init__(
        self, num_layers: int, past_frames: int = 18, attention_frames: int = 21, max_pass_frames: int = 15,
        block_frames: int = 3,
    ) -> None:
        for what, n in (("past_frames", past_frames), ("attention_frames", attention_frames), ("max_pass_frames", max_pass_frames)):
            if n < block_frames or n % block_frames:
                raise MagbenchError(f"relative sink: {what}={n} must be a positive multiple of the block ({block_frames})")
        if max_pass_frames + block_frames > attention_frames:
            raise MagbenchError(
                f"relative sink: attention_frames={attention_frames} leaves no room for the sink beside a "
                f"{max_pass_frames}-frame pass"
            )
        self.past_frames = past_frames
        self.attention_frames = attention_frames
        self.max_pass_frames = max_pass_frames
        super().__init__(num_layers, block_frames)

    @property
    def sink_frames(self) -> int:
        return self.block_frames  # the sink is the first block

    def reset(self) -> None:
        self._n = 0  # frames committed so far
        self._sink_start: int | None = None  # first frame of the sink (the first committed block)
        self._past: list[int] = []  # absolute frames held after the sink, oldest first
        self._sink_at: int | None = None  # this pass: RoPE position of the attended sink, None: not attended

    def _capacity_frames(self, needed: int) -> int:
        return 2 * self.sink_frames + self.past_frames + self.max_pass_frames

    def _layout(self, start_frame: int, n_frames: int, commit: bool) -> tuple[int, int, int | None]:
        """(past frames attended, buffer frame of the pass, RoPE position of the sink or None)."""
        if start_frame != self._n:
            raise ValueError(f"relative sink: a pass starts at frame {start_frame}, {self._n} were committed")
        if commit and n_frames != self.block_frames:
            raise ValueError(f"relative sink: blocks of {self.block_frames} frames are committed, got {n_frames}")
        if n_frames > self.max_pass_frames:
            raise ValueError(f"relative sink: passes of at most {self.max_pass_frames} frames, got {n_frames}")
        s, held = self.sink_frames, len(self._past)
        cur = s + held
        if self._sink_start is None:
            return 0, cur, None
        if commit:
            if s + held + n_frames <= self.attention_frames:
                return held, cur, self._sink_start
            return min(held, self.attention_frames - n_frames), cur, None
        w = min(held, self.attention_frames - n_frames - s)
        return w, cur, start_frame - w - s

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        w, cur, _ = self._layout(start_frame, n_frames, False)
        return cur - w, cur

    def attended_frames(self, start_frame: int, n_frames: int) -> int:
        w, _, sink = self._layout(start_frame, n_frames, False)
        return w + n_frames + (0 if sink is None else self.sink_frames)

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        self._check_tokens(frame_tokens)
        w, cur, self._sink_at = self._layout(start_frame, n_frames, commit)
        self._pass = (start_frame, n_frames, cur - w, cur, commit)

    def attend(  # type: ignore[override]
        self, layer: int, k: torch.Tensor, v: torch.Tensor, raw_k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._pass is not None, "begin() first"
        _, n, read_from, cur, commit = self._pass
        if layer == 0 or not self._k:
            self._ensure(k, self._capacity_frames(0))
        ft, s = self._frame_tokens, self.sink_frames
        kb, vb = self._k[layer], self._v[layer]
        kb[:, cur * ft : (cur + n) * ft] = k
        vb[:, cur * ft : (cur + n) * ft] = v
        end = cur + n
        if self._sink_at is not None:
            kb[:, end * ft : (end + s) * ft] = self._rotated(kb[:, : s * ft], range(self._sink_at, self._sink_at + s))
            vb[:, end * ft : (end + s) * ft] = vb[:, : s * ft]
            end += s
        elif commit and self._sink_start is None:
            # The first committed block becomes the sink: its keys kept before RoPE. (This pass
            # attends its scratch only, so writing the sink region now changes nothing it reads.)
            kb[:, : s * ft] = raw_k
            vb[:, : s * ft] = v
        return kb[:, read_from * ft : end * ft], vb[:, read_from * ft : end * ft]

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        if self._sink_start is None:
            return  # it became the sink in attend()
        over = len(self._past) + n_frames - self.past_frames
        if over > 0:  # the block sits right after the past frames: drop the oldest, shift the rest
            ft, s = self._frame_tokens, self.sink_frames
            keep = (len(self._past) + n_frames - over) * ft
            for buf in (self._k[layer], self._v[layer]):
                buf[:, s * ft : s * ft + keep] = buf[:, (s + over) * ft : (s + over) * ft + keep].clone()

    def _advance(self, start_frame: int, n_frames: int) -> None:
        if self._sink_start is None:
            self._sink_start = start_frame
        else:
            self._past.extend(range(start_frame, start_frame + n_frames))
            del self._past[: max(0, len(self._past) - self.past_frames)]
        self._n += n_frames

    def sink_frame_ids(self) -> list[int]:
        return [] if self._sink_start is None else list(range(self._sink_start, self._sink_start + self.sink_frames))

    def past_frame_ids(self) -> list[int]:
        return list(self._past)

    def kept_frames(self) -> list[int]:
        return self.sink_frame_ids() + self.past_frame_ids()

    def frame_kv(self, layer: int, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The K (as stored: before RoPE for the sink, after it for past frames) and V held for
        ``frame`` in ``layer`` (tests)."""
        ft, s = self._frame_tokens, self.sink_frames
        if frame in self.sink_frame_ids():
            i = frame - self._sink_start  # type: ignore[operator]
        elif frame in self._past:
            i = s + self._past.index(frame)
        else:
            raise KeyError(f"relative sink: frame {frame} is not held (held: {self.kept_frames()})")
        return self._k[layer][:, i * ft : (i + 1) * ft], self._v[layer][:, i * ft : (i + 1) * ft]

    def describe(self) -> dict[str, int | str]:
        return {
            "policy": self.name, "sink_frames": self.sink_frames, "past_frames": self.past_frames,
            "attention_frames": self.attention_frames, "max_pass_frames": self.max_pass_frames,
            "sink_rope": "relative (before the attended frames)",
        }


class BlockRelativeWindow(_RotatesOnRead):
    """Infinity-RoPE's KV cache: a sliding window with a sink whose keys are all stored before
    RoPE and rotated, on every read, to their rank in the window ("block-relativistic RoPE").

    As the reference (yesiltepe-hidir/infinity-rope @ 63d7b84, ``wan/modules/causal_model.py``,
    ``CausalWanSelfAttention.forward`` with a cache and ``block_relativistic_rope``, with
    ``configs/self_forcing_dmd.yaml``'s ``local_attn_size: 6``, ``sink_size: 1``):

    * kept: the first ``sink_frames`` (1) frames of the video and the ``window_frames`` (2) most
      recent past frames; a block attends those and itself (``local_attn_size = sink + window +
      block`` = 6 frames), the oldest non-sink frames evicted;
    * every key is stored before RoPE (the reference stores the sink frame rotated at position 0,
      which is the same rotation applied once); each pass rotates the attended frames to positions
      0, 1, ... in video order: the sink at 0, the past frames next, the block last, its queries
      at its own keys' positions (``relative_start_frame``: the block's first frame index while
      the window fills, then ``local_attn_size - block``). Positions never grow with the video.

    Layout per layer: K before RoPE and V as ``[sink | ring of window_frames | scratch]`` (as
    :class:`SlidingWindow`), and a third buffer, the same size, that each pass fills with the
    rotated keys of what it attends (same order as V, so the keys and values it returns pair up).
    """

    name = "block-relative"

    def __init__(self, num_layers: int, window_frames: int = 2, sink_frames: int = 1, block_frames: int = 3) -> None:
        if window_frames < 1 or sink_frames < 0:
            raise MagbenchError(
                f"block-relative window: window_frames={window_frames} must be >= 1 and sink_frames={sink_frames} >= 0"
            )
        self.window_frames = window_frames
        self.sink_frames = sink_frames
        super().__init__(num_layers, block_frames)

    def reset(self) -> None:
        self._n = 0
        self._where: dict[int, int] = {}  # buffer frame -> absolute frame held

    def _capacity_frames(self, needed: int) -> int:
        return self.sink_frames + self.window_frames + self.block_frames

    def _filled(self) -> int:
        s = self.sink_frames
        return min(self._n, s) + min(max(self._n - s, 0), self.window_frames)

    def _plan(self, start_frame: int, n_frames: int) -> tuple[int, int]:
        if start_frame != self._n:
            raise ValueError(f"block-relative window: block starts at frame {start_frame}, {self._n} were committed")
        if n_frames > self.block_frames:
            raise ValueError(f"block-relative window: blocks of at most {self.block_frames} frames")
        return 0, self._filled()

    def rope_frame(self, start_frame: int, n_frames: int) -> int:
        return self._filled()  # the block follows the held frames: positions 0 .. filled - 1

    def _dest(self, frame: int) -> int:
        s = self.sink_frames
        return frame if frame < s else s + (frame - s) % self.window_frames

    def _slot_positions(self, slots: int) -> list[int]:
        """RoPE position of each held buffer frame ``0 .. slots - 1``: its rank in video order."""
        rank = {frame: i for i, frame in enumerate(sorted(self._where.values()))}
        return [rank[self._where[slot]] for slot in range(slots)]

    def begin(self, start_frame: int, n_frames: int, frame_tokens: int, commit: bool) -> None:
        self._check_tokens(frame_tokens)
        read_from, cur = self._plan(start_frame, n_frames)
        self._pass = (start_frame, n_frames, read_from, cur, commit)

    def _ensure(self, like: torch.Tensor, frames: int) -> None:
        super()._ensure(like, frames)
        self._ensure_read_k(like)

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
            rb[:, : cur * ft] = self._rotated(kb[:, : cur * ft], self._slot_positions(cur))
        rb[:, cur * ft : (cur + n) * ft] = k  # rotated by the model at rope_frame() = cur
        return rb[:, : (cur + n) * ft], vb[:, : (cur + n) * ft]

    def _keep(self, layer: int, start_frame: int, n_frames: int, cur: int) -> None:
        ft = self._frame_tokens
        for buf in (self._k[layer], self._v[layer]):
            block = buf[:, cur * ft : (cur + n_frames) * ft].clone()  # a window shorter than a block overlaps it
            for j in range(n_frames):
                d = self._dest(start_frame + j)
                buf[:, d * ft : (d + 1) * ft] = block[:, j * ft : (j + 1) * ft]

    def _advance(self, start_frame: int, n_frames: int) -> None:
        for j in range(n_frames):
            self._where[self._dest(start_frame + j)] = start_frame + j
        self._n += n_frames

    def kept_frames(self) -> list[int]:
        return sorted(self._where.values())

    def frame_kv(self, layer: int, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The K (before RoPE) and V held for ``frame`` in ``layer`` (tests)."""
        slot = next((b for b, f in self._where.items() if f == frame), None)
        if slot is None:
            raise KeyError(f"block-relative window: frame {frame} is not held (held: {self.kept_frames()})")
        ft = self._frame_tokens
        return self._k[layer][:, slot * ft : (slot + 1) * ft], self._v[layer][:, slot * ft : (slot + 1) * ft]

    @classmethod
    def from_reference(cls, num_layers: int, local_attn_size: int = 6, sink_size: int = 1, block_frames: int = 3) -> "BlockRelativeWindow":
        """The reference's ``local_attn_size``-frame cache (sink and current block included)."""
        return cls(num_layers, local_attn_size - sink_size - block_frames, sink_size, block_frames)

    def describe(self) -> dict[str, int | str]:
        return {
            "policy": self.name, "window_frames": self.window_frames, "sink_frames": self.sink_frames,
            "rope": "relative to the window (every key rotated when read)",
        }
