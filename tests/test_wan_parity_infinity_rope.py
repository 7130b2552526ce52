"""Parity of magbench's ``infinity-rope`` with the Infinity-RoPE reference code.

The golden (``tests/data/golden/infinity_rope.safetensors``) was recorded by
``tests/golden/record_infinity_rope.py`` from yesiltepe-hidir/infinity-rope @ 63d7b84 (its own
pipeline with its context path, scheduler, model and KV-cache code with
``block_relativistic_rope``; tiny random model with sharp q/k norms, float32, CPU) with
``configs/self_forcing_dmd.yaml``'s cache (``local_attn_size: 6``, ``sink_size: 1``): 2 context
blocks through one t=0 pass each, then 6 generated blocks; the 6-frame window rolls 6 times. The
same inputs go through magbench's model, the memory policy the ``infinity-rope`` method builds and
its sampler; every denoising output must match to 1e-5 relative, and so must the cache the
reference holds at the end (keys before RoPE; its sink frame, which it keeps rotated at 0).

Negative controls (each must move the outputs by far more than the tolerance): a window one frame
shorter, no sink (the same 6 frames), RoPE at write (absolute positions) instead of at read,
unwarped timesteps.
"""

from __future__ import annotations

import pytest

from golden.replay import TOLERANCE, golden, method_memory, rel_error, run_blocks, tiny_model, worst_error
from golden.tiny import FRAME_TOKENS, LATENT_SHAPE

from magbench.baselines.wan.model import rotate
from magbench.baselines.wan.rope_memory import BlockRelativeWindow
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler, FlowSchedule


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("infinity_rope")
    return t, meta, tiny_model(meta)


def _replay(recording, memory, schedule=SELF_FORCING_SCHEDULE):
    t, meta, model = recording
    sampler = BlockSampler(model, memory, schedule=schedule)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    return worst_error(run_blocks(sampler, t, range(meta["generated_blocks"])), t["x0"])


@pytest.fixture(scope="module")
def default_replay(recording):
    memory = method_memory("infinity-rope", 2)
    return memory, _replay(recording, memory)


def test_golden_is_from_the_reference_and_rolls_the_window(recording):
    t, meta, _ = recording
    assert meta["reference"] == "yesiltepe-hidir/infinity-rope" and meta["commit"].startswith("63d7b84")
    assert meta["model_kwargs"] == {"timestep_shift": 5.0, "local_attn_size": 6, "sink_size": 1}
    written, held = (t["cache_end"][0] / FRAME_TOKENS).tolist()
    assert (written, held) == (24, 6) and 3 * (meta["context_blocks"] + meta["generated_blocks"]) - 6 >= 2 * 3
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()


def test_infinity_rope_default_memory_matches_reference(recording, default_replay):
    memory, worst = default_replay
    assert (memory.sink_frames, memory.window_frames) == (1, 2)
    assert worst <= TOLERANCE
    assert memory.kept_frames() == [0, 22, 23]


def test_held_keys_and_values_match_the_reference_cache(recording, default_replay):
    """The reference's final cache: [frame 0 (rotated at 0) | 19, 20 | 21, 22, 23] (the last
    block sits in its write slot); magbench holds frame 0 and the 2 most recent frames, keys
    before RoPE."""
    t, _, model = recording
    memory, _ = default_replay
    ft = FRAME_TOKENS
    grid = (LATENT_SHAPE[1] // 2, LATENT_SHAPE[2] // 2)
    for layer in range(2):
        ref_k, ref_v = t[f"cache.{layer}.k"], t[f"cache.{layer}.v"]
        for frame in memory.kept_frames():
            slot = 0 if frame == 0 else frame - 18
            k, v = memory.frame_kv(layer, frame)
            if frame == 0:
                k = rotate(k, model.rope.frame_tables([0], *grid, k.device))
            assert rel_error(k, ref_k[:, slot * ft : (slot + 1) * ft]) <= TOLERANCE, (layer, frame)
            assert rel_error(v, ref_v[:, slot * ft : (slot + 1) * ft]) <= TOLERANCE, (layer, frame)


def test_reference_parameters_map_onto_the_policy():
    memory = BlockRelativeWindow.from_reference(2, local_attn_size=6, sink_size=1)
    assert (memory.sink_frames, memory.window_frames) == (1, 2)


class _RopeAtWrite(BlockRelativeWindow):
    """The same window with every key at its absolute position, as if rotated when written."""

    def rope_frame(self, start_frame, n_frames):
        return start_frame

    def _slot_positions(self, slots):
        return [self._where[s] for s in range(slots)]


@pytest.mark.parametrize(
    "memory, schedule",
    [
        (BlockRelativeWindow(2, window_frames=1, sink_frames=1), SELF_FORCING_SCHEDULE),  # window one frame shorter
        (BlockRelativeWindow(2, window_frames=3, sink_frames=0), SELF_FORCING_SCHEDULE),  # no sink (same 6 frames)
        (_RopeAtWrite(2), SELF_FORCING_SCHEDULE),  # RoPE at write instead of read
        (BlockRelativeWindow(2), FlowSchedule(warp=False)),
    ],
    ids=["window-1", "no-sink", "rope-at-write", "unwarped"],
)
def test_negative_controls_are_rejected(recording, memory, schedule):
    assert _replay(recording, memory, schedule) > 100 * TOLERANCE
