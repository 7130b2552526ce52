"""Parity of magbench's ``rolling-forcing`` with the Rolling Forcing reference code.

The golden (``tests/data/golden/rolling_forcing.safetensors``) was recorded by
``tests/golden/record_rolling_forcing.py`` from TencentARC/RollingForcing @ a1477d0 (its own
``inference_rolling_forcing`` pipeline, scheduler, model and KV-cache code; tiny random model with
sharp q/k norms, float32, CPU): 11 blocks, 15 windows of up to 5 blocks at 5 noise levels; the
24-frame cache fills at block 7 and evicts at blocks 8-10. The same inputs (the reference's
initial noise and the re-noising noise each block used) go through magbench's model, the memory
policy and the sampler the ``rolling-forcing`` method builds; every window's x0 (every block in
flight) must match to 1e-5 relative, and so must the cache the reference holds at the end (the
sink's keys before RoPE, the recent frames' after it, and their values).

Negative controls (each must move the outputs by far more than the tolerance): a pass attending
one block less (18 frames), a cache one block shorter, the sink's RoPE at write (absolute
positions) instead of at read, no sink, unwarped timesteps.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, method_memory, rel_error, tiny_model
from golden.tiny import FRAME_TOKENS, LATENT_SHAPE

from magbench.baselines.wan.rolling import ROLLING_FORCING_SCHEDULE, RollingSampler
from magbench.baselines.wan.rope_memory import RelativeSinkCache
from magbench.baselines.wan.sampler import FlowSchedule


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("rolling_forcing")
    return t, meta, tiny_model(meta)


def _method_sampler(model, memory):
    import magbench.baselines.wan  # noqa: F401
    from magbench.registry import METHODS

    return METHODS.get("rolling-forcing")(config="tiny", random_weights=True).make_sampler(model, memory)


def _replay(recording, memory, schedule=None):
    """(worst relative error over every window's x0, the finished blocks, each window's first block)."""
    t, meta, model = recording
    sampler = _method_sampler(model, memory) if schedule is None else RollingSampler(model, memory, schedule=schedule)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.plan(meta["blocks"])
    windows: list[tuple[int, torch.Tensor]] = []
    blocks = [
        sampler.next_block(
            noise=lambda i: t["noise"][:, 3 * i : 3 * i + 3], step_noise=lambda i, k: t["step_noise"][i, k], record=windows,
        )
        for _ in range(meta["blocks"])
    ]
    worst, offset = 0.0, 0
    for _, x0 in windows:
        n = x0.shape[1]
        worst = max(worst, rel_error(x0, t["window_x0"][:, offset : offset + n]))
        offset += n
    assert offset == t["window_x0"].shape[1]
    return worst, torch.cat(blocks, dim=1), [first for first, _ in windows]


@pytest.fixture(scope="module")
def default_replay(recording):
    memory = method_memory("rolling-forcing", 2)
    return memory, _replay(recording, memory)


def test_golden_is_from_the_reference_and_rolls_the_cache(recording):
    t, meta, _ = recording
    assert meta["reference"] == "TencentARC/RollingForcing" and meta["commit"].startswith("a1477d0")
    assert meta["denoising_step_list"] == [1000, 800, 600, 400, 200] and meta["model_kwargs"] == {"timestep_shift": 5.0}
    assert t["timesteps"].tolist() == ROLLING_FORCING_SCHEDULE.timesteps()
    # 33 frames written through a 24-frame cache: it evicted at least twice (blocks 8, 9, 10).
    written, held = (t["cache_end"][0] / FRAME_TOKENS).tolist()
    assert (written, held) == (33, 24) and written - held >= 2 * 3
    # The reference runs its cache-update pass every window on the window's oldest block: on
    # block 0 in the first five windows (its unfinished x0s, overwritten before anything reads
    # them), then once on each block as it leaves the window finished, which is what the sampler
    # commits.
    assert t["update_starts"].tolist() == [0] * 5 + [3 * b for b in range(1, meta["blocks"])]


def test_rolling_forcing_sampler_and_memory_match_reference(recording, default_replay):
    t, meta, _ = recording
    memory, (worst, blocks, firsts) = default_replay
    assert (memory.past_frames, memory.attention_frames, memory.max_pass_frames) == (18, 21, 15)
    assert worst <= TOLERANCE
    assert firsts == [int(b) for b in t["window_first_block"].tolist()]
    assert rel_error(blocks, t["output"]) <= TOLERANCE


def test_held_keys_and_values_match_the_reference_cache(recording, default_replay):
    """The reference's final cache: [sink (block 0, keys before RoPE) | blocks 4..10 (after
    RoPE)]; block 4 is its write slot's last occupant, never read again. magbench holds the sink
    and the 18 frames the next passes can read."""
    t, meta, _ = recording
    memory, _ = default_replay
    ft = FRAME_TOKENS
    assert memory.kept_frames() == [0, 1, 2] + list(range(15, 33))
    for layer in range(2):
        ref_k, ref_v = t[f"cache.{layer}.k"], t[f"cache.{layer}.v"]
        for frame in memory.kept_frames():
            slot = frame if frame < 3 else frame - 9  # the reference's slot of frame f >= 12 is f - 9
            k, v = memory.frame_kv(layer, frame)
            assert rel_error(k, ref_k[:, slot * ft : (slot + 1) * ft]) <= TOLERANCE, (layer, frame)
            assert rel_error(v, ref_v[:, slot * ft : (slot + 1) * ft]) <= TOLERANCE, (layer, frame)


class _SinkRopeAtWrite(RelativeSinkCache):
    """The sink rotated once at its own (absolute) positions, as if stored after RoPE."""

    def _layout(self, start_frame, n_frames, commit):
        w, cur, sink = super()._layout(start_frame, n_frames, commit)
        return w, cur, None if sink is None else self._sink_start


class _NoSink(RelativeSinkCache):
    def _layout(self, start_frame, n_frames, commit):
        w, cur, _ = super()._layout(start_frame, n_frames, commit)
        return w, cur, None


@pytest.mark.parametrize(
    "memory, schedule",
    [
        (RelativeSinkCache(2, attention_frames=18), None),  # a pass attends one block less
        (RelativeSinkCache(2, past_frames=15), None),  # a cache one block shorter
        (_SinkRopeAtWrite(2), None),  # RoPE at write instead of read
        (_NoSink(2), None),
        (RelativeSinkCache(2), FlowSchedule(denoising_steps=(1000, 800, 600, 400, 200), warp=False)),
    ],
    ids=["attention-18", "cache-15", "sink-rope-at-write", "no-sink", "unwarped"],
)
def test_negative_controls_are_rejected(recording, memory, schedule):
    worst, _, _ = _replay(recording, memory, schedule)
    assert worst > 100 * TOLERANCE
