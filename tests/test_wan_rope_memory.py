"""Memories that rotate keys when read, and the rolling-window sampler (tiny config, CPU, float32).

Their parity with the references is in ``test_wan_parity_rolling_forcing.py`` and
``test_wan_parity_infinity_rope.py``; here: the rotation at read against the rotation at write
it generalises, the attended sets, the refusals, the sampler's contract."""

from __future__ import annotations

import pytest
import torch

from magbench.baselines.wan.memory import SlidingWindow
from magbench.baselines.wan.model import CausalWan, Rope3D, WanConfig
from magbench.baselines.wan.rolling import ROLLING_FORCING_SCHEDULE, RollingSampler
from magbench.baselines.wan.rope_memory import BlockRelativeWindow, RelativeSinkCache
from magbench.baselines.wan.sampler import BlockSampler
from magbench.errors import MagbenchError

CFG = WanConfig.tiny()
LATENT = (CFG.in_dim, 4, 6)


def _model() -> CausalWan:
    return CausalWan(CFG).init_random(0).eval()


def _text() -> torch.Tensor:
    return torch.randn(1, 5, CFG.text_dim, generator=torch.Generator().manual_seed(1))


def _latents(frames: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(1, frames, *LATENT, generator=torch.Generator().manual_seed(seed))


def test_frame_tables_at_consecutive_positions_are_the_block_tables():
    rope = Rope3D(CFG.head_dim)
    a = rope.frame_tables([5, 6, 7], 2, 3, torch.device("cpu"))
    b = rope.tables(5, 3, 2, 3, torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


class _AbsoluteWindow(BlockRelativeWindow):
    """Keys stored before RoPE and rotated when read, but at their absolute positions."""

    def rope_frame(self, start_frame, n_frames):
        return start_frame

    def _slot_positions(self, slots):
        return [self._where[s] for s in range(slots)]


def _generate(memory, blocks: int = 5) -> torch.Tensor:
    sampler = BlockSampler(_model(), memory)
    sampler.reset(_text(), seed=3, latent_shape=LATENT)
    sampler.feed(_latents(6))
    return torch.cat([sampler.next_block() for _ in range(blocks)], dim=1)


def test_keys_rotated_when_read_at_their_absolute_positions_equal_keys_rotated_when_written():
    """The same window (sink 3 + 6 frames, rolling 4 times): storing keys unrotated and rotating
    them when read gives what storing them rotated gives (up to the order attention sums in)."""
    ours = _generate(_AbsoluteWindow(CFG.num_layers, window_frames=6, sink_frames=3))
    plain = _generate(SlidingWindow(CFG.num_layers, window_frames=6, sink_frames=3))
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)
    relative = _generate(BlockRelativeWindow(CFG.num_layers, window_frames=6, sink_frames=3))
    assert not torch.allclose(relative, plain, rtol=1e-3, atol=1e-3)  # the positions do matter


def test_block_relative_positions_are_ranks_in_the_window():
    memory = BlockRelativeWindow(CFG.num_layers)  # sink 1, window 2, block 3
    _generate(memory, blocks=3)  # 6 context + 9 generated frames
    assert memory.kept_frames() == [0, 13, 14]
    assert memory.rope_frame(15, 3) == 3  # the block follows the 3 held frames
    assert sorted(memory._slot_positions(3)) == [0, 1, 2]
    assert memory.attended_frames(15, 3) == 6


def test_relative_sink_cache_attends_the_sink_the_recent_frames_and_the_pass():
    memory = RelativeSinkCache(CFG.num_layers)  # past 18, attention 21, passes of up to 15
    assert memory.attended_frames(0, 15) == 15  # nothing committed: the pass alone
    sampler = BlockSampler(_model(), memory)
    sampler.reset(_text(), seed=3, latent_shape=LATENT)
    sampler.feed(_latents(24))  # 8 blocks: the sink, then 21 frames of which the last 18 are kept
    assert memory.kept_frames() == [0, 1, 2] + list(range(6, 24))
    assert memory.attended_frames(24, 15) == 3 + 3 + 15  # sink + one recent block + a full window
    assert memory.attended_frames(24, 6) == 3 + 12 + 6  # a shrinking last window reads further back
    assert memory._layout(24, 15, False)[2] == 24 - 3 - 3  # the sink sits right before the recent block
    assert memory._layout(24, 3, True)[2] is None  # the clean pass: 3 + 18 + 3 > 21, no sink


@pytest.mark.parametrize(
    "make",
    [
        lambda: RelativeSinkCache(2, attention_frames=21, max_pass_frames=21),  # no room for the sink
        lambda: RelativeSinkCache(2, past_frames=4),
        lambda: BlockRelativeWindow(2, window_frames=0),
    ],
    ids=["no-room-for-sink", "past-not-whole-blocks", "empty-window"],
)
def test_bad_sizes_are_refused(make):
    with pytest.raises(MagbenchError):
        make()


def _rolling(blocks: int | None = None) -> RollingSampler:
    sampler = RollingSampler(_model(), RelativeSinkCache(CFG.num_layers))
    sampler.reset(_text(), seed=3, latent_shape=LATENT)
    sampler.feed(_latents(6))
    if blocks is not None:
        sampler.plan(blocks)
    return sampler


def test_rolling_windows_carry_one_timestep_per_block_and_shrink_at_the_end():
    sampler = _rolling(blocks=2)
    seen: list[tuple[int, list[float]]] = []
    real = sampler.generator.forward

    def forward(x, t, ctx, memory, start, commit=False, **kw):
        if not commit:
            seen.append((start, t[0, ::3].tolist()))
        return real(x, t, ctx, memory, start, commit=commit, **kw)

    sampler.generator.forward = forward
    steps = ROLLING_FORCING_SCHEDULE.timesteps()
    sampler.next_block()
    sampler.next_block()
    assert [start for start, _ in seen] == [6] * 5 + [9]
    assert [ts for _, ts in seen] == [steps[:1], steps[1::-1], steps[2:0:-1], steps[3:1:-1], steps[4:2:-1], steps[4:]]
    with pytest.raises(RuntimeError, match="every planned block"):
        sampler.next_block()


def test_rolling_sampler_needs_the_finished_block_committed_before_the_next_window():
    sampler = _rolling()
    block = sampler.next_block(commit=False)
    with pytest.raises(RuntimeError, match="commit"):
        sampler.next_block()
    sampler.commit(block)
    sampler.next_block()
    with pytest.raises(NotImplementedError):
        sampler.denoise()
