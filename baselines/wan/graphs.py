"""The generator's denoising passes replayed from CUDA graphs.

A block's denoising passes only read the KV memory (they write its scratch region, which the
next pass overwrites). Once the memory's layout stops changing (MAG's ring of slots full, a
sliding window full) every pass launches the same ~1000 kernels on the same buffers, and a graph
replays them with one launch (what that saves is measured in benchmarks/RESULTS.md).

What changes between passes is copied into fixed buffers before each replay: the noisy latents,
the timesteps, the block's RoPE tables, and the prompt's cross-attention K/V (only when the
prompt changes). Graphs are keyed by the memory's plan (first attended frame, scratch position),
the shapes and the memory's buffers, so a plan seen again (the next block of a full window, the
next sample) replays. A plan is captured on its second use: plans that occur once (full history's
growing cache) run eagerly and cost no capture.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch

from magbench.baselines.wan.memory import KVMemory
from magbench.baselines.wan.model import CausalWan

ContextKV = list[tuple[torch.Tensor, torch.Tensor]]
# capture(fn, pool) -> (replay, output, pool): run ``fn`` into a graph whose replay rewrites ``output``.
Capture = Callable[[Callable[[], torch.Tensor], Any], tuple[Callable[[], None], torch.Tensor, Any]]


def cuda_capture(fn: Callable[[], torch.Tensor], pool: Any) -> tuple[Callable[[], None], torch.Tensor, Any]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()  # warm-up outside the graph: lazy initialisation, compiled kernels, library workspaces
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph.replay, out, graph.pool()


@dataclass
class _Graph:
    replay: Callable[[], None]
    out: torch.Tensor
    x: torch.Tensor
    t: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    start: list[int]  # read by the recorded function; a CUDA replay runs no Python at all


class GraphedDenoiser:
    """``denoiser(x, t, context_kv, start_frame)`` = ``model(x, t, context_kv, memory,
    start_frame, commit=False)``, from a CUDA graph where one is held for the memory's plan.

    ``capture`` is the graph mechanism (CUDA by default; the tests pass one that re-runs the
    recorded function, to check what is copied into the fixed buffers on the CPU)."""

    def __init__(
        self,
        model: CausalWan,
        memory: KVMemory,
        max_graphs: int = 32,
        capture_on_use: int = 2,
        capture: Capture | None = None,
    ) -> None:
        self.model, self.memory = model, memory
        self.max_graphs = max_graphs
        self.capture_on_use = max(1, capture_on_use)
        self._capture = capture or cuda_capture
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._uses: Counter[tuple] = Counter()
        self._pool: Any = None
        self._ctx_src: ContextKV | None = None  # the prompt whose K/V the fixed buffers hold
        self._ctx: ContextKV | None = None
        self._buffers: tuple | None = None  # identity of the memory's buffers the graphs read
        self.counts = {"eager": 0, "captured": 0, "replayed": 0}

    def clear(self) -> None:
        self._graphs.clear()
        self._uses.clear()
        self._ctx = self._ctx_src = None
        self._pool = None

    def _eager(self, x: torch.Tensor, t: torch.Tensor, context_kv: ContextKV, start_frame: int) -> torch.Tensor:
        self.counts["eager"] += 1
        return self.model(x, t, context_kv, self.memory, start_frame, commit=False)

    def _memory_buffers(self) -> tuple:
        # Graphs hold addresses: same addresses and sizes mean the same buffers, whatever happened.
        bufs = self.memory.buffers()
        return (self.memory.allocated_frames, *(b.data_ptr() for b in bufs)) if bufs else ()

    def _set_context(self, context_kv: ContextKV) -> None:
        if context_kv is self._ctx_src:
            return
        same = self._ctx is not None and len(self._ctx) == len(context_kv) and all(
            a.shape == b.shape and a.dtype == b.dtype for (a, _), (b, _) in zip(self._ctx, context_kv)
        )
        if not same:
            self._graphs.clear()  # they read the old buffers
            self._ctx = [(k.clone(), v.clone()) for k, v in context_kv]
        else:
            for (dk, dv), (k, v) in zip(self._ctx, context_kv):
                dk.copy_(k)
                dv.copy_(v)
        self._ctx_src = context_kv

    def _rope(self, x: torch.Tensor, start_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, ph, pw = self.model.cfg.patch_size
        n, _, h, w = x.shape[1:]
        return self.model.rope.tables(start_frame, n, h // ph, w // pw, x.device)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context_kv: ContextKV, start_frame: int) -> torch.Tensor:
        buffers = self._memory_buffers()
        if not buffers:
            return self._eager(x, t, context_kv, start_frame)  # the first pass allocates the memory
        if buffers != self._buffers:
            self.clear()
            self._buffers = buffers
        key = (self.memory.plan(start_frame, x.shape[1]), tuple(x.shape), x.dtype, tuple(t.shape), t.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            self._uses[key] += 1
            if self._uses[key] < self.capture_on_use:
                return self._eager(x, t, context_kv, start_frame)
        self._set_context(context_kv)
        cos, sin = self._rope(x, start_frame)
        if entry is None:
            entry = self._new_graph(key, x, t, cos, sin, start_frame)
        else:
            self._graphs.move_to_end(key)
        entry.x.copy_(x)
        entry.t.copy_(t)
        entry.cos.copy_(cos)
        entry.sin.copy_(sin)
        entry.start[0] = start_frame
        entry.replay()
        self.counts["replayed"] += 1
        return entry.out.clone()

    def _new_graph(self, key: tuple, x, t, cos, sin, start_frame: int) -> _Graph:
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        fx, ft, fcos, fsin = x.clone(), t.clone(), cos.clone(), sin.clone()
        ctx = self._ctx
        assert ctx is not None
        start = [start_frame]

        def forward() -> torch.Tensor:
            return self.model(fx, ft, ctx, self.memory, start[0], commit=False, rope=(fcos, fsin))

        replay, out, self._pool = self._capture(forward, self._pool)
        entry = self._graphs[key] = _Graph(replay, out, fx, ft, fcos, fsin, start)
        self.counts["captured"] += 1
        return entry
