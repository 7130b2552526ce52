"""The CUDA-graph denoiser's bookkeeping, on the CPU.

A real CUDA graph replays recorded kernels on fixed buffers; here the "graph" re-runs the recorded
Python function on those same buffers, so anything the denoiser forgets to copy in before a
replay (latents, timesteps, RoPE tables, a new prompt's K/V) shows up as a difference from the
eager sampler."""

from __future__ import annotations

import pytest
import torch

from magbench.baselines.wan.graphs import GraphedDenoiser
from magbench.baselines.wan.memory import CompressedMemory, FullHistory, KVMemory, SlidingWindow
from magbench.baselines.wan.model import CausalWan, WanConfig
from magbench.baselines.wan.sampler import BlockSampler

CFG = WanConfig.tiny()
C, H, W = CFG.in_dim, 4, 6


def _rerun_capture(fn, pool):
    out = fn()

    def replay() -> None:
        out.copy_(fn())

    return replay, out, pool


def _text(seed: int) -> torch.Tensor:
    return torch.randn(1, 5, CFG.text_dim, generator=torch.Generator().manual_seed(seed))


def _video(make_memory, graphed: bool, samples: int = 2, blocks: int = 6):
    model = CausalWan(CFG).init_random(0).eval()
    memory_model = CausalWan(CFG).init_random(1).eval()
    mem: KVMemory = make_memory()
    sampler = BlockSampler(model, mem, memory_model=memory_model if isinstance(mem, CompressedMemory) else None)
    if graphed:
        sampler._graphed = GraphedDenoiser(model, mem, capture=_rerun_capture)
    outs = []
    for s in range(samples):  # a second sample: new prompt, memory reset, plans seen before
        sampler.reset(_text(10 + s), empty_embeds=_text(9)[:, :1], seed=s, latent_shape=(C, H, W))
        sampler.feed(torch.randn(1, 3, C, H, W, generator=torch.Generator().manual_seed(20 + s)))
        outs.append(torch.cat([sampler.next_block() for _ in range(blocks)], dim=1))
    return torch.cat(outs, dim=1), sampler._graphed


@pytest.mark.parametrize(
    "make_memory",
    [
        lambda: CompressedMemory(CFG.num_layers, slots=2, sink_frames=2),
        lambda: SlidingWindow(CFG.num_layers, window_frames=6, sink_frames=3),
    ],
    ids=["compressed", "sliding-window"],
)
def test_replayed_denoising_equals_eager_across_blocks_and_prompts(make_memory):
    eager, _ = _video(make_memory, graphed=False)
    replayed, denoiser = _video(make_memory, graphed=True)
    torch.testing.assert_close(replayed, eager, rtol=0, atol=0)
    # Steady plans were captured once and replayed, in the second sample too.
    assert denoiser.counts["replayed"] > denoiser.counts["captured"] > 0
    assert denoiser.counts["captured"] <= 4


def test_a_plan_used_once_is_never_captured():
    # Full history: every block attends to a longer cache, so each plan recurs only within its
    # block's four passes: captured on the second, replayed on the third and fourth.
    eager, _ = _video(lambda: FullHistory(CFG.num_layers), graphed=False, samples=1, blocks=3)
    replayed, denoiser = _video(lambda: FullHistory(CFG.num_layers), graphed=True, samples=1, blocks=3)
    torch.testing.assert_close(replayed, eager, rtol=0, atol=0)
    assert denoiser.counts == {"eager": 3, "captured": 3, "replayed": 9}


def test_sampler_reports_its_graph_counts_publicly():
    model = CausalWan(CFG).init_random(0).eval()
    s = BlockSampler(model, FullHistory(CFG.num_layers))
    assert s.graph_counts is None  # no graphs: nothing to report
    s._graphed = d = GraphedDenoiser(model, s.memory, capture=_rerun_capture)
    s.reset(_text(1), seed=0, latent_shape=(C, H, W))
    s.next_block()
    counts = s.graph_counts
    assert counts == d.counts and counts["replayed"] > 0
    counts["replayed"] = 99  # a copy: the caller cannot change the bookkeeping
    assert d.counts["replayed"] != 99


def test_graph_cache_is_bounded_and_dropped_when_the_memory_reallocates():
    model = CausalWan(CFG).init_random(0).eval()
    mem = FullHistory(CFG.num_layers)
    d = GraphedDenoiser(model, mem, max_graphs=2, capture_on_use=1, capture=_rerun_capture)
    s = BlockSampler(model, mem)
    s._graphed = d
    s.reset(_text(1), seed=0, latent_shape=(C, H, W))
    for _ in range(4):
        s.next_block()
        assert len(d._graphs) <= 2
    held = mem.buffers()  # kept alive, so the new buffers cannot land at the same addresses
    mem.release()
    s.reset(_text(1), seed=0, latent_shape=(C, H, W))
    s.next_block()  # the first pass allocates new buffers: graphs over the old ones are gone
    assert [k[0] for k in d._graphs] == [(0, 0)]
    del held


def test_sampler_ignores_cuda_graphs_off_the_gpu():
    model = CausalWan(CFG).init_random(0).eval()
    assert BlockSampler(model, FullHistory(CFG.num_layers), cuda_graphs=True).graph_counts is None
